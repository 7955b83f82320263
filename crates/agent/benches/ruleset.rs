//! Ruleset generation and apply time for 1,000 local pods and 500 policies, and the
//! incremental update for one pod added or removed.
//!
//! `cargo bench -p palisade-agent --bench ruleset` (apply figures need root and nftables;
//! they are measured in a scratch network namespace).

#[path = "../../policy/benches/gen/mod.rs"]
mod gen;

use criterion::{criterion_group, Criterion};
use palisade_agent::ruleset::{render, RenderOptions};
use palisade_agent::runtime::{Agent, AgentSettings};
use palisade_policy::{Engine, PodId};
use std::process::Command;
use std::time::{Duration, Instant};

const SCALE: gen::Scale = gen::Scale {
    namespaces: 50,
    pods_per_namespace: 20,
    network_policies: 350,
    security_policies: 75,
    admin_policies: 62,
    cluster_policies: 12,
};

fn engine() -> (palisade_policy::Snapshot, Engine) {
    let snap = gen::snapshot(&SCALE, 7);
    let e = Engine::compile(&snap);
    (snap, e)
}

fn all(e: &Engine) -> Vec<PodId> {
    (0..e.pods().len() as PodId).collect()
}

fn bench_render(c: &mut Criterion) {
    let (_, e) = engine();
    let opts = RenderOptions {
        local_pods: all(&e),
        log_denied: true,
        log_allowed: true,
        pod_interfaces: Default::default(),
        node_services: Vec::new(),
        pod_interface_prefixes: Vec::new(),
    };
    let rs = render(&e, &opts);
    eprintln!(
        "ruleset: {} pods, {} policies, {} rules, {} chains",
        e.pods().len(),
        e.policies().len(),
        rs.rules,
        rs.chain_count()
    );
    let mut g = c.benchmark_group("agent");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("render 1000 pods / 500 policies", |b| {
        b.iter(|| render(&e, &opts))
    });
    g.finish();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench_apply() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root || Command::new("nft").arg("-V").output().is_err() {
        eprintln!("skipping apply benchmarks: need root and nftables");
        return;
    }
    // PALISADE_BENCH_HERE=1: apply in the current namespace, as the agent does in production
    // (run the bench under `ip netns exec SCRATCH`); otherwise in a scratch namespace through
    // `ip netns exec`, which adds a fork/exec and setns to every update.
    let here = std::env::var("PALISADE_BENCH_HERE").is_ok();
    let ns = format!("plbench{}", std::process::id());
    if !here {
        assert!(Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .unwrap()
            .success());
    }
    let (snap, e) = engine();
    let settings = AgentSettings {
        node: String::new(),
        all_nodes: true,
        netns: (!here).then(|| ns.clone()),
        log_flows: true,
        node_services: Vec::new(),
    };
    // Full rebuilds (render + one nft transaction).
    let mut full = Vec::new();
    for _ in 0..5 {
        let mut a = Agent::new(settings.clone());
        let t = Instant::now();
        a.reconcile(&e).unwrap();
        full.push(t.elapsed());
    }
    // Incremental: one pod removed, then added back.
    let mut smaller = snap.clone();
    smaller.pods.remove(517);
    let e_minus = Engine::compile(&smaller);
    {
        let opts = RenderOptions {
            local_pods: all(&e),
            log_denied: true,
            log_allowed: true,
            pod_interfaces: Default::default(),
            pod_interface_prefixes: Vec::new(),
            node_services: Vec::new(),
        };
        let a = render(&e, &opts);
        let b = render(
            &e_minus,
            &RenderOptions {
                local_pods: all(&e_minus),
                ..opts.clone()
            },
        );
        let d = b.diff_script(&a).unwrap_or_default();
        let changed_chains = d
            .lines()
            .filter(|l| l.starts_with("flush chain") || l.starts_with("add chain"))
            .count();
        if let Ok(path) = std::env::var("PALISADE_BENCH_DUMP") {
            let _ = std::fs::write(&path, &d);
            let _ = std::fs::write(format!("{path}.full"), a.full_script());
        }
        println!(
            "agent/diff for one pod removed: {} lines, {} chains touched, {} bytes",
            d.lines().count(),
            changed_chains,
            d.len()
        );
    }
    let mut agent = Agent::new(settings.clone());
    agent.reconcile(&e).unwrap();
    let (mut removes, mut adds) = (Vec::new(), Vec::new());
    let mut parts = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let s = agent.reconcile(&e_minus).unwrap();
        removes.push(t.elapsed());
        assert!(s.incremental);
        parts.push((s.render_us, s.apply_us));
        let t = Instant::now();
        let s = agent.reconcile(&e).unwrap();
        adds.push(t.elapsed());
        assert!(s.incremental);
    }
    if !here {
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    }
    println!(
        "agent/full apply (render + nft), 1000 pods / 500 policies: median {:?} (of {:?})",
        median(full.clone()),
        full
    );
    println!(
        "agent/incremental pod remove (render + diff + nft): median {:?}",
        median(removes)
    );
    println!(
        "agent/incremental pod add (render + diff + nft): median {:?}",
        median(adds)
    );
    let mut render: Vec<u128> = parts.iter().map(|p| p.0).collect();
    let mut apply: Vec<u128> = parts.iter().map(|p| p.1).collect();
    render.sort();
    apply.sort();
    println!(
        "agent/incremental pod remove parts: render {} µs, nft {} µs (medians)",
        render[render.len() / 2],
        apply[apply.len() / 2]
    );
}

criterion_group!(benches, bench_render);

fn main() {
    benches();
    bench_apply();
    Criterion::default().configure_from_args().final_summary();
}
