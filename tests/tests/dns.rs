//! DNS answered by mcp-warden: every query the server sends (UDP or TCP, port 53, any address)
//! reaches the resolver in the supervisor, which asks a stand-in authoritative server on loopback
//! only for the profile's names. Each attack (a name outside the profile, a rebinding answer, an
//! expired answer, a racing rewrite of the query) next to the control that legitimate lookups and
//! connections still work, as root and as the unprivileged user, with glibc's resolver, musl's
//! way of sending, TCP, Node's c-ares and Python's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use mcp_warden_tests::dns_standin::StandIn;
use mcp_warden_tests::*;

/// An address no nameserver listens on: only mcp-warden's interception answers there.
const NOWHERE: &str = "192.0.2.53";
/// The same in IPv6.
const NOWHERE6: &str = "2001:db8::53";
/// The same, IPv4-mapped: an IPv6 socket sending over IPv4.
const NOWHERE_MAPPED: &str = "::ffff:192.0.2.53";

/// Echoes a line back on every connection, on `ip` (loopback) at a free port.
fn echo(ip: &str) -> u16 {
    let l = TcpListener::bind((ip, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut b = [0u8; 64];
                while let Ok(n) = s.read(&mut b) {
                    if n == 0 || s.write_all(&b[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// A profile over `base` that names `connect` and asks `standin`; loopback answers allowed (the
/// stand-in's addresses are on loopback).
fn profile(s: &Scratch, who: Who, base: &str, connect: &[String], standin: &StandIn) -> PathBuf {
    let list: Vec<String> = connect.iter().map(|c| format!("\"{c}\"")).collect();
    let text = format!(
        "extends = [\"{base}\"]\n[network]\nconnect = [{}]\ndns-upstream = [\"{}\"]\nprivate-answers = [\"127.0.0.0/8\"]\n",
        list.join(", "),
        standin.addr
    );
    s.file("dns.toml", &text, who)
}

/// Whether the eBPF layer's route (its socket and egress programs, the resolver on the loopback)
/// runs here: as root. Says why `test` is skipped otherwise.
fn ebpf_route_here(test: &str) -> bool {
    if !is_root() {
        skip(test, "the socket programs' route and the resolver on the loopback are the eBPF layer's: root only");
    }
    is_root()
}

/// The `dns` records of an audit log, each checked against docs/audit-log.schema.json.
fn dns_records(log: &std::path::Path) -> Vec<serde_json::Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/audit-log.schema.json");
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let records: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "dns")
        .collect();
    for r in &records {
        let errors: Vec<String> = validator.iter_errors(r).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{r} does not match the schema: {errors:?}");
    }
    records
}

#[test]
fn an_allowed_name_resolves_and_connects_and_no_other_name_leaves_the_host() {
    let standin =
        StandIn::start(&[("ok.warden.example", &[&["127.0.0.1"]]), ("bad.warden.example", &[&["127.0.0.1"]])], 60);
    let port = echo("127.0.0.1");
    for who in Who::all() {
        let s = Scratch::new(who);
        let p = profile(&s, who, "strict", &[format!("ok.warden.example:{port}")], &standin);
        let log = s.join("audit.jsonl");
        let sb = Sandbox::new(who).profile(&p).grant("--audit-log", &log);
        let o = sb.probe(&["tcp-connect", "ok.warden.example", &port.to_string()]);
        assert_ok(&o, "connect to the profile's name (glibc's resolver)");
        let o = sb.probe(&["resolve", "bad.warden.example"]);
        assert!(o.verdict().starts_with("ERR"), "{who:?}: a name outside the profile resolved\n{}", o.describe());
        assert!(o.stderr.contains("dns: refused bad.warden.example"), "{who:?}: told on stderr\n{}", o.stderr);
        // The attack: a server exfiltrating through query names. Nothing reaches upstream.
        let o = sb.probe(&["resolve", "c2VjcmV0.bad.warden.example"]);
        assert!(o.verdict().starts_with("ERR"), "{}", o.describe());
        let asked = standin.queried();
        assert!(asked.iter().all(|n| n == "ok.warden.example"), "{who:?}: upstream was asked {asked:?}");
        let records = dns_records(&log);
        let answered = records.iter().find(|r| r["outcome"] == "answered" && r["qtype"] == "A").expect("an answer");
        assert_eq!(answered["name"], "ok.warden.example");
        assert_eq!(answered["addresses"], serde_json::json!(["127.0.0.1"]));
        assert_eq!(answered["opens"], serde_json::json!([format!("tcp:{port}")]));
        assert_eq!(answered["ttl"], 60);
        let refused = records.iter().find(|r| r["outcome"] == "refused").expect("a refusal record");
        assert_eq!((refused["verdict"].as_str(), refused["enforced"].as_bool()), (Some("deny"), Some(true)));
        // As root the eBPF layer's socket programs route the query (their record keeps port 53);
        // without privileges the broker's DNS namespace does.
        let text = std::fs::read_to_string(&log).unwrap();
        let routed = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| (v["kind"] == "send" || v["kind"] == "connect") && v["port"] == 53 && v["verdict"] == "allow");
        assert_eq!(routed, who == Who::Root, "{who:?}: the route of the DNS queries");
    }
}

#[test]
fn every_way_of_sending_a_query_to_any_address_gets_mcp_wardens_answer() {
    let standin = StandIn::start(&[("ok.warden.example", &[&["127.0.0.1"]])], 60);
    for who in Who::all() {
        let s = Scratch::new(who);
        let p = profile(&s, who, "strict", &["ok.warden.example:443".to_string()], &standin);
        let sb = Sandbox::new(who).profile(&p);
        let servers = [NOWHERE, NOWHERE6, NOWHERE_MAPPED];
        for (mode, server) in ["udp-connect", "udp-sendto", "tcp"].iter().flat_map(|m| servers.map(|s| (*m, s))) {
            // The answer must come from the address asked, or a resolver drops it.
            let o = sb.probe(&["dns-raw", mode, server, "ok.warden.example"]);
            assert_eq!(o.verdict(), "OK rcode=0 addrs=127.0.0.1", "{who:?} {mode} {server}\n{}", o.describe());
            let o = sb.probe(&["dns-raw", mode, server, "no.warden.example"]);
            assert_eq!(o.verdict(), "OK rcode=3 addrs=", "{who:?} {mode} {server}: NXDOMAIN\n{}", o.describe());
        }
        // Control: without the sandbox, nothing answers there.
        let o = unsandboxed(who, &["dns-raw", "udp-connect", NOWHERE, "ok.warden.example"]);
        assert!(o.verdict().starts_with("ERR"), "{who:?}: {NOWHERE} answers DNS on this host\n{}", o.describe());
        assert!(!standin.queried().iter().any(|n| n == "no.warden.example"), "an unlisted name was asked upstream");
    }
}

#[test]
fn one_socket_asking_several_nameservers_at_once_gets_each_answer_from_the_one_it_asked() {
    let standin = StandIn::start(&[("ok.warden.example", &[&["127.0.0.1"]])], 60);
    for who in Who::all() {
        let s = Scratch::new(who);
        let p = profile(&s, who, "strict", &["ok.warden.example:443".to_string()], &standin);
        let sb = Sandbox::new(who).profile(&p);
        // musl sends to every nameserver at once from one socket: a resolver takes an answer only
        // from the server it asked, so each must seem to come from its own.
        for servers in [
            &["192.0.2.53", "198.51.100.53", "203.0.113.53"][..],
            &["2001:db8::53", "2001:db8::54", "::ffff:192.0.2.53"][..],
        ] {
            let o = sb.probe(&[&["dns-fanout", "ok.warden.example"][..], servers].concat());
            let expected = format!("OK {} answers, each from the server asked", servers.len());
            assert_eq!(o.verdict(), expected, "{who:?} {servers:?}\n{}", o.describe());
        }
    }
}

/// The resolver's UDP sockets on the loopback (the sockets of `pid` bound to 127.0.0.1): each
/// one's port and the datagrams the kernel dropped before its queue.
fn loopback_udp_sockets(pid: u32) -> Vec<(u16, u64)> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.flatten().filter_map(|e| std::fs::read_link(e.path()).ok()).collect::<Vec<_>>())
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(String::from))
        .collect();
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (local, inode, drops) = (f.get(1)?, f.get(9)?, f.get(12)?);
            let port = u16::from_str_radix(local.strip_prefix("0100007F:")?, 16).ok()?;
            inodes.contains(&inode.to_string()).then(|| Some((port, drops.parse().ok()?)))?
        })
        .collect()
}

