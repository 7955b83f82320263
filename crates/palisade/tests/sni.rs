//! SNI / DNS / IP agreement end to end (root; skipped, saying so, elsewhere): `palisade up`
//! runs the DNS proxy and the egress gateway's transparent listener in a node namespace; the
//! node redirects the pod's TCP 443 to that listener (nftables `redirect`, as the agent's
//! egress redirect would). A TLS ClientHello whose SNI names an allowed host is tunnelled only
//! to an IP that this pod's DNS answers gave for that name; any other destination IP, or a
//! name the pod never resolved, is refused (connection closed), and the refusal is an `http`
//! event with the deciding reason.
//!
//! The same holds with the DNS proxy and the gateway as two processes (`palisade dns` and
//! `palisade egress`, as in Kubernetes): the gateway follows the proxy's answers feed
//! (`spec.dns.answersListen` / `spec.egress.dnsAnswers`), learning earlier answers from its
//! snapshot and later ones as they are given, and following the proxy across a restart.

use palisade_agent::lab::Lab;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod netns;
use netns::{bin, dnsmasq, in_ns, lab_server, sh, Kill, Netns};

fn can_run() -> bool {
    netns::can_run(
        "the SNI agreement test",
        &["nft", "dnsmasq", "dig", "python3", "curl"],
    )
}

/// Sends a real TLS ClientHello for `sni` to `ip:443` from the pod; returns what came back
/// before the connection ended: the upstream's greeting when tunnelled, `CLOSED` when refused.
const HELLO: &str = r#"
import socket, ssl, sys
sni, ip = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context()
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inc, out, server_hostname=sni)
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = out.read()
s = socket.create_connection((ip, 443), timeout=3)
s.sendall(hello)
try:
    data = s.recv(3)
except (ConnectionResetError, socket.timeout):
    data = b""
print(data.decode("latin-1") if data else "CLOSED")
"#;

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: trainer, namespace: ml, labels: {app: trainer}}
spec: {containers: [{name: c}]}
status: {podIP: 10.91.1.1}
---
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: model-hub, namespace: ml}
spec:
  podSelector: {matchLabels: {app: trainer}}
  egress:
  - to: [{fqdn: "**.models.test"}]
    ports: [{port: 443}]
"#;

/// The namespaces and servers both tests share: a lab node with one pod (`ml/trainer`,
/// 10.91.1.1), "the internet" (10.99.1.10 and .12 serving TCP 443 in a namespace of their
/// own), the pod's TCP 443 redirected to the node's port 15443, and a dnsmasq upstream on the
/// node's 127.0.0.1:5353. Dropped in field order: servers first, the lab last (after the
/// components each test starts, which are declared later and so dropped first).
struct World {
    _servers: Kill,
    _dnsmasq: Kill,
    _ext: Netns,
    _lab: Lab,
    node: String,
    pod: String,
    dir: PathBuf,
}

