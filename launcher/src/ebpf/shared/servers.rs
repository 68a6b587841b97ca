//! The servers in the shared maps: registering one (its entry, a ring buffer slot, its socket
//! programs' link pins), removing one, and removing those whose launcher is gone once their tree
//! is.

use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use aya::maps::MapData;
use aya::programs::links::FdLink;
use mcp_warden_ebpf_common::{CallKey, MAX_RULES, OpenKey, RuleKey, Server, level};

use super::{CGROUP_PROGRAMS, LOCK_ROOT, Shared, pin_error};
use crate::ebpf::{MonitorError, io};

/// Free rings kept for later servers (4 MiB each at the default size): a launcher that finds one
/// of its size need not insert one, which waits for an RCU grace period.
const FREE_RINGS_KEPT: usize = 2;

/// A server's ring buffer: one left free by an earlier server, or a new one still to be put in
/// `RINGS` (`Shared::insert_ring`) before the server runs.
#[derive(Debug)]
pub enum Ring {
    Reused(MapData),
    New { slot: u32, map: MapData },
}

impl Shared {
    /// Registers a server (under the setup lock `acquire` took): claims a ring slot, reusing a
    /// free ring of `ring_bytes` when there is one, and writes its entry with that slot.
    pub fn register(&mut self, cgroup_id: u64, mut server: Server, ring_bytes: u32) -> Result<Ring, MonitorError> {
        let used = self.used_slots();
        let slots: Vec<u32> = self.rings.keys().flatten().collect();
        let free = slots.iter().copied().filter(|s| !used.contains(s));
        let reusable = free
            .filter_map(|slot| Some((slot, self.rings.get(&slot, 0).ok()?)))
            .find(|(_, map)| map.info().is_ok_and(|i| i.max_entries() == ring_bytes));
        let ring = match reusable {
            Some((slot, map)) => {
                server.slot = slot;
                Ring::Reused(map)
            }
            None => {
                let slot = (0..).find(|s| !slots.contains(s) && !used.contains(s)).unwrap_or(0);
                let params = aya_obj::Map::new_from_params(aya::maps::MapType::RingBuf as u32, 0, 0, ring_bytes, 0);
                let map = MapData::create(params, "mcpw_events", None)
                    .map_err(|source| MonitorError::Map { map: "EVENTS", source })?;
                server.slot = slot;
                Ring::New { slot, map }
            }
        };
        self.servers.insert(cgroup_id, server, 0).map_err(|source| MonitorError::Map { map: "SERVERS", source })?;
        Ok(ring)
    }

    /// Lets other launchers set up (after `register`).
    pub fn unlock(&mut self) {
        self.setup = None;
    }

    /// Puts a new ring in `RINGS`: waits for an RCU grace period (the launcher overlaps it with
    /// stage 2's work where it can).
    pub fn insert_ring(&mut self, slot: u32, map: &MapData) -> Result<(), MonitorError> {
        self.rings.insert(slot, map, 0).map_err(|source| MonitorError::Map { map: "RINGS", source })
    }

    fn used_slots(&self) -> Vec<u32> {
        self.servers.iter().flatten().map(|(_, s)| s.slot).collect()
    }

