//! warden-probe: one attack (or one legitimate action) per subcommand, run inside the sandbox by
//! the integration tests. Prints a single line on stdout: `OK <detail>` when the action succeeded,
//! `ERR <ERRNO>` (e.g. `ERR EACCES`) when the kernel refused it; exits 0 or 1 accordingly.
//!
//! This is an attack tool: raw syscalls are the point, so `unsafe` lives here by design (the
//! launcher keeps all of its own in `launcher/src/sys.rs`).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;

use nix::errno::Errno;

type Outcome = Result<String, Errno>;

fn last() -> Errno {
    Errno::last()
}

fn io(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// `libc::syscall` returning -1 -> Err(errno).
fn check(ret: libc::c_long, what: &str) -> Outcome {
    if ret < 0 { Err(last()) } else { Ok(format!("{what} returned {ret}")) }
}

fn main() {
    // Lossy: the actions take text; `args-hex` reads the raw bytes itself.
    let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let a = |i: usize| args.get(i).cloned().unwrap_or_default();
    let n = |i: usize| a(i).parse::<i64>().unwrap_or(0);
    let outcome = match a(0).as_str() {
        "read" => std::fs::read(a(1)).map(|b| format!("read {} bytes", b.len())).map_err(io),
        "read-parent" => read_parent(&a(1)),
        "readlink" => std::fs::read_link(a(1)).map(|p| format!("{}", p.display())).map_err(io),
        "list" => std::fs::read_dir(a(1)).map(|d| format!("{} entries", d.count())).map_err(io),
        "write" => std::fs::write(a(1), b"written by warden-probe\n").map(|_| "wrote".into()).map_err(io),
        "append" => std::fs::OpenOptions::new()
            .append(true)
            .open(a(1))
            .and_then(|mut f| f.write_all(b"echo pwned\n"))
            .map(|_| "appended".into())
            .map_err(io),
        "hardlink" => std::fs::hard_link(a(1), a(2)).map(|_| "linked".into()).map_err(io),
        "rename" => std::fs::rename(a(1), a(2)).map(|_| "renamed".into()).map_err(io),
        "exec" => exec(&a(1), &args[2..]),
        "drop-exec" => drop_exec(&a(1), &a(2)),
        "ids" => Ok(ids()),
        "status" => status(),
        "args-hex" => Ok(std::env::args_os()
            .skip(2)
            .map(|a| {
                std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join(" ")),
        "env-len" => std::env::var_os(a(1)).map(|v| format!("{} bytes", v.len())).ok_or(Errno::ENOENT),
        "env" => std::env::var(a(1)).map(|v| format!("{}={v}", a(1))).map_err(|_| Errno::ENOENT),
        "tcp-connect" => {
            std::net::TcpStream::connect((a(1).as_str(), n(2) as u16)).map(|_| "connected".into()).map_err(io)
        }
        "tcp-listen" => std::net::TcpListener::bind(("127.0.0.1", n(1) as u16)).map(|_| "listening".into()).map_err(io),
        "udp-bind" => std::net::UdpSocket::bind(("127.0.0.1", n(1) as u16)).map(|_| "bound".into()).map_err(io),
        "tcp-listen-unbound" => listen_unbound(),
        "udp-port-range" => udp_port_range(n(1) as u16),
        "ipv6-rthdr" => ipv6_rthdr(),
        "ipv6-option" => ipv6_option(n(1) as i32, n(2) as u32),
        "udp-send" => std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.send_to(b"exfiltrated", (a(1).as_str(), n(2) as u16)))
            .map(|n| format!("sent {n} bytes"))
            .map_err(io),
        "unix-connect" => std::os::unix::net::UnixStream::connect(a(1)).map(|_| "connected".into()).map_err(io),
        "abstract-connect" => abstract_connect(&a(1)),
        "connect-race" => connect_race(n(1) as u16, n(2) as usize),
        "socket" => socket(n(1) as i32, n(2) as i32),
        "ptrace" => check(
            // SAFETY: PTRACE_ATTACH takes only a pid; no memory is passed.
            unsafe { libc::ptrace(libc::PTRACE_ATTACH, n(1) as libc::pid_t, 0, 0) },
            "ptrace attach",
        ),
        "vm-read" => vm_read(n(1) as libc::pid_t, n(2) as usize),
        "kill" => nix::sys::signal::kill(nix::unistd::Pid::from_raw(n(1) as i32), nix::sys::signal::Signal::SIGTERM)
            .map(|_| "signalled".into()),
        "kill-own-child" => kill_own_child(),
        "io-uring" => io_uring(),
        "fchmod-fd" => {
            // SAFETY: fchmod takes an fd number and a mode.
            let r = unsafe { libc::fchmod(n(1) as i32, octal(&a(2))) };
            if r < 0 { Err(last()) } else { Ok("mode changed".into()) }
        }
        "lease" => lease(&a(1)),
        "shm-create" => shm(n(1) as i32, libc::IPC_CREAT | 0o600),
        "shm-get" => shm(n(1) as i32, 0),
        "shm-remove" => shm_remove(n(1) as i32),
        "bpf" => bpf(),
        "perf" => perf(),
        "userfaultfd" => check(
            // SAFETY: userfaultfd takes a flags integer.
            unsafe { libc::syscall(libc::SYS_userfaultfd, 0) },
            "userfaultfd",
        ),
        "add-key" => add_key(),
        "unshare-user" => nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).map(|_| "unshared".into()),
        "clone-newuser" => clone_ns(),
        "clone3-newuser" => clone3_ns(),
        "tiocsti" => tiocsti(),
        "personality" => check(
            // SAFETY: personality takes an integer.
            unsafe { libc::syscall(libc::SYS_personality, 0x0040000u64) },
            "personality(ADDR_NO_RANDOMIZE)",
        ),
        "fork-bomb" => fork_bomb(n(1) as usize),
        "alloc" => alloc(n(1) as usize),
        "open-fds" => open_fds(n(1) as usize),
        "open-burst" => open_burst(&a(1), n(2) as usize),
        "open-read-close" => open_read_close(&a(1), n(2) as usize),
        "write-big" => write_big(&a(1), n(2) as usize),
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(n(1) as u64));
            Ok("slept".into())
        }
        "trap" => trap(n(1) as i32),
        "ignore-term" => {
            // SAFETY: SIG_IGN is a valid disposition.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            println!("READY");
            let _ = std::io::stdout().flush();
            std::thread::sleep(std::time::Duration::from_secs(120));
            Ok("not stopped".into())
        }
        "spawn-tree" => spawn_tree(n(1) as usize, &a(2)),
        // What Landlock does not see (docs/threat-model.md): metadata writes, mode bits, and code
        // mapped from files the server can write. Each one raw, so the route is exact.
        "chmod" => chmod(&a(1), octal(&a(2)), args.get(3).map_or("chmod", String::as_str)),
        "fchmod-ro" => fchmod_ro(&a(1), octal(&a(2))),
        "chown-self" => chown_self(&a(1)),
        "utimes" => utimes(&a(1)),
        "setxattr" => setxattr(&a(1)),
        "create-mode" => create_mode(&a(1), octal(&a(2)), args.get(3).map_or("openat", String::as_str)),
        "openat2-create" => openat2_create(&a(1), octal(&a(2))),
        "ldso" => ldso(&a(1), args.get(2).map(String::as_str)),
        "memfd-exec" => memfd_exec(args.get(1).map_or("exec", String::as_str)),
        "tmpfile-exec" => tmpfile_exec(&a(1), args.get(2).map_or("exec", String::as_str)),
        "deleted-exec" => deleted_exec(&a(1), args.get(2).map_or("exec", String::as_str)),
        "mmap-exec" => mmap_exec(&a(1)),
        "anon-exec" => anon_exec(),
        "stat" => stat(&a(1)),
        "inotify" => inotify(&a(1)),
        "stat-follow" => std::fs::metadata(a(1)).map(|m| format!("size {}", m.len())).map_err(io),
        "access" => access(&a(1)),
        "listxattr" => listxattr(&a(1)),
        "open-path" => open_path(&a(1)),
        "openat-parent" => openat_parent(&a(1), &a(2)),
        "userns-stat" => userns_stat(&a(1)),
        "exit" => std::process::exit(n(1) as i32),
        "leader-exit" => leader_exit(n(1) as i32),
        "udp-flood" => udp_flood(n(1) as u16, n(2) as u64),
        "resolve" => resolve(&a(1)),
        "dns-raw" => dns_raw(&a(1), &a(2), &a(3)),
        "dns-race" => dns_race(&a(1), &a(2), &a(3), n(4) as usize),
        "dns-fanout" => dns_fanout(&a(1), args.get(2..).unwrap_or_default()),
        "dns-expiry" => dns_expiry(&a(1), n(2) as u16, n(3) as u64),
        "dns-serve" => dns_serve(&args[1..]),
        "dns-bench" => dns_bench(&a(1), &a(2), n(3) as u16, n(4) as usize),
        "raise" => {
            // SAFETY: raise takes a signal number.
            unsafe { libc::raise(n(1) as i32) };
            Ok("survived".into())
        }
        other => {
            eprintln!("warden-probe: unknown action `{other}`");
            std::process::exit(2);
        }
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(detail) => {
            let _ = writeln!(out, "OK {detail}");
            let _ = out.flush();
            std::process::exit(0)
        }
        Err(e) => {
            let _ = writeln!(out, "ERR {e:?}");
            let _ = out.flush();
            std::process::exit(1)
        }
    }
}

