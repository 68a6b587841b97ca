//! mcp-warden: run an MCP server under a least-privilege profile.
//!
//! The folders are the data flow: `argv -> cli -> profile -> plan (resolved against host) ->
//! supervisor -> stage2 -> execve`. The supervisor does every fallible step, then forks stage 2
//! before any thread exists; stage 2 applies the hardening steps in order (see [`stage2`]) and
//! executes the server with stdio untouched. `layers/` holds one file per protection, `ebpf/` the
//! kernel probes, `audit/` the log, `mcp/` the JSON-RPC layer and `sys` every raw system call.

pub mod audit;
pub mod cli;
pub mod commands;
pub mod dns;
pub mod ebpf;
pub mod error;
pub mod export;
pub mod gate;
pub mod host;
pub mod layers;
pub mod learn;
pub mod logging;
pub mod mcp;
pub mod mounts;
pub mod paths;
pub mod plan;
pub mod profile;
pub mod score;
pub mod stage2;
pub mod supervisor;
pub mod sys;
pub mod systemd;
pub mod wrap;
