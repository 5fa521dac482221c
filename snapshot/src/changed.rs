//! Changed-block sets: from the tracking bitmaps, or by full compare.

use rayon::prelude::*;

use crate::atomics::Bitmap;
use crate::ChangedExtent;

/// Words of bitmap one rayon task ORs and scans: 1024 words = 64 Ki chunks
/// = 4 GiB of volume at 64 KiB chunks, enough work to amortise a task.
const WORDS_PER_TASK: usize = 1024;

/// Runs of set chunks `[start, end)` in the union of `gens`, ascending.
pub(crate) fn tracked_runs(gens: &[&Bitmap], chunks: u64) -> Vec<(u64, u64)> {
    let words = chunks.div_ceil(64) as usize;
    let pieces: Vec<Vec<(u64, u64)>> = (0..words.div_ceil(WORDS_PER_TASK))
        .into_par_iter()
        .map(|task| {
            let mut runs: Vec<(u64, u64)> = Vec::new();
            let from = task * WORDS_PER_TASK;
            for w in from..(from + WORDS_PER_TASK).min(words) {
                let mut bits = gens.iter().fold(0u64, |acc, g| acc | g.word(w));
                while bits != 0 {
                    let chunk = w as u64 * 64 + u64::from(bits.trailing_zeros());
                    bits &= bits - 1;
                    push_chunk(&mut runs, chunk);
                }
            }
            runs
        })
        .collect();
    merge(pieces)
}

fn push_chunk(runs: &mut Vec<(u64, u64)>, chunk: u64) {
    match runs.last_mut() {
        Some((_, end)) if *end == chunk => *end += 1,
        _ => runs.push((chunk, chunk + 1)),
    }
}

/// Concatenates per-task runs, joining runs that meet at a task boundary.
fn merge(pieces: Vec<Vec<(u64, u64)>>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (start, end) in pieces.into_iter().flatten() {
        match out.last_mut() {
            Some((_, last_end)) if *last_end == start => *last_end = end,
            _ => out.push((start, end)),
        }
    }
    out
}

/// Runs of chunks for which `differs(chunk)` holds, evaluated in parallel.
/// Each task gets its own scratch value from `init`.
pub(crate) fn compared_runs<S, E: Send>(
    chunks: u64,
    init: impl Fn() -> S + Sync + Send,
    differs: impl Fn(&mut S, u64) -> Result<bool, E> + Sync + Send,
) -> Result<Vec<(u64, u64)>, E> {
    const CHUNKS_PER_TASK: u64 = 256;
    let pieces: Vec<Vec<(u64, u64)>> = (0..chunks.div_ceil(CHUNKS_PER_TASK))
        .into_par_iter()
        .map_init(&init, |scratch, task| {
            let mut runs = Vec::new();
            let from = task * CHUNKS_PER_TASK;
            for chunk in from..(from + CHUNKS_PER_TASK).min(chunks) {
                if differs(scratch, chunk)? {
                    push_chunk(&mut runs, chunk);
                }
            }
            Ok(runs)
        })
        .collect::<Result<_, E>>()?;
    Ok(merge(pieces))
}

/// Chunk runs as byte extents, the last clamped to the volume's end.
pub(crate) fn to_extents(runs: &[(u64, u64)], chunk: u64, volume_bytes: u64) -> Vec<ChangedExtent> {
    runs.iter()
        .map(|&(s, e)| {
            let offset = s * chunk;
            ChangedExtent {
                offset,
                len: (e * chunk).min(volume_bytes) - offset,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn runs_are_the_union_of_the_bitmaps(
            chunks in 1u64..200_000,
            sets in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 0..300), 1..4),
        ) {
            let maps: Vec<Bitmap> = sets.iter().map(|_| Bitmap::new(chunks)).collect();
            let mut expect = std::collections::BTreeSet::new();
            for (m, set) in maps.iter().zip(&sets) {
                for i in set {
                    let c = i.index(chunks as usize) as u64;
                    m.set(c);
                    expect.insert(c);
                }
            }
            let refs: Vec<&Bitmap> = maps.iter().collect();
            let runs = tracked_runs(&refs, chunks);
            let got: std::collections::BTreeSet<u64> = runs.iter().flat_map(|&(s, e)| s..e).collect();
            prop_assert_eq!(&got, &expect);
            prop_assert!(runs.windows(2).all(|w| w[0].1 < w[1].0));
            let cmp = compared_runs(chunks, || (), |_, c| Ok::<_, ()>(expect.contains(&c))).unwrap();
            prop_assert_eq!(cmp, runs);
        }
    }
}
