//! Test harness: a 3-member etcd cluster on loopback, `palisade up` members (each behind its
//! own cuttable TCP proxies to etcd, to partition it), and the CLI.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_palisade"))
}

/// A loopback port outside the ones this project reserves (2379/2380, 18000-18090, 15353,
/// 53xx), free when chosen.
pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        let reserved = (2379..=2380).contains(&p)
            || (18000..=18090).contains(&p)
            || p == 15353
            || (5300..=5399).contains(&p);
        if !reserved {
            ports.push(p);
        }
        held.push(l);
    }
    ports
}

pub(crate) fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// One etcd member process.
struct EtcdMember {
    name: String,
    client: u16,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

/// A 3-member etcd cluster.
pub(crate) struct Etcd {
    members: Vec<EtcdMember>,
}

impl Etcd {
    pub(crate) fn available() -> bool {
        Command::new("etcd")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    pub(crate) fn start(dir: &Path) -> Etcd {
        let ports = free_ports(6);
        let peer = |i: usize| format!("http://127.0.0.1:{}", ports[3 + i]);
        let cluster: Vec<String> = (0..3).map(|i| format!("e{i}={}", peer(i))).collect();
        let mut members = Vec::new();
        for (i, port) in ports.iter().take(3).enumerate() {
            let data = dir.join(format!("etcd{i}"));
            let client = format!("http://127.0.0.1:{port}");
            let args = vec![
                format!("--name=e{i}"),
                format!("--data-dir={}", data.display()),
                format!("--listen-client-urls={client}"),
                format!("--advertise-client-urls={client}"),
                format!("--listen-peer-urls={}", peer(i)),
                format!("--initial-advertise-peer-urls={}", peer(i)),
                format!("--initial-cluster={}", cluster.join(",")),
                "--initial-cluster-state=new".into(),
                "--initial-cluster-token=palisade-federation-test".into(),
                "--heartbeat-interval=50".into(),
                "--election-timeout=500".into(),
                "--snapshot-count=100000".into(),
            ];
            members.push(EtcdMember {
                name: format!("e{i}"),
                client: *port,
                args,
                child: None,
                log: dir.join(format!("etcd{i}.log")),
            });
        }
        let mut e = Etcd { members };
        for i in 0..3 {
            e.restart(i);
        }
        e
    }

    /// `host:port` of each member.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect()
    }

    /// `etcd://a,b,c`.
    pub(crate) fn url(&self) -> String {
        format!("etcd://{}", self.endpoints().join(","))
    }

    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn restart(&mut self, i: usize) {
        let m = &mut self.members[i];
        let log = std::fs::File::create(&m.log).unwrap();
        let child = Command::new("etcd")
            .args(&m.args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting etcd {}: {e}", m.name));
        m.child = Some(child);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// A TCP forwarder that can be cut (all connections closed, new ones refused) and healed.
pub(crate) struct Proxy {
    pub(crate) port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub(crate) fn start(target: String) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c2, k2) = (cut.clone(), conns.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                if c2.load(Ordering::SeqCst) {
                    let _ = s.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(up) = TcpStream::connect(&target) else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                let _ = up.set_nodelay(true);
                {
                    let mut k = k2.lock().unwrap();
                    k.push(s.try_clone().unwrap());
                    k.push(up.try_clone().unwrap());
                }
                pipe(s.try_clone().unwrap(), up.try_clone().unwrap());
                pipe(up, s);
            }
        });
        Proxy { port, cut, conns }
    }

    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    pub(crate) fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// A `palisade up` member cluster.
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) admin: u16,
    pub(crate) dir: PathBuf,
    proxies: Vec<Proxy>,
    args: Vec<String>,
    child: Option<Child>,
}

impl Member {
    /// Writes the config and manifests and starts `palisade up`.
    pub(crate) fn start(
        root: &Path,
        name: &str,
        labels: &[&str],
        workloads: &str,
        etcd: &Etcd,
    ) -> Member {
        Member::start_with(root, name, labels, workloads, etcd.endpoints(), &[])
    }

