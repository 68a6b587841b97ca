//! Unit tests of stage 2: the step table, and the ORDER of the checklist, driven through the
//! recording double (nothing here hardens, forks or executes the test process).

use std::ffi::CStr;
use std::os::unix::net::UnixStream;

use seccompiler::sock_filter;

use super::recorder::{Op, Recorder};
use super::*;

const SERVER: &CStr = c"/usr/bin/server";
const CWD: &CStr = c"/srv";

fn dev_null() -> File {
    File::open("/dev/null").expect("open /dev/null")
}

/// A best-effort ruleset: created on any kernel (without Landlock it holds no fd); the double
/// only drops it.
fn ruleset() -> RulesetCreated {
    use ::landlock::{ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr};
    Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(ABI::V1))
        .and_then(|r| r.create())
        .expect("a best-effort Landlock ruleset")
}

/// A program of `n` "allow" instructions; its length tells the filters apart in the record.
fn filter(n: usize) -> BpfProgram {
    vec![sock_filter { code: 0x06, jt: 0, jf: 0, k: 0x7fff_0000 }; n]
}

/// A view with one writable, noexec grant.
fn view() -> ViewPlan {
    let paths = [(std::path::PathBuf::from("/srv/data"), crate::layers::landlock::FsAccess::WRITE)];
    ViewPlan::new(&paths.into_iter().collect())
}

/// The hidden root for the same grant (plus `/proc`).
fn hide() -> HidePlan {
    let paths = [(std::path::PathBuf::from("/srv/data"), crate::layers::landlock::FsAccess::WRITE)];
    let cwd = std::path::Path::new("/srv");
    HidePlan::new(&paths.into_iter().collect(), &Default::default(), cwd, "/tmp".into()).expect("a hidden root")
}

fn rlimits() -> Vec<(Resource, u64)> {
    vec![(Resource::RLIMIT_CORE, 0), (Resource::RLIMIT_NOFILE, 256)]
}

/// Every conditional step applies: an unprivileged PID namespace and filesystem view, the MCP
/// pipes, a cgroup, a user switch, Landlock, the broker and two filters.
fn everything() -> Stage2 {
    let (_supervisor_end, stage2_end) = UnixStream::pair().expect("socketpair");
    Stage2 {
        program: SERVER.into(),
        argv: vec![c"server".into()],
        env: vec![c"PATH=/usr/bin".into()],
        cwd: CWD.into(),
        switch_to: Some((1000, 1001)),
        own_ids: (4242, 4343),
        rlimits: rlimits(),
        cgroup_procs: vec![dev_null()],
        cgroup_v2: None,
        namespaces: Namespaces { user: true, pid: true, mount: true, ipc: true },
        view: view(),
        hide: Some((hide(), Level::Required)),
        landlock: Some((ruleset(), Level::Required)),
        seccomp: vec![Filter::Plain(filter(1)), Filter::Plain(filter(2)), Filter::Listener(filter(3))],
        stdio: [Some(dev_null().into()), Some(dev_null().into()), None],
        listener_channel: Some(stage2_end),
        forwarded: SigSet::empty(),
        supervisor: dev_null().into(),
        error_pipe: dev_null().into(),
    }
}

/// No conditional step applies: no namespace, no MCP pipes, no cgroup, no user switch, no
/// Landlock, no broker, no filter.
fn bare() -> Stage2 {
    Stage2 {
        switch_to: None,
        cgroup_procs: Vec::new(),
        namespaces: Namespaces::default(),
        landlock: None,
        seccomp: Vec::new(),
        stdio: [None, None, None],
        listener_channel: None,
        ..everything()
    }
}

/// The calls of [`everything`], in order.
fn full_sequence() -> Vec<Op> {
    vec![
        Op::MapUserNamespace { uid: 4242, gid: 4343 },
        Op::RedirectStdio,
        Op::MarkInheritedFdsCloexec,
        Op::ResetSignalDispositions,
        Op::JoinCgroup,
        Op::HideOutsideGrants { binds: 2 },
        Op::SetRlimits(rlimits()),
        Op::Setsid,
        Op::Chdir(CWD.into()),
        Op::CanDropBoundingSet,
        Op::DropBoundingSet,
        Op::SwitchIdentity { uid: 1000, gid: 1001 },
        Op::ClearCaps,
        Op::SetParentDeathSignal,
        Op::ProcessExited,
        Op::SetNoNewPrivs,
        Op::RestrictLandlock(Level::Required),
        Op::CloseInheritedFds { kept: 3 },
        Op::InstallSeccomp { instructions: 1 },
        Op::InstallSeccomp { instructions: 2 },
        Op::InstallListenerFilter,
        Op::SendListener,
        Op::AwaitAck,
        Op::Fork,
        Op::SetParentDeathSignal,
        Op::UnblockSignals,
        Op::Exec(SERVER.into()),
    ]
}

