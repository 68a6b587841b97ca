//! The command-line grant parsers: endpoints, sizes, layers and requirement levels.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_warden::plan::Layer;
use mcp_warden::profile::{Endpoint, Size};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(e) = s.parse::<Endpoint>() {
            // Whatever parses must print back to something that parses to the same value.
            assert_eq!(e.to_string().parse::<Endpoint>().ok(), Some(e));
        }
        if let Ok(size) = s.parse::<Size>() {
            assert!(size.0 > 0);
            let _ = size.to_string();
        }
        let _ = s.parse::<Layer>();
    }
});
