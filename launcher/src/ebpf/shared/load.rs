//! Loading the probes once per host: the host's constants (tracepoint field offsets, kernel
//! structure offsets from BTF), the verifier, and the pins under a directory that is renamed into
//! place when complete.

use std::path::Path;

use aya::programs::{Program, RawTracePoint, TracePoint};
use aya::{Ebpf, EbpfLoader};

use super::{CGROUP_PROGRAMS, FULL_LINKS, MAPS, PIN_ROOT, TREE_LINKS, pin_error, remove_dir};
use crate::ebpf::btf::KernelBtf;
use crate::ebpf::{MonitorError, io};

const BPFFS: &str = "/sys/fs/bpf";
const TRACEFS: &str = "/sys/kernel/tracing";

/// Loads every program and pins it with the maps under `dir` (built in a temporary directory and
/// renamed, so a half-built set is never used). Returns what the BPF LSM hooks answered.
pub(super) fn load_and_pin(probes: &[u8], dir: &Path) -> Result<Result<(), crate::ebpf::LsmError>, MonitorError> {
    // bpffs refuses names with a dot.
    let building = dir.with_file_name(format!(
        "{}-building-{}",
        dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    remove_dir(&building);
    remove_dir(dir);
    let mut ebpf = load(probes)?;
    for sub in ["maps", "progs", "links"] {
        std::fs::create_dir_all(building.join(sub)).map_err(io(format!("create {}", building.display())))?;
    }
    for name in MAPS {
        let map = ebpf.map(name).ok_or(MonitorError::MissingMap(name))?;
        map.pin(building.join("maps").join(name)).map_err(|e| pin_error(name, e))?;
    }
    for (name, _) in TREE_LINKS {
        let p: &mut TracePoint = crate::ebpf::program_named(&mut ebpf, name)?;
        p.load().map_err(|source| MonitorError::Program { action: "load", program: name, source })?;
        p.pin(building.join("progs").join(name)).map_err(|e| pin_error(name, e))?;
    }
    for (name, _) in FULL_LINKS {
        let p: &mut RawTracePoint = crate::ebpf::program_named(&mut ebpf, name)?;
        p.load().map_err(|source| MonitorError::Program { action: "load", program: name, source })?;
        p.pin(building.join("progs").join(name)).map_err(|e| pin_error(name, e))?;
    }
    for name in CGROUP_PROGRAMS {
        let p = ebpf.program_mut(name).ok_or(MonitorError::Program {
            action: "find",
            program: name,
            source: aya::programs::ProgramError::UnexpectedProgramType,
        })?;
        load_cgroup_program(p, name)?;
        p.pin(building.join("progs").join(name)).map_err(|e| pin_error(name, e))?;
    }
    let lsm = crate::ebpf::load_lsm_pinned(&mut ebpf, &building.join("progs"));
    std::fs::rename(&building, dir).map_err(io(format!("rename {} to {}", building.display(), dir.display())))?;
    Ok(lsm)
}

fn load_cgroup_program(p: &mut Program, name: &'static str) -> Result<(), MonitorError> {
    let result = match p {
        Program::CgroupSockAddr(p) => p.load(),
        Program::CgroupSock(p) => p.load(),
        Program::CgroupSkb(p) => p.load(),
        _ => Err(aya::programs::ProgramError::UnexpectedProgramType),
    };
    result.map_err(|source| MonitorError::Program { action: "load", program: name, source })
}

/// Loads the object with the host's constants: tracepoint field offsets and kernel structure
/// offsets (from BTF, parsed here once per host rather than at every start).
fn load(probes: &[u8]) -> Result<Ebpf, MonitorError> {
    ensure_tracefs()?;
    let btf = KernelBtf::from_sys_fs()
        .map_err(|e| MonitorError::Io { action: "read the kernel's BTF".into(), source: std::io::Error::other(e) })?;
    let member = |s: &str, m: &str| {
        btf.member_offset(s, m)
            .map_err(|e| MonitorError::Io { action: "read the kernel's BTF".into(), source: std::io::Error::other(e) })
    };
    let newtask_pid = tracepoint_field_offset("task", "task_newtask", "pid")?;
    let newtask_flags = tracepoint_field_offset("task", "task_newtask", "clone_flags")?;
    let exec_filename = tracepoint_field_offset("sched", "sched_process_exec", "filename")?;
    // Linux 6.16+; before, the leader's exit stands for the process's.
    let exit_group_dead = tracepoint_field_offset("sched", "sched_process_exit", "group_dead").unwrap_or(0);
    let exit_code = member("task_struct", "exit_code")?;
    let mm = member("task_struct", "mm")?;
    let arg_start = member("mm_struct", "arg_start")?;
    let arg_end = member("mm_struct", "arg_end")?;
    // The probes use fixed offsets, no CO-RE relocations: aya need not parse the kernel's BTF.
    Ok(EbpfLoader::new()
        .btf(None)
        .override_global("NEWTASK_PID", &newtask_pid, true)
        .override_global("NEWTASK_FLAGS", &newtask_flags, true)
        .override_global("EXEC_FILENAME", &exec_filename, true)
        .override_global("EXIT_GROUP_DEAD", &exit_group_dead, true)
        .override_global("TASK_EXIT_CODE", &exit_code, true)
        .override_global("TASK_MM", &mm, true)
        .override_global("MM_ARG_START", &arg_start, true)
        .override_global("MM_ARG_END", &arg_end, true)
        .load(probes)?)
}

/// bpffs is where pins live: mount it where the kernel documents it if nobody has.
pub(super) fn ensure_bpffs() -> Result<(), MonitorError> {
    let mounted = nix::sys::statfs::statfs(BPFFS).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC);
    if !mounted {
        nix::mount::mount(Some("bpf"), BPFFS, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>)
            .map_err(|e| MonitorError::Io { action: format!("mount bpffs on {BPFFS}"), source: e.into() })?;
    }
    std::fs::create_dir_all(PIN_ROOT).map_err(io(format!("create {PIN_ROOT}")))
}

/// Classic tracepoints are attached through tracefs: mount it where the kernel documents it if
/// nobody has.
fn ensure_tracefs() -> Result<(), MonitorError> {
    if Path::new(TRACEFS).join("events").exists() {
        return Ok(());
    }
    nix::mount::mount(Some("tracefs"), TRACEFS, Some("tracefs"), nix::mount::MsFlags::empty(), None::<&str>)
        .map_err(|e| MonitorError::Io { action: format!("mount tracefs on {TRACEFS}"), source: e.into() })
}

/// Offset of `field` in a tracepoint record, from its format file (it differs between kernels).
fn tracepoint_field_offset(category: &str, name: &str, field: &str) -> Result<u32, MonitorError> {
    let path = format!("{TRACEFS}/events/{category}/{name}/format");
    let text = std::fs::read_to_string(&path).map_err(io(format!("read {path}")))?;
    text.lines()
        .find(|l| l.contains(&format!(" {field};")))
        .and_then(|l| l.split("offset:").nth(1))
        .and_then(|s| s.split(';').next())
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| MonitorError::Io {
            action: format!("find {field} in {path}"),
            source: std::io::Error::other("field not in the tracepoint format"),
        })
}