#[test]
fn the_resolver_on_the_loopback_answers_the_servers_sockets_and_no_one_elses() {
    if !ebpf_route_here("the_resolver_on_the_loopback") {
        return;
    }
    let standin = StandIn::start(&[("ok.warden.example", &[&["127.0.0.1"]])], 60);
    let s = Scratch::new(Who::Root);
    let names = ["ok.warden.example:443".to_string(), "also.warden.example:443".to_string()];
    let p = profile(&s, Who::Root, "strict", &names, &standin);
    let log = s.join("audit.jsonl");
    let script = format!("{0} sleep 4; {0} dns-raw udp-connect {NOWHERE} ok.warden.example", probe().display());
    let child = Sandbox::new(Who::Root).profile(&p).grant("--audit-log", &log).spawn(&[
        "/bin/sh".as_ref(),
        "-c".as_ref(),
        script.as_ref(),
    ]);
    let launcher = launcher_pid(&child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut sockets = loopback_udp_sockets(launcher);
    while sockets.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        sockets = loopback_udp_sockets(launcher);
    }
    assert!(!sockets.is_empty(), "the resolver's loopback ports were not found");
    // The attack: another process of the host asks the resolver directly, over UDP and TCP, for
    // a name the profile refuses (a record in the server's log) and one it allows (a query
    // upstream), and floods it (a full queue would make the server's queries wait).
    const FLOOD: u64 = 200;
    for (port, _) in &sockets {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_millis(300))).unwrap();
        for name in ["outside.warden.example", "also.warden.example"] {
            sock.send_to(&mcp_warden_tests::dns_wire::query(7, name, 1), ("127.0.0.1", *port)).unwrap();
            let mut buf = [0u8; 512];
            assert!(sock.recv_from(&mut buf).is_err(), "port {port}: an outsider's query for {name} was answered");
        }
        for _ in 0..FLOOD {
            let _ =
                sock.send_to(&mcp_warden_tests::dns_wire::query(9, "flood.warden.example", 1), ("127.0.0.1", *port));
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], *port));
        // Over TCP the handshake itself is dropped; were it not, the query would go unanswered.
        if let Ok(mut tcp) = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)) {
            tcp.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
            let q = mcp_warden_tests::dns_wire::query(8, "outside.warden.example", 1);
            let _ = tcp.write_all(&[&(q.len() as u16).to_be_bytes()[..], &q].concat());
            let mut buf = [0u8; 512];
            assert!(matches!(tcp.read(&mut buf), Ok(0) | Err(_)), "port {port}: an outsider's TCP query was answered");
        }
    }
    // Every outsider's datagram was dropped before the resolver's queue (its socket filter takes
    // only the server's marked packets), so none could crowd out the server's.
    for ((port, before), (_, after)) in sockets.iter().zip(loopback_udp_sockets(launcher)) {
        assert!(
            after - before >= FLOOD + 2,
            "port {port}: {} of the outsider's datagrams queued",
            FLOOD + 2 - (after - before).min(FLOOD + 2)
        );
    }
    let o = wait_output(child, std::time::Duration::from_secs(30));
    // Control: the server's own query, after the outsider's, is answered.
    assert!(o.stdout.contains("OK rcode=0 addrs=127.0.0.1"), "the server's own query\n{}", o.describe());
    let names: Vec<String> = dns_records(&log).iter().map(|r| r["name"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(names, ["ok.warden.example"], "only the server's query is in its log");
    assert!(!standin.queried().iter().any(|n| n == "also.warden.example"), "an outsider's query went upstream");
}

/// Sends a DNS query and connects to a loopback port from sockets bound to another device
/// (`SO_BINDTODEVICE`, `IP_UNICAST_IF`) and, the control, from plain ones.
const BOUND_TO_DEVICE: &str = r#"import socket, struct, sys
port, name, index = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def query(q):
    b = struct.pack('>HHHHHH', 0x2222, 0x0100, 1, 0, 0, 0)
    for label in q.split('.'):
        b += bytes([len(label)]) + label.encode()
    return b + b'\0' + struct.pack('>HH', 1, 1)
def bound(kind, how):
    s = socket.socket(socket.AF_INET, kind)
    if how == 'bindtodevice':
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, name.encode())
    elif how == 'unicast-if':
        s.setsockopt(socket.IPPROTO_IP, 50, struct.pack('!I', index))
    return s
