//! The fuzzing corpus (fuzz/corpus/, minimized by `cargo fuzz cmin`) replayed as a regression
//! suite in ordinary builds: every input goes through the same checks as the fuzz targets.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::path::{Path, PathBuf};

use mcp_warden::error::Diagnose;
use mcp_warden::plan::Layer;
use mcp_warden::profile::{Endpoint, Size};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    assert!(!inputs.is_empty(), "empty corpus {}", dir.display());
    inputs
}

#[test]
fn profile_corpus() {
    for (path, bytes) in corpus("profile") {
        if let Ok(text) = std::str::from_utf8(&bytes)
            && let Err(e) = mcp_warden::profile::load_source("fuzz.toml", text)
        {
            assert!(!e.to_string().is_empty(), "{}", path.display());
            let _ = e.hint();
        }
    }
}

#[test]
fn grants_corpus() {
    for (path, bytes) in corpus("grants") {
        let Ok(s) = std::str::from_utf8(&bytes) else { continue };
        if let Ok(e) = s.parse::<Endpoint>() {
            assert_eq!(e.to_string().parse::<Endpoint>().ok(), Some(e), "{}", path.display());
        }
        if let Ok(size) = s.parse::<Size>() {
            assert!(size.0 > 0, "{}: {s:?}", path.display());
        }
        let _ = s.parse::<Layer>();
    }
}

#[test]
fn wrap_corpus() {
    let file = Path::new("fuzz.json");
    for (path, bytes) in corpus("wrap") {
        let Ok(text) = std::str::from_utf8(&bytes) else { continue };
        if let Ok(once) = mcp_warden::wrap::wrap_text(
            file,
            text,
            "/usr/bin/mcp-warden",
            mcp_warden::wrap::Mode::Wrap { learn: false },
        ) {
            let twice = mcp_warden::wrap::wrap_text(
                file,
                &once.text,
                "/usr/bin/mcp-warden",
                mcp_warden::wrap::Mode::Wrap { learn: false },
            )
            .unwrap();
            assert_eq!(twice.text, once.text, "{}", path.display());
        }
    }
}

#[test]
fn mcp_corpus() {
    for (path, bytes) in corpus("mcp") {
        let split = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        let (client, server) = (&bytes[..split], bytes.get(split + 1..).unwrap_or_default());
        let cfg = mcp_warden::mcp::McpConfig::for_fuzzing();
        mcp_warden::mcp::proxy::process(cfg, client, server).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}
