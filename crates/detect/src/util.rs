//! Small helpers shared by the detectors: workload keys, names, DNS name features and
//! robust statistics.

use palisade_events::{DnsInfo, Endpoint, EndpointKind};

/// The key baselines use for an endpoint: its `workload`, else
/// `namespace/<app.kubernetes.io/name or app label>`, else `namespace/name` without the
/// generated suffixes of ReplicaSet, Job and DaemonSet pods. `None` when the
/// endpoint is not a pod (or a node) with a name.
pub(crate) fn workload_of(ep: &Endpoint) -> Option<String> {
    if !matches!(ep.kind, EndpointKind::Pod | EndpointKind::Node) {
        return None;
    }
    if let Some(w) = ep.workload.as_deref().filter(|w| !w.is_empty()) {
        return Some(w.to_string());
    }
    let ns = ep.namespace.as_deref().unwrap_or("");
    let app = ep
        .labels
        .get("app.kubernetes.io/name")
        .or_else(|| ep.labels.get("app"));
    match (app, ep.name.as_deref()) {
        (Some(app), _) if !ns.is_empty() => Some(format!("{ns}/{app}")),
        (_, Some(name)) if !ns.is_empty() => Some(format!("{ns}/{}", owner_of_pod_name(name))),
        (_, Some(name)) => Some(name.to_string()),
        _ => None,
    }
}

/// The characters Kubernetes uses for generated name suffixes (no vowels, no 0, 1, 3).
fn is_generated(segment: &str, lengths: std::ops::RangeInclusive<usize>) -> bool {
    lengths.contains(&segment.len())
        && segment
            .bytes()
            .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
}

/// A pod name without its generated suffixes: `web-7d9f8c6b5-x2x9k` → `web`,
/// `backup-28391045-q8z2k` → `backup-28391045` stays a Job's name, `db-0` → `db-0`.
pub(crate) fn owner_of_pod_name(name: &str) -> &str {
    let Some((rest, last)) = name.rsplit_once('-') else {
        return name;
    };
    if rest.is_empty() || !is_generated(last, 5..=5) {
        return name;
    }
    match rest.rsplit_once('-') {
        Some((base, hash)) if !base.is_empty() && is_generated(hash, 8..=10) => base,
        _ => rest,
    }
}

/// Lower case, without a trailing dot or a `:port`.
pub(crate) fn normalize_name(name: &str) -> String {
    let mut n = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if let Some(i) = n.rfind(':') {
        if !n.contains(']')
            && n[i + 1..].bytes().all(|b| b.is_ascii_digit())
            && n.matches(':').count() == 1
        {
            n.truncate(i);
        }
    }
    n
}

/// The last two labels of a name (`a.b.example.com` → `example.com`).
pub(crate) fn registered_domain(name: &str) -> &str {
    let mut dots = name.rmatch_indices('.');
    match (dots.next(), dots.next()) {
        (Some(_), Some((i, _))) => &name[i + 1..],
        _ => name,
    }
}

/// True when `name` is `suffix` or ends with `.suffix`.
pub(crate) fn has_suffix(name: &str, suffix: &str) -> bool {
    name == suffix
        || (name.len() > suffix.len()
            && name.ends_with(suffix)
            && name.as_bytes()[name.len() - suffix.len() - 1] == b'.')
}

/// Shape of a queried name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NameShape {
    /// Length of the longest label.
    pub(crate) longest_label: usize,
    /// Length of the name.
    pub(crate) length: usize,
    /// Shannon entropy (bits per character) of the labels left of the last two.
    pub(crate) entropy: f64,
}

/// The shape of the query: from `features` when the producer wrote them, else computed.
pub(crate) fn name_shape(dns: &DnsInfo, normalized: &str) -> NameShape {
    if let Some(f) = dns.features {
        return NameShape {
            longest_label: usize::from(f.longest_label),
            length: usize::from(f.length),
            entropy: f.entropy.get(),
        };
    }
    compute_shape(normalized)
}

/// Computes a name's shape (same definition as the DNS proxy's `features`).
pub(crate) fn compute_shape(name: &str) -> NameShape {
    let labels: Vec<&str> = name.split('.').collect();
    let longest_label = labels.iter().map(|l| l.len()).max().unwrap_or(0);
    let sub = labels.len().saturating_sub(2);
    let mut counts = [0u32; 256];
    let mut total = 0u32;
    for l in &labels[..sub] {
        for &b in l.as_bytes() {
            counts[usize::from(b)] += 1;
            total += 1;
        }
    }
    let mut entropy = 0f64;
    if total > 0 {
        for &c in counts.iter().filter(|&&c| c > 0) {
            let p = f64::from(c) / f64::from(total);
            entropy -= p * p.log2();
        }
    }
    NameShape {
        longest_label,
        length: name.len(),
        entropy,
    }
}

/// Median of `v` (sorted in place); 0 for an empty slice.
pub(crate) fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median, median absolute deviation and maximum of `values`.
pub(crate) fn robust_stats(values: impl Iterator<Item = f64>) -> (f64, f64, f64) {
    let mut v: Vec<f64> = values.collect();
    let max = v.iter().copied().fold(0.0, f64::max);
    let med = median(&mut v);
    let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
    let mad = median(&mut dev);
    (med, mad, max)
}

/// Human-readable bytes (`1.5 GiB`).
pub(crate) fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_lose_generated_suffixes() {
        assert_eq!(owner_of_pod_name("web-7d9f8c6b5-x2x9k"), "web");
        assert_eq!(owner_of_pod_name("node-exporter-x2x9k"), "node-exporter");
        assert_eq!(owner_of_pod_name("db-0"), "db-0");
        assert_eq!(owner_of_pod_name("api-front"), "api-front");
        assert_eq!(owner_of_pod_name("x2x9k"), "x2x9k");
    }

    #[test]
    fn names_and_domains() {
        assert_eq!(normalize_name("API.OpenAI.com."), "api.openai.com");
        assert_eq!(normalize_name("hub.example:443"), "hub.example");
        assert_eq!(registered_domain("a.b.example.com"), "example.com");
        assert_eq!(registered_domain("example.com"), "example.com");
        assert_eq!(registered_domain("localhost"), "localhost");
        assert!(has_suffix("x.svc.cluster.local", "cluster.local"));
        assert!(!has_suffix("xcluster.local", "cluster.local"));
    }

    #[test]
    fn shapes_tell_tunnels_from_names() {
        let plain = compute_shape("cdn-lfs.huggingface.co");
        let tunnel = compute_shape("mzxw6ytboi4dmnrtgq2tsmjqgiztinbv.t.exfil.example");
        assert!(tunnel.entropy > plain.entropy + 1.0);
        assert_eq!(tunnel.longest_label, 32);
        assert_eq!(compute_shape("example.com").entropy, 0.0);
    }

    #[test]
    fn robust_stats_ignore_one_outlier() {
        let (med, mad, max) = robust_stats([1.0, 2.0, 3.0, 4.0, 1000.0].into_iter());
        assert_eq!(med, 3.0);
        assert_eq!(mad, 1.0);
        assert_eq!(max, 1000.0);
    }
}