for how in ('bindtodevice', 'unicast-if', 'none'):
    s = bound(socket.SOCK_DGRAM, how)
    s.settimeout(3)
    try:
        s.sendto(query('dev.warden.example'), ('192.0.2.53', 53))
        s.recvfrom(512)
        print('DNS', how, 'ANSWERED')
    except PermissionError:
        print('DNS', how, 'REFUSED')
    except OSError as e:
        print('DNS', how, 'LOST', e)
    s = bound(socket.SOCK_STREAM, how)
    s.settimeout(2)
    try:
        s.connect(('127.0.0.1', port))
        print('TCP', how, 'CONNECTED')
    except OSError as e:
        print('TCP', how, 'FAILED', type(e).__name__)"#;

#[test]
fn a_socket_bound_to_another_device_puts_nothing_for_a_loopback_address_on_its_wire() {
    if !ebpf_route_here("a_socket_bound_to_another_device") {
        return;
    }
    let devices: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    let Some(device) = devices.first() else {
        skip("a_socket_bound_to_another_device", "this host has no network device but lo");
        return;
    };
    let index = std::fs::read_to_string(format!("/sys/class/net/{device}/ifindex")).unwrap();
    let standin = StandIn::start(&[("dev.warden.example", &[&["127.0.0.1"]])], 60);
    let port = echo("127.0.0.1").to_string();
    let s = Scratch::new(Who::Root);
    let connect = ["dev.warden.example:443".to_string(), format!("127.0.0.1:{port}")];
    let p = profile(&s, Who::Root, "python", &connect, &standin);
    let log = s.join("audit.jsonl");
    let args = ["/usr/bin/python3", "-c", BOUND_TO_DEVICE, &port, device, index.trim()];
    let o = Sandbox::new(Who::Root).profile(&p).grant("--audit-log", &log).exec(&args.map(std::ffi::OsStr::new));
    // The attack: the rewritten DNS query, or any packet for a loopback address, sent out of a
    // socket bound to the host's network device would leave on its wire (found by a review).
    for line in ["DNS bindtodevice REFUSED", "DNS unicast-if REFUSED", "TCP bindtodevice FAILED"] {
        assert!(o.stdout.contains(line), "{line}\n{}", o.describe());
    }
    // Controls: plain sockets get their answer and their connection (IP_UNICAST_IF does not
    // steer a TCP connect: it goes through lo).
    for line in ["DNS none ANSWERED", "TCP none CONNECTED", "TCP unicast-if CONNECTED"] {
        assert!(o.stdout.contains(line), "{line}\n{}", o.describe());
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let refused = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "send" && v["addr"] == "127.0.0.1" && v["verdict"] == "deny")
        .count();
    assert!(refused >= 3, "each refused packet is a record: {refused}\n{text}");
}

