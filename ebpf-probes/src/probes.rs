//! The programs, their maps and load-time constants.
//!
//! The programs are loaded once per host and shared by every monitored server (the launcher pins
//! them in bpffs). A server is its cgroup: `SERVERS` holds its settings and `RINGS` its own ring
//! buffer under its cgroup id, so a task outside every server costs one hash lookup on the few
//! tracepoints attached by default (task creation, exec, exit, signals), and nothing per syscall
//! unless a server asks for the `full` level.

use core::mem::size_of;

use aya_ebpf::bindings::{BPF_F_NO_PREALLOC, bpf_sock_addr};
use aya_ebpf::{
    EbpfContext,
    btf_maps::{HashOfMaps, RingBuf, SkStorage},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_current_uid_gid, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_kernel_buf,
        bpf_probe_read_kernel_str_bytes, bpf_probe_read_user, bpf_probe_read_user_str_bytes, bpf_skb_cgroup_id,
    },
    macros::{btf_map, cgroup_skb, cgroup_sock, cgroup_sock_addr, lsm, map, raw_tracepoint, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray, PerCpuHashMap},
    programs::{LsmContext, RawTracePointContext, SkBuffContext, SockAddrContext, SockContext, TracePointContext},
};
use mcp_warden_ebpf_common::{
    ARG_LEN, ARGV_COUNT, CallKey, Counters, DNS_SLOTS, DnsDst, DnsQueries, ExecEvent, ExitEvent, ForkEvent, Header,
    LsmEvent, MAX_RULES, NO_RESULT, NetEvent, NetRule, OpenEvent, OpenKey, PATH_LEN, RefusedEvent, RuleKey, Server,
    SocketEvent, counter, fnv1a, hook, kind, level, op, verdict,
};

// Load-time constants of the host (`EbpfLoader::set_global`), the same for every server: offsets
// read from the tracepoint format files and the kernel's BTF when the programs are loaded.
/// Offset of `pid` (the new task's id) in the `task_newtask` record.
#[unsafe(no_mangle)]
static NEWTASK_PID: u32 = 8;
/// Offset of `clone_flags` in the `task_newtask` record.
#[unsafe(no_mangle)]
static NEWTASK_FLAGS: u32 = 32;
/// Offset of the `filename` data_loc in the `sched_process_exec` record.
#[unsafe(no_mangle)]
static EXEC_FILENAME: u32 = 8;
/// Offset of `group_dead` in the `sched_process_exit` record; 0 where the kernel's record has
/// none (then the thread-group leader's exit stands for the process's).
#[unsafe(no_mangle)]
static EXIT_GROUP_DEAD: u32 = 0;
/// Offsets in `struct task_struct` and `struct mm_struct`, from the kernel's BTF.
#[unsafe(no_mangle)]
static TASK_EXIT_CODE: u32 = 0;
#[unsafe(no_mangle)]
static TASK_MM: u32 = 0;
#[unsafe(no_mangle)]
static MM_ARG_START: u32 = 0;
#[unsafe(no_mangle)]
static MM_ARG_END: u32 = 0;

#[inline(always)]
fn constant<T: Copy>(v: &T) -> T {
    // SAFETY: a plain read of a static; volatile so the compiler keeps the load the loader patches.
    unsafe { core::ptr::read_volatile(v) }
}

/// cgroup id -> the server's settings. Written by its launcher before the server starts.
#[map]
static SERVERS: HashMap<u64, Server> = HashMap::with_max_entries(1024, BPF_F_NO_PREALLOC);
/// launcher pid -> its server's cgroup id: the network broker connects the server's sockets from
/// the launcher, whose calls the socket programs of the server's cgroup see too.
#[map]
static BROKERS: HashMap<u32, u64> = HashMap::with_max_entries(1024, BPF_F_NO_PREALLOC);
/// slot -> a ring buffer (created by a launcher, sized by `--audit-buffer`, reused by later ones:
/// inserting into a map of maps waits for an RCU grace period). `Server::slot` names a server's.
#[btf_map]
static RINGS: HashOfMaps<u32, RingBuf<u8, 4096>, 1024> = HashOfMaps::new();
/// cgroup id -> the server's counters.
#[map]
static COUNTERS: PerCpuHashMap<u64, Counters> = PerCpuHashMap::with_max_entries(1024, BPF_F_NO_PREALLOC);
/// (cgroup, tgid, syscall nr) -> calls (`full` level). Hash maps are not preallocated: a server
/// touches a few hundred keys.
#[map]
static SYSCALLS: PerCpuHashMap<CallKey, u64> = PerCpuHashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);
/// (cgroup, index) -> the server's network rules, indices `0..rule_count`.
#[map]
static RULES: HashMap<RuleKey, NetRule> = HashMap::with_max_entries(MAX_RULES * 1024, BPF_F_NO_PREALLOC);
#[map]
static PENDING_OPEN: HashMap<u32, OpenEvent> = HashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);
/// tid -> the network event of the syscall in progress, emitted at its exit with the result
/// (`full` level).
#[map]
static PENDING_NET: HashMap<u32, NetEvent> = HashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);
#[map]
static PENDING_EXEC: HashMap<u32, ExecEvent> = HashMap::with_max_entries(4096, BPF_F_NO_PREALLOC);
#[map]
static OPENS_SEEN: LruHashMap<OpenKey, u64> = LruHashMap::with_max_entries(65536, 0);
/// A server's socket -> where its DNS queries were going (gone with the socket).
#[btf_map]
static DNS_QUERIES: SkStorage<DnsQueries> = SkStorage::new();
#[map]
static SCRATCH_OPEN: PerCpuArray<OpenEvent> = PerCpuArray::with_max_entries(1, 0);
#[map]
static SCRATCH_EXEC: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);

