//! Property-based fuzzing of the parser: arbitrary bytes and mutated valid containers must
//! give an error or the exact original data, never a panic, a hang or a huge allocation.
//! CI runs the default number of cases; `PROPTEST_CASES=100000 cargo test --release fuzz`
//! fuzzes longer.

use super::layout::*;
use super::read::*;
use super::write::*;
use crate::error::Error;
use proptest::prelude::*;

fn container(segs: &[(Vec<u8>, u8, u32)], chunk: usize) -> Vec<u8> {
    let specs: Vec<SegmentData<'_>> = segs
        .iter()
        .map(|(data, codec, shuffle)| SegmentData::Raw {
            data,
            codec: if *codec == 0 { Codec::None } else { Codec::Lz4 },
            shuffle: *shuffle,
        })
        .collect();
    let mut out = Vec::new();
    write_container(&mut out, &specs, chunk, chunk).expect("writing to a Vec cannot fail");
    out
}

fn read_all(file: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let table = read_table(file)?;
    let mut bufs: Vec<Vec<u8>> = table
        .segments
        .iter()
        .map(|s| vec![0u8; s.raw_len as usize])
        .collect();
    let jobs = table
        .segments
        .iter()
        .zip(bufs.iter_mut())
        .map(|(segment, dst)| ReadJob {
            segment,
            dst: dst.as_mut_slice(),
        })
        .collect();
    read_segments(file, jobs, true)?;
    Ok(bufs)
}

fn segment() -> impl Strategy<Value = (Vec<u8>, u8, u32)> {
    (
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            proptest::collection::vec(0u8..3, 0..3000),
        ],
        0u8..2,
        prop_oneof![Just(0u32), Just(2), Just(4), Just(8)],
    )
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    OverwriteU64(usize, u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Insert(i, x)),
        (any::<usize>(), any::<u64>()).prop_map(|(i, x)| Mutation::OverwriteU64(i, x)),
    ]
}

fn apply(file: &mut Vec<u8>, m: &Mutation) {
    let n = file.len();
    match *m {
        Mutation::Flip(i, x) => file[i % n] ^= x,
        Mutation::Truncate(i) => file.truncate(i % n),
        Mutation::Insert(i, x) => file.insert(i % n, x),
        Mutation::OverwriteU64(i, x) => {
            let at = (i % n).min(n.saturating_sub(8));
            let end = (at + 8).min(n);
            file[at..end].copy_from_slice(&x.to_le_bytes()[..end - at]);
        }
    }
}

/// 400 cases in CI; `PROPTEST_CASES` raises it for a longer local run.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = read_all(&bytes);
        let mut with_magic = MAGIC.to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = read_all(&with_magic);
    }

    #[test]
    fn roundtrip(segs in proptest::collection::vec(segment(), 1..5), chunk in 1usize..2000) {
        let file = container(&segs, chunk);
        let got = read_all(&file).expect("a fresh container reads back");
        let want: Vec<Vec<u8>> = segs.into_iter().map(|s| s.0).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn mutated_containers_error_or_read_exactly(
        segs in proptest::collection::vec(segment(), 1..4),
        chunk in 64usize..1500,
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let mut file = container(&segs, chunk);
        for m in &muts {
            if file.is_empty() {
                break;
            }
            apply(&mut file, m);
        }
        if let Ok(table) = read_table(file.as_slice()) {
            // damage never marks a file mapped-writable (that would turn verification off)
            prop_assert_eq!(table.flags & FLAG_MAPPED_WRITABLE, 0);
            // checking stored bytes alone (before allocating outputs) never panics, and a
            // file that passes it and reads back reads back exactly
            let all: Vec<&Segment> = table.segments.iter().collect();
            let stored_ok = verify_stored_segments(file.as_slice(), &all).is_ok();
            if let Ok(got) = read_all(&file) {
                prop_assert!(stored_ok);
                let want: Vec<Vec<u8>> = segs.into_iter().map(|s| s.0).collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