/// Runs the checklist of `everything()` against `k`.
fn run_everything(k: &mut Recorder) -> Result<Outcome<()>, StepError> {
    harden_and_exec(k, &mut everything())
}

/// Where the first call of `op`'s kind was made.
fn pos(k: &Recorder, op: Op) -> usize {
    k.position(&op).unwrap_or_else(|| panic!("{op:?} was never called: {:?}", k.ops))
}

#[test]
fn steps_are_numbered_by_declaration_order_and_round_trip() {
    assert_eq!(Step::ALL.first(), Some(&Step::MapUserNamespace));
    assert_eq!(Step::ALL.last(), Some(&Step::Exec));
    for (i, step) in Step::ALL.iter().enumerate() {
        assert_eq!(step.number() as usize, i + 1, "{step:?} is not numbered by its position");
        assert_eq!(Step::from_u32(step.number()), Some(*step));
    }
    assert_eq!(Step::from_u32(0), None);
    assert_eq!(Step::from_u32(Step::ALL.len() as u32 + 1), None);
    // The design's constraints, visible in the numbering itself.
    let n = Step::number;
    assert!(n(Step::SetRlimits) < n(Step::SwitchIdentity) && n(Step::DropBoundingCaps) < n(Step::SwitchIdentity));
    assert!(n(Step::SwitchIdentity) < n(Step::ArmParentDeathSignal));
    assert!(n(Step::SetNoNewPrivs) < n(Step::RestrictLandlock) && n(Step::RestrictLandlock) < n(Step::InstallSeccomp));
    assert_eq!(n(Step::HandOverListener) + 1, n(Step::InstallSeccomp), "the handshake is part of installing");
    assert!(n(Step::MountView) < n(Step::DropBoundingCaps) && n(Step::MountView) < n(Step::RestrictLandlock));
    assert_eq!(n(Step::HideOutsideGrants) + 1, n(Step::MountView), "the view is the hidden root's fallback");
    assert_eq!(n(Step::UnblockSignals) + 1, n(Step::Exec));
}

#[test]
fn every_step_has_its_own_name_and_message() {
    let names: std::collections::BTreeSet<_> = Step::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(names.len(), Step::ALL.len(), "two steps share a name: {names:?}");
    for step in Step::ALL {
        assert_ne!(step.describe(), "complete a hardening step", "{step:?} has no message");
    }
    assert_eq!(Step::Exec.name(), "exec_server");
    assert_eq!(Step::HandOverListener.name(), "hand_over_listener");
}

#[test]
fn the_module_doc_lists_the_checklist() {
    // "//! 12. `restrict_landlock`: ..." -> "12. `restrict_landlock`"
    let listed: Vec<String> = include_str!("mod.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//! "))
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| l.split(':').next().unwrap_or(l).to_string())
        .collect();
    let steps: Vec<String> = Step::ALL.iter().map(|s| format!("{}. `{}`", s.number(), s.name())).collect();
    assert_eq!(listed, steps, "the `//!` checklist of stage2/mod.rs is stale");
    assert_eq!(Step::checklist().lines().count(), Step::ALL.len());
    assert!(Step::checklist().starts_with("1. map_user_namespace: map the user namespace's uid and gid\n"));
}

#[test]
fn step_errors_round_trip_and_map_exit_codes() {
    for (step, errno, code) in [
        (Step::Exec, libc::ENOENT, 127),
        (Step::Exec, libc::EACCES, 126),
        (Step::RestrictLandlock, libc::EPERM, 125),
        (Step::LandlockNotEnforced, 0, 125),
    ] {
        let e = StepError { step, errno };
        assert_eq!(StepError::from_bytes(&e.to_bytes()), Some(e));
        assert_eq!(e.exit_code(), code);
    }
    for step in Step::ALL {
        let e = StepError { step: *step, errno: libc::EXDEV };
        assert_eq!(StepError::from_bytes(&e.to_bytes()), Some(e));
    }
    assert_eq!(StepError::from_bytes(&[0; 8]), None);
    assert_eq!(StepError::from_bytes(&[99, 0, 0, 0, 0, 0, 0, 0]), None);
}