fn exec(path: &str, args: &[String]) -> Outcome {
    let err = std::process::Command::new(path).args(args).status().map_err(io)?;
    Ok(format!("ran, {err}"))
}

/// Drops a copy of an executable into a writable directory and runs it: the "download and run a
/// payload" move.
fn drop_exec(dir: &str, source: &str) -> Outcome {
    let target = format!("{dir}/payload");
    let bytes = std::fs::read(source).map_err(io)?;
    std::fs::write(&target, bytes).map_err(io)?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    let status = std::process::Command::new(&target).status().map_err(io)?;
    Ok(format!("payload ran: {status}"))
}

fn ids() -> String {
    format!(
        "uid={} euid={} gid={} egid={}",
        nix::unistd::getuid(),
        nix::unistd::geteuid(),
        nix::unistd::getgid(),
        nix::unistd::getegid()
    )
}

/// The kernel's view of our own hardening, from /proc/self/status.
fn status() -> Outcome {
    let s = std::fs::read_to_string("/proc/self/status").map_err(io)?;
    let keep = ["NoNewPrivs", "Seccomp", "Seccomp_filters", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NSpid"];
    let fields: Vec<String> = s
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| keep.contains(k))
        .map(|(k, v)| format!("{k}={}", v.split_whitespace().collect::<Vec<_>>().join(",")))
        .collect();
    Ok(format!("{} {}", fields.join(" "), ids()))
}

/// The classic race against user-notification sandboxes: one thread keeps flipping a shared
/// `sockaddr_in` between 127.0.0.1 (allowed) and 127.0.0.2 (denied) while this one connects
/// through it `rounds` times. Reports how many connections reached each address.
fn connect_race(port: u16, rounds: usize) -> Outcome {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    // A `struct sockaddr_in` as four atomic words (same size and layout): the flipper rewrites
    // the address word while the kernel, or a broker, reads the structure.
    static SA: [AtomicU32; 4] = [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)];
    static STOP: AtomicBool = AtomicBool::new(false);
    let allowed = u32::from_ne_bytes([127, 0, 0, 1]);
    let denied = u32::from_ne_bytes([127, 0, 0, 2]);
    let head = [(libc::AF_INET as u16).to_ne_bytes(), port.to_be_bytes()].concat();
    SA[0].store(u32::from_ne_bytes(head.try_into().unwrap_or_default()), Ordering::SeqCst);
    SA[1].store(allowed, Ordering::SeqCst);
    let flipper = std::thread::spawn(move || {
        while !STOP.load(Ordering::Relaxed) {
            SA[1].store(denied, Ordering::Relaxed);
            SA[1].store(allowed, Ordering::Relaxed);
        }
    });
    let (mut reached_allowed, mut reached_denied, mut refused) = (0, 0, 0);
    for _ in 0..rounds {
        // SAFETY: a plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        if fd < 0 {
            return Err(last());
        }
        // SAFETY: SA is 16 bytes with sockaddr_in's layout and lives forever; the kernel copies it.
        let ret = unsafe { libc::connect(fd, SA.as_ptr().cast(), 16) };
        if ret == 0 {
            // SAFETY: sockaddr_in is plain data.
            let mut peer: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as u32;
            // SAFETY: getpeername writes at most `len` bytes into `peer`.
            unsafe { libc::getpeername(fd, (&raw mut peer).cast(), &mut len) };
            if peer.sin_addr.s_addr == denied { reached_denied += 1 } else { reached_allowed += 1 }
        } else {
            refused += 1;
        }
        // SAFETY: closing our own fd.
        unsafe { libc::close(fd) };
    }
    STOP.store(true, Ordering::SeqCst);
    let _ = flipper.join();
    Ok(format!("allowed {reached_allowed} denied {reached_denied} refused {refused}"))
}

