//! What this boot's kernel answered to the BPF LSM hooks, remembered until it reboots. Trying
//! them parses the kernel's BTF (about 50 ms here) on every run, and a kernel that refused them
//! refuses them until it reboots (BPF LSM is chosen by the `lsm=` boot parameter). Root only: the
//! record is in /run/mcp-warden. `doctor` forgets it, so the next run tries again.

use std::io::Write;
use std::path::Path;

const RECORD: &str = "/run/mcp-warden/bpf-lsm-refused";

/// The refusal this boot already gave, if it is remembered.
pub fn known_refusal() -> Option<String> {
    let text = std::fs::read_to_string(RECORD).ok()?;
    let (boot, why) = text.split_once('\n')?;
    (boot == boot_id()?).then(|| why.trim().to_string())
}

/// Remembers `why` for this boot (best-effort: a run that cannot write it tries again next time).
pub fn remember_refusal(why: &str) {
    let Some(boot) = boot_id() else { return };
    let path = Path::new(RECORD);
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let written = path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{boot}\n{}", why.lines().next().unwrap_or(why))?;
        std::fs::rename(&tmp, path)
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        tracing::debug!("cannot remember the BPF LSM refusal in {RECORD}: {e}");
    }
}

/// Forgets a remembered refusal; returns it.
pub fn forget() -> Option<String> {
    let known = known_refusal();
    let _ = std::fs::remove_file(RECORD);
    known
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string())
}