/// The test folder goes with the world, unless the test failed (its logs say why).
impl Drop for World {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn world(prefix: &str) -> World {
    let id = std::process::id() % 10000;
    let dir: PathBuf = std::env::temp_dir().join(format!("palisade-{prefix}-e2e-{id}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    std::fs::write(dir.join("manifests/ml.yaml"), MANIFESTS).unwrap();
    let lab = Lab::create(
        &format!("{prefix}{id}"),
        &[(0, "ml/trainer".into(), "10.91.1.1".parse().unwrap())],
    )
    .expect("lab");
    let node = lab.node_ns.clone();
    let pod = lab.pods[0].netns.clone();
    let ext = Netns(format!("{prefix}{id}-ext"));
    sh(&format!(
        "ip netns add {e} && ip -n {node} link add hx type veth peer name eth0 netns {e} && ip -n {node} link set hx up && ip -n {node} addr add 169.254.1.1/32 dev hx && ip -n {node} route add 10.99.1.10/32 dev hx && ip -n {node} route add 10.99.1.12/32 dev hx && ip -n {e} link set lo up && ip -n {e} link set eth0 up && ip -n {e} addr add 10.99.1.10/32 dev eth0 && ip -n {e} addr add 10.99.1.12/32 dev eth0 && ip -n {e} route add 169.254.1.1 dev eth0 scope link && ip -n {e} route add default via 169.254.1.1 dev eth0",
        e = ext.0
    ));
    // The pod's HTTPS goes to the gateway's transparent listener.
    let redirect = "table ip sni_e2e {\n chain pre {\n  type nat hook prerouting priority dstnat;\n  ip saddr 10.91.1.1 tcp dport 443 redirect to :15443\n }\n}\n";
    let st = Command::new("ip")
        .args(["netns", "exec", &node, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(redirect.as_bytes())?;
            c.wait()
        })
        .unwrap();
    assert!(st.success(), "redirect rule");
    let servers = lab_server(&ext.0, "443");
    let dnsmasq = dnsmasq(
        &node,
        &[
            "--address=/cdn.models.test/10.99.1.10",
            "--address=/hub.models.test/10.99.1.12",
            "--address=/new.models.test/10.99.1.10",
        ],
    );
    World {
        _servers: servers,
        _dnsmasq: dnsmasq,
        _ext: ext,
        _lab: lab,
        node,
        pod,
        dir,
    }
}

/// A PalisadeConfig for `w` writing events to `events`, with `dns` and `egress` extra keys.
fn write_config(w: &World, file: &str, events: &str, dns: &str, egress: &str) -> PathBuf {
    let cfg = w.dir.join(file);
    std::fs::write(
        &cfg,
        format!(
            "apiVersion: palisade.dev/v1alpha1
kind: PalisadeConfig
metadata: {{name: sni-e2e}}
spec:
  manifests: manifests
  dataDir: {data}
  dns: {{listen: \"169.254.1.1:53\", upstream: \"127.0.0.1:5353\"{dns}}}
  egress: {{listen: \"127.0.0.1:3128\", transparent: \"0.0.0.0:15443\"{egress}}}
  events: {{jsonl: {events}, store: false}}
",
            data = w.dir.join(format!("data-{file}")).display(),
            events = w.dir.join(events).display()
        ),
    )
    .unwrap();
    cfg
}

/// `palisade ARGS...` in the node namespace, its stderr in `log` (under the test folder).
fn palisade_in_node(w: &World, args: &[&str], log: &str) -> Kill {
    let err = std::fs::File::create(w.dir.join(log)).unwrap();
    Kill(
        Command::new("ip")
            .args(["netns", "exec", &w.node, bin()])
            .args(args)
            .current_dir(&w.dir)
            .stderr(err)
            .spawn()
            .unwrap(),
    )
}

fn dig(w: &World, name: &str) -> String {
    in_ns(
        &w.pod,
        &["dig", "@169.254.1.1", name, "+short", "+time=1", "+tries=1"],
    )
}

fn hello(w: &World, sni: &str, ip: &str) -> String {
    in_ns(&w.pod, &["python3", "-c", HELLO, sni, ip])
        .trim()
        .to_string()
}

/// Waits until `cond` holds, failing with `what` after `secs` seconds.
fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The resolved-then-connected sequence both tests check, once the DNS proxy answers and
/// the gateway knows what `cdn.models.test` resolved to.
fn check_agreement(w: &World) {
    // The name is allowed, but the pod was never told that it lives at 10.99.1.12.
    assert_eq!(hello(w, "cdn.models.test", "10.99.1.12"), "CLOSED");
    // A name the pod never resolved, at the IP it has (shared-CDN-IP fronting).
    assert_eq!(hello(w, "hub.models.test", "10.99.1.10"), "CLOSED");
    // Once resolved, that name works at its own IP, and still not at the other.
    assert!(dig(w, "hub.models.test").contains("10.99.1.12"));
    wait_for(5, "the newly resolved name never got through", || {
        hello(w, "hub.models.test", "10.99.1.12") == "ok"
    });
    assert_eq!(hello(w, "hub.models.test", "10.99.1.10"), "CLOSED");
}

/// The refusals are http events with the reason; the agreeing tunnels are allowed ones.
fn check_events(events: &std::path::Path) {
    let start = Instant::now();
    let evs = loop {
        let evs: Vec<serde_json::Value> = std::fs::read_to_string(events)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|e: &serde_json::Value| e["type"] == "http")
            .collect();
        if evs.iter().filter(|e| e["verdict"] == "deny").count() >= 3
            || start.elapsed() > Duration::from_secs(5)
        {
            break evs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let denied: Vec<&serde_json::Value> = evs.iter().filter(|e| e["verdict"] == "deny").collect();
    assert_eq!(denied.len(), 3, "{evs:#?}");
    for e in &denied {
        assert_eq!(e["source"]["name"], "trainer", "{e}");
        assert!(
            e.to_string().contains("dns-mismatch"),
            "the event must say why: {e}"
        );
    }
    assert!(
        denied
            .iter()
            .any(|e| e["destination"]["fqdn"] == "cdn.models.test"
                && e["destination"]["ip"] == "10.99.1.12"),
        "{denied:#?}"
    );
    assert!(
        evs.iter().any(|e| e["verdict"] == "allow"
            && e["destination"]["fqdn"] == "hub.models.test"
            && e["destination"]["ip"] == "10.99.1.12"),
        "{evs:#?}"
    );
}

#[test]
fn sni_must_name_what_the_pod_resolved_to_that_ip() {
    if !can_run() {
        return;
    }
    let w = world("pls");
    let cfg = write_config(&w, "config.yaml", "events.jsonl", "", "");
    let _up = palisade_in_node(&w, &["up", "--config", cfg.to_str().unwrap()], "up.log");
    wait_for(20, "the DNS proxy never answered", || {
        dig(&w, "cdn.models.test").contains("10.99.1.10")
    });
    // Wait for the transparent listener too: the agreeing connection must get through.
    wait_for(20, "SNI and IP agree, yet the tunnel did not open", || {
        hello(&w, "cdn.models.test", "10.99.1.10") == "ok"
    });
    check_agreement(&w);
    check_events(&w.dir.join("events.jsonl"));
}

#[test]
fn a_gateway_in_another_process_follows_the_dns_proxys_answers() {
    if !can_run() {
        return;
    }
    let w = world("plf");
    std::fs::write(w.dir.join("feed.token"), "s3cret-feed-token\n").unwrap();
    let dns_cfg = write_config(
        &w,
        "dns.yaml",
        "dns-events.jsonl",
        ", minTtlSeconds: 30, answersListen: \"127.0.0.1:9054\", answersTokenFile: feed.token",
        "",
    );
    let egress_cfg = write_config(
        &w,
        "egress.yaml",
        "events.jsonl",
        "",
        ", dnsAnswers: [\"http://127.0.0.1:9054\"], dnsAnswersTokenFile: feed.token",
    );
    let dns_args = ["dns", "--no-sets", "--config", dns_cfg.to_str().unwrap()];
    let dns = palisade_in_node(&w, &dns_args, "dns.log");
    wait_for(20, "the DNS proxy never answered", || {
        dig(&w, "cdn.models.test").contains("10.99.1.10")
    });
    // The gateway starts after the answer was given: it learns it from the feed's snapshot.
    let _egress = palisade_in_node(
        &w,
        &["egress", "--config", egress_cfg.to_str().unwrap()],
        "egress.log",
    );
    let log = w.dir.join("egress.log");
    wait_for(20, "the gateway never opened the answers feed", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("DNS answers feed open"))
    });
    // The snapshot follows the response head at once; give it a moment to be read.
    std::thread::sleep(Duration::from_millis(500));
    wait_for(20, "SNI and IP agree, yet the tunnel did not open", || {
        hello(&w, "cdn.models.test", "10.99.1.10") == "ok"
    });
    check_agreement(&w);
    check_events(&w.dir.join("events.jsonl"));
    // A subscriber without the token is refused.
    let refused = in_ns(
        &w.node,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "2",
            "http://127.0.0.1:9054/v1/answers",
        ],
    );
    assert_eq!(refused, "401");

    // The DNS proxy restarts: the gateway opens the feed again and hears the new answers.
    drop(dns);
    let _dns = palisade_in_node(&w, &dns_args, "dns-2.log");
    wait_for(20, "the restarted DNS proxy never answered", || {
        dig(&w, "new.models.test").contains("10.99.1.10")
    });
    // The pod is known (its earlier answers are still live), so the new name is refused
    // until the gateway hears the new answer through the reopened feed.
    wait_for(
        10,
        "after the restart, the feed's answers never reached the gateway",
        || hello(&w, "new.models.test", "10.99.1.10") == "ok",
    );
    assert_eq!(hello(&w, "new.models.test", "10.99.1.12"), "CLOSED");
}

/// Answers every connection on TCP 443 with `EVL` (the server a hostile pod wants to reach).
const EVIL_SERVER: &str = r#"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 443))
s.listen(16)
while True:
    c, _ = s.accept()
    try:
        c.recv(4096)
        c.sendall(b"EVL")
    except OSError:
        pass
    c.close()
"#;

/// A pod whose DNS the proxy never answered (it resolves elsewhere, or not at all) presents
/// an allowed name in SNI and picks the address of a server no policy allows. Nothing
/// vouches for that address, so the gateway connects to the name itself: the tunnel reaches
/// the allowed host, never the address the pod chose (on the old code it reached it: `EVL`).
#[test]
fn a_pod_unknown_to_the_dns_proxy_reaches_the_name_not_the_address_it_picked() {
    if !can_run() {
        return;
    }
    let w = world("plu");
    let evil = Netns(format!("plu{}-evil", std::process::id() % 10000));
    sh(&format!(
        "ip netns add {e} && ip -n {node} link add hv type veth peer name eth0 netns {e} && ip -n {node} link set hv up && ip -n {node} route add 10.99.1.66/32 dev hv && ip -n {e} link set lo up && ip -n {e} link set eth0 up && ip -n {e} addr add 10.99.1.66/32 dev eth0 && ip -n {e} route add 169.254.1.1 dev eth0 scope link && ip -n {e} route add default via 169.254.1.1 dev eth0",
        e = evil.0,
        node = w.node
    ));
    let _evil_server = Kill(
        Command::new("ip")
            .args(["netns", "exec", &evil.0, "python3", "-c", EVIL_SERVER])
            .spawn()
            .unwrap(),
    );
    let cfg = write_config(
        &w,
        "config.yaml",
        "events.jsonl",
        "",
        ", hosts: {cdn.models.test: 10.99.1.10}",
    );
    let _up = palisade_in_node(&w, &["up", "--config", cfg.to_str().unwrap()], "up.log");
    wait_for(20, "the evil server never answered", || {
        in_ns(&w.node, &["python3", "-c", HELLO, "x.test", "10.99.1.66"]).trim() == "EVL"
    });
    // The pod never asks the DNS proxy anything: it stays unknown to the gateway.
    wait_for(20, "an allowed name never got through", || {
        hello(&w, "cdn.models.test", "10.99.1.10") == "ok"
    });
    for _ in 0..3 {
        assert_eq!(
            hello(&w, "cdn.models.test", "10.99.1.66"),
            "ok",
            "the tunnel must go to cdn.models.test, not to the address the pod picked"
        );
    }
    // A name that is not allowed is still refused.
    assert_eq!(hello(&w, "evil.test", "10.99.1.66"), "CLOSED");
}

/// Sends `CONNECT NAME:443` to the gateway's explicit listener as the trainer (standalone
/// proxy credential); prints what came back: the status line, and the tunnelled server's
/// greeting when the tunnel opened.
const CONNECT_AS_TRAINER: &str = r#"
import base64, socket, sys
name = sys.argv[1]
s = socket.create_connection(("127.0.0.1", 3128), timeout=3)
cred = base64.b64encode(b"trainer:pw").decode()
s.sendall(f"CONNECT {name}:443 HTTP/1.1\r\nHost: {name}:443\r\nProxy-Authorization: Basic {cred}\r\n\r\n".encode())
data = b""
try:
    while not (b"\r\n\r\n" in data and (not data.startswith(b"HTTP/1.1 200") or data.endswith(b"ok\n"))):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
except socket.timeout:
    pass
print(data.decode("latin-1"))
"#;

/// The node namespace's own hosts file (`/etc/netns/NODE/hosts`, which `ip netns exec`
/// mounts over `/etc/hosts`): what the gateway's system resolver says there, standing in for
/// a DNS server someone else controls. Removed on drop.
struct NodeHosts(PathBuf);

impl NodeHosts {
    fn write(w: &World, names: &str) -> NodeHosts {
        let dir = PathBuf::from(format!("/etc/netns/{}", w.node));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hosts"), format!("127.0.0.1 localhost\n{names}")).unwrap();
        NodeHosts(dir)
    }
}

impl Drop for NodeHosts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config of `w` whose explicit proxy takes the credential `trainer:pw` as `ml/trainer`.
fn proxy_user_config(w: &World) -> PathBuf {
    write_config(
        w,
        "config.yaml",
        "events.jsonl",
        "",
        ", proxyUsers: [{username: trainer, password: pw, pod: ml/trainer}]",
    )
}

/// A name the gateway resolves itself (explicit proxy, system resolver) may not lead it to a
/// pod's address: pods are reached by pod rules, never by name, as the DNS proxy never
/// opens a pod's address for a name either. Here `db.models.test` (allowed by the trainer's
/// `**.models.test` rule) resolves to the address of pod `ml/db`; on the old code the
/// gateway opened the tunnel to it.
#[test]
fn a_name_that_resolves_to_a_pod_does_not_lead_the_gateway_there() {
    if !can_run() {
        return;
    }
    let w = world("plp");
    std::fs::write(
        w.dir.join("manifests/db.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: ml, labels: {app: db}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.99.1.12}\n",
    )
    .unwrap();
    let _hosts = NodeHosts::write(
        &w,
        "10.99.1.12 db.models.test\n10.99.1.10 www.models.test\n",
    );
    let cfg = proxy_user_config(&w);
    let _up = palisade_in_node(&w, &["up", "--config", cfg.to_str().unwrap()], "up.log");
    let connect = |name: &str| in_ns(&w.node, &["python3", "-c", CONNECT_AS_TRAINER, name]);
    // An allowed name at an address outside the cluster: tunnelled.
    wait_for(20, "the gateway never tunnelled to www.models.test", || {
        let got = connect("www.models.test");
        got.starts_with("HTTP/1.1 200") && got.ends_with("ok\n\n")
    });
    // The same rule's name at a pod's address: refused, saying why.
    let got = connect("db.models.test");
    assert!(got.starts_with("HTTP/1.1 403"), "{got}");
    assert!(got.contains("upstream-internal-address"), "{got}");
}

/// `spec.clusterNetworks` names the cluster's own ranges (Service CIDR, node network): a
/// name never leads there. Here "the internet" (10.99.1.10 and .12) is declared such a range:
/// the explicit proxy refuses `www.models.test` (which the node's resolver puts at .10), and
/// the DNS proxy still answers the pod for `cdn.models.test` (.10) but opens nothing, so the
/// pod's TLS to that address is refused as one no answer gave. On the old code the field did
/// not exist (and the config did not load).
#[test]
fn the_clusters_own_networks_are_never_opened_by_a_name() {
    if !can_run() {
        return;
    }
    let w = world("plc");
    let _hosts = NodeHosts::write(&w, "10.99.1.10 www.models.test\n");
    let cfg = proxy_user_config(&w);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("  clusterNetworks: [\"10.99.1.8/29\"]\n");
    std::fs::write(&cfg, text).unwrap();
    let _up = palisade_in_node(&w, &["up", "--config", cfg.to_str().unwrap()], "up.log");
    let connect = |name: &str| in_ns(&w.node, &["python3", "-c", CONNECT_AS_TRAINER, name]);
    wait_for(20, "the explicit proxy never answered", || {
        !connect("www.models.test").is_empty()
    });
    let got = connect("www.models.test");
    assert!(got.starts_with("HTTP/1.1 403"), "{got}");
    assert!(got.contains("upstream-internal-address"), "{got}");
    // The pod is told the address, but nothing opens it for the name.
    wait_for(20, "the DNS proxy never answered", || {
        dig(&w, "cdn.models.test").contains("10.99.1.10")
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hello(&w, "cdn.models.test", "10.99.1.10"), "CLOSED");
}
