//! A deterministic synthetic cluster for benchmarks and scale tests: namespaces labelled by
//! team, env and tenant; pods labelled app/tier/team with IPs 10.x.y.z and named container
//! ports; NetworkPolicies, SecurityPolicies, AdminNetworkPolicies (varied priorities and
//! Allow/Deny/Pass), ClusterSecurityPolicies in every tier, and a BaselineAdminNetworkPolicy.
//! Everything is produced as YAML text so that loading it exercises the parser too.

// Shared by the benchmark and the integration tests; each uses a different part.
#![allow(dead_code)]

use palisade_policy::{Manifests, Severity, Snapshot};
use std::fmt::Write;

/// How big a cluster to generate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scale {
    pub(crate) namespaces: usize,
    pub(crate) pods_per_namespace: usize,
    pub(crate) network_policies: usize,
    pub(crate) security_policies: usize,
    pub(crate) admin_policies: usize,
    pub(crate) cluster_policies: usize,
}

impl Scale {
    /// 10,000 pods in 500 namespaces; 2,000 policies (1,400 NetworkPolicy, 300
    /// SecurityPolicy, 250 AdminNetworkPolicy, 49 ClusterSecurityPolicy, 1 BANP).
    pub(crate) const FULL: Scale = Scale {
        namespaces: 500,
        pods_per_namespace: 20,
        network_policies: 1400,
        security_policies: 300,
        admin_policies: 250,
        cluster_policies: 49,
    };

    /// A small cluster of the same shape, for tests.
    pub(crate) const SMALL: Scale = Scale {
        namespaces: 30,
        pods_per_namespace: 12,
        network_policies: 84,
        security_policies: 18,
        admin_policies: 15,
        cluster_policies: 6,
    };

    /// Number of pods.
    pub(crate) fn pods(&self) -> usize {
        self.namespaces * self.pods_per_namespace
    }

    /// Number of policy objects of every kind (the BANP included).
    pub(crate) fn policies(&self) -> usize {
        self.network_policies
            + self.security_policies
            + self.admin_policies
            + self.cluster_policies
            + 1
    }
}

/// splitmix64: small, fast, and the same sequence on every machine.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// One element of a non-empty slice.
    pub(crate) fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    /// True with probability `pct`/100.
    pub(crate) fn chance(&mut self, pct: usize) -> bool {
        self.below(100) < pct
    }
}

pub(crate) const TEAMS: usize = 25;
pub(crate) const APPS: usize = 8;
pub(crate) const TIERS: [&str; 4] = ["web", "api", "db", "cache"];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];

fn ns_name(i: usize) -> String {
    format!("ns-{i:03}")
}

fn team(i: usize) -> String {
    format!("team-{}", i % TEAMS)
}

/// The IP of the `id`-th pod (0-based): 10.x.y.z, never .0.
pub(crate) fn pod_ip(id: usize) -> String {
    let n = id + 1;
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

/// Container ports of a tier, as YAML flow maps.
fn tier_ports(tier: &str) -> &'static str {
    match tier {
        "web" => "[{name: http, containerPort: 80}, {name: metrics, containerPort: 9100}]",
        "api" => {
            "[{name: http, containerPort: 8080}, {name: grpc, containerPort: 9090}, \
             {name: metrics, containerPort: 9100}]"
        }
        "db" => "[{name: postgres, containerPort: 5432}, {name: metrics, containerPort: 9100}]",
        _ => {
            "[{name: redis, containerPort: 6379}, \
             {name: stats, containerPort: 8125, protocol: UDP}]"
        }
    }
}

/// The files of the cluster: (file name, YAML text).
pub(crate) fn generate(scale: &Scale, seed: u64) -> Vec<(String, String)> {
    let mut rng = Rng::new(seed);
    let mut files = Vec::new();
    files.push(("namespaces.yaml".to_string(), namespaces(scale)));
    // Pods as `kind: List`, as `kubectl get pods -A -o yaml` prints them, 50 namespaces a file.
    for first in (0..scale.namespaces).step_by(50) {
        let last = (first + 50).min(scale.namespaces);
        files.push((format!("pods-{first:03}.yaml"), pods(scale, first..last)));
    }
    files.push((
        "networkpolicies.yaml".to_string(),
        network_policies(scale, &mut rng),
    ));
    files.push((
        "securitypolicies.yaml".to_string(),
        security_policies(scale, &mut rng),
    ));
    files.push(("admin.yaml".to_string(), admin_policies(scale, &mut rng)));
    files.push((
        "cluster.yaml".to_string(),
        cluster_policies(scale, &mut rng),
    ));
    files.push(("baseline.yaml".to_string(), BASELINE.to_string()));
    files
}