#[test]
fn every_step_runs_in_checklist_order() {
    let mut k = Recorder::default();
    assert_eq!(run_everything(&mut k), Ok(Outcome::Executed(())));
    assert_eq!(k.ops, full_sequence());
}

#[test]
fn rlimits_and_the_bounding_set_drop_come_before_the_identity_switch() {
    let mut k = Recorder::default();
    run_everything(&mut k).expect("no step fails");
    let switch = pos(&k, Op::SwitchIdentity { uid: 0, gid: 0 });
    assert!(pos(&k, Op::SetRlimits(Vec::new())) < switch);
    assert!(pos(&k, Op::DropBoundingSet) < switch);
    assert!(pos(&k, Op::ClearCaps) > switch);
}

#[test]
fn the_parent_death_signal_is_armed_after_the_identity_switch_then_the_supervisor_checked() {
    let mut k = Recorder::default();
    run_everything(&mut k).expect("no step fails");
    let armed = pos(&k, Op::SetParentDeathSignal);
    assert!(armed > pos(&k, Op::SwitchIdentity { uid: 0, gid: 0 }));
    assert_eq!(k.ops[armed + 1], Op::ProcessExited);
}

#[test]
fn no_new_privs_comes_before_landlock_which_comes_before_seccomp() {
    let mut k = Recorder::default();
    run_everything(&mut k).expect("no step fails");
    let landlock = pos(&k, Op::RestrictLandlock(Level::Off));
    assert!(pos(&k, Op::SetNoNewPrivs) < landlock);
    assert!(landlock < pos(&k, Op::InstallListenerFilter));
    assert!(landlock < pos(&k, Op::InstallSeccomp { instructions: 0 }));
}

#[test]
fn the_listener_is_handed_over_at_its_place_in_the_filter_order() {
    let mut k = Recorder::default();
    run_everything(&mut k).expect("no step fails");
    let listener = pos(&k, Op::InstallListenerFilter);
    assert_eq!(k.ops[listener - 1], Op::InstallSeccomp { instructions: 2 }, "after the plain filters before it");
    assert_eq!(k.ops[listener..listener + 3], [Op::InstallListenerFilter, Op::SendListener, Op::AwaitAck]);
    let mut first = everything();
    first.seccomp.rotate_right(1);
    let mut k = Recorder::default();
    harden_and_exec(&mut k, &mut first).expect("no step fails");
    assert!(
        pos(&k, Op::AwaitAck) < pos(&k, Op::InstallSeccomp { instructions: 0 }),
        "a listener placed first goes first"
    );
}

#[test]
fn signals_are_unblocked_just_before_exec() {
    for mut s in [everything(), bare()] {
        let mut k = Recorder::default();
        harden_and_exec(&mut k, &mut s).expect("no step fails");
        assert_eq!(k.ops[k.ops.len() - 2..], [Op::UnblockSignals, Op::Exec(SERVER.into())]);
    }
}

#[test]
fn conditional_steps_are_skipped_when_they_do_not_apply() {
    let mut k = Recorder { may_drop_bounding_set: false, ..Recorder::default() };
    assert_eq!(harden_and_exec(&mut k, &mut bare()), Ok(Outcome::Executed(())));
    assert_eq!(
        k.ops,
        [
            Op::MarkInheritedFdsCloexec,
            Op::ResetSignalDispositions,
            Op::SetRlimits(rlimits()),
            Op::Setsid,
            Op::Chdir(CWD.into()),
            Op::CanDropBoundingSet,
            Op::ClearCaps,
            Op::SetParentDeathSignal,
            Op::ProcessExited,
            Op::SetNoNewPrivs,
            Op::CloseInheritedFds { kept: 2 },
            Op::UnblockSignals,
            Op::Exec(SERVER.into()),
        ]
    );
}

