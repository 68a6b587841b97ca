//! docs/profile.schema.json (for editors) accepts every shipped profile and rejects a typo,
//! checked with a real JSON Schema validator (Python `jsonschema`, in the test environment).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::process::Command;
use std::time::Duration;

use mcp_warden_tests::*;

#[test]
fn the_json_schema_accepts_the_shipped_profiles_and_rejects_typos() {
    let python = test_env().join("venv/bin/python");
    assert!(python.exists(), "{} is missing: run `cargo xtask setup`", python.display());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let script = r#"
import glob, json, sys, tomllib, jsonschema
root = sys.argv[1]
schema = json.load(open(f"{root}/docs/profile.schema.json"))
profiles = sorted(glob.glob(f"{root}/profiles/*.toml"))
for path in profiles:
    jsonschema.validate(tomllib.load(open(path, "rb")), schema)
for bad in [{"filesystem": {"redd": []}}, {"process": {"max-memory": "12Q"}}, {"require": {"landlock": "maybe"}}]:
    try:
        jsonschema.validate(bad, schema)
        sys.exit(f"accepted an invalid profile: {bad}")
    except jsonschema.ValidationError:
        pass
print(f"{len(profiles)} profiles valid")
"#;
    let mut c = Command::new(&python);
    c.args(["-c", script]).arg(root);
    let o = run(c, None, Duration::from_secs(60));
    assert_eq!(o.code(), Some(0), "{}", o.describe());
    assert!(o.stdout.trim().ends_with("profiles valid"), "{}", o.describe());
}