fn abstract_connect(name: &str) -> Outcome {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).map_err(io)?;
    std::os::unix::net::UnixStream::connect_addr(&addr).map(|_| "connected".into()).map_err(io)
}

fn socket(domain: i32, ty: i32) -> Outcome {
    // SAFETY: socket takes three integers and returns an fd we close at once.
    let fd = unsafe { libc::socket(domain, ty, 0) };
    if fd < 0 {
        return Err(last());
    }
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    Ok(format!("socket({domain}, {ty}) created"))
}

/// A socket's descriptor, closed when dropped.
fn inet_socket(domain: i32, ty: i32) -> Result<std::os::fd::OwnedFd, Errno> {
    // SAFETY: socket takes three integers; a descriptor it returns is ours alone.
    let fd = unsafe { libc::socket(domain, ty, 0) };
    // SAFETY: fd was just returned by socket and nothing else owns it.
    if fd < 0 { Err(last()) } else { Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }) }
}

/// `setsockopt(fd, level, name, value)`.
fn set_option(fd: &std::os::fd::OwnedFd, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: value is a live buffer of the length passed.
    let r = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, value.as_ptr().cast(), value.len() as u32) };
    if r < 0 { Err(last()) } else { Ok(()) }
}

/// `setsockopt(IPPROTO_IPV6, name, value)` on an IPv6 UDP socket, `value` an int.
fn ipv6_option(name: i32, value: u32) -> Outcome {
    let fd = inet_socket(libc::AF_INET6, libc::SOCK_DGRAM)?;
    set_option(&fd, libc::IPPROTO_IPV6, name, &value.to_ne_bytes())?;
    Ok(format!("option {name} set"))
}

/// `listen` on a TCP socket never bound: the kernel binds it to a port of its own choosing.
fn listen_unbound() -> Outcome {
    use std::os::fd::AsRawFd;
    let fd = inet_socket(libc::AF_INET, libc::SOCK_STREAM)?;
    // SAFETY: listen on our own descriptor.
    if unsafe { libc::listen(fd.as_raw_fd(), 1) } < 0 {
        return Err(last());
    }
    Ok("listening on a port the kernel chose".into())
}

/// A UDP socket whose port-0 bind takes `port` (`IP_LOCAL_PORT_RANGE` = port..port).
fn udp_port_range(port: u16) -> Outcome {
    const IP_LOCAL_PORT_RANGE: i32 = 51;
    let fd = inet_socket(libc::AF_INET, libc::SOCK_DGRAM)?;
    let range = (u32::from(port) | (u32::from(port) << 16)).to_ne_bytes();
    set_option(&fd, libc::IPPROTO_IP, IP_LOCAL_PORT_RANGE, &range)?;
    use nix::sys::socket::{SockaddrIn, bind, getsockname};
    use std::os::fd::AsRawFd;
    bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0))?;
    Ok(format!("bound {}", getsockname::<SockaddrIn>(fd.as_raw_fd())?))
}

/// An IPv6 segment routing header on a UDP socket: its packets go to the segment first, not to
/// the destination a send names.
fn ipv6_rthdr() -> Outcome {
    const IPV6_RTHDR: i32 = 57;
    let fd = inet_socket(libc::AF_INET6, libc::SOCK_DGRAM)?;
    // next header, length (2 segments: 4 units), type 4 (SRH), segments left 1, last entry 1
    let mut srh = vec![0u8, 4, 4, 1, 1, 0, 0, 0];
    srh.extend(std::net::Ipv6Addr::UNSPECIFIED.octets());
    srh.extend(std::net::Ipv6Addr::LOCALHOST.octets());
    set_option(&fd, libc::IPPROTO_IPV6, IPV6_RTHDR, &srh)?;
    Ok("routing header set".into())
}

/// A read lease on a file opened read-only (a lease stalls other processes' opens of it).
fn lease(path: &str) -> Outcome {
    let f = std::fs::File::open(path).map_err(io)?;
    // SAFETY: fcntl on an fd we own, with an integer argument.
    let r = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&f), libc::F_SETLEASE, libc::F_RDLCK) };
    if r < 0 { Err(last()) } else { Ok("leased".into()) }
}

/// `shmget(key, 4096, flags)`: a System V shared-memory segment found or created.
fn shm(key: i32, flags: i32) -> Outcome {
    // SAFETY: shmget takes integers and returns an id; no memory is attached.
    let id = unsafe { libc::shmget(key, 4096, flags) };
    if id < 0 { Err(last()) } else { Ok(format!("segment {id}")) }
}

fn shm_remove(key: i32) -> Outcome {
    // SAFETY: as above; IPC_RMID with a null buffer.
    let id = unsafe { libc::shmget(key, 0, 0) };
    if id < 0 {
        return Err(last());
    }
    // SAFETY: IPC_RMID reads no buffer.
    let r = unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    if r < 0 { Err(last()) } else { Ok("removed".into()) }
}

fn vm_read(pid: libc::pid_t, addr: usize) -> Outcome {
    let mut buf = [0u8; 8];
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: the local iovec points at our own 8-byte buffer; the remote one is only
    // interpreted by the kernel in the target's address space.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if n < 0 { Err(last()) } else { Ok(format!("read {n} bytes of pid {pid}")) }
}

fn kill_own_child() -> Outcome {
    let mut child = std::process::Command::new("/bin/sleep").arg("30").spawn().map_err(io)?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)?;
    let status = child.wait().map_err(io)?;
    Ok(format!("child ended: {status}"))
}

fn io_uring() -> Outcome {
    let mut params = [0u8; 120]; // struct io_uring_params
    // SAFETY: io_uring_setup writes at most sizeof(io_uring_params) = 120 bytes into `params`.
    check(unsafe { libc::syscall(libc::SYS_io_uring_setup, 8u32, params.as_mut_ptr()) }, "io_uring_setup")
}

fn bpf() -> Outcome {
    // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries.
    let mut attr = [0u32; 32];
    attr[0] = 2; // BPF_MAP_TYPE_ARRAY
    attr[1] = 4;
    attr[2] = 4;
    attr[3] = 1;
    // SAFETY: the kernel reads `size` bytes of `attr`, which is that large.
    check(unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_ptr(), std::mem::size_of_val(&attr)) }, "bpf(MAP_CREATE)")
}

fn perf() -> Outcome {
    let mut attr = [0u8; 128]; // struct perf_event_attr
    attr[4..8].copy_from_slice(&128u32.to_ne_bytes()); // size; type 0 = HARDWARE, config 0 = CYCLES
    // SAFETY: the kernel reads attr.size (128) bytes from `attr`.
    check(unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 0) }, "perf_event_open")
}

