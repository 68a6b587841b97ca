//! The profile parser and validator: any text must give a profile or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_warden::error::Diagnose;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = mcp_warden::profile::load_source("fuzz.toml", text) {
            // Errors must render (location computation included) and may carry a hint.
            let _ = e.to_string();
            let _ = e.hint();
        }
    }
});
