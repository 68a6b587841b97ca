//! The server's stdin, stdout and stderr. The MCP layer's pipes when it is on; otherwise the
//! client's own descriptors when they are pipes or sockets (nothing to change there). A file or a
//! terminal is relayed through a pipe instead: a descriptor opened outside the filesystem view
//! would let the server change that file's mode, owner, times or attributes (`fchmod` on an
//! inherited descriptor never meets the view's read-only mounts).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;
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

/// An anonymous pipe or a socket (or a descriptor that is not open): the server may have it as it
/// is. A named FIFO is an inode of a filesystem, whose mode and times the server could change:
/// anonymous pipes and sockets live on the kernel's own pipefs and sockfs, told apart by device.
fn shareable(fd: BorrowedFd<'_>) -> bool {
    let Ok(st) = fstat(fd) else { return true };
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let anonymous = |dev: Option<u64>| dev == Some(st.st_dev);
    (kind == SFlag::S_IFIFO && anonymous(pipefs())) || (kind == SFlag::S_IFSOCK && anonymous(sockfs()))
}

/// The device of the kernel's pipe filesystem (of a pipe made for the question, once).
fn pipefs() -> Option<u64> {
    static DEV: OnceLock<Option<u64>> = OnceLock::new();
    *DEV.get_or_init(|| {
        let (r, _w) = nix::unistd::pipe().ok()?;
        fstat(r.as_fd()).ok().map(|s| s.st_dev)
    })
}

/// The device of the kernel's socket filesystem (once).
fn sockfs() -> Option<u64> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    static DEV: OnceLock<Option<u64>> = OnceLock::new();
    *DEV.get_or_init(|| {
        let (a, _b) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).ok()?;
        fstat(a.as_fd()).ok().map(|s| s.st_dev)
    })
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
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let named = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
        assert!(!shareable(named.as_fd()), "a named FIFO is a filesystem inode: relayed");
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(shareable(a.as_fd()));
    }
}