#[cfg(bpf_target_arch = "x86_64")]
mod sys {
    pub const OPEN: u32 = 2;
    pub const OPENAT: u32 = 257;
    pub const EXECVE: u32 = 59;
    pub const EXECVEAT: u32 = 322;
    pub const CONNECT: u32 = 42;
    pub const SENDTO: u32 = 44;
    pub const SENDMSG: u32 = 46;
    pub const BIND: u32 = 49;
    pub const SENDMMSG: u32 = 307;
    // struct pt_regs offsets of the syscall argument registers and the syscall number.
    pub const ARG: [usize; 6] = [112, 104, 96, 56, 72, 64]; // di, si, dx, r10, r8, r9
    pub const NR: usize = 120; // orig_ax

    /// The calls whose refusals are reported, with their arguments: (path, second path, fd),
    /// `NONE` where the call has none. For the `*at` calls the fd is the directory the path is
    /// relative to (`AT_FDCWD`, -100, for the working directory).
    pub fn refusable(nr: u32) -> Option<(u8, u8, u8)> {
        const N: u8 = super::NONE;
        Some(match nr {
            83 | 84 | 87 | 76 | 133 | 90 | 92 | 94 | 132 | 235 | 188 | 189 | 197 | 198 | 85 => (0, N, N), // mkdir rmdir unlink truncate mknod chmod chown lchown utime utimes setxattr lsetxattr removexattr lremovexattr creat
            258 | 263 | 259 | 268 | 452 | 260 | 280 | 261 | 463 | 466 | 469 => (1, N, 0), // mkdirat unlinkat mknodat fchmodat fchmodat2 fchownat utimensat futimesat setxattrat removexattrat file_setattr
            82 | 86 => (0, 1, N),                                                         // rename link
            264 | 316 | 265 => (1, 3, 0),                                                 // renameat renameat2 linkat
            88 => (1, N, N),                                                              // symlink (the link's path)
            266 => (2, N, 1),                                                             // symlinkat
            91 | 93 | 77 | 190 | 199 | 16 => (N, N, 0), // fchmod fchown ftruncate fsetxattr fremovexattr ioctl (inode flags)
            42 | 49 | 62 | 200 | 234 => (N, N, N),      // connect bind (TCP ports), kill tkill tgkill (scope)
            _ => return None,
        })
    }
}

#[cfg(bpf_target_arch = "aarch64")]
mod sys {
    pub const OPEN: u32 = u32::MAX; // no open(2) on arm64
    pub const OPENAT: u32 = 56;
    pub const EXECVE: u32 = 221;
    pub const EXECVEAT: u32 = 281;
    pub const CONNECT: u32 = 203;
    pub const SENDTO: u32 = 206;
    pub const SENDMSG: u32 = 211;
    pub const BIND: u32 = 200;
    pub const SENDMMSG: u32 = 269;
    pub const ARG: [usize; 6] = [272, 8, 16, 24, 32, 40]; // orig_x0, x1..x5
    pub const NR: usize = 280; // syscallno

    /// As on x86_64, with the generic syscall numbers (only the `*at` forms exist).
    pub fn refusable(nr: u32) -> Option<(u8, u8, u8)> {
        const N: u8 = super::NONE;
        Some(match nr {
            45 | 5 | 6 | 14 | 15 => (0, N, N), // truncate setxattr lsetxattr removexattr lremovexattr
            34 | 35 | 33 | 53 | 452 | 54 | 88 | 463 | 466 | 469 => (1, N, 0), // mkdirat unlinkat mknodat fchmodat fchmodat2 fchownat utimensat setxattrat removexattrat file_setattr
            38 | 276 | 37 => (1, 3, 0),                                       // renameat renameat2 linkat
            36 => (2, N, 1),                                                  // symlinkat
            52 | 55 | 46 | 7 | 16 | 29 => (N, N, 0), // fchmod fchown ftruncate fsetxattr fremovexattr ioctl
            203 | 200 | 129 | 130 | 131 => (N, N, N), // connect bind kill tkill tgkill
            _ => return None,
        })
    }
}

/// No such argument.
const NONE: u8 = 0xff;

const EPERM: i64 = 1;
const EXDEV: i64 = 18;
const EACCES: i64 = 13;
const EROFS: i64 = 30;
const ENOENT: i64 = 2;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;
const SOCK_RAW: u32 = 3;
const CLONE_THREAD: u64 = 0x10000;

/// The monitored server the current task belongs to: its cgroup id, settings and ring buffer.
/// The ring is missing only while the launcher still prepares the server (it inserts it before
/// the server is executed): what the launcher's own stage 2 does until then is not recorded.
#[derive(Clone, Copy)]
struct Srv {
    cgroup: u64,
    conf: Server,
    ring: Option<&'static RingBuf<u8, 4096>>,
}

/// `None` for every task outside a monitored server: one helper call and one hash lookup.
#[inline(always)]
fn server() -> Option<Srv> {
    // SAFETY: helper without arguments.
    server_of(unsafe { bpf_get_current_cgroup_id() })
}

/// For the socket programs: the current task's server, or the server whose launcher (its network
/// broker) makes the call on the server's socket.
#[inline(always)]
fn socket_server() -> Option<Srv> {
    if let Some(srv) = server() {
        return Some(srv);
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: a map value read.
    server_of(*unsafe { BROKERS.get(&tgid) }?)
}

#[inline(always)]
fn server_of(cgroup: u64) -> Option<Srv> {
    // SAFETY: map value reads; the launcher removes a server's entries only after it is gone.
    let conf = *unsafe { SERVERS.get(&cgroup) }?;
    // SAFETY: as above.
    let ring = unsafe { RINGS.get(&conf.slot) };
    Some(Srv { cgroup, conf, ring })
}

/// The header of an event of `srv`: its cgroup id, not the current task's (the network broker
/// acts for the server from the launcher's cgroup).
#[inline(always)]
fn header(kind: u32, srv: &Srv) -> Header {
    let pid_tgid = bpf_get_current_pid_tgid();
    Header {
        kind,
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid: bpf_get_current_uid_gid() as u32,
        // SAFETY: helper without arguments.
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        cgroup_id: srv.cgroup,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    }
}

#[inline(always)]
fn bump(srv: &Srv, index: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(&srv.cgroup) {
        let i = index as usize;
        // SAFETY: a per-CPU value: no other program touches it concurrently; `i` is checked.
        if i < counter::COUNT as usize {
            unsafe { (*c).values[i] += 1 };
        }
    }
}

/// Emits `value` on the server's ring buffer, or counts it as dropped.
#[inline(always)]
fn emit<T: 'static>(srv: &Srv, value: T) {
    let Some(ring) = srv.ring else { return };
    match ring.reserve_untyped::<T>(0) {
        Some(mut entry) => {
            entry.write(value);
            entry.submit(0);
        }
        None => bump(srv, counter::DROPPED),
    }
}