#[test]
fn a_plain_pid_namespace_forks_without_mapping_ids() {
    let mut k = Recorder::default();
    let mut s = Stage2 { namespaces: Namespaces { user: false, pid: true, mount: false, ipc: true }, ..everything() };
    harden_and_exec(&mut k, &mut s).expect("no step fails");
    assert_eq!(k.position(&Op::MapUserNamespace { uid: 0, gid: 0 }), None);
    assert!(k.position(&Op::Fork).is_some());
    assert_eq!(k.position(&Op::MountView { binds: 0 }), None);
    assert_eq!(k.position(&Op::HideOutsideGrants { binds: 0 }), None);
}

#[test]
fn the_hidden_root_is_mounted_while_privileged_and_before_landlock_and_the_view_is_not() {
    let mut k = Recorder::default();
    run_everything(&mut k).expect("no step fails");
    let view = pos(&k, Op::HideOutsideGrants { binds: 0 });
    assert_eq!(k.position(&Op::MountView { binds: 0 }), None, "the hidden root replaces the view");
    assert!(pos(&k, Op::MapUserNamespace { uid: 0, gid: 0 }) < view, "ids mapped first: until then no capability");
    assert!(view < pos(&k, Op::Chdir(CWD.into())), "chdir resolves in the view");
    assert!(view < pos(&k, Op::DropBoundingSet) && view < pos(&k, Op::SwitchIdentity { uid: 0, gid: 0 }));
    assert!(view < pos(&k, Op::ClearCaps), "mounting needs CAP_SYS_ADMIN");
    assert!(view < pos(&k, Op::RestrictLandlock(Level::Off)), "Landlock forbids mounting");
    assert!(view < pos(&k, Op::SetRlimits(Vec::new())), "a low RLIMIT_NOFILE must not stop the clones");
}

#[test]
fn without_a_hidden_root_the_view_is_mounted_in_its_place() {
    let mut k = Recorder::default();
    harden_and_exec(&mut k, &mut Stage2 { hide: None, ..everything() }).expect("no step fails");
    let mut expected = full_sequence();
    expected[5] = Op::MountView { binds: 1 };
    assert_eq!(k.ops, expected);
}

#[test]
fn a_best_effort_hidden_root_that_failed_undone_is_a_warning_and_the_view_follows() {
    let mut k = Recorder::failing(Op::HideOutsideGrants { binds: 0 }, 0, Errno::EXDEV);
    let mut s = Stage2 { hide: Some((hide(), Level::BestEffort)), ..everything() };
    assert_eq!(harden_and_exec(&mut k, &mut s), Ok(Outcome::Executed(())));
    let warning = StepError { step: Step::HideOutsideGrants, errno: libc::EXDEV };
    let at = pos(&k, Op::HideOutsideGrants { binds: 0 });
    assert_eq!(k.ops[at + 1..at + 3], [Op::ReportWarning(warning), Op::MountView { binds: 1 }]);
}

#[test]
fn a_hidden_root_that_failed_after_pivot_root_stops_even_when_best_effort() {
    let mut k =
        Recorder { hide_broken: true, ..Recorder::failing(Op::HideOutsideGrants { binds: 0 }, 0, Errno::EXDEV) };
    let mut s = Stage2 { hide: Some((hide(), Level::BestEffort)), ..everything() };
    assert_eq!(harden_and_exec(&mut k, &mut s), Err(StepError { step: Step::HideOutsideGrants, errno: libc::EXDEV }));
    assert!(k.ops.last().is_some_and(|o| o.is(&Op::HideOutsideGrants { binds: 0 })));
}

#[test]
fn a_failing_view_stops_the_sequence() {
    let mut k = Recorder::failing(Op::MountView { binds: 0 }, 0, Errno::EXDEV);
    let mut s = Stage2 { hide: None, ..everything() };
    assert_eq!(harden_and_exec(&mut k, &mut s), Err(StepError { step: Step::MountView, errno: libc::EXDEV }));
    assert_eq!(k.ops.last(), Some(&Op::MountView { binds: 1 }));
}

#[test]
fn a_partly_enforced_required_ruleset_stops_before_any_filter() {
    let mut k = Recorder { landlock_satisfied: false, ..Recorder::default() };
    assert_eq!(run_everything(&mut k), Err(StepError { step: Step::LandlockNotEnforced, errno: 0 }));
    assert_eq!(k.ops.last(), Some(&Op::RestrictLandlock(Level::Required)));
}

