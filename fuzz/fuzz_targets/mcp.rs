//! The MCP layer's message handling: any bytes from the client and then from the server are
//! relayed or answered without a panic, and a stream with no newline at all passes unchanged.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mcp_warden::mcp::{McpConfig, proxy};

/// Compiled once: building the redaction patterns per input would dominate the run.
static CONFIG: LazyLock<McpConfig> = LazyLock::new(McpConfig::for_fuzzing);

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (client, server) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let (to_server, _to_client) = proxy::process(CONFIG.clone(), client, server).expect("/dev/null opens");
    if !client.contains(&b'\n') && !client.is_empty() && serde_json::from_slice::<serde_json::Value>(client).is_err() {
        assert_eq!(to_server, client, "an unterminated, unparsable line passes as it is");
    }
});
