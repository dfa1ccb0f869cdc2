//! Replays every saved fuzz input (`corpus/` and `regressions/`) through its target, so a
//! crash found once stays fixed and coverage found by fuzzing keeps being exercised in every
//! test run, without a fuzzer installed.

use std::path::Path;

#[test]
fn saved_fuzz_inputs_replay_without_failure() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0usize;
    for target in ferrocket_fuzz::TARGETS {
        for kind in ["corpus", "regressions"] {
            let dir = root.join(kind).join(target);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for path in paths.into_iter().filter(|p| p.is_file()) {
                let data = std::fs::read(&path).expect("saved input is readable");
                let outcome = std::panic::catch_unwind(|| ferrocket_fuzz::run(target, &data));
                assert!(outcome.is_ok(), "{target} failed on {}", path.display());
                replayed += 1;
            }
        }
    }
    assert!(replayed > 0, "no saved fuzz inputs were found");
    println!("replayed {replayed} saved fuzz inputs");
}
