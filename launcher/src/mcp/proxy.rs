//! The relay: one thread serving both directions as an event loop, its state, and how a line
//! becomes messages and audit records. What is done to each message is in [`super::from_client`]
//! and [`super::from_server`].

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Write};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use super::McpConfig;
use super::json::IdKey;
use super::pins::PinStore;
use super::policy::RateLimiter;
use super::tools::Catalog;
use crate::audit::record::{Mcp, McpMalformed, McpMessage, Side};
use crate::audit::{AuditLine, AuditLog, AuditRecord};

/// The longest line parsed. A longer one (or one that never ends) cannot be policed, so it is
/// dropped and reported: memory stays bounded and nothing passes unchecked.
const MAX_LINE: usize = 64 << 20;

/// Events [`State::tell`] says on stderr per session.
const TOLD_MAX: u64 = 32;

/// How long a call waits for the tool list the layer asks the server for itself.
const OWN_LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// A client request on its way, for the response that answers it.
pub(super) struct Pending {
    pub method: String,
    pub tool: Option<String>,
    pub started: std::time::Instant,
}

pub(super) struct State {
    pub cfg: McpConfig,
    client_out: Outlet,
    server_in: Outlet,
    /// Client requests by id.
    pub pending: Mutex<BTreeMap<IdKey, Pending>>,
    /// Server requests by id, with their method and when they went to the client, for the
    /// client's replies.
    pub server_requests: Mutex<HashMap<IdKey, (String, std::time::Instant)>>,
    pub catalog: Mutex<Catalog>,
    pub limiter: Mutex<RateLimiter>,
    pub pins: Mutex<Option<PinStore>>,
    audit: Mutex<Option<AuditLog>>,
    /// Records of the line being handled, written after it went on.
    deferred: Mutex<Vec<AuditLine>>,
    pub in_flight: Arc<super::InFlight>,
    /// The layer's own `tools/list` requests waiting for their response, by id.
    pub own_lists: Mutex<HashMap<IdKey, std::sync::mpsc::Sender<Value>>>,
    pub next_own: AtomicU64,
    /// The `requestState` of each `input_required` tool result not retried yet, with its tool:
    /// the retry that echoes it is the same call, not a new one for the rate limits.
    pub retries: Mutex<std::collections::HashSet<(String, String)>>,
    /// Unparseable lines told on stderr so far.
    malformed_told: AtomicU64,
    /// Other events told on stderr so far ([`State::tell`]).
    told: AtomicU64,
    /// How long a call waits for the layer's own `tools/list` (zero: it is not asked, the call is
    /// refused: the fuzz target has no server to answer).
    pub own_list_timeout: Duration,
    /// The server's output and its partial line: read by the relay's loop, and by a call waiting
    /// for the layer's own `tools/list` ([`State::await_own`]). `None` once closed.
    server_out: Mutex<Option<Input>>,
}