/// A query socket with `SO_REUSEADDR` (shared only with the server's consent): says its port,
/// waits for a line on stdin, then asks.
const SHARED_PORT: &str = r#"import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 0))
print(s.getsockname()[1], flush=True)
sys.stdin.readline()
q = struct.pack('>HHHHHH', 0x3333, 0x0100, 1, 0, 0, 0)
for label in 'ok.warden.example'.split('.'):
    q += bytes([len(label)]) + label.encode()
s.sendto(q + b'\0' + struct.pack('>HH', 1, 1), ('192.0.2.53', 53))
s.settimeout(3)
try:
    s.recvfrom(512)
    print('ANSWERED')
except OSError:
    print('UNANSWERED')"#;

#[test]
fn an_answer_that_could_reach_another_users_socket_at_the_servers_port_is_withheld_and_recorded() {
    if !ebpf_route_here("an_answer_that_could_reach_another_users_socket") {
        return;
    }
    let standin = StandIn::start(&[("ok.warden.example", &[&["127.0.0.1"]])], 60);
    let s = Scratch::new(Who::Root);
    let p = profile(&s, Who::Root, "python", &["ok.warden.example:443".to_string()], &standin);
    let log = s.join("audit.jsonl");
    let mut child = Sandbox::new(Who::Root).profile(&p).grant("--audit-log", &log).spawn(&[
        "/usr/bin/python3".as_ref(),
        "-c".as_ref(),
        SHARED_PORT.as_ref(),
    ]);
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("the server's port: {line:?}"));
    // Another process binds the loopback address at the server's port (the server allowed
    // sharing it): an answer to that port could reach it.
    let other = {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, setsockopt, socket, sockopt};
        let fd = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::empty(), None).unwrap();
        setsockopt(&fd, sockopt::ReuseAddr, &true).unwrap();
        bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &format!("127.0.0.1:{port}").parse::<SockaddrIn>().unwrap())
            .unwrap();
        std::net::UdpSocket::from(fd)
    };
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let (mut rest, mut stderr) = (String::new(), String::new());
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    child.wait().unwrap();
    assert_eq!(rest.trim(), "UNANSWERED", "{stderr}");
    other.set_nonblocking(true).unwrap();
    assert!(other.recv_from(&mut [0u8; 512]).is_err(), "the other process got the answer");
    let withheld: Vec<_> = dns_records(&log).into_iter().filter(|r| r["outcome"] == "withheld").collect();
    assert_eq!(withheld.len(), 1, "the withheld answer is a record: {withheld:?}");
    assert_eq!(withheld[0]["name"], "ok.warden.example");
    assert!(stderr.contains("dns: refused ok.warden.example"), "and is told on stderr\n{stderr}");
}

