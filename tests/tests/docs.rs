//! The architecture document tells the truth about the tree: every file of `launcher/src` has its
//! row, and the stage-2 table is the checklist the code runs (numbers and names from `Step`).

use std::path::{Path, PathBuf};

use mcp_warden::stage2::Step;

fn architecture() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/architecture.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rust_files(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display())).path();
        if path.is_dir() {
            rust_files(&path, root, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
}

#[test]
fn the_architecture_doc_lists_every_file() {
    let doc = architecture();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../launcher/src");
    let mut files = Vec::new();
    rust_files(&src, &src, &mut files);
    let missing: Vec<_> =
        files.iter().map(|f| f.display().to_string()).filter(|f| !doc.contains(&format!("`{f}`"))).collect();
    assert!(missing.is_empty(), "docs/architecture.md has no row for: {missing:?}");
}

#[test]
fn the_architecture_doc_shows_the_stage2_checklist() {
    let doc = architecture();
    let rows: Vec<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .filter_map(|l| {
            let mut cells = l.split(" | ");
            Some(format!("{}. {}", cells.next()?, cells.next()?.trim_matches('`')))
        })
        .collect();
    let steps: Vec<String> = Step::ALL.iter().map(|s| format!("{}. {}", s.number(), s.name())).collect();
    assert_eq!(rows, steps, "the stage-2 table of docs/architecture.md differs from the checklist");
}
