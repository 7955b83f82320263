//! Engine benchmarks on a synthetic cluster of 10,000 pods in 500 namespaces and 2,000
//! policies (see `gen`): loading the YAML, compiling the snapshot, one verdict for random
//! pod pairs, and the reachability matrix of the first 1,000 pods.
//!
//! `cargo bench -p palisade-policy --bench engine`

mod gen;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use gen::{Rng, Scale};
use palisade_policy::{Endpoint, Engine, Flow, HttpRequest, PodId, Protocol, Snapshot};
use std::hint::black_box;
use std::time::Duration;

const SEED: u64 = 2024;

fn engine_benches(c: &mut Criterion) {
    let scale = Scale::FULL;
    let files = gen::generate(&scale, SEED);
    let bytes: usize = files.iter().map(|(_, t)| t.len()).sum();
    eprintln!(
        "synthetic cluster: {} pods, {} namespaces, {} policies, {} files, {:.1} MiB of YAML",
        scale.pods(),
        scale.namespaces,
        scale.policies(),
        files.len(),
        bytes as f64 / (1 << 20) as f64
    );

    let mut g = c.benchmark_group("load");
    // Slow: ten flat samples.
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(8));
    g.bench_function("parse_validate_10k_pods_2k_policies", |b| {
        b.iter(|| gen::load(black_box(&files)))
    });
    g.finish();

    let snap = Snapshot::from_manifests(&gen::load(&files));
    assert_eq!(snap.pods.len(), scale.pods());
    assert_eq!(snap.policy_count(), scale.policies());

    let mut g = c.benchmark_group("compile");
    // Slow: ten flat samples.
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(8));
    g.bench_function("compile_10k_pods_2k_policies", |b| {
        b.iter(|| Engine::compile(black_box(&snap)))
    });
    g.finish();

    let engine = Engine::compile(&snap);
    let n = engine.pods().len();

    // Random pod pairs and ports, generated up front so the loop measures only `verdict`.
    let mut rng = Rng::new(SEED);
    let ports = [80, 443, 5432, 6379, 8080, 9090, 9100, 31000];
    let pairs: Vec<(PodId, PodId, u16)> = (0..1 << 16)
        .map(|_| {
            (
                rng.below(n) as PodId,
                rng.below(n) as PodId,
                *rng.pick(&ports),
            )
        })
        .collect();
    let names: Vec<String> = (0..1024)
        .map(|i| format!("hub.models-{}.test", i % 50))
        .collect();
    let mut g = c.benchmark_group("verdict");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("pod_to_pod_random_pairs", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let (src, dst, port) = pairs[i & 0xFFFF];
            i = i.wrapping_add(1);
            engine.verdict(black_box(&Flow {
                src: Endpoint::Pod(src),
                dst: Endpoint::Pod(dst),
                port,
                protocol: Protocol::TCP,
                http: None,
            }))
        })
    });
    g.bench_function("pod_to_fqdn_http_get", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let (src, _, _) = pairs[i & 0xFFFF];
            let name = names[i & 1023].as_str();
            i = i.wrapping_add(1);
            engine.verdict(black_box(&Flow {
                src: Endpoint::Pod(src),
                dst: Endpoint::Fqdn { name, ip: None },
                port: 443,
                protocol: Protocol::TCP,
                http: Some(HttpRequest {
                    method: "GET",
                    path: "/models/llama/config.json",
                    host: Some(name),
                    headers: &[],
                }),
            }))
        })
    });
    g.finish();

    let first_1000: Vec<PodId> = engine.sorted_pods().into_iter().take(1000).collect();
    let m = engine.matrix(&first_1000, 80, Protocol::TCP);
    let allowed = m.allowed.iter().filter(|a| **a).count();
    eprintln!("matrix 1000x1000 on 80/TCP: {allowed} of 1000000 allowed");
    let mut g = c.benchmark_group("matrix");
    // Slow: ten flat samples.
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(8));
    g.bench_function("first_1000_pods_80_tcp", |b| {
        b.iter(|| engine.matrix(black_box(&first_1000), 80, Protocol::TCP))
    });
    g.finish();
}

criterion_group!(benches, engine_benches);
criterion_main!(benches);
