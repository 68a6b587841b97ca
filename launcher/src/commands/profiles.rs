//! `mcp-warden profiles list|show|schema`: the embedded profiles.

use std::io::Write;

use crate::cli::ProfilesCommand;
use crate::error::{CommandError, Failure};
use crate::profile::{self, EMBEDDED, ProfileError};

pub fn command(out: &mut dyn Write, command: ProfilesCommand) -> Result<i32, Failure> {
    match command {
        ProfilesCommand::List => {
            for (name, _) in EMBEDDED {
                let p = profile::load(name)?;
                writeln!(out, "{name:<20} {}", p.layer.description.unwrap_or_default())
                    .map_err(CommandError::output)?;
            }
        }
        ProfilesCommand::Schema => out.write_all(profile::json_schema().as_bytes()).map_err(CommandError::output)?,
        ProfilesCommand::Show { name } => {
            let text = profile::embedded(&name)
                .ok_or_else(|| ProfileError::UnknownName { name: name.clone(), suggestion: None })?;
            out.write_all(text.as_bytes()).map_err(CommandError::output)?;
        }
    }
    Ok(0)
}
