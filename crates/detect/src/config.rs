//! Thresholds and windows of every detector, with defaults that suit a cluster's normal
//! behaviour (see `docs/detect.md`). Durations are in seconds of event time.

use serde::{Deserialize, Serialize};

/// Everything the detectors can be tuned with. Every field has a default, so `{}` is a
/// valid configuration; unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DetectConfig {
    /// How long each workload (or consumer) is only learned from, counted from its first
    /// event, in seconds (default 24 h).
    pub learning_window_secs: i64,
    /// How long an alert collects evidence after its first signal before it is emitted.
    pub alert_hold_secs: i64,
    /// At most this many evidence ids per alert.
    pub max_evidence: usize,
    /// Name suffixes that are never external destinations nor tunnels.
    pub internal_suffixes: Vec<String>,
    /// Most workloads and consumers (together) with baselines: one more evicts the tenth
    /// of them that was quiet longest (their baselines, windows and learning start), and
    /// [`crate::Detector::evicted`] counts them.
    pub max_subjects: usize,
    /// New external destination detector.
    pub new_destination: NewDestinationConfig,
    /// Egress volume spike detector.
    pub egress_volume: EgressVolumeConfig,
    /// DNS tunnelling detector.
    pub dns_tunnel: DnsTunnelConfig,
    /// Lateral movement and scanning detector.
    pub lateral_movement: LateralMovementConfig,
    /// Inference abuse detector.
    pub inference_abuse: InferenceAbuseConfig,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            learning_window_secs: 24 * 3600,
            alert_hold_secs: 300,
            max_evidence: 100,
            internal_suffixes: vec![
                "cluster.local".into(),
                "local".into(),
                "internal".into(),
                "in-addr.arpa".into(),
                "ip6.arpa".into(),
            ],
            max_subjects: 20_000,
            new_destination: NewDestinationConfig::default(),
            egress_volume: EgressVolumeConfig::default(),
            dns_tunnel: DnsTunnelConfig::default(),
            lateral_movement: LateralMovementConfig::default(),
            inference_abuse: InferenceAbuseConfig::default(),
        }
    }
}

/// New external destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NewDestinationConfig {
    /// Turn the detector on or off.
    pub enabled: bool,
    /// A registered domain with at least this many distinct learned names counts as
    /// learned as a whole (CDN shards, regional endpoints).
    pub domain_known_after_names: usize,
    /// Most destinations (and registered domains) remembered per workload: pods choose
    /// where they connect. Beyond it a destination not remembered alerts as new each time
    /// (no alert is lost), without being remembered.
    pub max_destinations_per_workload: usize,
}

impl Default for NewDestinationConfig {
    fn default() -> Self {
        NewDestinationConfig {
            enabled: true,
            domain_known_after_names: 1,
            max_destinations_per_workload: 10_000,
        }
    }
}

/// Egress volume spike per (workload, destination).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EgressVolumeConfig {
    /// Turn the detector on or off.
    pub enabled: bool,
    /// Bucket width in seconds.
    pub bucket_secs: i64,
    /// How many past non-empty buckets form the baseline.
    pub history_buckets: usize,
    /// Fewer past buckets than this: only `newPairBytes` applies.
    pub min_history_buckets: usize,
    /// A spike is at least this many bytes in one bucket.
    pub min_bytes: u64,
    /// ... and above median + `madFactor` × 1.4826 × MAD ...
    pub mad_factor: f64,
    /// ... and at least `medianRatio` × the median ...
    pub median_ratio: f64,
    /// ... and at least `maxRatio` × the largest bucket of the baseline.
    pub max_ratio: f64,
    /// Bytes in one bucket that are a spike for a pair without enough history.
    pub new_pair_bytes: u64,
    /// Quiet seconds after which a new spike of the same workload is a new alert.
    pub cooldown_secs: i64,
    /// Most (workload, destination) pairs with a baseline of their own (each keeps up to
    /// `historyBuckets` buckets): beyond it, bytes to a destination without one count
    /// towards its workload's `(other destinations)` pair, so a transfer spread over many
    /// new destinations is still one volume.
    pub max_pairs: usize,
}