/// Fills a socket's option memory (a socket filter, IPv6 group memberships: `optmem_max`) so that
/// the socket programs cannot keep where its query goes, then asks; a fresh socket is the control.
const OPTMEM_FULL: &str = r#"import socket, struct, ctypes
def query(name):
    q = struct.pack('>HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0)
    for label in name.split('.'):
        q += bytes([len(label)]) + label.encode()
    return q + b'\0' + struct.pack('>HH', 1, 1)
def fill(s):
    # A socket filter and IPv6 group memberships take the socket's option memory (optmem_max).
    for size in (4000, 2000, 1000, 500, 250):
        ins = struct.pack('HBBI', 0, 0, 0, 0) * (size - 1) + struct.pack('HBBI', 6, 0, 0, 0xffffffff)
        buf = ctypes.create_string_buffer(ins, len(ins))
        try:
            s.setsockopt(socket.SOL_SOCKET, 26, struct.pack('HxxxxxxQ', size, ctypes.addressof(buf)))
            break
        except OSError:
            pass
    for ifindex in (1, 0):
        for i in range(5000):
            try:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, socket.inet_pton(socket.AF_INET6, 'ff15::%x' % (i + 1)) + struct.pack('@I', ifindex))
            except OSError:
                break
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
fill(s)
for dst in ('2001:db8::53', '::ffff:192.0.2.53'):
    try:
        s.sendto(query('full.warden.example'), (dst, 53))
        print('SENT', dst)
    except PermissionError:
        print('REFUSED', dst)