fn add_key() -> Outcome {
    let (ty, desc, payload) = (c"user", c"mcp-warden-probe", b"secret");
    // SAFETY: all pointers are valid NUL-terminated strings or a buffer of the given length.
    check(
        unsafe {
            libc::syscall(
                libc::SYS_add_key,
                ty.as_ptr(),
                desc.as_ptr(),
                payload.as_ptr(),
                payload.len(),
                -2i32, /* KEY_SPEC_PROCESS_KEYRING */
            )
        },
        "add_key",
    )
}

fn clone_ns() -> Outcome {
    // SAFETY: fork-like clone with a null stack; the child exits immediately.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if ret == 0 {
        // SAFETY: leaving the child at once.
        unsafe { libc::_exit(0) };
    }
    check(ret, "clone(CLONE_NEWUSER)")
}

fn clone3_ns() -> Outcome {
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
    }
    let args = CloneArgs { flags: libc::CLONE_NEWUSER as u64, exit_signal: libc::SIGCHLD as u64, ..Default::default() };
    // SAFETY: the kernel reads `size` bytes of `args`; a successful child exits at once.
    let ret = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if ret == 0 {
        // SAFETY: leaving the child at once.
        unsafe { libc::_exit(0) };
    }
    check(ret, "clone3(CLONE_NEWUSER)")
}

fn tiocsti() -> Outcome {
    let c = b'x';
    // SAFETY: TIOCSTI reads one byte from the pointer we pass.
    let r = unsafe { libc::ioctl(0, libc::TIOCSTI, &c as *const u8) };
    if r < 0 { Err(last()) } else { Ok("injected a keystroke".into()) }
}

fn fork_bomb(max: usize) -> Outcome {
    let mut made = 0;
    for _ in 0..max {
        // SAFETY: the child only arms its parent-death signal and pauses: async-signal-safe calls.
        match unsafe { libc::fork() } {
            -1 => return Ok(format!("forked {made} then {:?}", last())),
            0 => unsafe {
                // SAFETY: as above.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                libc::alarm(20);
                libc::pause();
                libc::_exit(0)
            },
            _ => made += 1,
        }
    }
    Ok(format!("forked {made} then none"))
}

fn alloc(mb: usize) -> Outcome {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for i in 0..mb {
        let mut v = Vec::new();
        if v.try_reserve_exact(1 << 20).is_err() {
            eprintln!("allocated {i} MiB before ENOMEM");
            return Err(Errno::ENOMEM);
        }
        v.resize(1 << 20, 1u8);
        blocks.push(v);
    }
    Ok(format!("allocated {} MiB", blocks.len()))
}

fn open_fds(count: usize) -> Outcome {
    let mut files = Vec::new();
    for _ in 0..count {
        files.push(std::fs::File::open("/dev/null").map_err(io)?);
    }
    Ok(format!("opened {} fds", files.len()))
}

/// Reads `file` of the parent's /proc directory (`environ`, `mem`...), the parent found by its pid
/// as the mounted /proc numbers it (`PPid` of /proc/self/status), whichever PID namespace that is.
fn read_parent(file: &str) -> Outcome {
    let status = std::fs::read_to_string("/proc/self/status").map_err(io)?;
    let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:")).map(str::trim).unwrap_or("0").to_string();
    let path = format!("/proc/{ppid}/{file}");
    std::fs::read(&path).map(|b| format!("read {} bytes of {path}", b.len())).map_err(io)
}

/// Opens `count` distinct paths `<prefix><i>` (they need not exist) as fast as possible.
fn open_burst(prefix: &str, count: usize) -> Outcome {
    let mut opened = 0;
    for i in 0..count {
        if std::fs::File::open(format!("{prefix}{i}")).is_ok() {
            opened += 1;
        }
    }
    Ok(format!("attempted {count} opens, {opened} succeeded"))
}

/// The syscall-heavy workload of the benchmarks: `count` x (open, read, close) of one file.
fn open_read_close(path: &str, count: usize) -> Outcome {
    let mut buf = [0u8; 64];
    let mut total = 0;
    for _ in 0..count {
        let mut f = std::fs::File::open(path).map_err(io)?;
        total += f.read(&mut buf).map_err(io)?;
    }
    Ok(format!("{count} open+read+close, {total} bytes"))
}

fn write_big(path: &str, mb: usize) -> Outcome {
    // Ignore SIGXFSZ so the limit shows up as EFBIG instead of killing us.
    // SAFETY: SIG_IGN is a valid disposition.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let mut f = std::fs::File::create(path).map_err(io)?;
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..mb {
        f.write_all(&chunk).map_err(io)?;
    }
    Ok(format!("wrote {mb} MiB"))
}

/// Installs a handler for signal `sig` that reports it and exits 42, says READY, then waits:
/// proves the launcher forwards that signal.
fn trap(sig: i32) -> Outcome {
    extern "C" fn on_signal(_: libc::c_int) {
        let msg = b"OK got the signal\n";
        // SAFETY: write and _exit are async-signal-safe; msg is a valid buffer.
        unsafe {
            libc::write(1, msg.as_ptr().cast(), msg.len());
            libc::_exit(42);
        }
    }
    // SAFETY: installing a handler that only calls async-signal-safe functions.
    unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    println!("READY");
    let _ = std::io::stdout().flush();
    std::thread::sleep(std::time::Duration::from_secs(60));
    Ok("no signal".into())
}

/// Spawns `n` children `sleep <marker>` (a marker such as `299.123456` is a valid duration that
/// the test can find in /proc), says READY and waits.
fn spawn_tree(n: usize, marker: &str) -> Outcome {
    for _ in 0..n {
        std::process::Command::new("/bin/sleep").arg(marker).spawn().map_err(io)?;
    }
    println!("READY");
    let _ = std::io::stdout().flush();
    std::thread::sleep(std::time::Duration::from_secs(300));
    Ok("done".into())
}

/// The dynamic loader: it maps a program with `mmap(PROT_EXEC)`, which Landlock never checks.
const LDSO: &str = "/lib64/ld-linux-x86-64.so.2";

/// The program the exec attacks run (exits 0, so success is unambiguous).
const PAYLOAD: &str = "/bin/true";

fn octal(s: &str) -> u32 {
    u32::from_str_radix(s, 8).unwrap_or_else(|_| {
        eprintln!("warden-probe: `{s}` is not an octal mode");
        std::process::exit(2)
    })
}

fn cpath(p: &str) -> std::ffi::CString {
    std::ffi::CString::new(p).expect("no NUL in a path")
}