/// Emits a copy of a (large) map value without staging it on the 512-byte stack.
#[inline(always)]
fn emit_copy<T: 'static>(srv: &Srv, src: *const T, patch: impl FnOnce(&mut T)) {
    let Some(ring) = srv.ring else { return };
    match ring.reserve_untyped::<T>(0) {
        Some(mut entry) => {
            let dst = entry.as_mut_ptr() as *mut u8;
            // SAFETY: `dst` is a reserved ring-buffer slot of size_of::<T>() bytes.
            let buf = unsafe { core::slice::from_raw_parts_mut(dst, size_of::<T>()) };
            // SAFETY: `src` points at a live map value of type T.
            if unsafe { bpf_probe_read_kernel_buf(src as *const u8, buf) }.is_err() {
                entry.discard(0);
                return;
            }
            // SAFETY: the slot now holds a full copy of a valid T.
            patch(unsafe { &mut *entry.as_mut_ptr() });
            entry.submit(0);
        }
        None => bump(srv, counter::DROPPED),
    }
}

#[inline(always)]
fn syscall_arg(regs: *const u8, index: usize) -> Result<u64, i64> {
    // SAFETY: `regs` is the tracepoint's struct pt_regs pointer; the read is checked by the helper.
    unsafe { bpf_probe_read_kernel(regs.add(sys::ARG[index]) as *const u64) }.map_err(|e| e as i64)
}

// ---- process tree (every level) ---------------------------------------------------------------

/// `task_newtask(pid, comm, clone_flags)`, in the parent: a new process (not a thread).
#[tracepoint(category = "task", name = "task_newtask")]
pub fn task_newtask(ctx: TracePointContext) -> u32 {
    let _ = try_task_newtask(&ctx);
    0
}

fn try_task_newtask(ctx: &TracePointContext) -> Result<(), i64> {
    let Some(srv) = server() else { return Ok(()) };
    // SAFETY: fields of the tracepoint record at the offsets its format file gives.
    let flags: u64 = unsafe { ctx.read_at(constant(&NEWTASK_FLAGS) as usize) }.map_err(|e| e as i64)?;
    if flags & CLONE_THREAD != 0 {
        return Ok(());
    }
    // SAFETY: as above.
    let child: u32 = unsafe { ctx.read_at(constant(&NEWTASK_PID) as usize) }.map_err(|e| e as i64)?;
    emit(&srv, ForkEvent { hdr: header(kind::FORK, &srv), child_pid: child, _pad: 0 });
    Ok(())
}

/// `sched_process_exec`: the new image runs. Its path from the record, its first arguments from
/// the new stack (`mm->arg_start`).
#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let _ = try_sched_process_exec(&ctx);
    0
}

