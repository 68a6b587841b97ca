//! cargo xtask: the project's own set-up, test, demo and benchmark tasks.
//!
//! - `setup`: everything the tests need on a fresh machine (test user, pinned real MCP servers
//!   and the official Python SDK client in a world-readable directory).
//! - `test`: setup, build every binary, run the whole test suite (the README's test command).
//! - `demo`: the main job: a real MCP server under mcp-warden's embedded `strict` profile, driven
//!   by the official MCP client, and an attack it blocks.
//! - `bench startup|monitor|mcp|session|dns`: start-up cost against bare exec and bubblewrap, the eBPF
//!   layer's costs, the MCP layer's added latency, a real MCP session under each sandbox; written
//!   to docs/benchmarks.md.
//! - `soak`: 50 concurrent servers x 20 rounds, nothing may be left behind (docs/reliability.md).
//! - `dist [--out DIR]`: the Debian package (binary, profiles, systemd units, man page,
//!   completions), built with dpkg-deb.
//! - `fuzz`: the parsers and the MCP message handling under libFuzzer, for a bounded time each.
//! - `schema`: regenerates docs/profile.schema.json and docs/audit-log.schema.json from the types.
//!
//! One module per command; the process helpers they share are in `util`.
#![allow(clippy::print_stdout)] // xtask output is for the person running it

mod bench;
mod demo;
mod dist;
mod fuzz;
mod proof;
mod schema;
mod setup;
mod soak;
mod test;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// The project's own set-up, test, demo and benchmark tasks.
#[derive(Debug, Parser)]
#[command(name = "xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what the tests need: test user, eBPF toolchain, pinned MCP servers and SDK client
    Setup,
    /// Set up, build every binary and run the whole test suite (extra arguments go to cargo test)
    Test(test::Options),
    /// A real MCP server under the embedded `strict` profile, and an attack it blocks
    Demo,
    /// Benchmarks written to docs/benchmarks.md: startup (the default), monitor, mcp, session, dns
    Bench(bench::Options),
    /// Fuzz the parsers and the MCP message handling under libFuzzer, for a bounded time each
    Fuzz(fuzz::Options),
    /// Regenerate docs/profile.schema.json and docs/audit-log.schema.json from the types
    Schema,
    /// Build the Debian package (mcp-warden_<version>_<arch>.deb) with dpkg-deb
    Dist(dist::Options),
    /// Many concurrent servers for many rounds; nothing may be left behind (docs/reliability.md)
    Soak(soak::Options),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    std::env::set_current_dir(util::workspace_root())?;
    match cli.command {
        Command::Setup => setup::setup(),
        Command::Test(opts) => test::test(&opts),
        Command::Demo => demo::demo(),
        Command::Bench(opts) => bench::bench(opts),
        Command::Fuzz(opts) => fuzz::fuzz(&opts),
        Command::Schema => schema::schema(),
        Command::Dist(opts) => dist::dist(&opts),
        Command::Soak(opts) => soak::soak(&opts),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()))
    }

    fn test_args(args: &[&str]) -> Vec<String> {
        match parse(args).map(|c| c.command) {
            Ok(Command::Test(opts)) => opts.cargo_test_args(),
            other => panic!("{args:?} -> {other:?}"),
        }
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn test_passes_extra_arguments_through() {
        assert_eq!(test_args(&["test"]), Vec::<String>::new());
        assert_eq!(test_args(&["test", "-p", "mcp-warden"]), ["-p", "mcp-warden"]);
        assert_eq!(test_args(&["test", "--no-fail-fast"]), ["--no-fail-fast"]);
        assert_eq!(test_args(&["test", "--", "--nocapture"]), ["--", "--nocapture"]);
        assert_eq!(test_args(&["test", "--", "--help"]), ["--", "--help"]);
        assert_eq!(test_args(&["test", "escapes", "--", "--nocapture"]), ["escapes", "--", "--nocapture"]);
        assert_eq!(
            test_args(&["test", "-p", "mcp-warden-tests", "--test", "soak", "--", "--nocapture"]),
            ["-p", "mcp-warden-tests", "--test", "soak", "--", "--nocapture"]
        );
        assert_eq!(test_args(&["test", "filter", "--help"]), ["filter", "--help"]);
    }

    #[test]
    fn bad_values_are_errors() {
        for args in [
            &["bench", "startup", "--rounds", "abc"][..],
            &["bench", "monitor", "--iterations", "-1"],
            &["bench", "nope"],
            &["fuzz", "--seconds", "x"],
            &["fuzz", "nope"],
            &["soak", "--servers", "many"],
            &["demo", "extra"],
        ] {
            assert!(parse(args).is_err(), "{args:?} parsed");
        }
    }

    #[test]
    fn defaults() {
        assert!(matches!(parse(&["bench"]).map(|c| c.command), Ok(Command::Bench(_))));
        match parse(&["soak"]).map(|c| c.command) {
            Ok(Command::Soak(opts)) => assert_eq!((opts.servers, opts.rounds), (50, 20)),
            other => panic!("{other:?}"),
        }
        match parse(&["fuzz", "mcp", "--seconds", "5", "profile"]).map(|c| c.command) {
            Ok(Command::Fuzz(opts)) => {
                assert_eq!(opts.seconds, 5);
                assert_eq!(opts.selected(), ["profile", "mcp"]);
            }
            other => panic!("{other:?}"),
        }
    }
}
