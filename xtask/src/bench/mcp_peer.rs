//! The JSON-RPC side of an MCP client, for the `mcp` and `session` benchmarks.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// An MCP server spawned with piped stdio, spoken to in newline-delimited JSON-RPC: what the
/// session benchmarks need of a client, without the cost of one.
pub(super) struct McpPeer {
    child: std::process::Child,
    /// The server's stdin; the `mcp` benchmark takes it to write from a thread of its own.
    pub(super) input: Option<std::process::ChildStdin>,
    output: std::io::BufReader<std::process::ChildStdout>,
    line: String,
}

impl McpPeer {
    pub(super) fn spawn(argv: &[String], env: &[(&str, &Path)]) -> Result<McpPeer> {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
        c.stderr(std::process::Stdio::null()).envs(env.iter().copied());
        let mut child = c.spawn().with_context(|| format!("{argv:?}"))?;
        let input = child.stdin.take().context("stdin")?;
        let output = std::io::BufReader::new(child.stdout.take().context("stdout")?);
        Ok(McpPeer { child, input: Some(input), output, line: String::new() })
    }

    pub(super) fn send(&mut self, message: &str) -> Result<()> {
        use std::io::Write;
        let input = self.input.as_mut().context("stdin already closed")?;
        writeln!(input, "{message}")?;
        input.flush()?;
        Ok(())
    }

    /// Reads until the response with `id` (other lines are skipped).
    pub(super) fn wait_for(&mut self, id: u64) -> Result<()> {
        use std::io::BufRead;
        let (a, b) = (format!("\"id\":{id},"), format!("\"id\":{id}}}"));
        loop {
            self.line.clear();
            if self.output.read_line(&mut self.line)? == 0 {
                bail!("the server closed its output before answering {id}");
            }
            if self.line.contains(&a) || self.line.contains(&b) {
                return Ok(());
            }
        }
    }

    /// initialize (id 1), the initialized notification, tools/list (id 2).
    pub(super) fn initialize(&mut self) -> Result<()> {
        self.send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#)?;
        self.wait_for(1)?;
        self.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)?;
        self.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)?;
        self.wait_for(2)
    }

    /// Closes the server's stdin and waits for it to exit.
    pub(super) fn finish(mut self) -> Result<()> {
        drop(self.input.take());
        self.child.wait()?;
        Ok(())
    }
}
