//! What every user-facing error says besides its message: a hint a user can act on, and the exit
//! status (`125` for launcher failures; `126`/`127` for a server that cannot be executed or found).
//!
//! Each layer keeps its own `thiserror` enum; this trait is the one place `main` looks for the
//! hint and the status, so a new error type cannot forget either.

/// The exit status of a failure of mcp-warden itself (bad profile, a required layer unavailable).
pub const EXIT_LAUNCHER: i32 = 125;
/// The server program exists but cannot be executed.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// The server program was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// An error a user reads: `mcp-warden: <message>` then `hint: <hint>`, and an exit status.
pub trait Diagnose: std::error::Error {
    /// What the user can do about it, when there is something.
    fn hint(&self) -> Option<String> {
        None
    }

    /// The process exit status for this failure.
    fn exit_code(&self) -> i32 {
        EXIT_LAUNCHER
    }
}

/// A failure of a command that is not one of the layers' errors: a message, an optional hint.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub message: String,
    pub hint: Option<String>,
}

impl CommandError {
    pub fn new(message: impl Into<String>) -> Self {
        CommandError { message: message.into(), hint: None }
    }

    pub fn with_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        CommandError { message: message.into(), hint: Some(hint.into()) }
    }

    /// `failed to write output: …` (stdout closed, disk full).
    pub fn output(e: std::io::Error) -> Self {
        CommandError::new(format!("failed to write output: {e}"))
    }
}

impl Diagnose for CommandError {
    fn hint(&self) -> Option<String> {
        self.hint.clone()
    }
}

/// Any failure `main` renders.
pub type Failure = Box<dyn Diagnose + Send + Sync>;

impl<E: Diagnose + Send + Sync + 'static> From<E> for Box<dyn Diagnose + Send + Sync> {
    fn from(e: E) -> Self {
        Box::new(e)
    }
}