#[test]
fn a_dead_supervisor_ends_stage2_quietly_before_no_new_privs() {
    let mut k = Recorder { supervisor_exited: true, ..Recorder::default() };
    assert_eq!(run_everything(&mut k), Ok(Outcome::Exit(125)));
    assert_eq!(k.ops.last(), Some(&Op::ProcessExited));
}

#[test]
fn the_reaper_exits_with_the_server_status_and_never_execs() {
    let mut k = Recorder { forked: Forked::Parent(77), server_status: 3, ..Recorder::default() };
    assert_eq!(run_everything(&mut k), Ok(Outcome::Exit(3)));
    assert_eq!(k.ops[k.ops.len() - 2..], [Op::Fork, Op::Reap { server: 77 }]);
}

/// One test per call that can fail: the sequence stops at that call, everything before it ran
/// in order, and the step reports the double's errno unchanged (EXDEV: no step's call would
/// produce it, so it cannot come from anywhere else).
macro_rules! a_failing_call_stops_the_sequence {
    ($($name:ident: $op:expr, $nth:expr => $step:expr;)*) => {$(
        #[test]
        fn $name() {
            let failing: Op = $op;
            let mut k = Recorder::failing(failing.clone(), $nth, Errno::EXDEV);
            assert_eq!(run_everything(&mut k), Err(StepError { step: $step, errno: libc::EXDEV }));
            let full = full_sequence();
            assert_eq!(k.ops[..], full[..k.ops.len()], "the calls before the failure");
            assert!(k.ops.last().is_some_and(|last| last.is(&failing)), "stopped after {:?}", k.ops.last());
        }
    )*};
}

a_failing_call_stops_the_sequence! {
    failing_map_user_namespace: Op::MapUserNamespace { uid: 0, gid: 0 }, 0 => Step::MapUserNamespace;
    failing_redirect_stdio: Op::RedirectStdio, 0 => Step::Sanitize;
    failing_mark_cloexec: Op::MarkInheritedFdsCloexec, 0 => Step::Sanitize;
    failing_reset_signal_dispositions: Op::ResetSignalDispositions, 0 => Step::Sanitize;
    failing_join_cgroup: Op::JoinCgroup, 0 => Step::JoinCgroups;
    failing_set_rlimits: Op::SetRlimits(Vec::new()), 0 => Step::SetRlimits;
    failing_required_hidden_root: Op::HideOutsideGrants { binds: 0 }, 0 => Step::HideOutsideGrants;
    failing_setsid: Op::Setsid, 0 => Step::Setsid;
    failing_chdir: Op::Chdir(CWD.into()), 0 => Step::Chdir;
    failing_drop_bounding_set: Op::DropBoundingSet, 0 => Step::DropBoundingCaps;
    failing_switch_identity: Op::SwitchIdentity { uid: 0, gid: 0 }, 0 => Step::SwitchIdentity;
    failing_clear_caps: Op::ClearCaps, 0 => Step::ClearCaps;
    failing_set_parent_death_signal: Op::SetParentDeathSignal, 0 => Step::ArmParentDeathSignal;
    failing_supervisor_check: Op::ProcessExited, 0 => Step::ArmParentDeathSignal;
    failing_set_no_new_privs: Op::SetNoNewPrivs, 0 => Step::SetNoNewPrivs;
    failing_restrict_landlock: Op::RestrictLandlock(Level::Required), 0 => Step::RestrictLandlock;
    failing_close_inherited_fds: Op::CloseInheritedFds { kept: 0 }, 0 => Step::CloseInheritedFds;
    failing_install_listener_filter: Op::InstallListenerFilter, 0 => Step::HandOverListener;
    failing_send_listener: Op::SendListener, 0 => Step::HandOverListener;
    failing_await_ack: Op::AwaitAck, 0 => Step::HandOverListener;
    failing_first_seccomp_filter: Op::InstallSeccomp { instructions: 0 }, 0 => Step::InstallSeccomp;
    failing_second_seccomp_filter: Op::InstallSeccomp { instructions: 0 }, 1 => Step::InstallSeccomp;
    failing_fork: Op::Fork, 0 => Step::ForkServer;
    failing_rearm_in_the_forked_server: Op::SetParentDeathSignal, 1 => Step::ArmParentDeathSignal;
    failing_unblock_signals: Op::UnblockSignals, 0 => Step::UnblockSignals;
    failing_exec: Op::Exec(SERVER.into()), 0 => Step::Exec;
}