/// Parses the files, failing loudly on any error: generated input must be valid.
pub(crate) fn load(files: &[(String, String)]) -> Manifests {
    let mut m = Manifests::new();
    for (name, text) in files {
        m.add_file(name, text);
    }
    let errors: Vec<String> = m
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .take(10)
        .map(|d| d.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "generated input has errors:\n{}",
        errors.join("\n")
    );
    m
}

/// Generates, parses and groups a cluster.
pub(crate) fn snapshot(scale: &Scale, seed: u64) -> Snapshot {
    Snapshot::from_manifests(&load(&generate(scale, seed)))
}

fn namespaces(scale: &Scale) -> String {
    let mut y = String::new();
    for i in 0..scale.namespaces {
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n  labels:\n    \
             team: {}\n    env: {}\n    tenant: t-{}\n",
            ns_name(i),
            team(i),
            ENVS[i % ENVS.len()],
            i / 10
        );
    }
    y
}

fn pods(scale: &Scale, nss: std::ops::Range<usize>) -> String {
    let mut y = String::from("apiVersion: v1\nkind: List\nmetadata: {}\nitems:\n");
    for i in nss {
        for j in 0..scale.pods_per_namespace {
            let id = i * scale.pods_per_namespace + j;
            let app = j % APPS;
            let tier = TIERS[j % TIERS.len()];
            let _ = write!(
                y,
                "- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: app-{app}-{j}\n    \
                 namespace: {ns}\n    labels: {{app: app-{app}, tier: {tier}, team: {team}}}\n  \
                 spec:\n    nodeName: node-{node}\n    containers:\n    - name: main\n      \
                 ports: {ports}\n  status:\n    podIP: {ip}\n    podIPs:\n    - ip: {ip}\n",
                ns = ns_name(i),
                team = team(i),
                node = id % 50,
                ports = tier_ports(tier),
                ip = pod_ip(id),
            );
        }
    }
    y
}

fn network_policies(scale: &Scale, rng: &mut Rng) -> String {
    let mut y = String::new();
    for k in 0..scale.network_policies {
        let ns = ns_name(k % scale.namespaces);
        let _ = write!(
            y,
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  \
             name: np-{k}\n  namespace: {ns}\nspec:\n"
        );
        let app = rng.below(APPS);
        let tier = *rng.pick(&TIERS);
        let other_tier = *rng.pick(&TIERS);
        let other_team = rng.below(TEAMS);
        match rng.below(100) {
            // Default deny of ingress.
            0..=14 => y.push_str("  podSelector: {}\n  policyTypes: [Ingress]\n"),
            // Tier to tier, same namespace, one port.
            15..=39 => {
                let port = match tier {
                    "web" => 80,
                    "api" => 8080,
                    "db" => 5432,
                    _ => 6379,
                };
                let _ = write!(
                    y,
                    "  podSelector: {{matchLabels: {{tier: {tier}}}}}\n  ingress:\n  \
                     - from:\n    - podSelector: {{matchLabels: {{tier: {other_tier}}}}}\n    \
                     ports:\n    - {{port: {port}}}\n"
                );
            }
            // From other namespaces, by namespace and pod labels, on a named port.
            40..=54 => {
                let _ = write!(
                    y,
                    "  podSelector: {{matchLabels: {{app: app-{app}}}}}\n  ingress:\n  \
                     - from:\n    - namespaceSelector: {{matchLabels: {{team: team-{other_team}}}}}\n      \
                     podSelector: {{matchLabels: {{tier: web}}}}\n    \
                     - namespaceSelector: {{matchLabels: {{env: prod}}}}\n      \
                     podSelector: {{matchLabels: {{app: app-{app}}}}}\n    \
                     ports:\n    - {{port: http}}\n    - {{port: metrics}}\n"
                );
            }
            // Egress: to APIs anywhere, HTTPS outside the cluster, DNS.
            55..=69 => {
                let _ = write!(
                    y,
                    "  podSelector: {{matchLabels: {{tier: {tier}}}}}\n  policyTypes: [Egress]\n  \
                     egress:\n  - to:\n    - namespaceSelector: {{}}\n      \
                     podSelector: {{matchLabels: {{tier: api}}}}\n    \
                     ports: [{{port: 8080}}, {{port: 9090}}]\n  \
                     - to:\n    - ipBlock:\n        cidr: 0.0.0.0/0\n        \
                     except: [10.0.0.0/8, 169.254.0.0/16]\n    ports: [{{port: 443}}]\n  \
                     - ports: [{{port: 53, protocol: UDP}}, {{port: 53, protocol: TCP}}]\n"
                );
            }
            // From load balancers by CIDR, a port and a node-port range.
            70..=79 => {
                let _ = write!(
                    y,
                    "  podSelector: {{matchLabels: {{tier: web}}}}\n  ingress:\n  \
                     - from:\n    - ipBlock:\n        cidr: 172.16.0.0/12\n        \
                     except: [172.16.{}.0/24]\n    \
                     ports:\n    - {{port: 80}}\n    - {{port: 30000, endPort: 32767}}\n",
                    rng.below(256)
                );
            }
            // Set-based selectors.
            80..=89 => {
                let _ = write!(
                    y,
                    "  podSelector:\n    matchExpressions:\n    \
                     - {{key: tier, operator: In, values: [api, web]}}\n  ingress:\n  \
                     - from:\n    - podSelector:\n        matchExpressions:\n        \
                     - {{key: app, operator: NotIn, values: [app-{app}]}}\n    \
                     - namespaceSelector:\n        matchExpressions:\n        \
                     - {{key: env, operator: Exists}}\n        \
                     - {{key: team, operator: In, values: [team-{other_team}, team-{}]}}\n      \
                     podSelector: {{matchLabels: {{tier: web}}}}\n",
                    (other_team + 1) % TEAMS
                );
            }
            // Monitoring from one team's namespaces.
            _ => {
                let _ = write!(
                    y,
                    "  podSelector: {{}}\n  ingress:\n  \
                     - from: [{{namespaceSelector: {{matchLabels: {{team: team-0}}}}}}]\n    \
                     ports: [{{port: 9100}}]\n"
                );
            }
        }
    }
    y
}