/// Milliseconds since `started`, to the µs (a response's `duration_ms`).
pub(super) fn millis_since(started: std::time::Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    fn new(
        cfg: McpConfig,
        audit: AuditLog,
        client_out: Outlet,
        server_in: Outlet,
        in_flight: Arc<super::InFlight>,
    ) -> std::io::Result<State> {
        let limiter = RateLimiter::new(&cfg.rates).map_err(std::io::Error::other)?;
        let pins = cfg.pins.clone().map(PinStore::open);
        let mut audit = audit;
        if let Some(posture) = &cfg.posture {
            audit.write(&AuditLine::now(AuditRecord::Posture(posture.clone())));
        }
        Ok(State {
            cfg,
            client_out,
            server_in,
            pending: Mutex::default(),
            server_requests: Mutex::default(),
            catalog: Mutex::default(),
            limiter: Mutex::new(limiter),
            pins: Mutex::new(pins),
            audit: Mutex::new(Some(audit)),
            deferred: Mutex::default(),
            in_flight,
            own_lists: Mutex::default(),
            next_own: AtomicU64::new(1),
            malformed_told: AtomicU64::new(0),
            told: AtomicU64::new(0),
            retries: Mutex::default(),
            own_list_timeout: OWN_LIST_TIMEOUT,
            server_out: Mutex::default(),
        })
    }

    /// Reads what the server wrote and handles its lines: `Ok(false)` once its output is closed,
    /// an error once the client's output is gone.
    fn pump_server(&self, chunk: &mut [u8]) -> std::io::Result<bool> {
        let mut guard = lock(&self.server_out);
        let Some(server) = guard.as_mut() else { return Ok(false) };
        match read(&mut server.file, chunk) {
            Some(n) if n > 0 => {
                let handle = |l: &[u8]| self.handle_server_line(l);
                server.lines.feed(&chunk[..n], handle, |n| self.overlong(Side::Server, n))?;
                // an error answer to a server request may be queued for the server too
                let _ = self.server_in.flush();
                self.client_out.flush()?;
                self.write_audit();
                Ok(true)
            }
            _ => {
                server.lines.finish(|l| self.handle_server_line(l), |n| self.overlong(Side::Server, n));
                *guard = None;
                let _ = self.flush();
                Ok(false)
            }
        }
    }

    /// Waits for the answer to one of the layer's own requests, writing what is queued and
    /// handling what the server writes meanwhile (the relay's one thread is the caller: nothing
    /// else reads the server).
    pub fn await_own(&self, answer: &std::sync::mpsc::Receiver<Value>) -> Result<Value, String> {
        let deadline = std::time::Instant::now() + self.own_list_timeout;
        let mut chunk = vec![0u8; READ_CHUNK];
        let Some(server_poll) = lock(&self.server_out).as_ref().and_then(|s| s.file.try_clone().ok()) else {
            return Err("the server's output is closed".into());
        };
        loop {
            if let Ok(v) = answer.try_recv() {
                return Ok(v);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err("the server did not answer".into());
            }
            let ready = wait(self, None, &server_poll, self.wants(false), false, Some(left));
            if ready.to_server || ready.to_client {
                self.flush().map_err(|e| format!("writing: {e}"))?;
            }
            if ready.server && !self.pump_server(&mut chunk).unwrap_or(false) {
                return Err("the server closed its output".into());
            }
        }
    }

    /// What the relay waits for: the client's input (while `client_open`) while both queues are
    /// short; the server's while what is queued for the client is short and what is queued for
    /// the server under [`QUEUE_CAP`]; room wherever something is queued.
    fn wants(&self, client_open: bool) -> Ready {
        let (to_client, to_server) = (self.client_out.pending(), self.server_in.pending());
        Ready {
            client: client_open && to_server < QUEUE_HIGH && to_client < QUEUE_HIGH,
            server: to_client < QUEUE_HIGH && to_server < QUEUE_CAP,
            to_server: self.server_in.pending() > 0,
            to_client: self.client_out.pending() > 0,
        }
    }

    /// Reads what the client wrote and handles its lines: `false` once it is gone (or the
    /// server's input is); the server then sees EOF on its stdin once what is queued for it is
    /// written.
    fn pump_client(&self, client: &mut Input, chunk: &mut [u8]) -> bool {
        let handle = |l: &[u8]| self.handle_client_line(l);
        let handled = read(&mut client.file, chunk).filter(|n| *n > 0).map(|n| {
            client.lines.feed(&chunk[..n], handle, |n| self.overlong(Side::Client, n)).and_then(|()| self.flush())
        });
        if matches!(handled, Some(Ok(()))) {
            return true;
        }
        client.lines.finish(|l| self.handle_client_line(l), |n| self.overlong(Side::Client, n));
        let _ = self.flush();
        self.server_in.close_when_written();
        false
    }

    /// Ends the client request `key` (answered, or cancelled): its call's guard ends, and what the
    /// call tried against its tool's annotations is kept for the tool.
    pub fn end_call(&self, key: &IdKey, p: &Pending) -> super::Ended {
        let ended = self.in_flight.end(key);
        if let (true, Some(tool)) = (ended.observed.any(), &p.tool) {
            lock(&self.catalog).observe(tool, ended.observed);
        }
        ended
    }

    /// Tells one event on stderr, for the first [`TOLD_MAX`] of a session; the rest are in the
    /// audit log only. Whoever reads the launcher's stderr cannot be made to stall the relay by a
    /// peer that provokes a line per message.
    pub fn tell(&self, line: std::fmt::Arguments<'_>) {
        let told = self.told.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match told.cmp(&TOLD_MAX) {
            std::cmp::Ordering::Less => eprintln!("mcp-warden: {line}"),
            std::cmp::Ordering::Equal => {
                eprintln!("mcp-warden: mcp: further refusals and drops are in the audit log only");
            }
            std::cmp::Ordering::Greater => {}
        }
    }

    /// Records a message, timestamped now; written by [`State::write_audit`] once the line it
    /// belongs to has gone on, so that the log's write is not on the message's way.
    pub fn audit(&self, from: Side, message: McpMessage) {
        lock(&self.deferred).push(AuditLine::now(AuditRecord::Mcp(Mcp { from, message })));
    }

    /// Writes the records of the line just handled, and flushes them.
    fn write_audit(&self) {
        let lines = std::mem::take(&mut *lock(&self.deferred));
        if lines.is_empty() {
            return;
        }
        if let Some(log) = lock(&self.audit).as_mut() {
            for line in &lines {
                log.write(line);
            }
            log.flush();
        }
    }

    /// Queues a line for the client (written at the next [`State::flush`]).
    pub fn to_client(&self, line: &[u8]) -> std::io::Result<()> {
        self.client_out.queue(line);
        Ok(())
    }

    /// Queues a line for the server (written at the next [`State::flush`]).
    pub fn to_server(&self, line: &[u8]) -> std::io::Result<()> {
        self.server_in.queue(line);
        Ok(())
    }

    /// Writes what the lines handled so far send on (one write per destination), then their
    /// audit records. A relay calls it once it has handled every complete line of what it read:
    /// a burst of messages costs one write, not one per message.
    pub fn flush(&self) -> std::io::Result<()> {
        let result = self.server_in.flush().and(self.client_out.flush());
        self.write_audit();
        result
    }

    /// A line that is not JSON the layer can parse (invalid UTF-8, nesting deeper than 128
    /// levels...): dropped, counted, told on stderr for the first few.
    pub fn malformed(&self, from: Side, bytes: usize, e: &serde_json::Error) {
        const TOLD: u64 = 8;
        let told = self.malformed_told.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if told < TOLD {
            let who = if from == Side::Client { "client" } else { "server" };
            eprintln!(
                "mcp-warden: mcp: dropped a {who} line it cannot parse ({e}){}",
                if told + 1 == TOLD { "; further ones are only counted in the audit log" } else { "" }
            );
        }
        self.audit(from, McpMessage::Malformed(McpMalformed { bytes }));
    }

    /// A line too long to police: dropped, reported once per line.
    fn overlong(&self, from: Side, bytes: usize) {
        let who = if from == Side::Client { "client" } else { "server" };
        eprintln!(
            "mcp-warden: mcp: dropped a {who} line longer than {MAX_LINE} bytes (too long to police; a request in it stays unanswered)"
        );
        self.audit(from, McpMessage::Malformed(McpMalformed { bytes }));
    }
}

