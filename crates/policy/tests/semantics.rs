//! Policy semantics end to end: inline YAML → `Manifests::add_file` → `Snapshot` → `Engine`
//! → `verdict`, asserting the action, the stage and the deciding policy for each rule of
//! NetworkPolicy, AdminNetworkPolicy / BaselineAdminNetworkPolicy and Palisade's own kinds.
//!
//! Every test starts from the same small cluster (see [`workloads`]):
//!
//! | pod            | labels             | IP          | `web` port |
//! |----------------|--------------------|-------------|------------|
//! | x/a            | app=a, tier=web    | 10.0.1.1    | 80         |
//! | x/b            | app=b, tier=db     | 10.0.1.2    | 8080       |
//! | x/c            | app=c              | 10.0.1.3    | 8000       |
//! | x/node-agent   | app=a, hostNetwork | 192.168.1.10| 80         |
//! | y/a            | app=a, tier=web    | 10.0.2.1    | 80         |
//! | y/b            | app=b, tier=db     | 10.0.2.2    | 8080       |
//! | z/a            | app=a              | 10.0.3.1    | 80         |
//! | w/a            | app=a              | 10.0.4.1    | 80         |
//!
//! Namespaces: x {team: red, env: prod}, y {team: blue, env: dev}, z (no labels), and w,
//! which has pods but no Namespace object. Every pod also declares `dns` 53/UDP and
//! `sig` 9000/SCTP.

#[path = "semantics/admin.rs"]
mod admin;
#[path = "semantics/federation.rs"]
mod federation;
#[path = "../benches/gen/mod.rs"]
mod gen;
#[path = "semantics/generated.rs"]
mod generated;
#[path = "semantics/netpol.rs"]
mod netpol;
#[path = "semantics/netpol_traffic.rs"]
mod netpol_traffic;
#[path = "semantics/palisade.rs"]
mod palisade;
#[path = "semantics/spec_text.rs"]
mod spec_text;
#[path = "semantics/tiers.rs"]
mod tiers;

use palisade_policy::{
    Action, Direction, Endpoint, Engine, Flow, HttpRequest, Manifests, PodId, Posture, Protocol,
    Reason, Severity, Snapshot, Stage, Verdict,
};
use std::net::IpAddr;

/// A pod of the fixture.
struct FixturePod {
    /// `namespace/name`.
    key: &'static str,
    /// `{k: v, …}`; the first is always `app`.
    labels: &'static str,
    ip: &'static str,
    /// The number of its `web` port.
    web: u16,
    host_network: bool,
}

const fn pod(key: &'static str, labels: &'static str, ip: &'static str, web: u16) -> FixturePod {
    FixturePod {
        key,
        labels,
        ip,
        web,
        host_network: false,
    }
}

const PODS: &[FixturePod] = &[
    pod("x/a", "{app: a, tier: web}", "10.0.1.1", 80),
    pod("x/b", "{app: b, tier: db}", "10.0.1.2", 8080),
    pod("x/c", "{app: c}", "10.0.1.3", 8000),
    FixturePod {
        key: "x/node-agent",
        labels: "{app: a}",
        ip: "192.168.1.10",
        web: 80,
        host_network: true,
    },
    pod("y/a", "{app: a, tier: web}", "10.0.2.1", 80),
    pod("y/b", "{app: b, tier: db}", "10.0.2.2", 8080),
    pod("z/a", "{app: a}", "10.0.3.1", 80),
    pod("w/a", "{app: a}", "10.0.4.1", 80),
];

/// The fixture's workloads as one multi-document YAML file.
fn workloads() -> String {
    let mut y = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels: {team: red, env: prod}\n\
         ---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: y\n  labels: {team: blue, env: dev}\n\
         ---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: z\n",
    );
    for p in PODS {
        let (ns, name) = p.key.split_once('/').unwrap();
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  \
             labels: {labels}\nspec:\n  hostNetwork: {host}\n  containers:\n  - name: main\n    \
             ports:\n    - {{name: web, containerPort: {web}}}\n    \
             - {{name: dns, containerPort: 53, protocol: UDP}}\n    \
             - {{name: sig, containerPort: 9000, protocol: SCTP}}\nstatus:\n  podIP: {ip}\n",
            labels = p.labels,
            web = p.web,
            host = p.host_network,
            ip = p.ip,
        ));
    }
    y
}

/// The fixture plus `policies`, compiled with the given posture.
pub(crate) struct Cluster {
    pub(crate) engine: Engine,
}

impl Cluster {
    /// The fixture and these policies, default posture (allow).
    pub(crate) fn new(policies: &str) -> Self {
        Self::with_posture(policies, Posture::Allow)
    }

    /// The fixture and these policies with an explicit posture.
    pub(crate) fn with_posture(policies: &str, posture: Posture) -> Self {
        let snap = load(policies);
        Cluster {
            engine: Engine::compile_with(&snap, posture),
        }
    }

    /// A pod of the fixture by `namespace/name`.
    #[track_caller]
    pub(crate) fn pod(&self, key: &str) -> PodId {
        self.engine
            .pod_by_key(key)
            .unwrap_or_else(|| panic!("no pod {key}"))
    }