fn try_sched_process_exec(ctx: &TracePointContext) -> Result<(), i64> {
    let Some(srv) = server() else { return Ok(()) };
    let Some(ring) = srv.ring else { return Ok(()) };
    let Some(mut entry) = ring.reserve_untyped::<ExecEvent>(0) else {
        bump(&srv, counter::DROPPED);
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` is a reserved slot of size_of::<ExecEvent>() bytes, written field by field
    // before it is submitted; every read goes through a checked helper.
    unsafe {
        (*ev).hdr = header(kind::EXEC, &srv);
        (*ev).ret = 0;
        (*ev).truncated = 0;
        let loc: u32 = ctx.read_at(constant(&EXEC_FILENAME) as usize).unwrap_or(0);
        let name = (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize);
        if loc == 0 || bpf_probe_read_kernel_str_bytes(name, &mut (*ev).path).is_err() {
            (*ev).path[0] = 0;
        }
        (*ev).argc = read_argv(&mut (*ev).argv, &mut (*ev).truncated);
    }
    entry.submit(0);
    Ok(())
}

/// Reads the first `ARGV_COUNT` arguments of the current process from its stack: the strings
/// between `mm->arg_start` and `mm->arg_end`, one after the other. An argument longer than a slot
/// is cut (its bit set in `truncated`) and the next one found past its end (up to `SKIP_CHUNKS`
/// slot-sized steps; further arguments are not read after a longer one).
#[inline(always)]
fn read_argv(argv: &mut [[u8; ARG_LEN]; ARGV_COUNT], truncated: &mut u32) -> u32 {
    // SAFETY: helper without arguments; the pointer is only read through checked helpers.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    // SAFETY: kernel reads at BTF offsets, checked by the helper.
    let Ok(mm) = (unsafe { bpf_probe_read_kernel(task.add(constant(&TASK_MM) as usize) as *const u64) }) else {
        return 0;
    };
    let mm = mm as *const u8;
    // SAFETY: as above.
    let (Ok(mut at), Ok(end)) = (unsafe {
        (
            bpf_probe_read_kernel(mm.add(constant(&MM_ARG_START) as usize) as *const u64),
            bpf_probe_read_kernel(mm.add(constant(&MM_ARG_END) as usize) as *const u64),
        )
    }) else {
        return 0;
    };
    let mut argc = 0;
    let mut i = 0;
    while i < ARGV_COUNT {
        if at >= end {
            break;
        }
        let slot: &mut [u8; ARG_LEN] = &mut argv[i];
        // SAFETY: a user pointer of the current process, read by the checked helper.
        let len = match unsafe { bpf_probe_read_user_str_bytes(at as *const u8, slot) } {
            Ok(s) => s.len() as u64,
            Err(_) => break,
        };
        argc = (i + 1) as u32;
        at += len;
        if len as usize >= ARG_LEN - 1 {
            *truncated |= 1 << i;
            match skip_to_nul(at, end) {
                Some(next) => at = next,
                None => break,
            }
        }
        at += 1; // the NUL
        i += 1;
    }
    argc
}

/// Slot-sized steps `skip_to_nul` takes at most through one long argument (8 KiB).
const SKIP_CHUNKS: usize = 128;

/// The address of the NUL that ends the argument `at` is in, within `SKIP_CHUNKS` steps.
#[inline(always)]
fn skip_to_nul(mut at: u64, end: u64) -> Option<u64> {
    let mut chunk = [0u8; ARG_LEN];
    let mut n = 0;
    while n < SKIP_CHUNKS {
        if at >= end {
            return None;
        }
        // SAFETY: a user pointer of the current process, read by the checked helper.
        let len = unsafe { bpf_probe_read_user_str_bytes(at as *const u8, &mut chunk) }.ok()?.len() as u64;
        if (len as usize) < ARG_LEN - 1 {
            return Some(at + len);
        }
        at += len;
        n += 1;
    }
    None
}

/// `sched_process_exit`: a thread ends; the process ends with its last thread (`group_dead`).
/// The status comes from `task->exit_code`: `code << 8`, or the signal that killed it.
#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let _ = try_sched_process_exit(&ctx);
    0
}

fn try_sched_process_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let Some(srv) = server() else { return Ok(()) };
    let group_dead = match constant(&EXIT_GROUP_DEAD) {
        0 => {
            let pid_tgid = bpf_get_current_pid_tgid();
            (pid_tgid >> 32) as u32 == pid_tgid as u32
        }
        // SAFETY: a field of the tracepoint record at the offset its format file gives.
        offset => unsafe { ctx.read_at::<u8>(offset as usize) }.map_err(|e| e as i64)? != 0,
    };
    if !group_dead {
        return Ok(());
    }
    // SAFETY: helper without arguments; the pointer is only read through checked helpers.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    // SAFETY: a kernel read at a BTF offset, checked by the helper.
    let status: i32 = unsafe { bpf_probe_read_kernel(task.add(constant(&TASK_EXIT_CODE) as usize) as *const i32) }
        .map_err(|e| e as i64)?;
    let signal = status & 0x7f;
    let (code, signal) = if signal != 0 { (-1, signal) } else { ((status >> 8) & 0xff, 0) };
    emit(&srv, ExitEvent { hdr: header(kind::EXIT, &srv), code, signal });
    Ok(())
}

// ---- syscalls (`full` level only) -------------------------------------------------------------

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> i32 {
    let _ = try_sys_enter(&ctx);
    0
}

fn try_sys_enter(ctx: &RawTracePointContext) -> Result<(), i64> {
    let Some(srv) = server() else { return Ok(()) };
    if srv.conf.level != level::FULL {
        return Ok(());
    }
    let regs: *const u8 = ctx.arg(0);
    let nr = ctx.arg::<u64>(1) as u32;
    let pid_tgid = bpf_get_current_pid_tgid();
    count_syscall(&srv, (pid_tgid >> 32) as u32, nr);
    match nr {
        sys::OPENAT => capture_open(&srv, regs, pid_tgid, 1, 2),
        sys::OPEN => capture_open(&srv, regs, pid_tgid, 0, 1),
        sys::EXECVE => capture_exec(&srv, regs, pid_tgid, 0, 1),
        sys::EXECVEAT => capture_exec(&srv, regs, pid_tgid, 1, 2),
        _ => Ok(()),
    }
}

#[inline(always)]
fn count_syscall(srv: &Srv, tgid: u32, nr: u32) {
    let key = CallKey { cgroup_id: srv.cgroup, tgid, nr };
    match SYSCALLS.get_ptr_mut(&key) {
        // SAFETY: a per-CPU value.
        Some(c) => unsafe { *c += 1 },
        None => {
            let _ = SYSCALLS.insert(&key, &1, 0);
        }
    }
}

#[inline(always)]
fn capture_open(srv: &Srv, regs: *const u8, pid_tgid: u64, path_arg: usize, flags_arg: usize) -> Result<(), i64> {
    let filename = syscall_arg(regs, path_arg)? as *const u8;
    let flags = syscall_arg(regs, flags_arg)? as u32;
    let ev = SCRATCH_OPEN.get_ptr_mut(0).ok_or(0i64)?;
    // SAFETY: the per-CPU scratch slot; programs do not nest on one CPU for this tracepoint.
    let ev = unsafe { &mut *ev };
    // SAFETY: a user pointer read by the checked helper.
    let len = match unsafe { bpf_probe_read_user_str_bytes(filename, &mut ev.path) } {
        Ok(s) => s.len(),
        Err(_) => 0,
    };
    let path_hash = fnv1a(&ev.path, len);
    let key = OpenKey { cgroup_id: srv.cgroup, tgid: (pid_tgid >> 32) as u32, flags, path_hash };
    if let Some(seen) = OPENS_SEEN.get_ptr_mut(&key) {
        // SAFETY: a map value; a lost increment under a race only undercounts a fold.
        unsafe { *seen += 1 };
        bump(srv, counter::OPENS_FOLDED);
        return Ok(());
    }
    let _ = OPENS_SEEN.insert(&key, &1, 0);
    ev.hdr = header(kind::OPEN, srv);
    ev.ret = 0;
    ev.path_hash = path_hash;
    ev.flags = flags;
    PENDING_OPEN.insert(&(pid_tgid as u32), ev, 0).map_err(|e| e as i64)
}

/// The execve's own arguments, kept until its exit: a failed exec is reported with them (a
/// successful one by `sched_process_exec`).
#[inline(always)]
fn capture_exec(srv: &Srv, regs: *const u8, pid_tgid: u64, path_arg: usize, argv_arg: usize) -> Result<(), i64> {
    let filename = syscall_arg(regs, path_arg)? as *const u8;
    let argv = syscall_arg(regs, argv_arg)? as *const *const u8;
    let ev = SCRATCH_EXEC.get_ptr_mut(0).ok_or(0i64)?;
    // SAFETY: the per-CPU scratch slot.
    let ev = unsafe { &mut *ev };
    // SAFETY: user pointers read by checked helpers.
    if unsafe { bpf_probe_read_user_str_bytes(filename, &mut ev.path) }.is_err() {
        ev.path[0] = 0;
    }
    ev.argc = 0;
    let mut i = 0;
    while i < ARGV_COUNT {
        // SAFETY: as above.
        let arg: *const u8 = match unsafe { bpf_probe_read_user(argv.add(i)) } {
            Ok(p) => p,
            Err(_) => break,
        };
        if arg.is_null() {
            break;
        }
        let slot: &mut [u8; ARG_LEN] = &mut ev.argv[i];
        // SAFETY: as above.
        if unsafe { bpf_probe_read_user_str_bytes(arg, slot) }.is_err() {
            slot[0] = 0;
        }
        ev.argc = (i + 1) as u32;
        i += 1;
    }
    ev.hdr = header(kind::EXEC, srv);
    ev.ret = 0;
    PENDING_EXEC.insert(&(pid_tgid as u32), ev, 0).map_err(|e| e as i64)
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    let _ = try_sys_exit(&ctx);
    0
}

fn try_sys_exit(ctx: &RawTracePointContext) -> Result<(), i64> {
    let Some(srv) = server() else { return Ok(()) };
    if srv.conf.level != level::FULL {
        return Ok(());
    }
    let regs: *const u8 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    // SAFETY: pt_regs read by the checked helper.
    let nr = unsafe { bpf_probe_read_kernel(regs.add(sys::NR) as *const u64) }.map_err(|e| e as i64)? as u32;
    let tid = bpf_get_current_pid_tgid() as u32;
    match nr {
        sys::OPENAT | sys::OPEN => {
            if let Some(pending) = PENDING_OPEN.get_ptr(&tid) {
                emit_copy(&srv, pending, |ev: &mut OpenEvent| ev.ret = ret);
                let _ = PENDING_OPEN.remove(&tid);
            }
        }
        sys::EXECVE | sys::EXECVEAT => {
            // A successful exec does not return here with the old image: `sched_process_exec`
            // reported it. What returns is a failure (or the new image's first return: ret 0).
            if let Some(pending) = PENDING_EXEC.get_ptr(&tid) {
                if ret < 0 {
                    emit_copy(&srv, pending, |ev: &mut ExecEvent| ev.ret = ret);
                }
                let _ = PENDING_EXEC.remove(&tid);
            }
        }
        sys::CONNECT | sys::SENDTO | sys::SENDMSG | sys::SENDMMSG | sys::BIND => {
            if let Some(pending) = PENDING_NET.get_ptr(&tid) {
                emit_copy(&srv, pending, |ev: &mut NetEvent| ev.ret = ret);
                let _ = PENDING_NET.remove(&tid);
            }
        }
        _ => {}
    }
    // ENOENT too: under the hidden root a path outside the grants does not exist.
    if ret == -EACCES || ret == -EPERM || ret == -EROFS || ret == -EXDEV || ret == -ENOENT {
        if let Some(args) = sys::refusable(nr) {
            emit_refused(&srv, regs, nr, ret, args);
        }
    }
    Ok(())
}

/// Reports a refused call with the paths it names, read into the ring-buffer slot directly (two
/// paths do not fit on the 512-byte stack). At exit the argument registers still hold the
/// caller's values.
#[inline(always)]
fn emit_refused(srv: &Srv, regs: *const u8, nr: u32, ret: i64, (path, path2, fd): (u8, u8, u8)) {
    let Some(ring) = srv.ring else { return };
    let Some(mut entry) = ring.reserve_untyped::<RefusedEvent>(0) else {
        bump(srv, counter::DROPPED);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` is a reserved slot of size_of::<RefusedEvent>() bytes, written field by field
    // before it is submitted; the user pointers are read by the checked helper.
    unsafe {
        (*ev).hdr = header(kind::REFUSED, srv);
        (*ev).nr = nr;
        (*ev)._pad = 0;
        (*ev).ret = ret;
        (*ev).fd = if fd == NONE { -1 } else { syscall_arg(regs, fd as usize).map_or(-1, |v| v as i32 as i64) };
        read_path(regs, path, &mut (*ev).path);
        read_path(regs, path2, &mut (*ev).path2);
    }
    entry.submit(0);
}

#[inline(always)]
fn read_path(regs: *const u8, arg: u8, out: &mut [u8; PATH_LEN]) {
    out[0] = 0;
    if arg == NONE {
        return;
    }
    if let Ok(p) = syscall_arg(regs, arg as usize) {
        // SAFETY: a user pointer read by the checked helper.
        if unsafe { bpf_probe_read_user_str_bytes(p as *const u8, out) }.is_err() {
            out[0] = 0;
        }
    }
}

// ---- network: cgroup socket programs ----------------------------------------------------------

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    check_addr(&ctx, op::CONNECT, AF_INET)
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    check_addr(&ctx, op::CONNECT, AF_INET6)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    check_addr(&ctx, op::SEND, AF_INET)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    check_addr(&ctx, op::SEND, AF_INET6)
}

