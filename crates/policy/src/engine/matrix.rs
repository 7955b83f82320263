//! Reachability: every pod to every pod for one port, and the exposure summary.

use super::*;
use serde::Serialize;

/// Allowed connections between pods for one port and protocol.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// Port probed.
    pub port: u16,
    /// Protocol probed.
    pub protocol: Protocol,
    /// Pods in row and column order.
    pub pods: Vec<PodId>,
    /// Row-major: `allowed[from * n + to]`.
    pub allowed: Vec<bool>,
}

impl Matrix {
    /// Whether `from` (row index) reaches `to` (column index).
    pub fn get(&self, from: usize, to: usize) -> bool {
        self.allowed[from * self.pods.len() + to]
    }
}

/// What is exposed.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Exposure {
    /// Pods every pod of every other namespace can reach on some probed port.
    pub reachable_from_all_namespaces: Vec<String>,
    /// Pods that can reach arbitrary external addresses on arbitrary ports.
    pub unrestricted_egress: Vec<String>,
    /// Namespaces with pods that no policy of any kind selects.
    pub namespaces_without_policy: Vec<String>,
}

impl Engine {
    /// The matrix over `pods` (all pods when empty is not wanted: pass them explicitly).
    /// Rows are split across the machine's cores.
    pub fn matrix(&self, pods: &[PodId], port: u16, protocol: Protocol) -> Matrix {
        let n = pods.len();
        let mut allowed = vec![false; n * n];
        let threads = std::thread::available_parallelism()
            .map(|x| x.get())
            .unwrap_or(1)
            .min(8);
        let rows_per = n.div_ceil(threads.max(1)).max(1);
        std::thread::scope(|s| {
            for (chunk_i, chunk) in allowed.chunks_mut((rows_per * n).max(1)).enumerate() {
                s.spawn(move || {
                    let first_row = chunk_i * rows_per;
                    for (ri, row) in chunk.chunks_mut(n.max(1)).enumerate() {
                        let from = pods[first_row + ri];
                        for (ci, cell) in row.iter_mut().enumerate() {
                            let flow = Flow {
                                src: Endpoint::Pod(from),
                                dst: Endpoint::Pod(pods[ci]),
                                port,
                                protocol,
                                http: None,
                            };
                            *cell = self.verdict(&flow).allowed();
                        }
                    }
                });
            }
        });
        Matrix {
            port,
            protocol,
            pods: pods.to_vec(),
            allowed,
        }
    }

    /// All pod ids sorted by `namespace/name`.
    pub fn sorted_pods(&self) -> Vec<PodId> {
        let mut ids: Vec<PodId> = (0..self.pods.len() as PodId).collect();
        ids.sort_by(|a, b| {
            let (pa, pb) = (&self.pods[*a as usize], &self.pods[*b as usize]);
            (&pa.namespace, &pa.name).cmp(&(&pb.namespace, &pb.name))
        });
        ids
    }

    /// Every port any pod declares, with its protocol (sorted); 80/TCP when none is declared.
    pub fn declared_ports(&self) -> Vec<(u16, Protocol)> {
        let mut v: Vec<(u16, Protocol)> = self
            .pods
            .iter()
            .flat_map(|p| p.ports.iter().map(|(_, pr, n)| (*n, *pr)))
            .collect();
        v.sort();
        v.dedup();
        if v.is_empty() {
            v.push((80, Protocol::TCP));
        }
        v
    }

    /// The exposure summary over the given matrices.
    pub fn exposure(&self, matrices: &[Matrix]) -> Exposure {
        let mut out = Exposure::default();
        if let Some(m0) = matrices.first() {
            let n = m0.pods.len();
            for to in 0..n {
                let target = &self.pods[m0.pods[to] as usize];
                let mut has_other = false;
                let all = (0..n).all(|from| {
                    let src = &self.pods[m0.pods[from] as usize];
                    if src.ns_id == target.ns_id {
                        return true;
                    }
                    has_other = true;
                    matrices.iter().any(|m| m.get(from, to))
                });
                if all && has_other && !target.host_network {
                    out.reachable_from_all_namespaces.push(target.key());
                }
            }
        }
        let probes: [(&str, u16, Protocol); 3] = [
            ("203.0.113.10", 443, Protocol::TCP),
            ("198.51.100.7", 31337, Protocol::TCP),
            ("192.0.2.1", 9999, Protocol::UDP),
        ];
        for id in self.sorted_pods() {
            let p = &self.pods[id as usize];
            if p.host_network {
                continue;
            }
            let open = probes.iter().all(|(ip, port, proto)| {
                let ip: IpAddr = ip.parse().unwrap_or(IpAddr::from([203, 0, 113, 10]));
                self.verdict(&Flow {
                    src: Endpoint::Pod(id),
                    dst: Endpoint::Ip(ip),
                    port: *port,
                    protocol: *proto,
                    http: None,
                })
                .allowed()
            });
            if open {
                out.unrestricted_egress.push(p.key());
            }
        }
        let mut names: Vec<&NsInfo> = self
            .namespaces
            .iter()
            .filter(|n| !n.pods.is_empty())
            .collect();
        names.sort_by(|a, b| a.name.cmp(&b.name));
        for ns in names {
            let covered = ns.pods.iter().any(|&p| {
                let r = &self.per_pod[p as usize];
                [&r.ingress, &r.egress].iter().any(|d| {
                    !d.tiered.is_empty() || !d.ns_policies.is_empty() || !d.baseline.is_empty()
                })
            });
            if !covered {
                out.namespaces_without_policy.push(ns.name.clone());
            }
        }
        out
    }
}
