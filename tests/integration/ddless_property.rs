//! Property: whatever edits the source goes through, each copy leaves the
//! target byte-identical to the source and the checksum file equal to an
//! independent recomputation. Runs the library in-process, as the archive
//! backup does.

use std::num::NonZeroUsize;

use proptest::prelude::*;
use santools::ddless::{copy, ChecksumMode, CommitTuning, CopyOptions, ReadOptions};
use santools::progress::NoProgress;

use crate::helpers::*;

#[derive(Debug, Clone)]
enum Edit {
    Segments { count: usize, seed: u64 },
    Zero { segment: usize },
    Resize { segments: usize, tail: usize, seed: u64 },
    Revert,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (1usize..6, any::<u64>()).prop_map(|(count, seed)| Edit::Segments { count, seed }),
        1 => (0usize..40).prop_map(|segment| Edit::Zero { segment }),
        1 => (1usize..40, 0usize..SEG, any::<u64>()).prop_map(|(segments, tail, seed)| Edit::Resize { segments, tail, seed }),
        1 => Just(Edit::Revert),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn repeated_copies_keep_target_and_checksums_exact(
        initial_segments in 1usize..40,
        edits in proptest::collection::vec(edit(), 1..6),
        workers in 1usize..4,
        small_checkpoints: bool,
    ) {
        let d = tempfile::tempdir().unwrap();
        let (src, sums, tgt) = (d.path().join("src"), d.path().join("sums"), d.path().join("tgt"));
        let mut data = Rng(initial_segments as u64 + 1).bytes(initial_segments * SEG - 17);
        let mut history = vec![data.clone()];
        let opts = CopyOptions {
            source: src.clone().into(),
            target: tgt.clone().into(),
            checksum: ChecksumMode::File(sums.clone()),
            ddmap: None,
            read: ReadOptions { workers: NonZeroUsize::new(workers).unwrap(), ..ReadOptions::default() },
            tuning: if small_checkpoints {
                CommitTuning { checkpoint_bytes: 2 * SEG as u64, invalidate_batch_bytes: SEG }
            } else {
                CommitTuning::default()
            },
        };
        write(&src, &data);
        copy(&opts, &NoProgress).unwrap();
        for e in edits {
            match e {
                Edit::Segments { count, seed } => { mutate_segments(&mut Rng(seed | 1), &mut data, count); }
                Edit::Zero { segment } => {
                    let s = segment % data.len().div_ceil(SEG);
                    let end = ((s + 1) * SEG).min(data.len());
                    data[s * SEG..end].fill(0);
                }
                Edit::Resize { segments, tail, seed } => {
                    let new_len = (segments * SEG + tail).max(1);
                    let old = data.len();
                    data.resize(new_len, 0);
                    if new_len > old { Rng(seed | 1).fill(&mut data[old..]); }
                }
                Edit::Revert => { data = history[0].clone(); }
            }
            history.push(data.clone());
            write(&src, &data);
            let report = copy(&opts, &NoProgress).unwrap();
            prop_assert_eq!(read(&tgt), data.clone());
            prop_assert_eq!(read(&sums), reference_checksums(&data));
            prop_assert_eq!(report.source_size, data.len() as u64);
        }
    }
}