#[cgroup_sock_addr(bind4)]
pub fn bind4(ctx: SockAddrContext) -> i32 {
    check_addr(&ctx, op::BIND, AF_INET)
}

#[cgroup_sock_addr(bind6)]
pub fn bind6(ctx: SockAddrContext) -> i32 {
    check_addr(&ctx, op::BIND, AF_INET6)
}

/// 1 lets the syscall proceed, 0 makes it fail with EPERM. The programs are attached to each
/// server's cgroup, so the current task is in a server unless its entry is already gone.
#[inline(always)]
fn check_addr(ctx: &SockAddrContext, operation: u32, family: u32) -> i32 {
    let Some(srv) = socket_server() else { return 0 };
    // SAFETY: the kernel passes a valid bpf_sock_addr; fields are read with the sizes it allows.
    let sa = unsafe { &*ctx.sock_addr };
    let ip = ip_of(ctx, family);
    let mut addr = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        addr[i * 4..i * 4 + 4].copy_from_slice(&ip[i].to_ne_bytes());
        i += 1;
    }
    let port = u16::from_be(sa.user_port as u16);
    let sock_type = sa.type_;
    let protocol = sa.protocol;
    // DNS goes to mcp-warden's resolver, which decides on the name; the event keeps port 53. A
    // query that cannot be routed (its socket's storage cannot be had: the socket's option memory
    // is full) is refused whatever the rules say: sent as made, it would reach a real resolver.
    let to_dns = port == 53 && srv.conf.dns_ports[0] != 0 && operation != op::BIND;
    let allowed = match to_dns {
        true => to_resolver(ctx, &srv, family, ip),
        // An unconnected UDP socket binds port 0 implicitly before sending: not a listener.
        false => {
            let (rule_family, rule_addr) = as_checked(family, &addr);
            (operation == op::BIND && port == 0 && sock_type == SOCK_DGRAM)
                || rule_allows(&srv, operation, rule_family, sock_type, port, &rule_addr)
        }
    };
    let enforced = !allowed && srv.conf.audit == 0;
    let event = NetEvent {
        hdr: header(kind::NET, &srv),
        op: operation,
        family,
        sock_type,
        protocol,
        verdict: if allowed { verdict::ALLOW } else { verdict::DENY },
        port,
        _pad: 0,
        addr,
        // A refusal here is the call's result; an allowed call's is known at its exit.
        ret: if enforced { -EPERM } else { NO_RESULT },
    };
    // The `full` level follows an allowed call to its exit (sys_exit) for its result.
    let tid = bpf_get_current_pid_tgid() as u32;
    if enforced || srv.conf.level != level::FULL || PENDING_NET.insert(&tid, &event, 0).is_err() {
        emit(&srv, event);
    }
    if enforced { 0 } else { 1 }
}