/// `OK` detail after a mode change: the mode the file has now.
fn mode_of(path: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map_or_else(|e| format!("mode unknown ({e})"), |m| format!("mode now {:o}", m.mode() & 0o7777))
}

/// `chmod PATH MODE [chmod|fchmodat|fchmodat2]`: the mode set by path, through the syscall named.
fn chmod(path: &str, mode: u32, route: &str) -> Outcome {
    let p = cpath(path);
    // SAFETY: `p` is a NUL-terminated path; the mode is an integer.
    let ret = unsafe {
        match route {
            "chmod" => libc::syscall(libc::SYS_chmod, p.as_ptr(), mode),
            "fchmodat" => libc::syscall(libc::SYS_fchmodat, libc::AT_FDCWD, p.as_ptr(), mode),
            "fchmodat2" => libc::syscall(libc::SYS_fchmodat2, libc::AT_FDCWD, p.as_ptr(), mode, 0),
            other => {
                eprintln!("warden-probe: unknown chmod route `{other}`");
                std::process::exit(2)
            }
        }
    };
    if ret < 0 { Err(last()) } else { Ok(format!("{route}: {}", mode_of(path))) }
}

/// Opens PATH read-only, then changes its mode through the fd: no write access was ever asked for.
fn fchmod_ro(path: &str, mode: u32) -> Outcome {
    let p = cpath(path);
    // SAFETY: a NUL-terminated path and flags.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last());
    }
    // SAFETY: `fd` is ours; the mode is an integer.
    let ret = unsafe { libc::syscall(libc::SYS_fchmod, fd, mode) };
    let err = last();
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
    if ret < 0 { Err(err) } else { Ok(format!("fchmod on a read-only fd: {}", mode_of(path))) }
}

/// chown to our own uid and gid: changes nothing but the ctime, and needs no privilege.
fn chown_self(path: &str) -> Outcome {
    let p = cpath(path);
    let (uid, gid) = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
    // SAFETY: a NUL-terminated path and two integers.
    let ret = unsafe { libc::syscall(libc::SYS_chown, p.as_ptr(), uid, gid) };
    if ret < 0 { Err(last()) } else { Ok(format!("chowned to {uid}:{gid}")) }
}

/// Sets both times to 2001-09-09 (1e9 s): backdating a file, which only its owner may do.
fn utimes(path: &str) -> Outcome {
    let p = cpath(path);
    let t = libc::timespec { tv_sec: 1_000_000_000, tv_nsec: 0 };
    let times = [t, t];
    // SAFETY: a NUL-terminated path and two timespecs.
    let ret = unsafe { libc::syscall(libc::SYS_utimensat, libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), 0) };
    if ret < 0 { Err(last()) } else { Ok("times set to 1000000000".into()) }
}

/// Sets `user.mcpw=1`.
fn setxattr(path: &str) -> Outcome {
    let p = cpath(path);
    let (name, value) = (c"user.mcpw", b"1");
    // SAFETY: NUL-terminated path and name, a value buffer of the given length.
    let ret = unsafe { libc::syscall(libc::SYS_setxattr, p.as_ptr(), name.as_ptr(), value.as_ptr(), value.len(), 0) };
    if ret < 0 { Err(last()) } else { Ok("set user.mcpw=1".into()) }
}

/// `create-mode PATH MODE [openat|open|creat|mknod]`: a new file created with MODE.
fn create_mode(path: &str, mode: u32, route: &str) -> Outcome {
    let p = cpath(path);
    let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated path and integers.
    let ret = unsafe {
        match route {
            "openat" => libc::syscall(libc::SYS_openat, libc::AT_FDCWD, p.as_ptr(), flags, mode),
            "open" => libc::syscall(libc::SYS_open, p.as_ptr(), flags, mode),
            "creat" => libc::syscall(libc::SYS_creat, p.as_ptr(), mode),
            "mknod" => libc::syscall(libc::SYS_mknod, p.as_ptr(), libc::S_IFREG | mode, 0),
            other => {
                eprintln!("warden-probe: unknown create route `{other}`");
                std::process::exit(2)
            }
        }
    };
    if ret < 0 {
        return Err(last());
    }
    if route != "mknod" {
        // SAFETY: the fd the call returned.
        unsafe { libc::close(ret as i32) };
    }
    Ok(format!("{route} created it: {}", mode_of(path)))
}

/// openat2 with O_CREAT: the mode lives in `struct open_how`, in memory a filter cannot read.
fn openat2_create(path: &str, mode: u32) -> Outcome {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let p = cpath(path);
    let how =
        OpenHow { flags: (libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC) as u64, mode: mode.into(), resolve: 0 };
    // SAFETY: the kernel reads `size` bytes of `how`; the path is NUL-terminated.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            p.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if ret < 0 {
        return Err(last());
    }
    // SAFETY: the fd openat2 returned.
    unsafe { libc::close(ret as i32) };
    Ok(format!("openat2 created it: {}", mode_of(path)))
}

/// `ldso PATH [SOURCE]`: (copies SOURCE to PATH, then) runs `ld.so PATH`. The loader maps the
/// file with PROT_EXEC; when that is refused it prints `failed to map segment from shared object`
/// (with the reason's text on newer glibc) and exits 127: the verdict is that reason's errno.
fn ldso(path: &str, source: Option<&str>) -> Outcome {
    if let Some(src) = source {
        let bytes = std::fs::read(src).map_err(io)?;
        std::fs::write(path, bytes).map_err(io)?;
    }
    run_ldso(path)
}

fn run_ldso(target: &str) -> Outcome {
    let out = std::process::Command::new(LDSO).arg(target).output().map_err(io)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    if out.status.success() {
        return Ok(format!("ld.so ran {target}: {}", out.status));
    }
    let Some(line) = stderr.lines().find(|l| l.contains("error while loading shared libraries")) else {
        // The program ran and failed on its own: the attack still got code running.
        return Ok(format!("ld.so ran {target}: {}", out.status));
    };
    // "...: PATH: failed to map segment from shared object[: Operation not permitted]"
    if let Some(e) = errno_from_message(line) {
        return Err(e);
    }
    if line.contains("failed to map segment") {
        // glibc 2.36 prints no reason here. The failing call is mmap(PROT_READ|PROT_EXEC), which
        // answers EPERM on a noexec mount (strace shows it; `mmap-exec PATH` makes that call alone).
        return Err(Errno::EPERM);
    }
    eprintln!("warden-probe: ld.so failed for a reason this probe cannot name: {line}");
    Err(Errno::UnknownErrno)
}

/// The errno whose `strerror` text ends `line` (`...: Permission denied`).
fn errno_from_message(line: &str) -> Option<Errno> {
    let text = line.rsplit(": ").next()?.trim();
    (1..134).map(Errno::from_raw).find(|e| e.desc() == text)
}

