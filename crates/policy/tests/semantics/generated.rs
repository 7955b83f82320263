//! The benchmark's synthetic cluster, at a small scale: it loads without errors, exercises
//! every stage, and the engine's views of it agree (matrix, verdict, explain).

use super::gen::{self, Rng, Scale};
use super::*;
use std::collections::HashSet;

const SEED: u64 = 7;

#[test]
fn generated_cluster_is_deterministic_and_valid() {
    let scale = Scale::SMALL;
    let files = gen::generate(&scale, SEED);
    assert_eq!(files, gen::generate(&scale, SEED));
    assert_ne!(files, gen::generate(&scale, SEED + 1));
    let m = gen::load(&files);
    let snap = Snapshot::from_manifests(&m);
    assert_eq!(snap.namespaces.len(), scale.namespaces);
    assert_eq!(snap.pods.len(), scale.pods());
    assert_eq!(snap.network_policies.len(), scale.network_policies);
    assert_eq!(snap.security_policies.len(), scale.security_policies);
    assert_eq!(snap.admin_network_policies.len(), scale.admin_policies);
    assert_eq!(snap.cluster_security_policies.len(), scale.cluster_policies);
    assert_eq!(snap.baseline_admin_network_policies.len(), 1);
    assert_eq!(snap.policy_count(), scale.policies());
    let e = Engine::compile(&snap);
    assert_eq!(e.pods().len(), scale.pods());
    assert_eq!(e.policies().len(), scale.policies());
    let first = &e.pods()[e.pod_by_key("ns-000/app-0-0").unwrap() as usize];
    assert_eq!(first.ips, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
    // Pod IPs are unique and map back to their pods.
    let ips: HashSet<IpAddr> = e.pods().iter().flat_map(|p| p.ips.clone()).collect();
    assert_eq!(ips.len(), scale.pods());
    assert_eq!(e.pod_by_ip(gen::pod_ip(13).parse().unwrap()), Some(13));
}

#[test]
fn generated_cluster_exercises_every_stage_and_outcome() {
    let e = Engine::compile(&gen::snapshot(&Scale::SMALL, SEED));
    let n = e.pods().len();
    let mut rng = Rng::new(99);
    let mut seen: HashSet<(Action, Stage)> = HashSet::new();
    for _ in 0..20_000 {
        let v = e.verdict(&Flow {
            src: Endpoint::Pod(rng.below(n) as PodId),
            dst: Endpoint::Pod(rng.below(n) as PodId),
            port: *rng.pick(&[80, 8080, 5432, 6379, 9100, 30080]),
            protocol: TCP,
            http: None,
        });
        seen.insert((v.action, v.decisive().unwrap().stage));
        // And out of the cluster.
        let v = e.verdict(&Flow {
            src: Endpoint::Pod(rng.below(n) as PodId),
            dst: Endpoint::Ip(IpAddr::from([203, 0, 113, rng.below(256) as u8])),
            port: 443,
            protocol: TCP,
            http: None,
        });
        seen.insert((v.action, v.decisive().unwrap().stage));
    }
    for want in [
        (Allow, Admin),
        (Deny, Admin),
        (Allow, Namespace),
        (Deny, Namespace),
        (Deny, Baseline),
        (Allow, Baseline),
        (Allow, DefaultStage),
        (Audit, Namespace),
    ] {
        assert!(seen.contains(&want), "{want:?} never decided; saw {seen:?}");
    }
}

#[test]
fn matrix_verdict_and_explain_agree_on_the_generated_cluster() {
    let e = Engine::compile(&gen::snapshot(&Scale::SMALL, SEED));
    let pods = e.sorted_pods();
    let m = e.matrix(&pods, 80, TCP);
    assert_eq!(m.pods, pods);
    let mut allowed = 0;
    for (i, &from) in pods.iter().enumerate() {
        for (j, &to) in pods.iter().enumerate() {
            let flow = Flow {
                src: Endpoint::Pod(from),
                dst: Endpoint::Pod(to),
                port: 80,
                protocol: TCP,
                http: None,
            };
            let v = e.verdict(&flow);
            assert_eq!(m.get(i, j), v.allowed(), "{} → {}", pods[i], pods[j]);
            allowed += usize::from(v.allowed());
            if (i * 31 + j) % 97 == 0 {
                let x = e.explain(&flow);
                assert_eq!(x.verdict, v.action);
                assert_eq!(x.egress, v.egress);
                assert_eq!(x.ingress, v.ingress);
                assert_eq!(x.policy, v.decisive().and_then(|d| e.policy_ref(d)));
            }
        }
    }
    // Neither everything nor nothing is reachable.
    let total = pods.len() * pods.len();
    assert!(
        allowed > total / 20 && allowed < total * 19 / 20,
        "{allowed} of {total}"
    );
}
