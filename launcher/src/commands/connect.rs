//! `mcp-warden connect NAME|SOCKET`: bridge stdio to a socket-activated server.

use crate::error::{CommandError, Failure};
use crate::systemd;

pub fn command(target: &str) -> Result<i32, Failure> {
    let socket = systemd::socket_path(target);
    systemd::connect(&socket).map_err(|e| {
        CommandError::with_hint(
            format!("cannot connect to {}: {e}", socket.display()),
            format!("is its socket unit active? `systemctl status mcp-warden-{target}.socket`"),
        )
    })?;
    Ok(0)
}