/// Runs the file behind `fd` (inherited by the child, so `/proc/self/fd/N` names it there too):
/// `exec` through execve, `ldso` through the dynamic loader.
fn run_fd(fd: i32, via: &str) -> Outcome {
    let path = format!("/proc/self/fd/{fd}");
    match via {
        "exec" => {
            let status = std::process::Command::new(&path).status().map_err(io)?;
            Ok(format!("ran {path}: {status}"))
        }
        "ldso" => run_ldso(&path),
        other => {
            eprintln!("warden-probe: unknown route `{other}` (exec or ldso)");
            std::process::exit(2)
        }
    }
}

/// Writes all of `bytes` to `fd`.
fn write_fd(fd: i32, bytes: &[u8]) -> Result<(), Errno> {
    let mut done = 0;
    while done < bytes.len() {
        // SAFETY: the pointer and length stay inside `bytes`.
        let n = unsafe { libc::write(fd, bytes[done..].as_ptr().cast(), bytes.len() - done) };
        if n < 0 {
            return Err(last());
        }
        done += n as usize;
    }
    Ok(())
}

/// Reopens `fd` read-only through /proc (inheritable) and closes the writable one: running a file
/// that is still open for writing fails with ETXTBSY, which is not the check under test.
fn reopen_read_only(fd: i32) -> Result<i32, Errno> {
    let p = cpath(&format!("/proc/self/fd/{fd}"));
    // SAFETY: a NUL-terminated path; no O_CLOEXEC on purpose, the child must inherit it.
    let ro = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY) };
    let err = last();
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
    if ro < 0 { Err(err) } else { Ok(ro) }
}

/// `memfd-exec [exec|ldso]`: /bin/true's bytes in a memfd, run from /proc/self/fd/N. A refusal
/// is memfd_create's errno.
fn memfd_exec(via: &str) -> Outcome {
    let bytes = std::fs::read(PAYLOAD).map_err(io)?;
    // SAFETY: a NUL-terminated name and flags (no MFD_CLOEXEC: the child inherits it).
    let fd = unsafe { libc::syscall(libc::SYS_memfd_create, c"mcpw".as_ptr(), 0) };
    if fd < 0 {
        return Err(last());
    }
    write_fd(fd as i32, &bytes)?;
    run_fd(reopen_read_only(fd as i32)?, via)
}

/// `tmpfile-exec DIR [exec|ldso]`: an O_TMPFILE in DIR (a file with no name), /bin/true's bytes,
/// mode 755, run from /proc/self/fd/N.
fn tmpfile_exec(dir: &str, via: &str) -> Outcome {
    let bytes = std::fs::read(PAYLOAD).map_err(io)?;
    let d = cpath(dir);
    // SAFETY: a NUL-terminated path, flags and a mode.
    let fd =
        unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, d.as_ptr(), libc::O_TMPFILE | libc::O_RDWR, 0o700) };
    if fd < 0 {
        return Err(last());
    }
    let fd = fd as i32;
    write_fd(fd, &bytes)?;
    // SAFETY: our fd and a mode.
    if unsafe { libc::syscall(libc::SYS_fchmod, fd, 0o755) } < 0 {
        return Err(last());
    }
    run_fd(reopen_read_only(fd)?, via)
}

/// `deleted-exec DIR [exec|ldso]`: /bin/true's bytes written to DIR/deleted-payload, opened,
/// unlinked, and run from /proc/self/fd/N.
fn deleted_exec(dir: &str, via: &str) -> Outcome {
    let path = format!("{dir}/deleted-payload");
    std::fs::write(&path, std::fs::read(PAYLOAD).map_err(io)?).map_err(io)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    let p = cpath(&path);
    // SAFETY: a NUL-terminated path; no O_CLOEXEC on purpose, the child must inherit it.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        return Err(last());
    }
    std::fs::remove_file(&path).map_err(io)?;
    run_fd(fd, via)
}

/// The loader's own step, exactly: PATH opened read-only and mapped PROT_READ|PROT_EXEC.
fn mmap_exec(path: &str) -> Outcome {
    let p = cpath(path);
    // SAFETY: a NUL-terminated path and flags.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last());
    }
    // SAFETY: a fresh private mapping of our own fd; it is unmapped at once and never touched.
    let mem =
        unsafe { libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_EXEC, libc::MAP_PRIVATE, fd, 0) };
    let err = last();
    // SAFETY: closing our fd; unmapping the mapping made above, if any.
    unsafe {
        libc::close(fd);
        if mem != libc::MAP_FAILED {
            libc::munmap(mem, 4096);
        }
    }
    if mem == libc::MAP_FAILED { Err(err) } else { Ok("mapped executable".into()) }
}

/// Code written into anonymous memory and run (what a JIT does): `mov eax, 42; ret`.
#[cfg(target_arch = "x86_64")]
fn anon_exec() -> Outcome {
    let code: [u8; 6] = [0xb8, 42, 0, 0, 0, 0xc3];
    // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
    let mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mem == libc::MAP_FAILED {
        return Err(last());
    }
    // SAFETY: the mapping is 4096 bytes, writable and executable; the code is a complete
    // function of the C ABI returning an int.
    let ret = unsafe {
        std::ptr::copy_nonoverlapping(code.as_ptr(), mem.cast::<u8>(), code.len());
        let f: extern "C" fn() -> i32 = std::mem::transmute(mem);
        f()
    };
    Ok(format!("anonymous code returned {ret}"))
}

#[cfg(not(target_arch = "x86_64"))]
fn anon_exec() -> Outcome {
    Err(Errno::ENOSYS)
}

fn stat(path: &str) -> Outcome {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).map_err(io)?;
    Ok(format!("mode {:o} uid {} size {}", m.mode(), m.uid(), m.size()))
}

/// Watches PATH for every event.
fn inotify(path: &str) -> Outcome {
    let p = cpath(path);
    // SAFETY: flags only.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(last());
    }
    // SAFETY: our fd, a NUL-terminated path, a mask.
    let wd = unsafe { libc::inotify_add_watch(fd, p.as_ptr(), libc::IN_ALL_EVENTS) };
    let err = last();
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
    if wd < 0 { Err(err) } else { Ok(format!("watching (wd {wd})")) }
}

/// `access(PATH, F_OK)`: does it exist?
fn access(path: &str) -> Outcome {
    let p = cpath(path);
    // SAFETY: a NUL-terminated path and a mode.
    let ret = unsafe { libc::access(p.as_ptr(), libc::F_OK) };
    if ret < 0 { Err(last()) } else { Ok("exists".into()) }
}