fn security_policies(scale: &Scale, rng: &mut Rng) -> String {
    let mut y = String::new();
    for k in 0..scale.security_policies {
        let ns = ns_name(rng.below(scale.namespaces));
        let _ = write!(
            y,
            "---\napiVersion: palisade.dev/v1alpha1\nkind: SecurityPolicy\nmetadata:\n  \
             name: sp-{k}\n  namespace: {ns}\nspec:\n"
        );
        let r = rng.below(40);
        match k % 3 {
            // Egress by name and at layer 7.
            0 => {
                let _ = write!(
                    y,
                    "  podSelector: {{matchLabels: {{tier: api}}}}\n  egress:\n  \
                     - to: [{{fqdn: \"**.models-{r}.test\"}}]\n    ports: [{{port: 443}}]\n    \
                     http:\n    - methods: [GET, HEAD]\n      path: {{prefix: /models}}\n  \
                     - to: [{{fqdn: api.svc-{r}.test}}, {{fqdn: \"*.cdn-{r}.test\"}}]\n    \
                     ports: [{{port: 443}}]\n  \
                     - to: [{{namespaceSelector: {{}}}}]\n    \
                     ports: [{{port: 53, protocol: UDP}}]\n"
                );
            }
            // Ingress with HTTP rules.
            1 => {
                let _ = write!(
                    y,
                    "  podSelector: {{matchLabels: {{app: app-{}}}}}\n  ingress:\n  \
                     - from: [{{podSelector: {{matchLabels: {{tier: web}}}}}}]\n    \
                     ports: [{{port: 8080}}]\n    http:\n    - methods: [GET, POST]\n      \
                     path: {{prefix: /v1}}\n",
                    rng.below(APPS)
                );
            }
            // Audit mode, from one team.
            _ => {
                let _ = write!(
                    y,
                    "  mode: Audit\n  podSelector: {{matchLabels: {{tier: db}}}}\n  ingress:\n  \
                     - from: [{{namespaceSelector: {{matchLabels: {{team: team-{}}}}}}}]\n",
                    rng.below(TEAMS)
                );
            }
        }
    }
    y
}

const ACTIONS: [&str; 3] = ["Allow", "Deny", "Pass"];