/// The family and address the rules are checked against: an IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`, which an IPv6 socket reaches over IPv4) as the IPv4 address it carries, as
/// the broker checks it.
#[inline(always)]
fn as_checked(family: u32, addr: &[u8; 16]) -> (u32, [u8; 16]) {
    let mapped = addr[..10].iter().all(|b| *b == 0) && addr[10] == 0xff && addr[11] == 0xff;
    if family != AF_INET6 || !mapped {
        return (family, *addr);
    }
    let mut v4 = [0u8; 16];
    v4[..4].copy_from_slice(&addr[12..]);
    (AF_INET, v4)
}

/// A DNS query (port 53, any address) is sent to mcp-warden's resolver on the loopback instead:
/// to 127.0.0.1, ::1 or ::ffff:127.0.0.1 as the destination was IPv4, IPv6 or IPv4-mapped, at the
/// port of the slot of the socket's `DNS_QUERIES` that keeps the destination. False when the
/// socket's storage cannot be had.
#[inline(always)]
fn to_resolver(ctx: &SockAddrContext, srv: &Srv, family: u32, ip: [u32; 4]) -> bool {
    // SAFETY: the kernel passes a valid bpf_sock_addr; connect and sendmsg programs may write its
    // user_ip4/user_ip6/user_port fields.
    let sa = unsafe { &mut *ctx.sock_addr };
    let dst = DnsDst { ip, port: sa.user_port, family };
    // SAFETY: the helper is given this program's socket; a null pointer is checked below.
    let queries = unsafe { DNS_QUERIES.get_or_insert_ptr_mut(ctx, None) };
    if queries.is_null() {
        return false;
    }
    // SAFETY: a non-null socket storage value, valid while the program runs.
    let queries = unsafe { &mut *queries };
    let slot = slot_for(queries, &dst);
    let Some(kept) = queries.dst.get_mut(slot) else { return false };
    *kept = dst;
    let Some(port) = srv.conf.dns_ports.get(slot) else { return false };
    if family == AF_INET {
        sa.user_ip4 = LOOPBACK4;
    } else if is_v4_mapped(&dst.ip) {
        set_ip6(sa, [0, 0, V4_MAPPED, LOOPBACK4]);
    } else {
        set_ip6(sa, LOOPBACK6);
    }
    sa.user_port = u32::from(port.to_be());
    true
}

/// Writes `user_ip6` a word at a time: the verifier takes only stores at a constant offset from
/// the context, not a copy.
#[inline(always)]
fn set_ip6(sa: &mut bpf_sock_addr, ip: [u32; 4]) {
    sa.user_ip6[0] = ip[0];
    sa.user_ip6[1] = ip[1];
    sa.user_ip6[2] = ip[2];
    sa.user_ip6[3] = ip[3];
}

const LOOPBACK4: u32 = u32::from_ne_bytes([127, 0, 0, 1]);
const LOOPBACK6: [u32; 4] = [0, 0, 0, u32::from_ne_bytes([0, 0, 0, 1])];
/// The third word of an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`).
const V4_MAPPED: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

#[inline(always)]
fn is_v4_mapped(ip: &[u32; 4]) -> bool {
    ip[0] == 0 && ip[1] == 0 && ip[2] == V4_MAPPED
}

/// The call's address, as `DnsDst::ip` holds it (each word read on its own, as the verifier wants).
#[inline(always)]
fn ip_of(ctx: &SockAddrContext, family: u32) -> [u32; 4] {
    // SAFETY: the kernel passes a valid bpf_sock_addr.
    let sa = unsafe { &*ctx.sock_addr };
    if family == AF_INET {
        return [sa.user_ip4, 0, 0, 0];
    }
    [sa.user_ip6[0], sa.user_ip6[1], sa.user_ip6[2], sa.user_ip6[3]]
}

