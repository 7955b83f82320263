//! `AIGateway` (ingress to inference backends) and `PalisadeConfig` (the standalone runtime).
//! The gateways and runtime that read them arrive with their own issues; the types, defaults
//! and validation live here so every component reads them the same way.

use super::meta::{Mode, ObjectMeta};
use serde::de::IgnoredAny;
use serde::Deserialize;

/// An AIGateway: routes, consumers and protections for inference APIs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AIGateway {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: AIGatewaySpec,
    #[cfg_attr(feature = "schema", schemars(skip))]
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<IgnoredAny>,
}

/// AIGateway spec.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AIGatewaySpec {
    /// Enforce or Audit (audit: detections are logged, nothing blocked).
    #[serde(default)]
    pub mode: Mode,
    /// Host names served (empty: any).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// TLS termination (PEM files), optionally requiring client certificates.
    #[serde(default)]
    pub tls: Option<GatewayTls>,
    /// Routes, first match wins.
    pub routes: Vec<AIRoute>,
    /// Known clients and their rights.
    #[serde(default)]
    pub consumers: Vec<Consumer>,
}

/// PEM certificate and key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsFiles {
    /// Certificate chain file.
    pub cert_file: String,
    /// Private key file.
    pub key_file: String,
}

/// TLS termination of an AIGateway. The files are read again when they change (a rotated
/// Secret): a new pair that loads replaces the old for new connections; one that does not
/// is logged and the old pair kept.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayTls {
    /// Certificate chain file (PEM).
    pub cert_file: String,
    /// Private key file (PEM).
    pub key_file: String,
    /// PEM bundle of the CAs client certificates must chain to. When set, every client of
    /// this gateway must present a valid certificate (mutual TLS; see `clientAuth`): a
    /// handshake without one, or with one from another CA, is refused. Routes may then
    /// authenticate clients by their certificate (`auth.mtls`). Sessions are not resumed:
    /// every connection's certificate is verified in a full handshake.
    #[serde(default)]
    pub client_ca_file: Option<String>,
    /// Certificate revocation lists (PEM or DER files, needs `clientCaFile`) checked for
    /// every client certificate: each certificate of the chain below the CA must be
    /// covered by a CRL of its issuer and not listed in it, else the handshake is refused.
    /// Reloaded with the certificates; a file that does not load keeps the last good set.
    #[serde(default)]
    pub client_crl_files: Vec<String>,
    /// Whether every client must present a certificate (`required`, the default with
    /// `clientCaFile`) or may connect without one (`optional`: routes with `auth.mtls` still
    /// need a mapped certificate, others serve anyone). A certificate that is presented is
    /// always verified.
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
}

/// Whether a mutual-TLS gateway's clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// A handshake without a certificate is refused.
    #[default]
    Required,
    /// A handshake without a certificate is accepted (nginx `ssl_verify_client optional`).
    Optional,
}

/// One route to an inference backend.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AIRoute {
    /// Name.
    pub name: String,
    /// Path prefix (default `/`).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Host (default: any of the gateway's).
    #[serde(default)]
    pub host: Option<String>,
    /// Upstream URL (`http://host:port` or `https://host:port`, optionally with a base path).
    pub backend: String,
    /// PEM bundle of the CAs an `https` backend's certificate must chain to (relative to this
    /// file); default: the system's trust anchors. The certificate is always verified.
    #[serde(default)]
    pub backend_ca_file: Option<String>,
    /// API style of the backend (`openai` default).
    #[serde(default)]
    pub api: Option<String>,
    /// Models served on this route (empty: any).
    #[serde(default)]
    pub models: Vec<String>,
    /// Paths (whole request paths, without the query) this route forwards besides the
    /// inference endpoints and the read-only reads it admits when it decides on request
    /// bodies (model lists, prompt guard, canary, token limit, `maxPromptChars`). Requests
    /// to them are still read and checked like any other (a JSON body naming an allowed
    /// model where lists apply), with any method.
    #[serde(default)]
    pub extra_endpoints: Vec<String>,
    /// Authentication.
    #[serde(default)]
    pub auth: Option<AuthSpec>,
    /// Limits.
    #[serde(default)]
    pub limits: Option<LimitsSpec>,
    /// WAF.
    #[serde(default)]
    pub waf: Option<WafSpec>,
    /// Prompt guard.
    #[serde(default)]
    pub prompt_guard: Option<PromptGuardSpec>,
    /// Output filters.
    #[serde(default)]
    pub output_filters: Vec<OutputFilterSpec>,
    /// Seconds to wait for the backend's response headers (default 60).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Seconds the backend may stay silent between chunks of its response body (after the
    /// headers) before the answer is ended and the backend connection dropped (default
    /// 300, 1 to 86400).
    #[serde(default)]
    pub stream_idle_timeout_seconds: Option<u64>,
}

