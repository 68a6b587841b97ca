//! The server's stdin, stdout and stderr. The MCP layer's pipes when it is on; otherwise the
//! client's own descriptors when they are pipes or sockets (nothing to change there). A file or a
//! terminal is relayed through a pipe instead: a descriptor opened outside the filesystem view
//! would let the server change that file's mode, owner, times or attributes (`fchmod` on an
//! inherited descriptor never meets the view's read-only mounts).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::thread::JoinHandle;

use nix::sys::stat::{SFlag, fstat};

/// One relay to start after the fork: copies `from` into `to` until end of file.
pub struct Relay {
    from: File,
    to: File,
    /// Towards the client (stdout, stderr): the teardown waits for it to drain.
    outbound: bool,
}

/// The descriptors stage 2 puts in place of stdin, stdout and stderr (`None`: inherited as is),
/// and the relays that feed them. `mcp`: the MCP layer's (stdin, stdout) pipe ends.
pub fn server_stdio(mcp: Option<(OwnedFd, OwnedFd)>) -> io::Result<([Option<OwnedFd>; 3], Vec<Relay>)> {
    let (mut stdio, mut relays): ([Option<OwnedFd>; 3], Vec<Relay>) = ([None, None, None], Vec::new());
    let (mcp_in, mcp_out) = mcp.map_or((None, None), |(i, o)| (Some(i), Some(o)));
    stdio[0] = mcp_in;
    stdio[1] = mcp_out;
    for (fd, slot) in stdio.iter_mut().enumerate() {
        if slot.is_some() {
            continue;
        }
        let client = match fd {
            0 => io::stdin().as_fd().try_clone_to_owned()?,
            1 => io::stdout().as_fd().try_clone_to_owned()?,
            _ => io::stderr().as_fd().try_clone_to_owned()?,
        };
        if shareable(client.as_fd()) {
            continue;
        }
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (server_end, relay) = match fd {
            0 => (read, Relay { from: File::from(client), to: File::from(write), outbound: false }),
            _ => (write, Relay { from: File::from(read), to: File::from(client), outbound: true }),
        };
        *slot = Some(server_end);
        relays.push(relay);
    }
    Ok((stdio, relays))
}

/// A pipe or a socket (or a descriptor that is not open): the server may have it as it is.
fn shareable(fd: BorrowedFd<'_>) -> bool {
    match fstat(fd) {
        Ok(st) => {
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            kind == SFlag::S_IFIFO || kind == SFlag::S_IFSOCK
        }
        Err(_) => true,
    }
}

/// Starts the relays (after the fork); returns the outbound ones, for the teardown to wait for.
pub fn start(relays: Vec<Relay>) -> io::Result<Vec<JoinHandle<()>>> {
    let mut outbound = Vec::new();
    for Relay { mut from, mut to, outbound: out } in relays {
        let handle = std::thread::Builder::new().name("stdio-relay".into()).spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        })?;
        if out {
            outbound.push(handle);
        }
    }
    Ok(outbound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_are_shared_and_files_are_not() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert!(shareable(r.as_fd()));
        let file = tempfile::tempfile().unwrap();
        assert!(!shareable(file.as_fd()));
        let null = File::open("/dev/null").unwrap();
        assert!(!shareable(null.as_fd()), "a device node is relayed too");
    }
}
