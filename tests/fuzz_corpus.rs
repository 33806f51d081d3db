//! Runs every fuzz target's body (`countersign::fuzzing`) over its seed corpus
//! (`fuzz/corpus/<target>/`) and every crash the fuzzer found (`fuzz/regressions/<target>/`),
//! so each `cargo test` checks them without cargo-fuzz. See scripts/fuzz.

use std::path::Path;

use countersign::fuzzing::TARGETS;

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

fn run(kind: &str, min_files: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind);
    let mut total = 0;
    let mut failed = Vec::new();
    for (name, body) in TARGETS {
        let files = inputs(&root.join(name));
        assert!(
            files.len() >= min_files,
            "{kind}/{name}: {} files, expected at least {min_files}",
            files.len()
        );
        for file in files {
            let data = std::fs::read(&file).expect("a readable input");
            let outcome = std::panic::catch_unwind(|| body(&data));
            if outcome.is_err() {
                failed.push(format!("{name}: {}", file.display()));
            }
            total += 1;
        }
    }
    assert!(failed.is_empty(), "failing inputs:\n{}", failed.join("\n"));
    println!("{kind}: {total} inputs");
}

#[test]
fn seed_corpus_passes_every_target() {
    run("corpus", 3);
}

#[test]
fn recorded_crashes_stay_fixed() {
    run("regressions", 0);
}
