//! The persistent change-tracking file.
//!
//! ```text
//!  magic "RSNT" u32 | version u16 | clean u8 | 0 u8 | chunks u64 | count u32
//!  count x ( snapshot id u64 | trusted u8 | chunks/64 rounded up x u64 )
//!  crc32c u32 over everything before it
//! ```
//!
//! Generation bitmaps live in memory while the engine runs. At open the
//! file is read and then immediately replaced by a `clean = 0` version, so
//! a crash from then on leaves a file that says "not trustworthy". A clean
//! close writes the bitmaps with `clean = 1`. Both writes are
//! write-new-then-rename with fsync of the file and its directory.

use crate::SnapshotId;

const MAGIC: u32 = u32::from_le_bytes(*b"RSNT");
const VERSION: u16 = 1;

pub(crate) const FILE: &str = "tracking";

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TrackingImage {
    pub clean: bool,
    pub chunks: u64,
    pub generations: Vec<(SnapshotId, bool, Vec<u64>)>,
}

pub(crate) fn encode(clean: bool, chunks: u64, gens: &[(SnapshotId, bool, Vec<u64>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(u8::from(clean));
    out.push(0);
    out.extend_from_slice(&chunks.to_le_bytes());
    out.extend_from_slice(&(gens.len() as u32).to_le_bytes());
    for (id, trusted, words) in gens {
        out.extend_from_slice(&id.0.to_le_bytes());
        out.push(u8::from(*trusted));
        for w in words {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// `None` for anything but an intact file of this version.
pub(crate) fn decode(bytes: &[u8]) -> Option<TrackingImage> {
    let (body, crc) = bytes.split_last_chunk::<4>()?;
    if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
        return None;
    }
    let (head, mut rest) = body.split_first_chunk::<20>()?;
    if u32::from_le_bytes(head[0..4].try_into().ok()?) != MAGIC
        || u16::from_le_bytes([head[4], head[5]]) != VERSION
    {
        return None;
    }
    let clean = head[6] == 1;
    let chunks = u64::from_le_bytes(head[8..16].try_into().ok()?);
    let count = u32::from_le_bytes(head[16..20].try_into().ok()?);
    let words = usize::try_from(chunks.div_ceil(64)).ok()?;
    let mut generations = Vec::new();
    for _ in 0..count {
        let (id, r) = rest.split_first_chunk::<8>()?;
        let (&trusted, r) = r.split_first()?;
        let bits = r.get(..words.checked_mul(8)?)?;
        generations.push((
            SnapshotId(u64::from_le_bytes(*id)),
            trusted == 1,
            bits.chunks_exact(8)
                .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
                .collect(),
        ));
        rest = &r[words * 8..];
    }
    rest.is_empty().then_some(TrackingImage {
        clean,
        chunks,
        generations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips_and_rejects_any_flip(
            clean in any::<bool>(),
            chunks in 0u64..300,
            seeds in prop::collection::vec((any::<u64>(), any::<bool>(), any::<u64>()), 0..4),
            flip in any::<prop::sample::Index>(),
        ) {
            let words = chunks.div_ceil(64) as usize;
            let gens: Vec<_> = seeds
                .into_iter()
                .map(|(id, t, w)| (SnapshotId(id), t, vec![w; words]))
                .collect();
            let bytes = encode(clean, chunks, &gens);
            let image = decode(&bytes).unwrap();
            prop_assert_eq!(&image, &TrackingImage { clean, chunks, generations: gens });
            let mut damaged = bytes.clone();
            damaged[flip.index(bytes.len())] ^= 0x40;
            prop_assert!(decode(&damaged).is_none());
        }
    }
}