impl Default for EgressVolumeConfig {
    fn default() -> Self {
        EgressVolumeConfig {
            enabled: true,
            bucket_secs: 60,
            history_buckets: 1440,
            min_history_buckets: 10,
            min_bytes: 20 * 1024 * 1024,
            mad_factor: 8.0,
            median_ratio: 10.0,
            max_ratio: 2.0,
            new_pair_bytes: 1024 * 1024 * 1024,
            cooldown_secs: 3600,
            max_pairs: 20_000,
        }
    }
}

/// DNS tunnelling per (workload, registered domain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DnsTunnelConfig {
    /// Turn the detector on or off.
    pub enabled: bool,
    /// Sliding window in seconds.
    pub window_secs: i64,
    /// Distinct names under one domain in the window needed to alert.
    pub min_unique_names: usize,
    /// Suspicious (long, high-entropy) queries in the window needed to alert ...
    pub min_suspicious: usize,
    /// ... or TXT (and NULL) queries in the window, when they are also at least
    /// `txtShare` of the domain's queries.
    pub min_txt: usize,
    /// See `minTxt`.
    pub txt_share: f64,
    /// A label at least this long ...
    pub long_label: usize,
    /// ... in a name whose subdomain part has at least this entropy (bits/char) is
    /// suspicious; so is any name of `longName` characters or more.
    pub min_entropy: f64,
    /// See `minEntropy`.
    pub long_name: usize,
    /// A subdomain part (left of the last two labels) at least this long with at least
    /// `minEntropy` is suspicious too (data split into many short labels).
    pub long_subdomain: usize,
    /// Quiet seconds after which a new tunnel of the same workload is a new alert.
    pub cooldown_secs: i64,
    /// Most queries one (workload, domain) window holds: a pod decides how fast it asks,
    /// so beyond it the oldest leave the window early (the window is then the newest
    /// queries; the thresholds above are far smaller).
    pub max_queries_per_window: usize,
    /// Most (workload, domain) windows: a pod decides how many domains it asks for, so
    /// beyond it queries under a domain without a window count in their workload's
    /// `(other domains)` window (a tunnel through a new domain still adds up there).
    pub max_windows: usize,
}

impl Default for DnsTunnelConfig {
    fn default() -> Self {
        DnsTunnelConfig {
            enabled: true,
            window_secs: 1800,
            min_unique_names: 20,
            min_suspicious: 15,
            min_txt: 20,
            txt_share: 0.5,
            long_label: 20,
            min_entropy: 3.3,
            long_name: 120,
            long_subdomain: 40,
            cooldown_secs: 3600,
            max_queries_per_window: 10_000,
            max_windows: 50_000,
        }
    }
}

/// Fan-out of denied connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LateralMovementConfig {
    /// Turn the detector on or off.
    pub enabled: bool,
    /// Tumbling window in seconds.
    pub window_secs: i64,
    /// Distinct denied destinations (pods, IPs) in one window needed to alert ...
    pub min_destinations: usize,
    /// ... or distinct denied (destination, port) pairs.
    pub min_ports: usize,
    /// Thresholds are also at least this many times the workload's largest window that did
    /// not alert (monitoring that is routinely denied does not alert).
    pub peak_factor: f64,
    /// Quiet seconds after which a new fan-out of the same workload is a new alert.
    pub cooldown_secs: i64,
    /// Most denied connections one workload's window holds (and most targets it learns as
    /// routine): a pod decides how fast it is denied, so beyond it the oldest leave the
    /// window early.
    pub max_denied_per_window: usize,
}

impl Default for LateralMovementConfig {
    fn default() -> Self {
        LateralMovementConfig {
            enabled: true,
            window_secs: 300,
            min_destinations: 10,
            min_ports: 20,
            peak_factor: 2.0,
            cooldown_secs: 3600,
            max_denied_per_window: 10_000,
        }
    }
}

