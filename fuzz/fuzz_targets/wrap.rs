//! The client-config rewriter: any text gives a rewrite or an error, and a rewrite is valid JSON
//! that a second wrap leaves unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let path = std::path::Path::new("fuzz.json");
        if let Ok(once) = mcp_warden::wrap::wrap_text(path, text, "/usr/bin/mcp-warden", mcp_warden::wrap::Mode::Wrap { learn: false }) {
            let twice = mcp_warden::wrap::wrap_text(path, &once.text, "/usr/bin/mcp-warden", mcp_warden::wrap::Mode::Wrap { learn: false }).expect("a rewrite rewraps");
            assert_eq!(twice.text, once.text, "wrapping twice changes nothing");
        }
    }
});
