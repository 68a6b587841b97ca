//! Diagnostics on stderr, one format for all: `mcp-warden: warning: …` (and `error:`, `debug:`,
//! `trace:` with -v). Every warning goes through `tracing`, never a bare `eprintln!`, so the
//! prefix a user (and a test) sees is the same wherever it was raised. stdout is never written.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the stderr subscriber: `warn` by default, `-v` debug, `-vv` trace, or `MCP_WARDEN_LOG`.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MCP_WARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).event_format(Prefixed).init();
}

/// `mcp-warden: <level>: <message>`.
struct Prefixed;

impl<S, N> FormatEvent<S, N> for Prefixed
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        write!(w, "mcp-warden: {level}: ")?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Text a server chose (a path, a command or tool name), for a line a user reads: control
/// characters, line and paragraph separators and bidirectional overrides escaped, so that it
/// cannot forge, erase, hide or reorder lines on the client's stderr or in a report.
pub fn printable(text: &str) -> String {
    let unsafe_char = |c: char| {
        c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    text.chars().flat_map(|c| if unsafe_char(c) { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}
