//! `mcp-warden check PROFILE...`: load and validate profile files or embedded names.

use std::io::Write;

use crate::error::{CommandError, Failure};
use crate::profile;

pub fn command(out: &mut dyn Write, profiles: &[String]) -> Result<i32, Failure> {
    for name in profiles {
        let p = profile::load(name)?;
        writeln!(out, "{name}: ok ({})", p.chain.join(" <- ")).map_err(CommandError::output)?;
    }
    Ok(0)
}