c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
c.settimeout(5)
c.sendto(query('ok.warden.example'), ('2001:db8::53', 53))
print('CONTROL', len(c.recvfrom(512)[0]) > 12)"#;

#[test]
fn a_query_the_socket_programs_cannot_route_is_refused_not_sent_as_made() {
    if !ebpf_route_here("a_query_the_socket_programs_cannot_route") {
        return;
    }
    let standin = StandIn::start(&[("ok.warden.example", &[&["127.0.0.1"]])], 60);
    let s = Scratch::new(Who::Root);
    let p = profile(&s, Who::Root, "python", &["ok.warden.example:443".to_string()], &standin);
    let o =
        Sandbox::new(Who::Root).profile(&p).exec(&["/usr/bin/python3".as_ref(), "-c".as_ref(), OPTMEM_FULL.as_ref()]);
    // Sent as made, these would reach whatever listens at the addresses asked: a real resolver.
    for dst in ["2001:db8::53", "::ffff:192.0.2.53"] {
        assert!(o.stdout.contains(&format!("REFUSED {dst}")), "{dst}: an unroutable query went out\n{}", o.describe());
    }
    assert!(o.stdout.contains("CONTROL True"), "a fresh socket's query is answered\n{}", o.describe());
    assert!(!standin.queried().iter().any(|n| n == "full.warden.example"), "the name reached upstream");
}

#[test]
fn nodes_and_pythons_own_resolvers_get_the_same_answers() {
    let standin = StandIn::start(
        &[("ok.warden.example", &[&["127.0.0.1"]]), ("six.warden.example", &[&["2606:4700::1111"]])],
        60,
    );
    let node = PathBuf::from("/usr/bin/node");
    for who in Who::all() {
        let s = Scratch::new(who);
        let names = ["ok.warden.example:443".to_string(), "six.warden.example:443".to_string()];
        // c-ares, Node's own resolver, reads /etc/resolv.conf and sends to its nameserver.
        let p = profile(&s, who, "node", &names, &standin);
        let js = "const r=new (require('dns').promises.Resolver)();r.resolve4('ok.warden.example').then(a=>console.log('OK',a.join(','))).then(()=>r.resolve4('no.warden.example')).then(a=>console.log('LEAK',a),e=>console.log('NX',e.code))";
        let o = Sandbox::new(who).profile(&p).exec(&[node.as_os_str(), "-e".as_ref(), js.as_ref()]);
        assert!(
            o.stdout.contains("OK 127.0.0.1") && o.stdout.contains("NX ENOTFOUND"),
            "{who:?} node\n{}",
            o.describe()
        );
        let p = profile(&s, who, "python", &names, &standin);
        let py = "import socket\nprint('OK', socket.gethostbyname('ok.warden.example'))\nprint('AAAA', socket.getaddrinfo('six.warden.example', 443, socket.AF_INET6)[0][4][0])\ntry:\n  socket.gethostbyname('no.warden.example'); print('LEAK')\nexcept OSError as e: print('NX', e)";
        let o = Sandbox::new(who).profile(&p).exec(&["/usr/bin/python3".as_ref(), "-c".as_ref(), py.as_ref()]);
        assert!(o.stdout.contains("OK 127.0.0.1") && o.stdout.contains("NX"), "{who:?} python\n{}", o.describe());
        assert!(o.stdout.contains("AAAA 2606:4700::1111"), "{who:?}: an AAAA answer\n{}", o.describe());
    }
}

