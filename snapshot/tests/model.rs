//! Model-based test: random writes, snapshot creations, deletions and
//! (clean or unclean) reopens against an in-memory model. After every step
//! each snapshot reads back exactly its frozen content, and every changed
//! set equals the model's: the chunks written in the interval when tracking
//! is trusted, the chunks whose content differs when it is not.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use reservoir_bdev::{BlockCount, BlockSize, Durability, Lba, MallocBdev};
use reservoir_snapshot::{ChangeMethod, ChangedSet, ChunkSize, SnapshotEngine, SnapshotOptions};

const BLOCK: u64 = 512;
const CHUNK: u64 = 4096;
/// 37 whole chunks and a partial one, so the short last chunk is exercised.
const BLOCKS: u64 = 37 * (CHUNK / BLOCK) + 3;
const BYTES: u64 = BLOCKS * BLOCK;
const CHUNKS: u64 = BYTES.div_ceil(CHUNK);

#[derive(Debug, Clone)]
enum Op {
    Write { lba: u64, blocks: u64, seed: u8 },
    Create,
    Delete(prop::sample::Index),
    Reopen { clean: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..BLOCKS, 1u64..40, any::<u8>()).prop_map(|(lba, blocks, seed)| Op::Write {
            lba,
            blocks: blocks.min(BLOCKS - lba),
            seed
        }),
        2 => Just(Op::Create),
        1 => any::<prop::sample::Index>().prop_map(Op::Delete),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

struct ModelSnap {
    name: String,
    image: Vec<u8>,
    /// Chunks written after this snapshot and before the next one.
    written: BTreeSet<u64>,
    trusted: bool,
}

struct Model {
    live: Vec<u8>,
    snaps: Vec<ModelSnap>,
}

impl Model {
    fn expected(&self, i: usize, j: Option<usize>) -> (BTreeSet<u64>, ChangeMethod) {
        let end = j.unwrap_or(self.snaps.len());
        if self.snaps[i..end].iter().all(|s| s.trusted) {
            let set = self.snaps[i..end]
                .iter()
                .flat_map(|s| s.written.iter().copied())
                .collect();
            return (set, ChangeMethod::Tracked);
        }
        let a = &self.snaps[i].image;
        let b = j.map_or(&self.live, |j| &self.snaps[j].image);
        let set = (0..CHUNKS)
            .filter(|&c| {
                let r = (c * CHUNK) as usize..((c + 1) * CHUNK).min(BYTES) as usize;
                a[r.clone()] != b[r]
            })
            .collect();
        (set, ChangeMethod::FullCompare)
    }
}

fn chunks_of(set: &ChangedSet) -> BTreeSet<u64> {
    set.extents
        .iter()
        .flat_map(|e| e.offset / CHUNK..(e.offset + e.len).div_ceil(CHUNK))
        .collect()
}

fn open(base: &Arc<MallocBdev>, dir: &Path) -> Arc<SnapshotEngine> {
    let options = SnapshotOptions {
        chunk_size: ChunkSize::new(CHUNK as u32).unwrap(),
        diff_area_capacity: None,
        diff_area_device: None,
    };
    SnapshotEngine::open("vol", base.clone(), dir, options)
        .unwrap()
        .0
}

fn check(engine: &Arc<SnapshotEngine>, model: &Model) -> Result<(), TestCaseError> {
    let list = engine.list();
    prop_assert_eq!(
        list.iter().map(|s| s.name.to_string()).collect::<Vec<_>>(),
        model
            .snaps
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    );
    for s in &model.snaps {
        let view = engine.view(&s.name).unwrap();
        let mut got = vec![0u8; BYTES as usize];
        view.read(Lba(0), &mut got).unwrap();
        prop_assert!(got == s.image, "snapshot {} content differs", s.name);
        // An unaligned-to-chunk sub-range goes through the per-chunk split.
        let mut part = vec![0u8; 5 * BLOCK as usize];
        view.read(Lba(5), &mut part).unwrap();
        prop_assert!(part[..] == s.image[5 * BLOCK as usize..10 * BLOCK as usize]);
    }
    for i in 0..model.snaps.len() {
        for j in (i..model.snaps.len()).map(Some).chain([None]) {
            let to = j.map(|j| model.snaps[j].name.as_str());
            let got = engine.changed(&model.snaps[i].name, to).unwrap();
            let (want, method) = model.expected(i, j);
            prop_assert_eq!(got.method, method, "from {} to {:?}", i, j);
            prop_assert_eq!(chunks_of(&got), want, "from {} to {:?}", i, j);
            prop_assert_eq!(
                got.total_bytes,
                got.extents.iter().map(|e| e.len).sum::<u64>()
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn snapshots_and_changed_sets_match_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let base = Arc::new(MallocBdev::new("vol", BlockSize::B512, BlockCount(BLOCKS)).unwrap());
        let mut engine = open(&base, dir.path());
        let mut origin = engine.origin();
        let mut model = Model { live: vec![0; BYTES as usize], snaps: Vec::new() };
        let mut next = 0;
        for op in ops {
            match op {
                Op::Write { lba, blocks, seed } => {
                    let data: Vec<u8> = (0..blocks * BLOCK)
                        .map(|i| seed.wrapping_add((i / 7) as u8) ^ (i as u8))
                        .collect();
                    origin.write(Lba(lba), &data, Durability::Cached).unwrap();
                    let at = (lba * BLOCK) as usize;
                    model.live[at..at + data.len()].copy_from_slice(&data);
                    if let Some(newest) = model.snaps.last_mut() {
                        let first = lba * BLOCK / CHUNK;
                        let last = ((lba + blocks) * BLOCK - 1) / CHUNK;
                        newest.written.extend(first..=last);
                    }
                }
                Op::Create => {
                    let name = format!("s{next}");
                    next += 1;
                    let info = engine.create(&name).unwrap();
                    prop_assert_eq!(info.copied_chunks, 0);
                    model.snaps.push(ModelSnap {
                        name,
                        image: model.live.clone(),
                        written: BTreeSet::new(),
                        trusted: true,
                    });
                }
                Op::Delete(index) => {
                    if model.snaps.is_empty() {
                        continue;
                    }
                    let i = index.index(model.snaps.len());
                    engine.delete(&model.snaps[i].name).unwrap();
                    let gone = model.snaps.remove(i);
                    if let Some(prev) = i.checked_sub(1).map(|p| &mut model.snaps[p]) {
                        prev.written.extend(gone.written);
                        prev.trusted &= gone.trusted;
                    }
                }
                Op::Reopen { clean } => {
                    if clean {
                        engine.close().unwrap();
                    } else {
                        for s in &mut model.snaps {
                            s.trusted = false;
                        }
                    }
                    drop(origin);
                    drop(engine);
                    engine = open(&base, dir.path());
                    origin = engine.origin();
                }
            }
            check(&engine, &model)?;
        }
        // Deleting every snapshot releases every extent: nothing leaks.
        for s in &model.snaps {
            engine.delete(&s.name).unwrap();
        }
        prop_assert_eq!(engine.diff_area_usage().used_bytes, 0);
    }
}