/// A destination the relay writes to: lines are queued, and written by [`State::flush`] as far as
/// the destination takes them without blocking, so that one thread can serve both directions
/// whoever stops reading.
struct Outlet {
    queued: Mutex<std::collections::VecDeque<u8>>,
    sink: Mutex<Box<dyn Write + Send>>,
    /// A duplicate of the destination, polled for room before each write (`None`: a buffer, or
    /// closed).
    room: Mutex<Option<File>>,
    /// Close once the queue is written (the client is gone: the server sees EOF on its stdin).
    closing: std::sync::atomic::AtomicBool,
    /// The destination is a pipe of our own in non-blocking mode: a write takes what fits.
    nonblocking: bool,
}

/// The most a write to a pipe with room takes without blocking (`PIPE_BUF`).
const PIPE_BUF: usize = 4096;

impl Outlet {
    fn new(sink: Box<dyn Write + Send>, room: Option<File>) -> Outlet {
        let (room, closing) = (Mutex::new(room), Default::default());
        Outlet { queued: Mutex::default(), sink: Mutex::new(sink), room, closing, nonblocking: false }
    }

    /// A pipe the supervisor created (the server's stdin), put in non-blocking mode: nothing else
    /// shares its open file, so a write takes what fits without a poll first.
    fn own_pipe(pipe: File) -> std::io::Result<Outlet> {
        let flags = rustix::fs::fcntl_getfl(&pipe)?;
        rustix::fs::fcntl_setfl(&pipe, flags | rustix::fs::OFlags::NONBLOCK)?;
        let room = pipe.try_clone()?;
        Ok(Outlet { nonblocking: true, ..Outlet::new(Box::new(pipe), Some(room)) })
    }