#[test]
fn a_round_robin_name_connects_whichever_address_it_answers() {
    let standin = StandIn::start(&[("rr.warden.example", &[&["127.0.0.2"], &["127.0.0.3"]])], 60);
    let port = echo("127.0.0.2");
    let l3 = TcpListener::bind(("127.0.0.3", port)).expect("the same port on 127.0.0.3");
    std::thread::spawn(move || for _ in l3.incoming() {});
    for who in Who::all() {
        let s = Scratch::new(who);
        let p = profile(&s, who, "strict", &[format!("rr.warden.example:{port}")], &standin);
        let probe = probe();
        let script = format!(
            "{0} tcp-connect rr.warden.example {port} && {0} tcp-connect rr.warden.example {port}",
            probe.display()
        );
        let o = Sandbox::new(who).profile(&p).exec(&["/bin/sh".as_ref(), "-c".as_ref(), script.as_ref()]);
        assert_eq!(o.stdout.matches("OK connected").count(), 2, "{who:?}: a false positive\n{}", o.describe());
    }
}

#[test]
fn an_answer_that_rebinds_a_public_name_to_a_private_address_is_dropped() {
    let standin = StandIn::start(
        &[
            ("meta.warden.example", &[&["169.254.169.254"]]),
            ("lan.warden.example", &[&["10.0.0.1"]]),
            ("ok.warden.example", &[&["127.0.0.1"]]),
        ],
        60,
    );
    for who in Who::all() {
        let s = Scratch::new(who);
        let names = ["meta.warden.example:80", "lan.warden.example:80", "ok.warden.example:80"].map(String::from);
        let p = profile(&s, who, "strict", &names, &standin);
        let log = s.join("audit.jsonl");
        let sb = Sandbox::new(who).profile(&p).grant("--audit-log", &log);
        for name in ["meta.warden.example", "lan.warden.example"] {
            let o = sb.probe(&["dns-raw", "udp-connect", NOWHERE, name]);
            assert_eq!(o.verdict(), "OK rcode=2 addrs=", "{who:?} {name}: SERVFAIL\n{}", o.describe());
        }
        // Control: a range the profile lets names answer (private-answers = 127.0.0.0/8).
        let o = sb.probe(&["dns-raw", "udp-connect", NOWHERE, "ok.warden.example"]);
        assert_eq!(o.verdict(), "OK rcode=0 addrs=127.0.0.1", "{who:?}\n{}", o.describe());
        let rebinding: Vec<_> = dns_records(&log).into_iter().filter(|r| r["outcome"] == "rebinding").collect();
        assert_eq!(rebinding.len(), 2, "{who:?}: {rebinding:?}");
        assert_eq!(rebinding[0]["addresses"], serde_json::json!(["169.254.169.254"]));
    }
}

#[test]
fn an_expired_answer_refuses_new_connections_but_not_an_established_one() {
    // TTL 1: held for the 5-second minimum.
    let standin = StandIn::start(&[("short.warden.example", &[&["127.0.0.1"]])], 1);
    let port = echo("127.0.0.1");
    for who in Who::all() {
        let s = Scratch::new(who);
        let p = profile(&s, who, "strict", &[format!("short.warden.example:{port}")], &standin);
        let o = Sandbox::new(who).profile(&p).probe(&["dns-expiry", "short.warden.example", &port.to_string(), "7"]);
        assert_eq!(o.verdict(), "OK first=connected second=EACCES established=echoed", "{who:?}\n{}", o.describe());
        assert!(o.stderr.contains("is not in the allow-list"), "{who:?}: the refusal is told\n{}", o.stderr);
    }
}