/// `llistxattr(PATH)`: the size of its attribute list.
fn listxattr(path: &str) -> Outcome {
    let p = cpath(path);
    // SAFETY: a NUL-terminated path; a null buffer of size 0 only asks for the length.
    let ret = unsafe { libc::llistxattr(p.as_ptr(), std::ptr::null_mut(), 0) };
    if ret < 0 { Err(last()) } else { Ok(format!("{ret} bytes of names")) }
}

/// `open(PATH, O_PATH)`: a descriptor that names the file without reading it.
fn open_path(path: &str) -> Outcome {
    let p = cpath(path);
    // SAFETY: a NUL-terminated path and flags.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last());
    }
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
    Ok("opened O_PATH".into())
}

/// Opens DIR (O_PATH), then `fstatat(fd, REL)`: a walk up from a granted directory with `..`.
fn openat_parent(dir: &str, rel: &str) -> Outcome {
    let d = cpath(dir);
    // SAFETY: a NUL-terminated path and flags.
    let fd = unsafe { libc::open(d.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last());
    }
    let r = cpath(rel);
    // SAFETY: an all-zero `struct stat` is a valid value for the kernel to fill in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: our fd, a NUL-terminated path, a live `struct stat`.
    let ret = unsafe { libc::fstatat(fd, r.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    let err = last();
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
    if ret < 0 { Err(err) } else { Ok(format!("size {}", st.st_size)) }
}

/// A nested user and mount namespace (a copy of the current mount tree), then `lstat(PATH)` there.
fn userns_stat(path: &str) -> Outcome {
    use nix::sched::CloneFlags;
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)?;
    stat(path).map(|m| format!("in a nested user namespace: {m}"))
}

/// The main thread ends alone (`exit`, not `exit_group`); a second thread ends the process with
/// `code` 200 ms later: the process's exit is the second one.
fn leader_exit(code: i32) -> Outcome {
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        std::process::exit(code)
    });
    // SAFETY: SYS_exit ends the calling thread only; the other thread keeps the process alive.
    unsafe { libc::syscall(libc::SYS_exit, 0) };
    unreachable!("SYS_exit returned")
}

/// Prints READY, then sends a UDP datagram to 127.0.0.1:`port` every 10 ms for `seconds`,
/// printing nothing (its parent may be gone): what arrives is counted by the receiver.
fn udp_flood(port: u16, seconds: u64) -> Outcome {
    // Outlive the shell and the session it was started from.
    for sig in [libc::SIGHUP, libc::SIGTERM, libc::SIGINT] {
        // SAFETY: SIG_IGN is a valid disposition.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    println!("READY");
    let _ = std::io::stdout().flush();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while std::time::Instant::now() < end {
        if let Ok(s) = std::net::UdpSocket::bind("127.0.0.1:0") {
            let _ = s.send_to(b"x", ("127.0.0.1", port));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok("flooded".into())
}

/// The addresses the C library's resolver (getaddrinfo) gives `name`, sorted.
fn resolve(name: &str) -> Outcome {
    use std::net::ToSocketAddrs;
    let mut addrs: Vec<String> = (name, 0).to_socket_addrs().map_err(io)?.map(|a| a.ip().to_string()).collect();
    addrs.sort();
    addrs.dedup();
    Ok(addrs.join(","))
}

/// One A query for `name` to port 53 of `server`, sent the way a resolver does: `udp-connect`
/// (glibc: connect, then send), `udp-sendto` (musl: sendto on an unconnected socket) or `tcp`.
/// The answer must come from the address asked. Prints the rcode and the addresses.
fn dns_raw(mode: &str, server: &str, name: &str) -> Outcome {
    use mcp_warden_tests::dns_wire;
    let to = std::net::SocketAddr::new(server.parse().map_err(|_| Errno::EINVAL)?, 53);
    let q = dns_wire::query(0x5151, name, 1);
    let mut buf = vec![0u8; 4096];
    let answer = match mode {
        "tcp" => {
            let mut s = std::net::TcpStream::connect(to).map_err(io)?;
            let peer = s.peer_addr().map_err(io)?;
            if peer != to {
                return Ok(format!("connected to {peer}, not {to}"));
            }
            s.write_all(&[&(q.len() as u16).to_be_bytes()[..], &q].concat()).map_err(io)?;
            let mut len = [0u8; 2];
            s.read_exact(&mut len).map_err(io)?;
            buf.truncate(usize::from(u16::from_be_bytes(len)));
            s.read_exact(&mut buf).map_err(io)?;
            buf
        }
        _ => {
            let local = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let s = std::net::UdpSocket::bind(local).map_err(io)?;
            s.set_read_timeout(Some(std::time::Duration::from_secs(5))).map_err(io)?;
            if mode == "udp-connect" {
                s.connect(to).map_err(io)?;
                s.send(&q).map_err(io)?;
            } else {
                s.send_to(&q, to).map_err(io)?;
            }
            let (n, from) = s.recv_from(&mut buf).map_err(io)?;
            if from != to {
                return Ok(format!("answer from {from}, not {to}"));
            }
            buf.truncate(n);
            buf
        }
    };
    let (rcode, addrs) = dns_wire::parse_answer(&answer).ok_or(Errno::EBADMSG)?;
    let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    Ok(format!("rcode={rcode} addrs={}", addrs.join(",")))
}

/// Asks every server in `servers` for `name` at once from one UDP socket, as musl does, and
/// checks that each answer comes from the server its id was sent to.
fn dns_fanout(name: &str, servers: &[String]) -> Outcome {
    use mcp_warden_tests::dns_wire;
    let to: Vec<std::net::SocketAddr> = servers
        .iter()
        .map(|s| s.parse().map(|ip| std::net::SocketAddr::new(ip, 53)).map_err(|_| Errno::EINVAL))
        .collect::<Result<_, _>>()?;
    let local = if to.first().is_some_and(std::net::SocketAddr::is_ipv4) { "0.0.0.0:0" } else { "[::]:0" };
    let s = std::net::UdpSocket::bind(local).map_err(io)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).map_err(io)?;
    for (id, dest) in to.iter().enumerate() {
        s.send_to(&dns_wire::query(0x4000 + id as u16, name, 1), dest).map_err(io)?;
    }
    let mut buf = vec![0u8; 4096];
    for _ in &to {
        let (_, from) = s.recv_from(&mut buf).map_err(io)?;
        let id = usize::from(u16::from_be_bytes([buf[0], buf[1]]).wrapping_sub(0x4000));
        match to.get(id) {
            Some(asked) if *asked == from => {}
            _ => return Ok(format!("answer {id} from {from}, asked {:?}", to.get(id))),
        }
    }
    Ok(format!("{} answers, each from the server asked", to.len()))
}

/// Sends `rounds` queries from one buffer while another thread rewrites the name in it between
/// `allowed` and `forbidden` (same length): whatever the supervisor read is what gets decided.
fn dns_race(server: &str, allowed: &str, forbidden: &str, rounds: usize) -> Outcome {
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
    static STOP: AtomicBool = AtomicBool::new(false);
    let q = mcp_warden_tests::dns_wire::query(0x7777, allowed, 1);
    let other = mcp_warden_tests::dns_wire::query(0x7777, forbidden, 1);
    if q.len() != other.len() {
        return Err(Errno::EINVAL);
    }
    let buf: &'static [AtomicU8] =
        Box::leak(q.iter().map(|b| AtomicU8::new(*b)).collect::<Vec<_>>().into_boxed_slice());
    let (a, b) = (q.clone(), other);
    let flipper = std::thread::spawn(move || {
        while !STOP.load(Ordering::Relaxed) {
            for src in [&b, &a] {
                for (cell, byte) in buf.iter().zip(src.iter()) {
                    cell.store(*byte, Ordering::Relaxed);
                }
            }
        }
    });
    let to = std::net::SocketAddr::new(server.parse().map_err(|_| Errno::EINVAL)?, 53);
    let s = std::net::UdpSocket::bind("0.0.0.0:0").map_err(io)?;
    s.set_read_timeout(Some(std::time::Duration::from_millis(500))).map_err(io)?;
    let (mut answered, mut nxdomain, mut lost) = (0, 0, 0);
    let dest = nix::sys::socket::SockaddrIn::from(match to {
        std::net::SocketAddr::V4(v4) => v4,
        std::net::SocketAddr::V6(_) => return Err(Errno::EINVAL),
    });
    for _ in 0..rounds {
        // SAFETY: the buffer is `q.len()` atomic bytes (same size and alignment as u8) that live
        // forever; the kernel (or the broker) copies them while the flipper rewrites them.
        let iov = [std::io::IoSlice::new(unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), buf.len()) })];
        nix::sys::socket::sendmsg(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            &iov,
            &[],
            nix::sys::socket::MsgFlags::empty(),
            Some(&dest),
        )?;
        let mut r = [0u8; 1024];
        match s.recv(&mut r) {
            Ok(n) => match mcp_warden_tests::dns_wire::parse_answer(&r[..n]) {
                Some((0, _)) => answered += 1,
                _ => nxdomain += 1,
            },
            Err(_) => lost += 1,
        }
    }
    STOP.store(true, Ordering::Relaxed);
    let _ = flipper.join();
    Ok(format!("answered={answered} nxdomain={nxdomain} lost={lost}"))
}