    /// Queues one line, ending it with its newline if it has none (a server's last line at its
    /// EOF): the next line queued must not run on into it.
    fn queue(&self, line: &[u8]) {
        let mut queued = lock(&self.queued);
        queued.extend(line);
        if !line.ends_with(b"\n") {
            queued.push_back(b'\n');
        }
    }

    fn pending(&self) -> usize {
        lock(&self.queued).len()
    }

    /// Writes as much of the queue as the destination takes now: with a descriptor to poll,
    /// chunks of at most [`PIPE_BUF`] while it has room; a buffer takes everything. What is
    /// written leaves the front of the queue without moving the rest.
    fn flush(&self) -> std::io::Result<()> {
        let mut sink = lock(&self.sink);
        let mut queued = lock(&self.queued);
        let mut room = lock(&self.room);
        while !queued.is_empty() {
            let front = queued.as_slices().0;
            let end = match &*room {
                Some(_) if self.nonblocking => front.len(),
                Some(room) if !has_room(room) => break,
                Some(_) => PIPE_BUF.min(front.len()),
                None => front.len(),
            };
            match sink.write(&front[..end]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => drop(queued.drain(..n)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    queued.clear();
                    return Err(e);
                }
            }
        }
        if queued.is_empty() && self.closing.load(std::sync::atomic::Ordering::Relaxed) {
            // both descriptors of the destination closed: the reader sees EOF
            *sink = Box::new(std::io::sink());
            *room = None;
        }
        Ok(())
    }

    /// Writes the whole queue, waiting for the destination (the session's end).
    fn drain(&self) {
        let queued = Vec::from(std::mem::take(&mut *lock(&self.queued)));
        let _ = lock(&self.sink).write_all(&queued);
    }

    /// Closes the destination once what is queued for it is written.
    fn close_when_written(&self) {
        self.closing.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.flush();
    }
}

/// Has the pipe `f` room for a write (or is its reader gone, which the write then reports)?
fn has_room(f: &File) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use std::os::fd::AsFd;
    let fd = f.as_fd();
    let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
    poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })).map_or(true, |n| n > 0)
}