    /// Pins the server's cgroup program links, so that they hold when the launcher dies: they are
    /// removed with the server's entries, once its tree is gone. Records where its cgroup is, for
    /// the launcher that finds it orphaned.
    pub fn pin_server_links(
        &self,
        cgroup_id: u64,
        cgroup_dir: &Path,
        links: Vec<(&'static str, FdLink)>,
    ) -> Result<(), MonitorError> {
        let record = self.server_record(cgroup_id);
        std::fs::write(&record, cgroup_dir.as_os_str().as_encoded_bytes())
            .map_err(io(format!("write {}", record.display())))?;
        for (name, link) in links {
            link.pin(self.server_link(cgroup_id, name)).map_err(|e| pin_error(name, e))?;
        }
        Ok(())
    }

    fn server_link(&self, cgroup_id: u64, program: &str) -> PathBuf {
        self.dir.join("links").join(format!("srv-{cgroup_id}-{program}"))
    }

    fn server_record(&self, cgroup_id: u64) -> PathBuf {
        Path::new(LOCK_ROOT).join(format!("{}.srv-{cgroup_id}", self.version))
    }

    /// Kills what is left of an orphaned server's tree (its launcher was killed): its cgroup
    /// programs keep enforcing until then. `false` when the tree may still run.
    fn end_orphan(&self, cgroup_id: u64) -> bool {
        let Ok(dir) = std::fs::read(self.server_record(cgroup_id)) else { return true };
        let dir = PathBuf::from(std::ffi::OsString::from_vec(dir));
        match crate::layers::cgroup::kill_and_remove(&dir, true) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    "an orphaned server's cgroup {} is still there ({e}): its eBPF entries are kept",
                    dir.display()
                );
                false
            }
        }
    }

    /// Removes one server's entries and link pins from the shared maps; its ring stays for a later
    /// server unless enough are free already.
    pub(super) fn remove_server(&mut self, cgroup_id: u64) {
        for name in CGROUP_PROGRAMS {
            let _ = std::fs::remove_file(self.server_link(cgroup_id, name));
        }
        let _ = std::fs::remove_file(self.server_record(cgroup_id));
        // Without a server entry, this launcher's registration failed after writing its broker
        // entry and rules (they come first): those are this launcher's, the rules at most all.
        let server = self.servers.get(&cgroup_id, 0).ok();
        let _ = self.servers.remove(&cgroup_id);
        let _ = self.brokers.remove(&server.map_or(std::process::id(), |s| s.owner_pid));
        let _ = self.counters.remove(&cgroup_id);
        for index in 0..server.map_or(MAX_RULES, |s| s.rule_count) {
            let _ = self.rules.remove(&RuleKey { cgroup_id, index, _pad: 0 });
        }
        let Some(server) = server else { return };
        // Only the `full` level's programs write these two (shared by every server: a scan).
        if server.level == level::FULL {
            let calls: Vec<CallKey> = self.syscalls.keys().flatten().filter(|k| k.cgroup_id == cgroup_id).collect();
            for key in calls {
                let _ = self.syscalls.remove(&key);
            }
            let opens: Vec<OpenKey> = self.opens_seen.keys().flatten().filter(|k| k.cgroup_id == cgroup_id).collect();
            for key in opens {
                let _ = self.opens_seen.remove(&key);
            }
        }
        self.trim_free_rings(server.slot);
    }

    /// Deletes the ring in `slot` when more than `FREE_RINGS_KEPT` rings are free. A map-of-maps
    /// delete waits for an RCU grace period: a child process does it.
    fn trim_free_rings(&mut self, slot: u32) {
        use std::os::fd::AsFd;
        let used = self.used_slots();
        let free = self.rings.keys().flatten().filter(|s| !used.contains(s)).count();
        if free <= FREE_RINGS_KEPT {
            return;
        }
        if let Err(e) = crate::sys::bpf_delete_in_child(self.rings_fd.fd().as_fd(), &slot.to_ne_bytes()) {
            tracing::debug!("deleting the ring in the foreground: {e}");
            let _ = self.rings.remove(&slot);
        }
    }

    /// Removes the entries of servers whose launcher is gone (killed before it could).
    pub(super) fn remove_dead_servers(&mut self) {
        let dead: Vec<u64> = self
            .servers
            .iter()
            .flatten()
            .filter(|(_, s)| !owner_alive(s.owner_pid, s.owner_start))
            .map(|(cgroup_id, _)| cgroup_id)
            .collect();
        for cgroup_id in dead {
            tracing::debug!("removing the eBPF entries of cgroup {cgroup_id}: its launcher is gone");
            if self.end_orphan(cgroup_id) {
                self.remove_server(cgroup_id);
            }
        }
    }
}

/// Whether the launcher that wrote an entry still runs: same pid and same start time.
fn owner_alive(pid: u32, start: u64) -> bool {
    process_start(pid).is_some_and(|s| s == start)
}

/// A process's start time (clock ticks after boot), field 22 of `/proc/PID/stat`.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its closing one.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_start_time_is_read_past_a_command_name_with_spaces() {
        let me = std::process::id();
        let start = process_start(me).unwrap();
        assert!(start > 0);
        assert!(owner_alive(me, start));
        assert!(!owner_alive(me, start + 1));
    }
}
