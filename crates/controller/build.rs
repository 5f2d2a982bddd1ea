//! Generates one `#[test]` per plan fixture (`tests/fixtures/plan/*.yaml`) into
//! `$OUT_DIR/plan_fixture_tests.rs`, included by `tests/plan_fixtures.rs` (a module of the
//! `tests` binary), so every fixture is a named test (`cargo test -p scribe-controller --test
//! tests plan_fixtures::src_first_sync_snapshot` runs just that one) and a new YAML file is
//! picked up without being listed anywhere.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new("tests/fixtures/plan");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".yaml"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = String::new();
    for file in &names {
        let stem = file.trim_end_matches(".yaml");
        let ident: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        writeln!(
            out,
            "#[test]\nfn {ident}() {{\n    run_fixture({file:?});\n}}\n"
        )
        .expect("writing to a String");
    }
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("plan_fixture_tests.rs");
    std::fs::write(dest, out).expect("writing the generated fixture tests");
}