/// Starts the relays: `client_in`/`client_out` are the launcher's stdin/stdout, `server_in`/
/// `server_out` the pipes to the server. Returns the server -> client thread, which ends once the
/// server's output is closed and everything it wrote is delivered.
pub fn start(
    cfg: McpConfig,
    audit: AuditLog,
    client_in: File,
    client_out: File,
    server_in: File,
    server_out: File,
    in_flight: Arc<super::InFlight>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // The client's stdout may be shared (a terminal, a socket of systemd's): polled for room.
    let client_room = client_out.try_clone()?;
    let client = Outlet::new(Box::new(client_out), Some(client_room));
    let state = Arc::new(State::new(cfg, audit, client, Outlet::own_pipe(server_in)?, in_flight)?);
    let server_poll = server_out.try_clone()?;
    *lock(&state.server_out) = Some(Input { file: server_out, lines: Splitter::default() });
    std::thread::Builder::new().name("mcp-relay".into()).spawn(move || {
        multiplex(&state, client_in, &server_poll);
        if let Some(log) = lock(&state.audit).as_mut() {
            log.flush();
            if log.lost > 0 {
                eprintln!(
                    "mcp-warden: mcp: {} audit records LOST ({} written) to {}",
                    log.lost,
                    log.written,
                    log.destination.describe()
                );
            }
        }
    })
}

/// How long the relay polls after a message before it sleeps in `poll`, while calls go one at a
/// time. A relay put to sleep costs a wake-up on the next message's way (a cross-CPU interrupt;
/// tens of µs on a virtual machine); one relay polling for both directions takes both wake-ups of
/// a call off the path while only one CPU polls. Pipelined, the CPU is the server's: no polling.
const SPIN: Duration = Duration::from_micros(300);

/// Past this much queued for either destination, the client is not read until it drains (a
/// client request refused is answered to the client: its lines can queue for both); past this
/// much queued for the client, the server is not read either.
const QUEUE_HIGH: usize = 1 << 20;

/// The server is read while what is queued for its stdin waits, up to this much: a synchronous
/// server blocks writing its answers while its stdin is full, so it must be read then (else
/// neither moves). Past it (a server that never reads, answered refusals of its own requests)
/// it is not, and memory stays bounded.
const QUEUE_CAP: usize = 4 * QUEUE_HIGH;

/// What one read takes, on either side.
const READ_CHUNK: usize = 64 * 1024;

/// One side's input and its partial line.
struct Input {
    file: File,
    lines: Splitter,
}

/// What the loop waits for, and what came.
#[derive(Default, Clone, Copy)]
struct Ready {
    client: bool,
    server: bool,
    /// Room to write what is queued for the server, or for the client.
    to_server: bool,
    to_client: bool,
}

/// Both directions in one thread, as an event loop: reads a side while its destination's queue is
/// short, writes each queue as far as its pipe takes it, and hands what it read to that side's
/// line handling. Ends once the server's output is closed and handled (what is queued for the
/// client is then written, waiting), or the client's output is gone. `server_poll` is a
/// duplicate of the server's output, to wait on.
fn multiplex(state: &State, client_in: File, server_poll: &File) {
    let mut client = Some(Input { file: client_in, lines: Splitter::default() });
    // A read is handled whole before anything goes on (a longer line just takes several reads);
    // 64 KiB, one pipe's worth, measured faster than 4 or 8 KiB pipelined (docs/benchmarks.md).
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut last = std::time::Instant::now();
    let mut scheduling = Scheduling::default();
    loop {
        let want = state.wants(client.is_some());
        let calls = lock(&state.pending).len();
        scheduling.follow(calls > 1);
        let spin = calls <= 1 && last.elapsed() < SPIN;
        let ready = wait(state, client.as_ref().map(|c| &c.file), server_poll, want, spin, None);
        if ready.to_client && state.client_out.flush().is_err() {
            break; // the client's output is gone
        }
        if ready.to_server && state.server_in.flush().is_err() {
            client = None; // the server's input is gone: nothing the client sends can go on
        }
        if ready.server && !state.pump_server(&mut chunk).unwrap_or(false) {
            break; // the server's output is closed, or the client's output is gone
        }
        if ready.client
            && let Some(c) = client.as_mut()
            && !state.pump_client(c, &mut chunk)
        {
            client = None;
        }
        if ready.client || ready.server {
            last = std::time::Instant::now();
        }
    }
    *lock(&state.server_out) = None;
    state.write_audit();
    state.client_out.drain();
}