/// The slot already keeping `dst`, else a free one, else the next in turn.
#[inline(always)]
fn slot_for(queries: &mut DnsQueries, dst: &DnsDst) -> usize {
    let mut free = DNS_SLOTS;
    let mut i = 0;
    while i < DNS_SLOTS {
        if let Some(kept) = queries.dst.get(i) {
            if kept == dst {
                return i;
            }
            if kept.family == 0 && free == DNS_SLOTS {
                free = i;
            }
        }
        i += 1;
    }
    if free < DNS_SLOTS {
        return free;
    }
    let turn = queries.next as usize % DNS_SLOTS;
    queries.next = queries.next.wrapping_add(1);
    turn
}

/// The slot whose resolver port is `port`.
#[inline(always)]
fn slot_of_port(srv: &Srv, port: u16) -> Option<usize> {
    let mut slot = 0;
    while slot < DNS_SLOTS {
        if srv.conf.dns_ports.get(slot) == Some(&port) {
            return Some(slot);
        }
        slot += 1;
    }
    None
}

#[cgroup_sock_addr(recvmsg4)]
pub fn recvmsg4(ctx: SockAddrContext) -> i32 {
    from_resolver(&ctx, AF_INET);
    1
}

#[cgroup_sock_addr(recvmsg6)]
pub fn recvmsg6(ctx: SockAddrContext) -> i32 {
    from_resolver(&ctx, AF_INET6);
    1
}

#[cgroup_sock_addr(getpeername4)]
pub fn getpeername4(ctx: SockAddrContext) -> i32 {
    from_resolver(&ctx, AF_INET);
    1
}

#[cgroup_sock_addr(getpeername6)]
pub fn getpeername6(ctx: SockAddrContext) -> i32 {
    from_resolver(&ctx, AF_INET6);
    1
}

/// An answer from mcp-warden's resolver (or the peer of a socket connected to it) shows the
/// address the query was sent to, as every resolver checks: the resolver's port names the slot,
/// and the loopback address it came from must be the one `to_resolver` chose for that slot.
#[inline(always)]
fn from_resolver(ctx: &SockAddrContext, family: u32) {
    let Some(srv) = server() else { return };
    // SAFETY: the kernel passes a valid bpf_sock_addr; recvmsg and getpeername programs may
    // write the address.
    let sa = unsafe { &mut *ctx.sock_addr };
    // A port of 0 is no slot's: all are 0 when the server's DNS is not routed here.
    let port = u16::from_be(sa.user_port as u16);
    if port == 0 {
        return;
    }
    let Some(slot) = slot_of_port(&srv, port) else { return };
    let from = ip_of(ctx, family);
    // SAFETY: the helper is given this program's socket; a null pointer is checked below.
    let queries = unsafe { DNS_QUERIES.get_ptr_mut(ctx) };
    if queries.is_null() {
        return;
    }
    // SAFETY: a non-null socket storage value, valid while the program runs.
    let Some(dst) = (unsafe { &*queries }).dst.get(slot).copied() else { return };
    let mapped = [0, 0, V4_MAPPED, dst.ip[0]];
    let shown = match (family, dst.family) {
        (AF_INET, AF_INET) if from[0] == LOOPBACK4 => [dst.ip[0], 0, 0, 0],
        (AF_INET6, AF_INET6) if !is_v4_mapped(&dst.ip) && from == LOOPBACK6 => dst.ip,
        (AF_INET6, AF_INET6) if is_v4_mapped(&dst.ip) && from == [0, 0, V4_MAPPED, LOOPBACK4] => dst.ip,
        // An IPv6 socket's send to an IPv4-mapped address runs the IPv4 program.
        (AF_INET6, AF_INET) if from == [0, 0, V4_MAPPED, LOOPBACK4] => mapped,
        _ => return,
    };
    if family == AF_INET {
        sa.user_ip4 = shown[0];
    } else {
        set_ip6(sa, shown);
    }
    sa.user_port = dst.port;
}

/// Every packet of the server's sockets, whichever context sends it (a TCP ACK from a softirq
/// too: the program runs for the sockets made in the server's cgroup):
/// - a packet to a loopback address leaves only through `lo`: a socket bound to another device
///   (`SO_BINDTODEVICE`, `IP_UNICAST_IF`) would put it, a rewritten DNS query included, on that
///   device's wire;
/// - one to the resolver's loopback ports carries the run's mark (`Server::dns_mark`): the
///   resolver's sockets take no other (a socket filter), and another process of the host cannot
///   set a mark without `CAP_NET_ADMIN`, so it cannot fill their queues.
#[cgroup_skb(egress)]
pub fn egress(ctx: SkBuffContext) -> i32 {
    let Some(to) = to_loopback(&ctx) else { return 1 };
    // SAFETY: the helper takes the program's context.
    let srv = server_of(unsafe { bpf_skb_cgroup_id(ctx.skb.skb) });
    // SAFETY: the kernel passes a valid __sk_buff; `ifindex` is its output device's.
    if unsafe { (*ctx.skb.skb).ifindex } != LOOPBACK_IFINDEX {
        return off_loopback(srv, to);
    }
    if let Some(srv) = srv {
        mark_to_resolver(&ctx, &srv, to);
    }
    1
}

/// A packet to a loopback address about to leave through another device: refused (the sending
/// call fails with EPERM; a TCP handshake never completes) and recorded as a refused send.
#[inline(always)]
fn off_loopback(srv: Option<Srv>, to: Loopback) -> i32 {
    let Some(srv) = srv else { return 0 };
    let enforced = srv.conf.audit == 0;
    emit(
        &srv,
        NetEvent {
            hdr: header(kind::NET, &srv),
            op: op::SEND,
            family: to.family,
            sock_type: if to.proto == IPPROTO_TCP { SOCK_STREAM } else { SOCK_DGRAM },
            protocol: u32::from(to.proto),
            verdict: verdict::DENY,
            port: to.port,
            _pad: 0,
            addr: to.addr,
            ret: if enforced { -EPERM } else { NO_RESULT },
        },
    );
    if enforced { 0 } else { 1 }
}

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// `lo`'s index in every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;

