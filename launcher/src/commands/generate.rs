//! `mcp-warden generate man|bash|zsh|fish|audit-schema`: the man page and completions, for
//! packaging, and the audit log's JSON Schema (docs/audit-log.schema.json).

use std::io::Write;

use crate::cli::Cli;
use crate::error::{CommandError, Failure};

pub fn command(out: &mut dyn Write, what: &str) -> Result<i32, Failure> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    match what {
        "man" => clap_mangen::Man::new(cmd).render(out).map_err(CommandError::output)?,
        "audit-schema" => out.write_all(crate::audit::json_schema().as_bytes()).map_err(CommandError::output)?,
        shell => {
            let shell: clap_complete::Shell = shell.parse().map_err(CommandError::new)?;
            clap_complete::generate(shell, &mut cmd, "mcp-warden", out);
        }
    }
    Ok(0)
}
