//! Helpers shared by the root end-to-end tests that run components in network namespaces
//! (`dns.rs`, `sni.rs`): the binary under test, a skip check, processes and namespaces
//! cleaned up on drop, and commands inside a namespace.

use std::process::{Child, Command, Stdio};

/// The `palisade` binary built for these tests.
pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_palisade")
}

fn tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Whether this is root with every one of `tools`; otherwise prints why `what` is skipped.
pub(crate) fn can_run(what: &str, tools: &[&str]) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let ok = root && tools.iter().all(|t| tool(t));
    if !ok {
        eprintln!("skipping: {what} needs root and {}", tools.join(", "));
    }
    ok
}

/// A child process killed (and reaped) on drop.
pub(crate) struct Kill(pub(crate) Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `palisade lab serve --tcp PORT` in namespace `ns` (answers on every address there).
pub(crate) fn lab_server(ns: &str, port: &str) -> Kill {
    Kill(
        Command::new("ip")
            .args(["netns", "exec", ns, bin(), "lab", "serve", "--tcp", port])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A dnsmasq in namespace `ns` on 127.0.0.1:5353 answering only from `records`
/// (`--address=…`, `--host-record=…`, `--local-ttl=…`), no upstream.
pub(crate) fn dnsmasq(ns: &str, records: &[&str]) -> Kill {
    Kill(
        Command::new("ip")
            .args(["netns", "exec", ns, "dnsmasq", "--keep-in-foreground"])
            .args([
                "--conf-file=/dev/null",
                "--port=5353",
                "--listen-address=127.0.0.1",
            ])
            .args([
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--pid-file=",
                // Stay root: files it is given (`--addn-hosts`) sit in the test's temporary
                // folder, which CI makes private (`TMPDIR` of mode 0700), and dnsmasq reads
                // them after dropping to `nobody`.
                "--user=root",
            ])
            .args(records)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A network namespace whose processes are killed and which is deleted on drop.
pub(crate) struct Netns(pub(crate) String);
impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").arg("-9").arg(pid).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Runs a shell command, failing the test if it fails.
pub(crate) fn sh(cmd: &str) {
    let st = Command::new("sh").args(["-c", cmd]).status().unwrap();
    assert!(st.success(), "{cmd}");
}

/// Runs a command inside namespace `ns`; returns its stdout.
pub(crate) fn in_ns(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
