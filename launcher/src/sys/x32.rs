//! The installed x32-syscall guard and its evaluation, kept here because it is hand-assembled BPF.

use std::mem::offset_of;

use seccompiler::sock_filter;

const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JMP_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JMP_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
/// Where the filter loads `seccomp_data.arch` and `seccomp_data.nr` from.
const ARCH: u32 = offset_of!(libc::seccomp_data, arch) as u32;
const NR: u32 = offset_of!(libc::seccomp_data, nr) as u32;

/// A filter that answers ENOSYS to every x32-ABI syscall (numbers with bit 30 set). Every rule
/// of the main filter is keyed by the x86-64 number, so without this a kernel built with
/// `CONFIG_X86_X32_ABI` would let `io_uring_setup | 0x40000000` through. seccompiler cannot
/// express a range check, hence five hand-written instructions.
pub fn guard() -> Vec<sock_filter> {
    let stmt = |code, k| sock_filter { code, jt: 0, jf: 0, k };
    vec![
        stmt(BPF_LD_W_ABS, ARCH),
        sock_filter { code: BPF_JMP_JEQ_K, jt: 1, jf: 0, k: AUDIT_ARCH_X86_64 },
        stmt(BPF_RET_K, SECCOMP_RET_ALLOW), // other arches: the main filter kills them
        stmt(BPF_LD_W_ABS, NR),
        sock_filter { code: BPF_JMP_JGE_K, jt: 0, jf: 1, k: X32_SYSCALL_BIT },
        stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn loads_the_kernel_abi_offsets() {
        // The seccomp_data layout is kernel ABI: nr at 0, arch at 4.
        assert_eq!((super::NR, super::ARCH), (0, 4));
        let loads: Vec<u32> = super::guard().iter().filter(|f| f.code == super::BPF_LD_W_ABS).map(|f| f.k).collect();
        assert_eq!(loads, [4, 0]);
    }
}