fn admin_policies(scale: &Scale, rng: &mut Rng) -> String {
    let mut y = String::new();
    for k in 0..scale.admin_policies {
        let _ = write!(
            y,
            "---\napiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n\
             metadata:\n  name: anp-{k}\nspec:\n  priority: {}\n  subject:\n",
            rng.below(1001)
        );
        match rng.below(100) {
            0..=59 => {
                let _ = writeln!(
                    y,
                    "    namespaces: {{matchLabels: {{team: team-{}}}}}",
                    rng.below(TEAMS)
                );
            }
            60..=84 => {
                let _ = writeln!(
                    y,
                    "    pods:\n      namespaceSelector: {{matchLabels: {{env: {}}}}}\n      \
                     podSelector: {{matchLabels: {{tier: {}}}}}",
                    rng.pick(&ENVS),
                    rng.pick(&TIERS)
                );
            }
            _ => {
                let t = rng.below(scale.namespaces / 10 + 1);
                let _ = writeln!(
                    y,
                    "    namespaces:\n      matchExpressions:\n      \
                     - {{key: tenant, operator: In, values: [t-{t}, t-{}]}}",
                    t + 1
                );
            }
        }
        y.push_str("  ingress:\n");
        for r in 0..1 + rng.below(3) {
            let _ = write!(
                y,
                "  - name: in-{r}\n    action: {}\n    from:\n",
                rng.pick(&ACTIONS)
            );
            if rng.chance(50) {
                let _ = writeln!(
                    y,
                    "    - namespaces: {{matchLabels: {{team: team-{}}}}}",
                    rng.below(TEAMS)
                );
            } else {
                let _ = writeln!(
                    y,
                    "    - pods:\n        namespaceSelector: {{matchLabels: {{env: {}}}}}\n        \
                     podSelector: {{matchLabels: {{app: app-{}}}}}",
                    rng.pick(&ENVS),
                    rng.below(APPS)
                );
            }
            match rng.below(4) {
                0 => y.push_str("    ports: [{portNumber: {protocol: TCP, port: 80}}, {portNumber: {protocol: TCP, port: 8080}}]\n"),
                1 => y.push_str("    ports: [{portRange: {protocol: TCP, start: 30000, end: 32767}}]\n"),
                2 => y.push_str("    ports: [{namedPort: http}]\n"),
                _ => {}
            }
        }
        if rng.chance(60) {
            y.push_str("  egress:\n");
            for r in 0..1 + rng.below(2) {
                let _ = write!(
                    y,
                    "  - name: out-{r}\n    action: {}\n    to:\n",
                    rng.pick(&ACTIONS)
                );
                match rng.below(3) {
                    0 => {
                        let _ = writeln!(
                            y,
                            "    - networks: [192.168.{}.0/24, 10.{}.0.0/16]",
                            rng.below(256),
                            rng.below(4)
                        );
                    }
                    1 => {
                        let _ = writeln!(
                            y,
                            "    - namespaces: {{matchLabels: {{env: {}}}}}",
                            rng.pick(&ENVS)
                        );
                    }
                    _ => {
                        let _ = writeln!(
                            y,
                            "    - domainNames: [\"*.example-{}.test\", api.example.test]",
                            rng.below(100)
                        );
                    }
                }
            }
        }
    }
    y
}

fn cluster_policies(scale: &Scale, rng: &mut Rng) -> String {
    let mut y = String::new();
    for k in 0..scale.cluster_policies {
        let tier = ["security", "admin", "baseline"][k % 3];
        let _ = write!(
            y,
            "---\napiVersion: palisade.dev/v1alpha1\nkind: ClusterSecurityPolicy\nmetadata:\n  \
             name: csp-{k}\nspec:\n  tier: {tier}\n  priority: {}\n  subject:\n    \
             namespaceSelector: {{matchLabels: {{team: team-{}}}}}\n  ingress:\n  \
             - name: rule-0\n    action: {}\n    \
             from: [{{namespaceSelector: {{matchLabels: {{env: {}}}}}}}]\n  \
             - name: rule-1\n    action: {}\n    \
             from: [{{podSelector: {{matchLabels: {{tier: {}}}}}}}]\n    \
             ports: [{{port: 9100}}]\n  egress:\n  \
             - name: metadata\n    action: Deny\n    \
             to: [{{ipBlock: {{cidr: 169.254.169.254/32}}}}]\n",
            rng.below(1001),
            rng.below(TEAMS),
            rng.pick(&ACTIONS),
            rng.pick(&ENVS),
            rng.pick(&ACTIONS),
            rng.pick(&TIERS),
        );
    }
    y
}

const BASELINE: &str = "apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata:
  name: default
spec:
  subject:
    namespaces: {}
  ingress:
  - name: dev-not-to-prod
    action: Deny
    from:
    - namespaces: {matchLabels: {env: dev}}
  - name: everyone-else
    action: Allow
    from:
    - namespaces: {}
  egress:
  - name: no-metadata
    action: Deny
    to:
    - networks: [169.254.169.254/32]
";
