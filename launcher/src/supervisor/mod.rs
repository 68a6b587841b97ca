//! The supervisor: prepares the sandbox, forks stage 2 while still single-threaded, learns from the
//! error pipe whether the server was executed, then forwards signals and exits with the server's
//! status. `run` is the whole sequence, one call per phase:
//!
//! 1. Block the forwarded signals and SIGCHLD, read from a signalfd (`wait.rs`).
//! 2. Prepare: all fallible work before the fork, into one `Prepared` (`prepare.rs`).
//! 3. Fork stage 2, which hardens itself and executes the server (`spawn.rs`).
//! 4. Start the services: monitor reader, MCP proxy, network broker (`services.rs`).
//! 5. Learn from the error pipe whether stage 2 executed the server (`spawn.rs`).
//! 6. Supervise the server until it exits: forward signals, stop timeout, client gone (`wait.rs`).
//! 7. Tear down, once, whatever happened after the fork (`teardown.rs`).

mod error;
mod guard;
mod listener;
mod listens;
mod prepare;
pub mod refusals;
mod services;
mod spawn;
mod stdio;
mod teardown;
mod tracer;
mod wait;

pub use error::SupervisorError;

use crate::plan::Plan;
use prepare::Prepared;
use services::ServiceInputs;
use spawn::Stage2Child;
use teardown::Held;
use wait::Signals;

/// Runs the plan's server and returns the exit status to leave with.
pub fn run(plan: &Plan) -> Result<i32, SupervisorError> {
    // 1. Signals blocked before anything: one that arrives while the sandbox is being prepared is
    //    forwarded once the server runs instead of killing the launcher midway; stage 2 inherits
    //    the blocked mask until just before exec.
    let signals = Signals::block()?;
    // 2. Before the fork, so that a failure refuses the run before anything starts.
    let Prepared { stage2, error_pipe, services, mut held } = prepare::prepare(plan, signals.forwarded)?;
    // 3. No thread exists before this call: stage 2 must be forked from a single-threaded process.
    let child = spawn::fork_stage2(plan, stage2, error_pipe)?;
    // 4.-6. From here a server may run: whatever they return, the teardown runs.
    let outcome = run_server(plan, &signals, child, services, &mut held);
    // 7. The one call of the teardown.
    teardown::run(plan, held, &outcome);
    outcome
}

/// Phases 4 to 6, the fallible steps after the fork; `run` tears down whatever they return.
fn run_server(
    plan: &Plan,
    signals: &Signals,
    child: Stage2Child,
    services: ServiceInputs,
    held: &mut Held,
) -> Result<i32, SupervisorError> {
    // 4. The threads start only now: stage 2 had to be forked from a single-threaded process.
    services::start(plan, child.pid, services, held)?;
    // 5. After 4: stage 2 waits for the broker's listener to be taken before it can exec.
    let server = child.wait_for_exec(held.services.listener_error.take())?;
    tracing::debug!(pid = server.as_raw(), "server started");
    // 6. The signals blocked in 1 (and queued since) are forwarded from here on.
    Ok(wait::wait_for_exit(server, signals, plan.stop_timeout()))
}