/// API keys and/or JWT.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthSpec {
    /// File of `consumer: sha256-hex` lines, or a Secret-style YAML.
    #[serde(default)]
    pub api_keys_file: Option<String>,
    /// JWT validation.
    #[serde(default)]
    pub jwt: Option<JwtSpec>,
    /// Client certificates (the gateway's `tls.clientCaFile` verifies them).
    #[serde(default)]
    pub mtls: Option<MtlsSpec>,
}

/// Authentication by verified client certificate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MtlsSpec {
    /// Certificate identity → consumer. An identity is a URI SAN (a SPIFFE ID such as
    /// `spiffe://cluster.local/ns/apps/sa/chat`), a DNS SAN, or the subject common name.
    pub identities: std::collections::BTreeMap<String, String>,
}

/// JWT validation settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtSpec {
    /// Required issuer.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required audience.
    #[serde(default)]
    pub audience: Option<String>,
    /// JWKS file or URL.
    #[serde(default)]
    pub jwks: Option<String>,
    /// Claim naming the consumer (default `sub`).
    #[serde(default)]
    pub consumer_claim: Option<String>,
    /// Signature algorithms accepted (default `RS256`, `ES256`, `HS256`).
    #[serde(default)]
    pub algorithms: Vec<String>,
}

/// Limits per consumer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Requests per second (token bucket).
    #[serde(default)]
    pub requests_per_second: Option<f64>,
    /// Burst size.
    #[serde(default)]
    pub burst: Option<u32>,
    /// Tokens per minute.
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    /// Largest request body in bytes.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Largest prompt in characters.
    #[serde(default)]
    pub max_prompt_chars: Option<u64>,
}

/// WAF settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WafSpec {
    /// On or off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// CRS paranoia level 1..=4.
    #[serde(default)]
    pub paranoia_level: Option<u8>,
    /// Inbound anomaly threshold.
    #[serde(default)]
    pub anomaly_threshold: Option<u32>,
    /// Rules folder (CRS).
    #[serde(default)]
    pub rules: Option<String>,
    /// CRS setup file read before the rules (`crs-setup.conf`).
    #[serde(default)]
    pub setup: Option<String>,
    /// Feed natural-language prompt fields to the rules too (default false: prompts are
    /// checked by the prompt guard, not by rules written for form fields).
    #[serde(default)]
    pub inspect_prompts: bool,
    /// Extra top-level JSON fields that carry prompts (besides `messages[].content`,
    /// `prompt`, `input`).
    #[serde(default)]
    pub prompt_fields: Vec<String>,
}

fn yes() -> bool {
    true
}

/// Detection actions for guards and filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum GuardAction {
    /// Refuse.
    #[default]
    Block,
    /// Let through, mark in the event.
    Flag,
    /// Record only.
    Log,
    /// Replace the match (output filters).
    Redact,
}

/// Prompt-injection guard settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PromptGuardSpec {
    /// Action on detection.
    #[serde(default)]
    pub action: GuardAction,
    /// Score threshold 0..1.
    #[serde(default)]
    pub threshold: Option<f64>,
}

/// An output filter.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutputFilterSpec {
    /// `secrets`, `pii` or `canary`.
    pub kind: String,
    /// Action.
    #[serde(default)]
    pub action: GuardAction,
}

/// A client of the gateway.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// Name (API key owner or JWT subject).
    pub name: String,
    /// Models allowed (empty: any the route serves).
    #[serde(default)]
    pub models: Vec<String>,
    /// Routes allowed (empty: any).
    #[serde(default)]
    pub routes: Vec<String>,
    /// Limits for this consumer, replacing the route's.
    #[serde(default)]
    pub limits: Option<LimitsSpec>,
}

/// Runtime configuration of `palisade up` and the components.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PalisadeConfig {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: PalisadeConfigSpec,
}

/// Default posture for traffic no policy decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Posture {
    /// Kubernetes default: allow.
    #[default]
    Allow,
    /// Zero trust: deny.
    Deny,
}

