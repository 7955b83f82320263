//! The per-type objects of an event: `flow`, `dns`, `http` and `alert`.

use serde::{Deserialize, Serialize};

/// Where a flow is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowState {
    /// The first packet of a connection was seen and allowed.
    New,
    /// The connection ended; counters are final.
    End,
    /// The connection attempt was denied.
    Denied,
}

/// The `flow` object: a connection seen by the data plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowInfo {
    /// `new`, `end` or `denied`.
    pub state: FlowState,
    /// Bytes from source to destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
    /// Bytes from destination to source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_received: Option<u64>,
    /// Packets in both directions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
    /// How long the connection lasted (on `end`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// The `dns` object: one query and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsInfo {
    /// The queried name.
    pub query: String,
    /// Record type, e.g. `A`, `AAAA`, `TXT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qtype: Option<String>,
    /// Response code, e.g. `NOERROR`, `NXDOMAIN`, `REFUSED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcode: Option<String>,
    /// Answer records as text (an empty list is an answer with no records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<Vec<String>>,
    /// Smallest TTL of the answers, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// Time from query to answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// Shape of the queried name, for tunnelling detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<DnsFeatures>,
}

/// Shape of a queried name: DNS tunnels pack data into long, many-labelled, high-entropy
/// names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsFeatures {
    /// Number of labels.
    pub labels: u8,
    /// Length of the longest label.
    pub longest_label: u8,
    /// Length of the name.
    pub length: u16,
    /// Shannon entropy (bits per character) of the labels left of the last two.
    pub entropy: Centi,
}

/// A non-negative number kept to two decimals (so events stay comparable with `Eq`);
/// written in JSON as a plain number (`3.12`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Centi(pub u32);

impl Centi {
    /// Rounds `v` (negative and non-finite values become 0).
    pub fn from_f32(v: f32) -> Self {
        if v.is_finite() && v > 0.0 {
            Centi((v * 100.0).round().min(u32::MAX as f32) as u32)
        } else {
            Centi(0)
        }
    }

    /// The value.
    pub fn get(self) -> f64 {
        f64::from(self.0) / 100.0
    }
}

impl Serialize for Centi {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.get())
    }
}

impl<'de> Deserialize<'de> for Centi {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Ok(Centi::from_f32(v as f32))
    }
}

/// How a gateway handled TLS for an HTTP exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS was terminated and re-originated, so the content was inspected.
    Intercepted,
    /// TLS was passed through; only SNI was seen.
    Passthrough,
    /// Plain HTTP.
    None,
}

/// The HTTP version a client spoke to a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HttpVersion {
    /// HTTP/1.0.
    #[serde(rename = "HTTP/1.0")]
    Http10,
    /// HTTP/1.1.
    #[serde(rename = "HTTP/1.1")]
    Http11,
    /// HTTP/2.
    #[serde(rename = "HTTP/2")]
    Http2,
    /// HTTP/3.
    #[serde(rename = "HTTP/3")]
    Http3,
}

/// Direction of an AI data transfer (model weights, datasets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transfer {
    /// Data leaving the cluster.
    Upload,
    /// Data entering the cluster.
    Download,
}

/// The `http.ai` object: what an AI API call was.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AiInfo {
    /// API provider, e.g. `openai`, `huggingface`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Model name as requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Operation, e.g. `chat`, `embeddings`, `download`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Tokens in the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    /// Tokens in the completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    /// Upload or download of model/data files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Transfer>,
}

/// What a detector did about what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectionAction {
    /// The request or response was refused.
    Block,
    /// The matching content was replaced.
    Redact,
    /// Marked for attention, passed through.
    Flag,
    /// Recorded only.
    Log,
}

/// One entry of `http.detections`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Detection {
    /// `crs`, `prompt-guard`, `dlp.<name>` or `output.<name>`.
    pub detector: String,
    /// `block`, `redact`, `flag` or `log`.
    pub action: DetectionAction,
    /// Detector score (anomaly score, classifier probability).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Ids of the rules that matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
}

/// The `http` object: one request/response exchange through a gateway.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpInfo {
    /// Request method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// `Host` / `:authority`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Request path (query string removed or redacted by the producer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Response status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Request body bytes, client to server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    /// Response body bytes, server to client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    /// Time from request to end of response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// On ingress, the authenticated client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    /// The gateway route that matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// `intercepted`, `passthrough` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsMode>,
    /// The HTTP version the client spoke (`HTTP/1.0`, `HTTP/1.1`, `HTTP/2`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<HttpVersion>,
    /// Set when the exchange was an AI API call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai: Option<AiInfo>,
    /// What the content detectors found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detections: Vec<Detection>,
    /// Why a gateway refused, as its short reason code (e.g. `dns-mismatch`,
    /// `l7-not-allowed`); absent when the exchange was not refused by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// On ingress with mutual TLS, the client certificate the event is about (a handshake
    /// refused for it, a connection closed when it was revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<Box<ClientCertificate>>,
    /// Events of the same kind the producer did not write since its previous one (rate
    /// limited); this one stands for them too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<u64>,
}

/// The `http.clientCertificate` object: a certificate a TLS client presented.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertificate {
    /// Subject distinguished name, e.g. `CN=client`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Issuer distinguished name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Serial number, lowercase hex without separators (`0a1b`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Subject alternative names: URIs (SPIFFE IDs), then DNS names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    /// A workload talked to a destination it had not used during learning.
    NewDestination,
    /// A workload sent far more data out than its baseline.
    EgressVolume,
    /// DNS queries that look like data encoded in names.
    DnsTunnel,
    /// Connections fanning out across workloads.
    LateralMovement,
    /// Abnormal use of an inference endpoint.
    InferenceAbuse,
    /// Prompt-injection attempts repeated across requests.
    PromptInjectionCampaign,
}

/// How urgent an alert is; ordered from `Low` to `Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Should be looked at today.
    Medium,
    /// Should be looked at now.
    High,
    /// Active compromise is likely.
    Critical,
}

/// The `alert` object: a detector's finding over other events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertInfo {
    /// Which detector fired.
    pub kind: AlertKind,
    /// How urgent it is.
    pub severity: Severity,
    /// A workload (`namespace/name`) or `consumer:<name>`.
    pub subject: String,
    /// One human sentence.
    pub summary: String,
    /// Ids of the events that show it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
}