/// The relay's scheduling policy, following the calls in flight. Pipelined, each message the
/// server (or the client) writes wakes the relay, which under the default policy preempts that
/// peer on its own CPU: 5 to 15 points of throughput on 2 CPUs (docs/benchmarks.md). So while more
/// than one call is in flight the relay is `SCHED_BATCH`, whose wake-ups wait for an idle CPU or
/// the next scheduling point. One call at a time it is `SCHED_OTHER` again: a lone call's
/// answer is handed on at once, even on a busy host.
#[derive(Default)]
struct Scheduling {
    batch: bool,
    /// The policy cannot be changed here (a seccomp filter of the host's): left as it is.
    stuck: bool,
}

impl Scheduling {
    fn follow(&mut self, pipelined: bool) {
        if pipelined == self.batch || self.stuck {
            return;
        }
        match crate::sys::batch_scheduling(pipelined) {
            Ok(()) => self.batch = pipelined,
            Err(e) => {
                tracing::debug!("mcp: the relay's scheduling policy stays as it is: {e}");
                self.stuck = true;
            }
        }
    }
}

/// A read that retries when interrupted; `None` on an error.
fn read(file: &mut File, chunk: &mut [u8]) -> Option<usize> {
    loop {
        match file.read(chunk) {
            Ok(n) => return Some(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

/// What of `want` is ready: waited for without sleeping for [`SPIN`] when `spin`, then up to
/// `timeout` (none: until something is).
fn wait(
    state: &State,
    client: Option<&File>,
    server: &File,
    want: Ready,
    spin: bool,
    timeout: Option<Duration>,
) -> Ready {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use std::os::fd::AsFd;
    let (server_fd, client_fd) = (server.as_fd(), client.map(|c| c.as_fd()));
    let (server_room, client_room) = (lock(&state.server_in.room), lock(&state.client_out.room));
    let to_server = server_room.as_ref().map(|f| f.as_fd());
    let to_client = client_room.as_ref().map(|f| f.as_fd());
    let start = std::time::Instant::now();
    loop {
        // (which, fd, events) for each wanted readiness
        let mut wanted = Vec::with_capacity(4);
        if want.server {
            wanted.push((0, Some(server_fd), PollFlags::IN));
        }
        if want.client {
            wanted.push((1, client_fd, PollFlags::IN));
        }
        if want.to_server {
            wanted.push((2, to_server, PollFlags::OUT));
        }
        if want.to_client {
            wanted.push((3, to_client, PollFlags::OUT));
        }
        let wanted: Vec<_> = wanted.into_iter().filter_map(|(w, fd, ev)| Some((w, fd?, ev))).collect();
        let mut fds: Vec<PollFd<'_>> = wanted.iter().map(|(_, fd, ev)| PollFd::new(fd, *ev)).collect();
        let spinning = spin && start.elapsed() < SPIN;
        let limit = match (spinning, timeout) {
            (true, _) => Some(Timespec { tv_sec: 0, tv_nsec: 0 }),
            (false, Some(t)) => Timespec::try_from(t.saturating_sub(start.elapsed())).ok(),
            (false, None) => None,
        };
        match poll(&mut fds, limit.as_ref()) {
            Ok(0) if spinning => std::hint::spin_loop(),
            Ok(0) => return Ready::default(),
            Ok(_) => {
                let mut ready = Ready::default();
                for ((which, _, _), fd) in wanted.iter().zip(&fds) {
                    if !fd.revents().is_empty() {
                        match which {
                            0 => ready.server = true,
                            1 => ready.client = true,
                            2 => ready.to_server = true,
                            _ => ready.to_client = true,
                        }
                    }
                }
                return ready;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return want,
        }
    }
}

/// The partial line of one input: complete lines go to `handle` (with their newline); a line
/// longer than [`MAX_LINE`] is dropped, and `overlong` told its size once it ends.
#[derive(Default)]
struct Splitter {
    line: Vec<u8>,
    dropping: Option<usize>,
}

impl Splitter {
    /// Hands every line `bytes` completes to `handle`; an error from it (the other side is gone)
    /// ends the feeding.
    fn feed(
        &mut self,
        mut bytes: &[u8],
        mut handle: impl FnMut(&[u8]) -> std::io::Result<()>,
        mut overlong: impl FnMut(usize),
    ) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|b| *b == b'\n');
            let (part, done) = match newline {
                Some(i) => (&bytes[..=i], true),
                None => (bytes, false),
            };
            bytes = &bytes[part.len()..];
            if let Some(dropped) = self.dropping.as_mut() {
                *dropped += part.len();
                if done {
                    overlong(*dropped);
                    self.dropping = None;
                }
                continue;
            }
            self.line.extend_from_slice(part);
            if done {
                let r = handle(&self.line);
                self.line.clear();
                r?;
            } else if self.line.len() > MAX_LINE {
                self.dropping = Some(self.line.len());
                self.line.clear();
            }
        }
        Ok(())
    }

    /// At EOF: a last line without its newline is handled, an overlong one told.
    fn finish(&mut self, mut handle: impl FnMut(&[u8]) -> std::io::Result<()>, mut overlong: impl FnMut(usize)) {
        if let Some(dropped) = self.dropping.take() {
            overlong(dropped);
        } else if !self.line.is_empty() {
            let _ = handle(&std::mem::take(&mut self.line));
        }
    }
}

/// Reads `input` line by line and hands each complete line (with its newline) to `handle`, then
/// calls `drained` once every complete line of what was read is handled (the fuzz target's
/// relay: one input at a time).
fn relay<R: Read>(
    mut input: R,
    mut handle: impl FnMut(&[u8]) -> std::io::Result<()>,
    mut overlong: impl FnMut(usize),
    mut drained: impl FnMut() -> std::io::Result<()>,
) {
    let mut lines = Splitter::default();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if lines.feed(&chunk[..n], &mut handle, &mut overlong).is_err() || drained().is_err() {
            return;
        }
    }
    lines.finish(&mut handle, &mut overlong);
    let _ = drained();
}

/// A `Write` into a shared buffer.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `client` bytes and then `server` bytes through the relays' line handling, without
/// threads or processes; returns what would reach the server and what would reach the client.
/// A call for a tool the layer has no list for is refused at once (there is no server to ask).
/// For the fuzz target and its regression corpus.
#[doc(hidden)]
pub fn process(cfg: McpConfig, client: &[u8], server: &[u8]) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    process_turns(cfg, &[(Side::Client, client), (Side::Server, server)])
}

