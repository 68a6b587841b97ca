//! The two relay threads, the state they share, and how a line becomes messages and audit
//! records. What is done to each message is in [`super::from_client`] and [`super::from_server`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use super::McpConfig;
use super::pins::PinStore;
use super::policy::RateLimiter;
use super::tools::Catalog;
use crate::audit::record::{Mcp, McpMalformed, McpMessage, Side};
use crate::audit::{AuditLine, AuditLog, AuditRecord};

/// The longest line parsed. A longer one (or one that never ends) cannot be policed, so it is
/// dropped and reported: memory stays bounded and nothing passes unchecked.
const MAX_LINE: usize = 64 << 20;

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
    /// Client requests by id (as JSON text).
    pub pending: Mutex<HashMap<String, Pending>>,
    /// Server requests by id (as JSON text) and method, for the client's replies.
    pub server_requests: Mutex<HashMap<String, String>>,
    pub catalog: Mutex<Catalog>,
    pub limiter: Mutex<RateLimiter>,
    pub pins: Mutex<Option<PinStore>>,
    audit: Mutex<Option<AuditLog>>,
    /// Records of the line being handled, written after it went on.
    deferred: Mutex<Vec<AuditLine>>,
    pub in_flight: Arc<super::InFlight>,
    /// The layer's own `tools/list` requests waiting for their response, by id.
    pub own_lists: Mutex<HashMap<String, std::sync::mpsc::Sender<Value>>>,
    pub next_own: AtomicU64,
    /// The `requestState` of each `input_required` tool result not retried yet, with its tool:
    /// the retry that echoes it is the same call, not a new one for the rate limits.
    pub retries: Mutex<std::collections::HashSet<(String, String)>>,
    /// Unparseable lines told on stderr so far.
    malformed_told: AtomicU64,
    /// How long a call waits for the layer's own `tools/list` (zero: it is not asked, the call is
    /// refused: the fuzz target has no server thread to answer).
    pub own_list_timeout: Duration,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    fn new(
        cfg: McpConfig,
        audit: AuditLog,
        client_out: Box<dyn Write + Send>,
        server_in: Box<dyn Write + Send>,
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
            client_out: Outlet::new(client_out),
            server_in: Outlet::new(server_in),
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
            retries: Mutex::default(),
            own_list_timeout: OWN_LIST_TIMEOUT,
        })
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

/// A destination both relays write to: lines are queued, and written together by
/// [`State::flush`]. The sink's lock is held from taking the queue to the end of the write, so
/// lines reach the destination in the order they were queued.
struct Outlet {
    queued: Mutex<Vec<u8>>,
    sink: Mutex<Box<dyn Write + Send>>,
}

impl Outlet {
    fn new(sink: Box<dyn Write + Send>) -> Outlet {
        Outlet { queued: Mutex::default(), sink: Mutex::new(sink) }
    }

    fn queue(&self, line: &[u8]) {
        lock(&self.queued).extend_from_slice(line);
    }

    fn flush(&self) -> std::io::Result<()> {
        let mut sink = lock(&self.sink);
        let queued = std::mem::take(&mut *lock(&self.queued));
        if queued.is_empty() {
            return Ok(());
        }
        sink.write_all(&queued)
    }

