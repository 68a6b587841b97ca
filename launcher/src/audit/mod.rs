//! The audit log: typed records ([`record`]) written as JSON lines to a file or stderr and to the
//! systemd journal ([`AuditLog`]), the eBPF layer's closing summary, and the JSON Schema of a
//! line (docs/audit-log.schema.json), generated from the types. A line that cannot be written is
//! counted and reported, never dropped silently.

mod destination;
mod journal;
pub mod record;
mod summary;
mod time;
mod writer;

pub use destination::Destination;
pub use record::{AuditLine, AuditRecord};
pub use summary::{Summary, run_summary, write_summary};
pub use time::{Timestamp, now_rfc3339, rfc3339};
pub use writer::AuditLog;

/// The JSON Schema (draft 2020-12) of one line of the audit log, generated from [`AuditLine`]:
/// docs/audit-log.schema.json. Fields a record does not declare are refused
/// (`unevaluatedProperties`), so that the schema lists every field there is.
pub fn json_schema() -> String {
    let generator = schemars::generate::SchemaSettings::draft2020_12().for_serialize().into_generator();
    let mut schema = generator.into_root_schema_for::<AuditLine>();
    schema.insert("unevaluatedProperties".into(), false.into());
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/audit-log.schema.json");

    #[test]
    fn the_committed_audit_log_schema_is_current() {
        let committed = std::fs::read_to_string(SCHEMA_PATH).unwrap_or_default();
        assert!(
            committed == json_schema(),
            "docs/audit-log.schema.json is stale: run `cargo xtask schema` and commit the result"
        );
    }
}