/// Resolves `name`, connects to its first address at `port`, waits `secs`, then connects again
/// (a new connection after the answer expired) and uses the first connection (an echo server
/// answers): `first=... second=... established=...`.
fn dns_expiry(name: &str, port: u16, secs: u64) -> Outcome {
    use std::net::ToSocketAddrs;
    let addr = (name, port).to_socket_addrs().map_err(io)?.find(std::net::SocketAddr::is_ipv4).ok_or(Errno::ENOENT)?;
    let mut first = std::net::TcpStream::connect(addr).map_err(io)?;
    std::thread::sleep(std::time::Duration::from_secs(secs));
    let second = match std::net::TcpStream::connect(addr) {
        Ok(_) => "connected".to_string(),
        Err(e) => format!("{:?}", io(e)),
    };
    first.write_all(b"ping\n").map_err(io)?;
    let mut echo = [0u8; 5];
    first.read_exact(&mut echo).map_err(io)?;
    Ok(format!("first=connected second={second} established={}", if &echo == b"ping\n" { "echoed" } else { "garbled" }))
}

/// Runs the tests' stand-in authoritative server (`NAME=ADDR` each, TTL 300) and prints its
/// address, until killed (the benchmarks' upstream).
fn dns_serve(zone: &[String]) -> Outcome {
    let entries: Vec<(String, String)> =
        zone.iter().filter_map(|e| e.split_once('=')).map(|(n, a)| (n.to_string(), a.to_string())).collect();
    let addrs: Vec<[&str; 1]> = entries.iter().map(|(_, a)| [a.as_str()]).collect();
    let sets: Vec<[&[&str]; 1]> = addrs.iter().map(|a| [&a[..]]).collect();
    let zone: Vec<(&str, &[&[&str]])> = entries.iter().zip(&sets).map(|((n, _), s)| (n.as_str(), &s[..])).collect();
    let standin = mcp_warden_tests::dns_standin::StandIn::start(&zone, 300);
    println!("{}", standin.addr);
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}

/// `rounds` times: an A query for `name` to `server` (a fresh connected UDP socket, as glibc
/// does), then a TCP connect to the address it answered at `port` (a first connection to a name);
/// then the same connect to the known address alone (steady state). Prints p50 and p99 of each,
/// in microseconds.
fn dns_bench(server: &str, name: &str, port: u16, rounds: usize) -> Outcome {
    use mcp_warden_tests::dns_wire;
    use std::time::Instant;
    let server: std::net::SocketAddr = server.parse().map_err(|_| Errno::EINVAL)?;
    let (mut query, mut first, mut steady) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        let t = Instant::now();
        let s = std::net::UdpSocket::bind("0.0.0.0:0").map_err(io)?;
        s.connect(server).map_err(io)?;
        s.send(&dns_wire::query(i as u16, name, 1)).map_err(io)?;
        let mut buf = [0u8; 1024];
        let n = s.recv(&mut buf).map_err(io)?;
        let (_, addrs) = dns_wire::parse_answer(&buf[..n]).ok_or(Errno::EBADMSG)?;
        query.push(t.elapsed());
        let to = std::net::SocketAddr::new(*addrs.first().ok_or(Errno::ENOENT)?, port);
        drop(std::net::TcpStream::connect(to).map_err(io)?);
        first.push(t.elapsed());
        let t = Instant::now();
        drop(std::net::TcpStream::connect(to).map_err(io)?);
        steady.push(t.elapsed());
    }
    let pct = |v: &mut Vec<std::time::Duration>, p: usize| {
        v.sort();
        v[(v.len() * p / 100).min(v.len() - 1)].as_micros()
    };
    Ok(format!(
        "query_p50={} query_p99={} first_p50={} first_p99={} steady_p50={} steady_p99={}",
        pct(&mut query, 50),
        pct(&mut query, 99),
        pct(&mut first, 50),
        pct(&mut first, 99),
        pct(&mut steady, 50),
        pct(&mut steady, 99)
    ))
}