/// PalisadeConfig spec; relative paths are relative to the config file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PalisadeConfigSpec {
    /// Cluster name (events, federation).
    #[serde(default)]
    pub cluster: Option<String>,
    /// Node name of this machine.
    #[serde(default)]
    pub node: Option<String>,
    /// Folder of manifests to enforce.
    #[serde(default)]
    pub manifests: Option<String>,
    /// Where the event store and state live.
    #[serde(default)]
    pub data_dir: Option<String>,
    /// Default posture.
    #[serde(default)]
    pub default_posture: Posture,
    /// Admin API.
    #[serde(default)]
    pub admin: Option<ListenSpec>,
    /// DNS proxy.
    #[serde(default)]
    pub dns: Option<Box<DnsSpec>>,
    /// Egress gateway.
    #[serde(default)]
    pub egress: Option<Box<EgressSpec>>,
    /// Ingress gateway.
    #[serde(default)]
    pub ingress: Option<IngressSpec>,
    /// Node agent.
    #[serde(default)]
    pub agent: Option<AgentSpec>,
    /// CA for TLS interception.
    #[serde(default)]
    pub ca: Option<TlsFiles>,
    /// Event sinks.
    #[serde(default)]
    pub events: Option<EventsSpec>,
    /// How often the manifests folder is checked for changes, in milliseconds (default 1000).
    #[serde(default)]
    pub reload_interval_ms: Option<u64>,
    /// The cluster's own address ranges (the Service CIDR, the node network, ...) that a
    /// name from DNS never leads to: the DNS proxy opens no address in them for a pod and
    /// the egress gateway connects to none, as for pods' addresses. Reach them with pod or
    /// `ipBlock` rules.
    #[serde(default)]
    pub cluster_networks: Vec<String>,
}

/// A listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ListenSpec {
    /// `host:port`.
    pub listen: String,
    /// Off switch.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// Ingress gateway settings (`spec.ingress`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IngressSpec {
    /// `host:port`.
    pub listen: String,
    /// Seconds a client connection may stay open with no request in flight (HTTP/1.1
    /// keep-alive, HTTP/2 however often it answers pings, TLS that never sends a request);
    /// default 75, 1 to 86400.
    #[serde(default)]
    pub idle_timeout_seconds: Option<u64>,
    /// Seconds what the gateway sent a client may go unacknowledged, or the client keep its
    /// receive window shut, before the connection is dropped (nginx's `send_timeout`: a
    /// client that stops reading); default 60, 1 to 86400.
    #[serde(default)]
    pub send_timeout_seconds: Option<u64>,
    /// Off switch.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// DNS proxy settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DnsSpec {
    /// `host:port`.
    pub listen: String,
    /// Upstream resolver `host:port`.
    pub upstream: String,
    /// `REFUSED` (default) or `NXDOMAIN`.
    #[serde(default)]
    pub refuse_with: Option<String>,
    /// Minimum TTL in seconds.
    #[serde(default)]
    pub min_ttl_seconds: Option<u32>,
    /// Addresses kept per (pod, name); beyond it the soonest to expire gives way
    /// (default 50).
    #[serde(default)]
    pub max_ips_per_name: Option<u32>,
    /// `host:port` on which the answers feed (`GET /v1/answers`) is served to egress
    /// gateways in other processes; off when unset. Reachable by the gateways only.
    #[serde(default)]
    pub answers_listen: Option<String>,
    /// A file holding the bearer token subscribers of the answers feed must send.
    #[serde(default)]
    pub answers_token_file: Option<String>,
    /// Addresses one pod may hold open at once, over all its names (default 20000, a tenth
    /// of the proxy's 200000; 1 to 200000). Beyond it the pod's new answers open nothing
    /// until some expire, so one pod resolving random names under a wildcard cannot take
    /// the room the others need.
    #[serde(default)]
    pub max_records_per_pod: Option<u32>,
    /// Send questions upstream in random letter case and take only answers that echo it
    /// exactly (0x20 mixing, against forged answers); default true. Turn it off for an
    /// upstream that answers some names in another case.
    #[serde(default)]
    pub mix_case: Option<bool>,
    /// Queries one client address may send per second (one token bucket per address, over
    /// UDP and TCP together); beyond it and its burst they are answered REFUSED without reaching the
    /// upstream. Default 500; 0 turns the limit off; at most 1000000.
    #[serde(default)]
    pub queries_per_second_per_client: Option<u32>,
    /// Queries one client address may send at once above its rate (default 1000, 1 to
    /// 1000000).
    #[serde(default)]
    pub query_burst_per_client: Option<u32>,
    /// Forwarded UDP queries one client address may have waiting for the upstream per
    /// worker (default 256, 1 to 4096); beyond it its queries are dropped.
    #[serde(default)]
    pub max_in_flight_per_client: Option<u32>,
    /// TCP connections one client address may hold at once (default 32, 1 to 4096); the
    /// ones beyond are closed.
    #[serde(default)]
    pub max_tcp_per_client: Option<u32>,
    /// Off switch.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// Agent settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentSpec {
    /// Enforce for every pod regardless of node (standalone).
    #[serde(default)]
    pub all_nodes: bool,
    /// Beginnings of the names of this node's pod interfaces, as the CNI names them
    /// (Calico `cali`, Cilium `lxc`, the `ptp` plugin `veth`, AWS VPC CNI `eni`; for bridge
    /// CNIs the bridge: flannel and the `bridge` plugin `cni0`, kubenet `cbr0`). Under
    /// `defaultPosture: deny`, new traffic from or to such an interface whose address the
    /// agent's snapshot does not hold yet (a pod that just started) is dropped until the
    /// reconcile that includes the pod. 1 to 14 letters, digits, `-`, `_`, `.`; default none.
    #[serde(default)]
    pub pod_interface_prefixes: Vec<String>,
    /// Off switch.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// Event sinks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventsSpec {
    /// JSON-lines file to append to.
    #[serde(default)]
    pub jsonl: Option<String>,
    /// Keep events in the queryable store (`palisade events`, the admin API); default true.
    /// A node that only ships events onward (the `jsonl` file tailed by a log shipper) can
    /// turn it off.
    #[serde(default)]
    pub store: Option<bool>,
    /// Bounded channel capacity.
    #[serde(default)]
    pub channel_capacity: Option<usize>,
    /// Days of events to keep.
    #[serde(default)]
    pub retention_days: Option<u32>,
}

