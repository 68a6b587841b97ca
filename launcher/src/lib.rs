//! mcp-warden: run an MCP server under a least-privilege profile.
//!
//! Data flow: `argv -> Cli -> LoadedProfile -> Plan (resolved against HostFacts) -> supervisor ->
//! stage 2 -> execve`. The supervisor forks stage 2 before any thread exists; stage 2 applies the
//! hardening steps in order (see [`sandbox::stage2`]) and executes the server with stdio untouched.

pub mod broker;
pub mod cgroup;
pub mod cli;
pub mod host;
pub mod mcp;
pub mod monitor;
pub mod npx;
pub mod plan;
pub mod profile;
pub mod report;
pub mod sandbox;
pub mod service;
pub mod supervisor;
pub mod sys;
pub mod wrap;