#[test]
fn a_thread_rewriting_the_query_while_it_is_sent_cannot_smuggle_a_name_out() {
    let standin = StandIn::start(&[("ok.warden.example", &[&["127.0.0.1"]])], 60);
    for who in Who::all() {
        let s = Scratch::new(who);
        let p = profile(&s, who, "strict", &["ok.warden.example:443".to_string()], &standin);
        let o = Sandbox::new(who).profile(&p).probe(&[
            "dns-race",
            NOWHERE,
            "ok.warden.example",
            "xx.warden.example",
            "300",
        ]);
        let counts: Vec<u32> = o.verdict().split(['=', ' ']).filter_map(|w| w.parse().ok()).collect();
        assert!(
            matches!(counts[..], [answered, _, 0] if answered > 0),
            "{who:?}: control: answers came\n{}",
            o.describe()
        );
        let asked = standin.queried();
        assert!(!asked.iter().any(|n| n == "xx.warden.example"), "{who:?}: the rewritten name left: {asked:?}");
        assert!(asked.iter().any(|n| n == "ok.warden.example"), "{who:?}: control: the allowed name was asked");
    }
}

#[test]
fn a_cname_chain_opens_its_last_link_only_and_other_destinations_stay_closed() {
    let standin = StandIn::start(
        &[("alias.warden.example", &[&["cname:edge.cdn.example"]]), ("edge.cdn.example", &[&["127.0.0.5"]])],
        60,
    );
    let port = echo("127.0.0.5");
    // The answer also carries an A record for another name (127.0.0.9): never opened.
    let stray = TcpListener::bind(("127.0.0.9", port)).expect("the same port on 127.0.0.9");
    std::thread::spawn(move || for _ in stray.incoming() {});
    for who in Who::all() {
        let s = Scratch::new(who);
        let p = profile(&s, who, "strict", &[format!("alias.warden.example:{port}")], &standin);
        let sb = Sandbox::new(who).profile(&p);
        let o = sb.probe(&["dns-raw", "udp-connect", NOWHERE, "alias.warden.example"]);
        assert_eq!(o.verdict(), "OK rcode=0 addrs=127.0.0.5", "{who:?}: the chain's addresses only\n{}", o.describe());
        let o = sb.probe(&["tcp-connect", "alias.warden.example", &port.to_string()]);
        assert_ok(&o, "connect through the CNAME chain");
        // The attacks: the stray record's address, and DNS over TLS / HTTPS to resolvers the
        // profile does not name, with the names resolved just before.
        let script = format!(
            "{0} resolve alias.warden.example; {0} tcp-connect 127.0.0.9 {port}; {0} tcp-connect 192.0.2.1 853; {0} tcp-connect 192.0.2.1 443",
            probe().display()
        );
        let o = sb.exec(&["/bin/sh".as_ref(), "-c".as_ref(), script.as_ref()]);
        let refused = o.stdout.lines().filter(|l| *l == "ERR EACCES" || *l == "ERR EPERM").count();
        assert_eq!(refused, 3, "{who:?}: an address no answer gave, DoT and DoH are refused\n{}", o.describe());
    }
}

#[test]
fn explain_says_who_answers_dns_and_which_names() {
    let standin = StandIn::start(&[], 60);
    let s = Scratch::new(Who::Root);
    let p = profile(
        &s,
        Who::Root,
        "strict",
        &["api.example.com:443".to_string(), "*.cdn.example.com:443".to_string()],
        &standin,
    );
    let o = run(
        warden_as(
            Who::Root,
            &["explain".as_ref(), "--profile".as_ref(), p.as_os_str(), "--".as_ref(), "/bin/true".as_ref()],
        ),
        None,
        std::time::Duration::from_secs(30),
    );
    for expected in [
        "api.example.com:443",
        "*.cdn.example.com:443",
        "DNS (port 53, any address) answered by mcp-warden",
        "any other gets NXDOMAIN and never leaves the host",
        &standin.addr.to_string(),
    ] {
        assert!(o.stdout.contains(expected), "explain lacks `{expected}`\n{}", o.describe());
    }
}
