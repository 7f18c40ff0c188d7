//! The fuzz harness as a normal, bounded test on stable Rust.
//!
//! - `corpus_replays`: every file of `fuzz/corpus/core/` through
//!   [`psession_fuzz::run`] (the seeds and what the fuzzer found).
//! - `random_inputs` and `mutated_corpus`: proptest cases of random bytes,
//!   and of corpus entries with bytes flipped, inserted, removed and
//!   spliced. The case counts are fixed (1000 and 200: the file takes
//!   about 10 s in a debug build); set `PSESSION_FUZZ_CASES=N` (both
//!   properties) for a longer run, e.g.
//!   `PSESSION_FUZZ_CASES=20000 cargo test --release -p psession-fuzz`.

use std::path::PathBuf;
use std::sync::OnceLock;

use proptest::collection::vec;
use proptest::prelude::*;

/// Cases of `random_inputs` unless `PSESSION_FUZZ_CASES` says otherwise.
const RANDOM_CASES: u32 = 1000;
/// Cases of `mutated_corpus` (each runs a long corpus script, so fewer).
const MUTATED_CASES: u32 = 200;

/// `default` cases, or `PSESSION_FUZZ_CASES` for both properties.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PSESSION_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Shrinking a failure is worth it; a long one is not.
        max_shrink_iters: 2048,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/core")
}

/// The corpus files (name, bytes), sorted by name, read once.
fn corpus() -> &'static [(String, Vec<u8>)] {
    static CORPUS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    CORPUS.get_or_init(read_corpus)
}

fn read_corpus() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("fuzz/corpus/core exists")
        .map(|entry| entry.expect("readable corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("readable corpus file"))
        })
        .collect()
}

#[test]
fn corpus_replays() {
    let corpus = corpus();
    assert!(corpus.len() >= 10, "the corpus has {} files", corpus.len());
    for (name, data) in corpus {
        let outcome = std::panic::catch_unwind(|| psession_fuzz::run(data));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("corpus entry {name} fails: {message}");
        }
    }
}

/// One edit of a corpus entry.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    /// Append the tail of another entry from this offset.
    Splice(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        2 => (any::<usize>(), vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Edit::Insert(i, b)),
        2 => (any::<usize>(), 1..16usize).prop_map(|(i, n)| Edit::Remove(i, n)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(e, i)| Edit::Splice(e, i)),
    ]
}

fn mutate(corpus: &[(String, Vec<u8>)], entry: usize, edits: &[Edit]) -> Vec<u8> {
    let mut data = corpus[entry % corpus.len()].1.clone();
    for edit in edits {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match edit {
            Edit::Flip(i, b) if !data.is_empty() => {
                let i = i % data.len();
                data[i] ^= b | 1;
            }
            Edit::Flip(..) => {}
            Edit::Insert(i, bytes) => {
                let i = at(*i, data.len());
                data.splice(i..i, bytes.iter().copied());
            }
            Edit::Remove(i, n) => {
                let i = at(*i, data.len());
                let end = (i + n).min(data.len());
                data.drain(i..end);
            }
            Edit::Splice(e, i) => {
                let other = &corpus[e % corpus.len()].1;
                let i = at(*i, other.len());
                data.extend_from_slice(&other[i..]);
            }
        }
    }
    data.truncate(4096);
    data
}

proptest! {
    #![proptest_config(config(RANDOM_CASES))]

    /// Random bytes: any input is a script, and every script keeps the
    /// invariants.
    #[test]
    fn random_inputs(data in vec(any::<u8>(), 0..1024)) {
        psession_fuzz::run(&data);
    }
}

proptest! {
    #![proptest_config(config(MUTATED_CASES))]

    /// Corpus entries, edited the way a fuzzer mutates them.
    #[test]
    fn mutated_corpus(entry in any::<usize>(), edits in vec(edit(), 1..8)) {
        psession_fuzz::run(&mutate(corpus(), entry, &edits));
    }
}