/// Abuse of inference endpoints per consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct InferenceAbuseConfig {
    /// Turn the detector on or off.
    pub enabled: bool,
    /// Rate bucket width in seconds.
    pub bucket_secs: i64,
    /// How many past non-empty buckets form the rate baseline.
    pub history_buckets: usize,
    /// A burst is at least this many requests in one bucket ...
    pub min_requests: u64,
    /// ... above median + `madFactor` × 1.4826 × MAD ...
    pub mad_factor: f64,
    /// ... and at least `maxRatio` × the consumer's busiest bucket so far.
    pub max_ratio: f64,
    /// While a consumer is still learning: a burst is at least this many requests in one
    /// bucket, and `maxRatio` × the busiest bucket of any consumer.
    pub new_consumer_requests: u64,
    /// Tumbling window in seconds for near-duplicate requests and injection hits.
    pub window_secs: i64,
    /// Requests with the same signature (path or model, size within `sizeTolerance`) in a
    /// window needed to alert ...
    pub min_near_duplicates: usize,
    /// ... when they are at least this share of the window's requests ...
    pub near_duplicate_share: f64,
    /// ... and at least `peakFactor` × the consumer's largest such count that did not alert.
    pub peak_factor: f64,
    /// Relative size difference that still counts as "the same size".
    pub size_tolerance: f64,
    /// Prompt-injection detections (`prompt-guard`) in one sliding window needed to
    /// alert ...
    pub min_injections: usize,
    /// ... and more than `injectionFactor` × expected + 3 × √expected, where expected is
    /// the window's requests × the consumer's learned hit rate.
    pub injection_factor: f64,
    /// Quiet seconds after which new abuse by the same consumer is a new alert.
    pub cooldown_secs: i64,
}

impl Default for InferenceAbuseConfig {
    fn default() -> Self {
        InferenceAbuseConfig {
            enabled: true,
            bucket_secs: 60,
            history_buckets: 2880,
            min_requests: 60,
            mad_factor: 8.0,
            max_ratio: 2.0,
            new_consumer_requests: 300,
            window_secs: 600,
            min_near_duplicates: 150,
            near_duplicate_share: 0.6,
            peak_factor: 3.0,
            size_tolerance: 0.03,
            min_injections: 8,
            injection_factor: 3.0,
            cooldown_secs: 3600,
        }
    }
}

impl DetectConfig {
    /// Parses a JSON configuration.
    pub fn from_json(s: &str) -> Result<Self, crate::DetectError> {
        let cfg: DetectConfig = serde_json::from_str(s).map_err(crate::DetectError::Config)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that windows and buckets are positive; reports every problem at once.
    pub fn validate(&self) -> Result<(), crate::DetectError> {
        let mut bad = Vec::new();
        let positive = [
            ("learningWindowSecs", self.learning_window_secs, true),
            ("alertHoldSecs", self.alert_hold_secs, true),
            (
                "egressVolume.bucketSecs",
                self.egress_volume.bucket_secs,
                false,
            ),
            ("dnsTunnel.windowSecs", self.dns_tunnel.window_secs, false),
            (
                "lateralMovement.windowSecs",
                self.lateral_movement.window_secs,
                false,
            ),
            (
                "inferenceAbuse.bucketSecs",
                self.inference_abuse.bucket_secs,
                false,
            ),
            (
                "inferenceAbuse.windowSecs",
                self.inference_abuse.window_secs,
                false,
            ),
        ];
        for (field, v, zero_ok) in positive {
            if v < 0 || (v == 0 && !zero_ok) {
                bad.push(format!("{field}: must be positive, got {v}"));
            }
        }
        if self.max_subjects == 0 {
            bad.push("maxSubjects: must be at least 1".to_string());
        }
        if self.max_evidence == 0 {
            bad.push("maxEvidence: must be at least 1".to_string());
        }
        if self.new_destination.max_destinations_per_workload == 0 {
            bad.push("newDestination.maxDestinationsPerWorkload: must be at least 1".to_string());
        }
        if self.lateral_movement.max_denied_per_window == 0 {
            bad.push("lateralMovement.maxDeniedPerWindow: must be at least 1".to_string());
        }
        if self.dns_tunnel.max_windows == 0 {
            bad.push("dnsTunnel.maxWindows: must be at least 1".to_string());
        }
        if self.dns_tunnel.max_queries_per_window == 0 {
            bad.push("dnsTunnel.maxQueriesPerWindow: must be at least 1".to_string());
        }
        if self.egress_volume.max_pairs == 0 {
            bad.push("egressVolume.maxPairs: must be at least 1".to_string());
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(crate::DetectError::Invalid(bad))
        }
    }
}
