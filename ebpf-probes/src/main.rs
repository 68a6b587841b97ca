//! mcp-warden's eBPF probes: observe the server's process tree (execs, forks, exits, opens,
//! per-process syscall counts, denied syscalls) and enforce its network allow-list.
//!
//! Every tracepoint program first checks that the current task is in the server's cgroup (its id
//! is a load-time constant, so other processes cost one helper call and a compare). The cgroup
//! socket programs are attached to that cgroup only. Each program is a thin wrapper over a `try_*`
//! function; events go to one ring buffer, and an event that does not fit is counted, never lost
//! silently.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
mod probes;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects any program with a reachable panic; this is never called.
    unsafe { core::hint::unreachable_unchecked() }
}