/// [`process`] for bytes from either side in turn (the first turn's lines all before the next).
#[doc(hidden)]
pub fn process_turns(cfg: McpConfig, turns: &[(Side, &[u8])]) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let audit = AuditLog::open(cfg.audit.clone())?;
    let (to_client, to_server) = (Shared::default(), Shared::default());
    let (client, server) =
        (Outlet::new(Box::new(to_client.clone()), None), Outlet::new(Box::new(to_server.clone()), None));
    let mut state = State::new(cfg, audit, client, server, Arc::default())?;
    state.own_list_timeout = Duration::ZERO;
    for (side, bytes) in turns {
        match side {
            Side::Client => relay(
                *bytes,
                |line| state.handle_client_line(line),
                |n| state.overlong(Side::Client, n),
                || state.flush(),
            ),
            Side::Server => relay(
                *bytes,
                |line| state.handle_server_line(line),
                |n| state.overlong(Side::Server, n),
                || state.flush(),
            ),
        }
    }
    let (up, down) = (lock(&to_server.0).clone(), lock(&to_client.0).clone());
    Ok((up, down))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(bytes: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{e}"));
        assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"))).collect()
    }

    /// The calling thread's scheduling policy (`/proc/thread-self/stat`, field 41).
    fn policy() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_else(|e| panic!("{e}"));
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
        after.split_whitespace().nth(38).and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{stat}"))
    }

    #[test]
    fn the_relay_is_batch_scheduled_only_while_calls_are_pipelined() {
        std::thread::spawn(|| {
            let mut scheduling = Scheduling::default();
            assert_eq!(policy(), libc::SCHED_OTHER, "control: a new thread");
            scheduling.follow(true);
            assert_eq!(policy(), libc::SCHED_BATCH, "more than one call in flight");
            scheduling.follow(false);
            assert_eq!(policy(), libc::SCHED_OTHER, "one call at a time");
        })
        .join()
        .unwrap_or_else(|_| panic!("the test thread panicked"));
    }

    #[test]
    fn every_line_queued_ends_with_one_newline() {
        let ping = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n";
        // the server's last line before its EOF has no newline; what follows must not run into it
        let last = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}";
        let next = b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n";
        let turns = [(Side::Client, &ping[..]), (Side::Server, &last[..]), (Side::Server, &next[..])];
        let (up, down) = process_turns(McpConfig::for_fuzzing(), &turns).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(up, ping, "control: a line with its newline goes on as it is");
        let down = lines(&down);
        assert_eq!(down.len(), 2, "{down:?}");
        assert_eq!(down[0]["id"], 1);
    }

    #[test]
    fn client_responses_reach_the_server_only_for_its_requests() {
        let client = b"{\"jsonrpc\":\"2.0\",\"id\":\"mcp-warden/1\",\"result\":{}}\n{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}}\n";
        let (up, _) = process(McpConfig::for_fuzzing(), client, b"").unwrap_or_else(|e| panic!("{e}"));
        assert!(up.is_empty(), "{}", String::from_utf8_lossy(&up));
        // control: the answer to a ping of the server's goes on
        let turns = [
            (Side::Client, &b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}\n"[..]),
            (Side::Server, &b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\"}\n"[..]),
            (Side::Client, &b"{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}}\n"[..]),
        ];
        let (up, down) = process_turns(McpConfig::for_fuzzing(), &turns).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lines(&down)[0]["method"], "ping");
        assert_eq!(lines(&up).len(), 2, "{}", String::from_utf8_lossy(&up));
    }

    #[test]
    fn a_client_reply_to_a_server_request_is_audited() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("audit.jsonl");
        let cfg = McpConfig { audit: crate::audit::Destination::File(log.clone()), ..McpConfig::for_fuzzing() };
        let turns = [
            (Side::Client, &b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}\n"[..]),
            (Side::Server, &b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"elicitation/create\",\"params\":{}}\n"[..]),
            (Side::Client, &b"{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"action\":\"accept\"}}\n"[..]),
        ];
        process_turns(cfg, &turns).unwrap_or_else(|e| panic!("{e}"));
        let records = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{e}"));
        let reply = records
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|r| r["from"] == "client" && r["message"] == "response")
            .unwrap_or_else(|| panic!("no record of the client's reply: {records}"));
        assert_eq!(
            (&reply["method"], &reply["id"], &reply["outcome"]),
            (&"elicitation/create".into(), &5.into(), &"ok".into())
        );
        assert!(!records.contains("accept"), "what the client answered is not logged: {records}");
    }

    #[test]
    fn a_server_batch_is_dropped_whole() {
        let call = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n";
        let batch = b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}]\n";
        let (_, down) = process(McpConfig::for_fuzzing(), call, batch).unwrap_or_else(|e| panic!("{e}"));
        assert!(down.is_empty(), "{}", String::from_utf8_lossy(&down));
        let answer = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n";
        let (_, down) = process(McpConfig::for_fuzzing(), call, answer).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lines(&down)[0]["id"], 1, "control");
    }
}