    /// The verdict for a pod-to-pod flow.
    #[track_caller]
    pub(crate) fn pods(&self, from: &str, to: &str, port: u16, protocol: Protocol) -> Verdict {
        self.engine.verdict(&Flow {
            src: Endpoint::Pod(self.pod(from)),
            dst: Endpoint::Pod(self.pod(to)),
            port,
            protocol,
            http: None,
        })
    }

    /// TCP from pod to pod.
    #[track_caller]
    pub(crate) fn tcp(&self, from: &str, to: &str, port: u16) -> Verdict {
        self.pods(from, to, port, Protocol::TCP)
    }

    /// From an address outside the cluster into a pod.
    #[track_caller]
    pub(crate) fn ip_to_pod(&self, ip: &str, to: &str, port: u16) -> Verdict {
        self.engine.verdict(&Flow {
            src: Endpoint::Ip(ip.parse().unwrap()),
            dst: Endpoint::Pod(self.pod(to)),
            port,
            protocol: Protocol::TCP,
            http: None,
        })
    }

    /// From a pod to an address outside the cluster.
    #[track_caller]
    pub(crate) fn pod_to_ip(&self, from: &str, ip: &str, port: u16, protocol: Protocol) -> Verdict {
        self.engine.verdict(&Flow {
            src: Endpoint::Pod(self.pod(from)),
            dst: Endpoint::Ip(ip.parse().unwrap()),
            port,
            protocol,
            http: None,
        })
    }

    /// From a pod to a name (resolved to `ip` when given), optionally with an HTTP request.
    #[track_caller]
    pub(crate) fn pod_to_fqdn(
        &self,
        from: &str,
        name: &str,
        ip: Option<&str>,
        port: u16,
        http: Option<HttpRequest<'_>>,
    ) -> Verdict {
        let ip: Option<IpAddr> = ip.map(|s| s.parse().unwrap());
        self.engine.verdict(&Flow {
            src: Endpoint::Pod(self.pod(from)),
            dst: Endpoint::Fqdn { name, ip },
            port,
            protocol: Protocol::TCP,
            http,
        })
    }

    /// Asserts the action, the stage and the deciding policy (`"Kind name"`, or `None` when
    /// no policy decided, e.g. the default posture) of a verdict.
    #[track_caller]
    pub(crate) fn expect(&self, v: &Verdict, action: Action, stage: Stage, policy: Option<&str>) {
        assert_eq!(v.action, action, "action of {v:#?}");
        let d = v
            .decisive()
            .expect("a verdict between pods has a deciding direction");
        assert_eq!(d.stage, stage, "stage of {v:#?}");
        let got = self
            .engine
            .policy_ref(d)
            .map(|r| format!("{} {}", r.kind, r.name));
        assert_eq!(got.as_deref(), policy, "deciding policy of {v:#?}");
    }

    /// Like [`Cluster::expect`], and also the direction and rule (`ingress[0]`, `default`).
    #[track_caller]
    pub(crate) fn expect_rule(
        &self,
        v: &Verdict,
        action: Action,
        stage: Stage,
        policy: &str,
        direction: Direction,
        rule: &str,
    ) {
        self.expect(v, action, stage, Some(policy));
        let d = v.decisive().unwrap();
        assert_eq!(d.direction, direction, "direction of {v:#?}");
        let r = self.engine.policy_ref(d).unwrap();
        assert_eq!(r.rule, rule, "rule of {v:#?}");
    }
}

/// Loads the fixture and `policies`, failing the test on any error diagnostic.
#[track_caller]
pub(crate) fn load(policies: &str) -> Snapshot {
    let mut m = Manifests::new();
    m.add_file("workloads.yaml", &workloads());
    m.add_file("policies.yaml", policies);
    let errors: Vec<String> = m
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "unexpected errors:\n{}",
        errors.join("\n")
    );
    Snapshot::from_manifests(&m)
}

/// Shorthands used by every module.
pub(crate) use Action::{Allow, Audit, Deny};
pub(crate) use Protocol::{SCTP, TCP, UDP};
pub(crate) use Stage::{Admin, Baseline, Default as DefaultStage, Namespace};

#[test]
fn fixture_loads_every_pod_and_namespace() {
    let c = Cluster::new("");
    assert_eq!(c.engine.pods().len(), PODS.len());
    // x, y, z declared; w created for its pod.
    assert_eq!(c.engine.namespace_count(), 4);
    let agent = &c.engine.pods()[c.pod("x/node-agent") as usize];
    assert!(agent.host_network);
    let b = &c.engine.pods()[c.pod("x/b") as usize];
    // Read from `status.podIP`, as the API spells it.
    assert_eq!(b.ips, vec!["10.0.1.2".parse::<IpAddr>().unwrap()]);
    assert!(b
        .ports
        .contains(&(Some("web".to_string()), Protocol::TCP, 8080)));
    // With no policy at all, everything is allowed by the default posture.
    let v = c.tcp("x/a", "y/b", 80);
    c.expect(&v, Allow, DefaultStage, None);
    assert_eq!(v.ingress.unwrap().reason, Reason::Posture);
}