/// A packet to a loopback address: its family, address, protocol and, for TCP and UDP, its
/// destination port.
#[derive(Clone, Copy)]
struct Loopback {
    family: u32,
    addr: [u8; 16],
    proto: u8,
    port: u16,
}

#[inline(always)]
fn to_loopback(ctx: &SkBuffContext) -> Option<Loopback> {
    // The packet starts at its IP header.
    let first: u8 = ctx.load(0).ok()?;
    let mut addr = [0u8; 16];
    let (family, proto, l4) = match first >> 4 {
        4 => {
            addr[..4].copy_from_slice(&ctx.load::<[u8; 4]>(16).ok()?);
            if addr[0] != 127 {
                return None;
            }
            (AF_INET, ctx.load::<u8>(9).ok()?, usize::from(first & 0xf) * 4)
        }
        6 => {
            let to = [ctx.load(24).ok()?, ctx.load(28).ok()?, ctx.load(32).ok()?, ctx.load::<u32>(36).ok()?];
            if to != LOOPBACK6 {
                return None;
            }
            addr[15] = 1;
            (AF_INET6, ctx.load::<u8>(6).ok()?, 40)
        }
        _ => return None,
    };
    let port = match proto {
        IPPROTO_TCP | IPPROTO_UDP => u16::from_be(ctx.load::<u16>(l4 + 2).ok()?),
        _ => 0,
    };
    Some(Loopback { family, addr, proto, port })
}

#[inline(always)]
fn mark_to_resolver(ctx: &SkBuffContext, srv: &Srv, to: Loopback) {
    if to.port == 0 || (to.proto != IPPROTO_TCP && to.proto != IPPROTO_UDP) {
        return;
    }
    if srv.conf.dns_mark == 0 {
        return;
    }
    if slot_of_port(srv, to.port).is_some() {
        ctx.set_mark(srv.conf.dns_mark);
    }
}

#[inline(always)]
fn rule_allows(srv: &Srv, operation: u32, family: u32, sock_type: u32, port: u16, addr: &[u8; 16]) -> bool {
    let count = srv.conf.rule_count;
    let mut i = 0;
    while i < MAX_RULES {
        if i >= count {
            break;
        }
        let key = RuleKey { cgroup_id: srv.cgroup, index: i, _pad: 0 };
        // SAFETY: a map value read.
        if let Some(r) = unsafe { RULES.get(&key) }
            && r.ops & (1 << operation) != 0
            && r.family == family
            && (r.sock_type == 0 || r.sock_type == sock_type)
            && (r.port == 0 || r.port == port)
            && r.contains(addr)
        {
            return true;
        }
        i += 1;
    }
    false
}

#[cgroup_sock(sock_create)]
pub fn sock_create(ctx: SockContext) -> i32 {
    let Some(srv) = socket_server() else { return 0 };
    // SAFETY: the kernel passes a valid bpf_sock.
    let sk = unsafe { &*ctx.sock };
    if sk.type_ != SOCK_RAW || srv.conf.allow_raw == 1 {
        return 1;
    }
    emit(
        &srv,
        SocketEvent {
            hdr: header(kind::SOCKET, &srv),
            family: sk.family,
            sock_type: sk.type_,
            protocol: sk.protocol,
            verdict: verdict::DENY,
        },
    );
    if srv.conf.audit == 1 { 1 } else { 0 }
}

// ---- optional BPF LSM hooks -------------------------------------------------------------------
//
// Loaded only where the kernel allows BPF LSM programs (the launcher tries and reports the
// reason otherwise; on the development machines the load fails with EPERM). They add decisions
// that are not tied to one syscall, behind the seccomp and Landlock layers. No kernel-structure
// field is read, so they need no CO-RE relocations.

/// A BPF LSM program returns 0 to allow, or the previous hook's denial, or its own -errno.
#[inline(always)]
fn lsm_event(srv: &Srv, hook_id: u32, deny: bool) {
    emit(
        srv,
        LsmEvent {
            hdr: header(kind::LSM, srv),
            hook: hook_id,
            verdict: if deny { verdict::DENY } else { verdict::ALLOW },
        },
    );
}

#[lsm(hook = "ptrace_access_check")]
pub fn lsm_ptrace_access_check(_ctx: LsmContext) -> i32 {
    // The server never debugs or inspects another process (seccomp denies ptrace as well).
    let Some(srv) = server() else { return 0 };
    let audit = srv.conf.audit == 1;
    lsm_event(&srv, hook::PTRACE_ACCESS_CHECK, !audit);
    if audit { 0 } else { -(EPERM as i32) }
}

#[lsm(hook = "task_kill")]
pub fn lsm_task_kill(_ctx: LsmContext) -> i32 {
    if let Some(srv) = server() {
        lsm_event(&srv, hook::TASK_KILL, false);
    }
    0
}

#[lsm(hook = "socket_connect")]
pub fn lsm_socket_connect(_ctx: LsmContext) -> i32 {
    if let Some(srv) = server() {
        lsm_event(&srv, hook::SOCKET_CONNECT, false);
    }
    0
}

#[lsm(hook = "bprm_check_security")]
pub fn lsm_bprm_check_security(_ctx: LsmContext) -> i32 {
    if let Some(srv) = server() {
        lsm_event(&srv, hook::BPRM_CHECK_SECURITY, false);
    }
    0
}

#[lsm(hook = "file_open")]
pub fn lsm_file_open(_ctx: LsmContext) -> i32 {
    // Opens are events at the `full` level (sys_enter/sys_exit): count here, no event per open.
    if let Some(srv) = server() {
        bump(&srv, counter::LSM_FILE_OPENS);
    }
    0
}