    /// As [`Member::start`], for etcd members at `endpoints` (`host:port`), with `extra`
    /// arguments for `palisade up` (the `--etcd-*` TLS files, say).
    pub(crate) fn start_with(
        root: &Path,
        name: &str,
        labels: &[&str],
        workloads: &str,
        endpoints: Vec<String>,
        extra: &[String],
    ) -> Member {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("manifests")).unwrap();
        let admin = free_ports(1)[0];
        std::fs::write(
            dir.join("config.yaml"),
            format!(
                "apiVersion: palisade.dev/v1alpha1\nkind: PalisadeConfig\nmetadata: {{name: {name}}}\nspec:\n  cluster: {name}\n  manifests: manifests\n  dataDir: data\n  reloadIntervalMs: 200\n  admin: {{listen: \"127.0.0.1:{admin}\"}}\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.join("manifests/workloads.yaml"), workloads).unwrap();
        let proxies: Vec<Proxy> = endpoints.into_iter().map(Proxy::start).collect();
        let url = format!(
            "etcd://{}",
            proxies
                .iter()
                .map(|p| format!("127.0.0.1:{}", p.port))
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut args = vec![
            "up".to_string(),
            "--config".into(),
            dir.join("config.yaml").display().to_string(),
            "--federation".into(),
            url,
            "--federation-set".into(),
            "test".into(),
            "--cluster-name".into(),
            name.into(),
            "--identity-ttl".into(),
            "3".into(),
        ];
        for l in labels {
            args.push("--cluster-label".into());
            args.push(l.to_string());
        }
        args.extend(extra.iter().cloned());
        let mut m = Member {
            name: name.into(),
            admin,
            dir,
            proxies,
            args,
            child: None,
        };
        m.restart();
        m
    }

    pub(crate) fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.join("palisade.log")).unwrap();
        let child = Command::new(exe())
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.admin);
        wait_until(
            &format!("{} admin API", self.name),
            Duration::from_secs(20),
            || TcpStream::connect(&addr).is_ok(),
        );
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn partition(&self) {
        for p in &self.proxies {
            p.cut();
        }
    }

    pub(crate) fn heal(&self) {
        for p in &self.proxies {
            p.heal();
        }
    }

    /// `palisade explain --member` → (verdict line, federation revision).
    pub(crate) fn explain(&self, from: &str, to: &str, port: u16) -> (String, Option<u64>) {
        let out = Command::new(exe())
            .args([
                "explain",
                "--member",
                &format!("127.0.0.1:{}", self.admin),
                "--from",
                from,
                "--to",
                to,
                "--port",
                &port.to_string(),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "explain on {} failed: {}{}",
            self.name,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        let verdict = text
            .lines()
            .next()
            .unwrap_or("")
            .split(':')
            .next()
            .unwrap_or("")
            .to_string();
        let rev = text
            .lines()
            .find_map(|l| l.strip_prefix("federation revision "))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|r| r.parse().ok());
        (verdict, rev)
    }

    /// The member's `/api/v1/status` JSON.
    pub(crate) fn status(&self) -> serde_json::Value {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin)).unwrap();
        s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        let body = buf.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `palisade federation ARGS… --etcd URL --name test` → (exit ok, stdout, stderr).
pub(crate) fn federation(etcd_url: &str, args: &[&str]) -> (bool, String, String) {
    federation_with(etcd_url, args, &[])
}

/// As [`federation`], with `extra` arguments after the store's (TLS files, say).
pub(crate) fn federation_with(
    etcd_url: &str,
    args: &[&str],
    extra: &[String],
) -> (bool, String, String) {
    let out = Command::new(exe())
        .arg("federation")
        .args(args)
        .args(["--etcd", etcd_url, "--name", "test", "--timeout-ms", "2000"])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}