    /// The destination is gone (the client closed its end): later lines go nowhere.
    fn close(&self) {
        *lock(&self.sink) = Box::new(std::io::sink());
        lock(&self.queued).clear();
    }
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
    let state = Arc::new(State::new(cfg, audit, Box::new(client_out), Box::new(server_in), in_flight)?);
    let up = Arc::clone(&state);
    std::thread::Builder::new().name("mcp-client".into()).spawn(move || {
        // a client that was just answered is likely to send its next request soon
        let answered = Arc::clone(&up);
        let client_in = Spinning::new(client_in, move |recent| recent && lock(&answered.pending).is_empty());
        relay(client_in, |line| up.handle_client_line(line), |n| up.overlong(Side::Client, n), || up.flush());
        // the client is gone: the server sees EOF on its stdin
        up.server_in.close();
    })?;
    let down = state;
    std::thread::Builder::new().name("mcp-server".into()).spawn(move || {
        // a server that just answered is likely to answer the next request soon
        let server_out = Spinning::new(server_out, |recent| recent);
        relay(server_out, |line| down.handle_server_line(line), |n| down.overlong(Side::Server, n), || down.flush());
        if let Some(log) = lock(&down.audit).as_mut() {
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

/// How long a relay polls for the next message it expects before it sleeps in `read`. A relay
/// put to sleep costs a wake-up on the message's way (a cross-CPU interrupt; tens of µs on a
/// virtual machine), twice per call; polling while a message is due takes that off the path.
const SPIN: Duration = Duration::from_micros(300);
/// The client is "sending" for this long after its last message.
const RECENT: Duration = Duration::from_millis(2);

/// A pipe read that first polls for up to [`SPIN`] when `due` says data is expected (given
/// whether data came in the last [`RECENT`]). The server's relay polls after each answer, for the
/// next; the client's only while no request is pending (its next one is due), so that while the
/// server works only one relay polls.
struct Spinning<F: Fn(bool) -> bool> {
    file: File,
    due: F,
    last: std::time::Instant,
}

impl<F: Fn(bool) -> bool> Spinning<F> {
    fn new(file: File, due: F) -> Self {
        Spinning { file, due, last: std::time::Instant::now() }
    }

    fn poll_until_readable(&self) {
        use std::os::fd::AsFd;
        let start = std::time::Instant::now();
        while start.elapsed() < SPIN {
            let fd = self.file.as_fd();
            let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
            let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
            if rustix::event::poll(&mut fds, Some(&zero)).map_or(true, |n| n > 0) {
                return;
            }
            std::hint::spin_loop();
        }
    }
}

impl<F: Fn(bool) -> bool> Read for Spinning<F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if (self.due)(self.last.elapsed() < RECENT) {
            self.poll_until_readable();
        }
        let n = self.file.read(buf)?;
        self.last = std::time::Instant::now();
        Ok(n)
    }
}

/// Reads `input` line by line and hands each complete line (with its newline) to `handle`, then
/// calls `drained` once every complete line of what was read is handled. A line longer than
/// [`MAX_LINE`] is dropped (`overlong` is told its size once it ends). Ends at EOF or when
/// `handle` or `drained` fails (the other side is gone).
fn relay<R: Read>(
    mut input: R,
    mut handle: impl FnMut(&[u8]) -> std::io::Result<()>,
    mut overlong: impl FnMut(usize),
    mut drained: impl FnMut() -> std::io::Result<()>,
) {
    let mut line: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut dropping: Option<usize> = None;
    loop {
        let n = match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut rest = &chunk[..n];
        while !rest.is_empty() {
            let newline = rest.iter().position(|b| *b == b'\n');
            let (part, done) = match newline {
                Some(i) => (&rest[..=i], true),
                None => (rest, false),
            };
            rest = &rest[part.len()..];
            if let Some(dropped) = dropping.as_mut() {
                *dropped += part.len();
                if done {
                    overlong(*dropped);
                    dropping = None;
                }
                continue;
            }
            line.extend_from_slice(part);
            if done {
                let r = handle(&line);
                line.clear();
                if r.is_err() {
                    return;
                }
            } else if line.len() > MAX_LINE {
                dropping = Some(line.len());
                line.clear();
            }
        }
        if drained().is_err() {
            return;
        }
    }
    if let Some(dropped) = dropping {
        overlong(dropped);
    } else if !line.is_empty() {
        let _ = handle(&line);
    }
    let _ = drained();
}

pub(super) fn id_key(id: &Value) -> String {
    id.to_string()
}

/// One line as written, with its trailing newline.
pub(super) fn line_of(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    out
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
    let mut state = State::new(cfg, audit, Box::new(to_client.clone()), Box::new(to_server.clone()), Arc::default())?;
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
