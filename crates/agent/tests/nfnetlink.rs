//! Element batches over netlink against the real kernel, in a scratch network namespace
//! (root only; skipped with a message otherwise).

use palisade_agent::nfnetlink::{Element, ElementBatch, ElementOp, NftSocket};
use palisade_agent::nft;
use std::process::Command;
use std::time::Duration;

fn root_with_nft() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    root && Command::new("nft").arg("-V").output().is_ok()
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn list(ns: &str, kind: &str, name: &str) -> String {
    nft::run(&["list", kind, "inet", "t", name], Some(ns)).unwrap()
}

#[test]
fn batches_apply_atomically_and_failures_change_nothing() {
    if !root_with_nft() {
        eprintln!("skipping: needs root and nftables");
        return;
    }
    let ns = Netns(format!("plnl{}", std::process::id()));
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap()
        .success());
    nft::apply(
        "table inet t {
           set s { type ipv4_addr; }
           set f { type ipv4_addr . ipv4_addr; flags timeout; }
           chain c { }
           map m { type ipv4_addr : verdict; }
         }",
        Some(&ns.0),
    )
    .unwrap();
    let mut sock = NftSocket::open(Some(&ns.0)).unwrap();

    let mut b = ElementBatch::new();
    b.push(
        ElementOp::Add,
        "s",
        vec![
            Element::parse("10.0.0.1").unwrap(),
            Element::parse("10.0.0.2").unwrap(),
        ],
    );
    b.push(
        ElementOp::Add,
        "m",
        vec![Element::parse("10.0.0.1 : jump c").unwrap()],
    );
    b.push(
        ElementOp::Add,
        "f",
        vec![Element::parse("10.0.0.1 . 192.0.2.9")
            .unwrap()
            .with_timeout(Duration::from_secs(60))],
    );
    sock.apply("t", &b).unwrap();
    assert!(list(&ns.0, "set", "s").contains("10.0.0.1, 10.0.0.2"));
    assert!(list(&ns.0, "map", "m").contains("10.0.0.1 : jump c"));
    let f = list(&ns.0, "set", "f");
    assert!(f.contains("10.0.0.1 . 192.0.2.9 timeout 1m"), "{f}");

    // A batch whose second half fails (absent element) leaves the first half unapplied.
    let mut bad = ElementBatch::new();
    bad.push(
        ElementOp::Delete,
        "s",
        vec![Element::parse("10.0.0.1").unwrap()],
    );
    bad.push(
        ElementOp::Delete,
        "s",
        vec![Element::parse("10.9.9.9").unwrap()],
    );
    let err = sock.apply("t", &bad).unwrap_err().to_string();
    assert!(err.contains("on s"), "{err}");
    assert!(list(&ns.0, "set", "s").contains("10.0.0.1, 10.0.0.2"));

    // Destroy ignores absent elements; the socket still works after a failure.
    let mut ok = ElementBatch::new();
    ok.push(
        ElementOp::Destroy,
        "s",
        vec![
            Element::parse("10.0.0.1").unwrap(),
            Element::parse("10.9.9.9").unwrap(),
        ],
    );
    ok.push(
        ElementOp::Delete,
        "m",
        vec![Element::parse("10.0.0.1").unwrap()],
    );
    sock.apply("t", &ok).unwrap();
    let s = list(&ns.0, "set", "s");
    assert!(s.contains("10.0.0.2") && !s.contains("10.0.0.1"), "{s}");
    assert!(!list(&ns.0, "map", "m").contains("10.0.0.1"));

    // A set of another table is out of reach: the name is resolved in table `t` only.
    let mut other = ElementBatch::new();
    other.push(
        ElementOp::Add,
        "nope",
        vec![Element::parse("10.0.0.3").unwrap()],
    );
    assert!(sock.apply("t", &other).is_err());
}

#[test]
fn interface_name_elements_match_what_nft_writes() {
    if !root_with_nft() {
        eprintln!("skipping: needs root and nftables");
        return;
    }
    let ns = Netns(format!("plnli{}", std::process::id()));
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap()
        .success());
    nft::apply(
        "table inet t {
           set i { type ifname; }
           set p { type ifname . ipv4_addr; }
           set q { type ifname . ipv6_addr; }
         }",
        Some(&ns.0),
    )
    .unwrap();
    let mut sock = NftSocket::open(Some(&ns.0)).unwrap();
    let mut b = ElementBatch::new();
    b.push(
        ElementOp::Add,
        "i",
        vec![Element::parse("\"cali0a1b2c3d4e\"").unwrap()],
    );
    b.push(
        ElementOp::Add,
        "p",
        vec![Element::parse("\"h0\" . 10.0.0.1").unwrap()],
    );
    b.push(
        ElementOp::Add,
        "q",
        vec![Element::parse("\"h1\" . fd00::1").unwrap()],
    );
    sock.apply("t", &b).unwrap();
    assert!(list(&ns.0, "set", "i").contains("\"cali0a1b2c3d4e\""));
    assert!(list(&ns.0, "set", "p").contains("\"h0\" . 10.0.0.1"));
    assert!(list(&ns.0, "set", "q").contains("\"h1\" . fd00::1"));
    // What the kernel holds is what nft itself would write: nft can delete it by its text.
    nft::apply("delete element inet t p { \"h0\" . 10.0.0.1 }", Some(&ns.0)).unwrap();
    assert!(!list(&ns.0, "set", "p").contains("10.0.0.1"));
}
