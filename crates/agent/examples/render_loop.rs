//! Renders the benchmark cluster in a loop (for profiling).
#[path = "../../policy/benches/gen/mod.rs"]
mod gen;
use palisade_agent::ruleset::{render, RenderOptions};
use palisade_policy::{Engine, PodId};
fn main() {
    let scale = gen::Scale {
        namespaces: 50,
        pods_per_namespace: 20,
        network_policies: 350,
        security_policies: 75,
        admin_policies: 62,
        cluster_policies: 12,
    };
    let e = Engine::compile(&gen::snapshot(&scale, 7));
    let opts = RenderOptions {
        local_pods: (0..e.pods().len() as PodId).collect(),
        log_denied: true,
        log_allowed: true,
        pod_interfaces: Default::default(),
        node_services: Vec::new(),
        pod_interface_prefixes: Vec::new(),
    };
    let t = std::time::Instant::now();
    for _ in 0..30 {
        std::hint::black_box(render(&e, &opts));
    }
    eprintln!("render: {:?} each", t.elapsed() / 30);
}
