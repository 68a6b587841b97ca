//! The escape suite's rows (tests/escapes/suite.toml) and what their placeholders stand for:
//! shared by the escape suite itself and the container tests, which run the same rows there.

use std::path::Path;

use serde::Deserialize;

use crate::{Scratch, Victim, Who, chown_to};

#[derive(Debug, Deserialize)]
pub struct Suite {
    pub escape: Vec<Escape>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escape {
    pub id: String,
    pub attack: String,
    pub action: Vec<String>,
    #[serde(default)]
    pub grants: Vec<String>,
    pub expect: Vec<String>,
    pub layer: String,
    /// Who the attack works for without mcp-warden: `always` (default), `root` (the host already
    /// refuses it to users), `never` (the host refuses it to everyone; the row documents the verdict).
    #[serde(default = "always")]
    pub control: String,
    /// Control verdicts that also mean the attack got through (`EFAULT`: access was granted, the
    /// address was not mapped).
    #[serde(default)]
    pub works: Vec<String>,
}

fn always() -> String {
    "always".into()
}

/// What the placeholders stand for, for one user.
#[derive(Debug)]
pub struct Targets {
    _scratch: Scratch,
    _victim: Victim,
    _listeners: (std::net::TcpListener, std::net::UdpSocket, std::os::unix::net::UnixListener),
    pub values: Vec<(&'static str, String)>,
}

impl Targets {
    pub fn new(who: Who) -> Targets {
        let s = Scratch::new(who);
        let secret = s.file("id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----\n", who);
        let rc = s.file("bashrc", "# rc\n", who);
        let file = s.file("victim.conf", "setting = 1\n", who);
        let dir = s.mkdir("dir", who);
        std::os::unix::fs::symlink(&secret, dir.join("link")).unwrap();
        chown_to(&dir.join("link"), who);
        let link = s.join("key-link");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        chown_to(&link, who);
        let tool = s.file("dir/tool", "#!/bin/sh\n", who);
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sock = s.join("service.sock");
        let unix = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let victim = Victim::start(who);
        let values = vec![
            ("{secret}", secret.display().to_string()),
            ("{rc}", rc.display().to_string()),
            ("{file}", file.display().to_string()),
            ("{link}", link.display().to_string()),
            ("{dir}", dir.display().to_string()),
            ("{port}", tcp.local_addr().unwrap().port().to_string()),
            ("{udp}", udp.local_addr().unwrap().port().to_string()),
            ("{unix}", sock.display().to_string()),
            ("{victim}", victim.pid().to_string()),
        ];
        Targets { _scratch: s, _victim: victim, _listeners: (tcp, udp, unix), values }
    }

    pub fn fill(&self, s: &str) -> String {
        self.values.iter().fold(s.to_string(), |acc, (k, v)| acc.replace(k, v))
    }
}

/// Every row of tests/escapes/suite.toml.
pub fn load() -> Suite {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("escapes/suite.toml");
    toml::from_str(&std::fs::read_to_string(path).expect("read suite.toml")).expect("parse suite.toml")
}