/// Egress gateway settings (`spec.egress`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressSpec {
    /// Explicit proxy `host:port`.
    pub listen: String,
    /// Transparent listener `host:port` (traffic the agent redirects; original destination
    /// from the socket).
    #[serde(default)]
    pub transparent: Option<String>,
    /// Static names for upstream connections (`name: ip`), checked before the system
    /// resolver. For tests and trying it on one machine.
    #[serde(default)]
    pub hosts: std::collections::BTreeMap<String, String>,
    /// A hosts(5) file read at start, like `hosts`.
    #[serde(default)]
    pub hosts_file: Option<String>,
    /// Standalone mode: `Proxy-Authorization: Basic` credentials that stand for a pod.
    #[serde(default)]
    pub proxy_users: Vec<ProxyUser>,
    /// Which requests become `http` events: `all` (default), `denied`, `none`.
    #[serde(default)]
    pub events: Option<String>,
    /// Data-loss prevention on every visible request body (plain HTTP and intercepted TLS).
    #[serde(default)]
    pub dlp: Option<super::palisade::DlpSpec>,
    /// Trust anchors (PEM bundle) for upstream TLS when intercepting; default: the system's.
    #[serde(default, rename = "upstreamCAFile")]
    pub upstream_ca_file: Option<String>,
    /// DNS proxies' answers feeds (`http://host:port`) to follow for SNI / DNS / IP agreement
    /// when the DNS proxy runs in another process (under `palisade up` it is shared in
    /// process and this is not needed).
    #[serde(default)]
    pub dns_answers: Vec<String>,
    /// A file holding the bearer token sent to the answers feeds.
    #[serde(default)]
    pub dns_answers_token_file: Option<String>,
    /// Seconds a client connection may stay open with no request in flight; default 120,
    /// 1 to 86400. (Tunnels are not client connections in this sense: they last as long
    /// as their bytes flow.)
    #[serde(default)]
    pub idle_timeout_seconds: Option<u64>,
    /// Seconds the gateway waits for an upstream that owes an answer: for the answer's head
    /// once the request is sent, then between two reads of its body; default 900 (squid's
    /// `read_timeout`), 1 to 86400. A stalled answer is cut (its head late: `504
    /// upstream-timeout`). Tunnels are not bounded by it.
    #[serde(default)]
    pub upstream_idle_timeout_seconds: Option<u64>,
    /// Seconds what the gateway sent a peer (pod or upstream) may go unacknowledged, or the
    /// peer keep its receive window shut, before the connection is dropped (squid's
    /// `write_timeout`); default 900, 1 to 86400. Tunnels included.
    #[serde(default)]
    pub send_timeout_seconds: Option<u64>,
    /// Off switch.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// A proxy credential mapped to a workload (standalone mode).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProxyUser {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// The pod it stands for, `NAMESPACE/NAME`.
    pub pod: String,
}
