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
    client_out: Mutex<Box<dyn Write + Send>>,
    server_in: Mutex<Box<dyn Write + Send>>,
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
            client_out: Mutex::new(client_out),
            server_in: Mutex::new(server_in),
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

    pub fn to_client(&self, line: &[u8]) -> std::io::Result<()> {
        lock(&self.client_out).write_all(line)
    }

    pub fn to_server(&self, line: &[u8]) -> std::io::Result<()> {
        lock(&self.server_in).write_all(line)
    }

    fn on_client_line(&self, line: &[u8]) -> std::io::Result<()> {
        let result = self.handle_client_line(line);
        self.write_audit();
        result
    }

    fn on_server_line(&self, line: &[u8]) -> std::io::Result<()> {
        let result = self.handle_server_line(line);
        self.write_audit();
        result
    }

    /// A line too long to police: dropped, reported once per line.
    fn overlong(&self, from: Side, bytes: usize) {
        let who = if from == Side::Client { "client" } else { "server" };
        eprintln!(
            "mcp-warden: mcp: dropped a {who} line longer than {MAX_LINE} bytes (too long to police; a request in it stays unanswered)"
        );
        self.audit(from, McpMessage::Malformed(McpMalformed { bytes }));
        self.write_audit();
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
        relay(client_in, |line| up.on_client_line(line), |n| up.overlong(Side::Client, n));
        // the client is gone: the server sees EOF on its stdin
        *lock(&up.server_in) = Box::new(std::io::sink());
    })?;
    let down = state;
    std::thread::Builder::new().name("mcp-server".into()).spawn(move || {
        relay(server_out, |line| down.on_server_line(line), |n| down.overlong(Side::Server, n));
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

/// Reads `input` line by line and hands each complete line (with its newline) to `handle`. A line
/// longer than [`MAX_LINE`] is dropped (`overlong` is told its size once it ends). Ends at EOF or
/// when `handle` fails (the other side is gone).
fn relay<R: Read>(mut input: R, mut handle: impl FnMut(&[u8]) -> std::io::Result<()>, mut overlong: impl FnMut(usize)) {
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
    }
    if let Some(dropped) = dropping {
        overlong(dropped);
    } else if !line.is_empty() {
        let _ = handle(&line);
    }
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
    let audit = AuditLog::open(crate::audit::Destination::File("/dev/null".into()))?;
    let (to_client, to_server) = (Shared::default(), Shared::default());
    let mut state = State::new(cfg, audit, Box::new(to_client.clone()), Box::new(to_server.clone()), Arc::default())?;
    state.own_list_timeout = Duration::ZERO;
    relay(client, |line| state.on_client_line(line), |n| state.overlong(Side::Client, n));
    relay(server, |line| state.on_server_line(line), |n| state.overlong(Side::Server, n));
    let (up, down) = (lock(&to_server.0).clone(), lock(&to_client.0).clone());
    Ok((up, down))
}
