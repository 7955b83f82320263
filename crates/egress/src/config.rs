//! The gateway's settings, validated once into an immutable value.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use palisade_policy::model::EgressSpec;

use crate::EgressError;

/// Which requests become `http` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventSelection {
    /// Every request and tunnel (default).
    #[default]
    All,
    /// Only denied ones.
    Denied,
    /// None.
    None,
}

impl EventSelection {
    /// Parses `all`, `denied`, `none`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "all" => Some(Self::All),
            "denied" => Some(Self::Denied),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    /// Whether a request with this outcome is recorded.
    pub fn wants(self, allowed: bool) -> bool {
        match self {
            Self::All => true,
            Self::Denied => !allowed,
            Self::None => false,
        }
    }
}

/// How the gateway runs.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The explicit proxy's address.
    pub listen: SocketAddr,
    /// The transparent listener's address, if any.
    pub transparent: Option<SocketAddr>,
    /// Static names (lower case) for upstream connections, before the system resolver.
    pub hosts: HashMap<String, IpAddr>,
    /// Standalone mode: `Basic` credential (base64 of `user:password`) → pod `NS/NAME`.
    pub proxy_users: HashMap<String, String>,
    /// Which requests become events.
    pub events: EventSelection,
    /// Cluster name, for events.
    pub cluster: Option<String>,
    /// Node name, for events.
    pub node: Option<String>,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Largest request head accepted (bytes); larger gets `431`.
    pub max_head_bytes: usize,
    /// How long an idle client connection is kept.
    pub idle_timeout: Duration,
    /// How long an upstream that owes an answer may stay silent: before the answer's head,
    /// and between two reads of its body. Tunnels are not bounded by it.
    pub upstream_idle_timeout: Duration,
    /// How long bytes sent to a pod or an upstream may go unacknowledged (its receive
    /// window shut included) before the connection is dropped; tunnels included.
    pub send_timeout: Duration,
    /// Threads serving the explicit proxy (default: one per CPU).
    pub workers: usize,
    /// Transparent listener, for connections that were not redirected (no original
    /// destination on the socket): connect to the SNI / `Host` name on this port. Off by
    /// default; for trying the listener without the agent's redirect rules.
    pub transparent_fallback_port: Option<u16>,
    /// TLS interception: tunnels to names whose rules have HTTP conditions are terminated
    /// with a minted certificate and their requests decided one by one. Without it such
    /// tunnels are refused (`needs-inspection`).
    pub intercept: Option<std::sync::Arc<crate::tls::Interceptor>>,
    /// Data-loss prevention on visible request bodies.
    pub dlp: Option<DlpSettings>,
    /// What the DNS proxy told each client; redirected connections must agree with it.
    pub answers: Option<std::sync::Arc<dyn crate::answers::ResolvedNames>>,
    /// The cluster's own networks (`spec.clusterNetworks`): a name from the system resolver
    /// never leads the gateway there, as it never leads to a pod.
    pub cluster_networks: Vec<palisade_policy::cidr::Cidr>,
}

/// What DLP looks for and does.
#[derive(Debug, Clone)]
pub struct DlpSettings {
    /// Detectors to run.
    pub detectors: Vec<crate::dlp::Detector>,
    /// Block, redact or log.
    pub action: palisade_policy::model::DlpAction,
    /// Largest body scanned (bytes); a larger one is refused with `413` (fail closed).
    pub max_body: usize,
    /// Whether request heads (target and header fields) are scanned too.
    pub scan_heads: bool,
    /// Header fields (lower case) left out of the head scan: the pod's credential for the
    /// destination.
    pub credential_headers: Vec<Cow<'static, str>>,
    /// Query parameters (lower case) left out of the head scan: presigned URLs.
    pub credential_query_parameters: Vec<Cow<'static, str>>,
    /// Provider keys the destination takes in its credential fields though it is not
    /// that provider's host (`forwardedCredentials`: an AI gateway forwarding them).
    pub forwarded_credentials: Vec<crate::dlp::Detector>,
}

/// How long an upstream that owes an answer may stay silent, by default: squid's
/// `read_timeout` (15 minutes), long enough for a slow model server between two chunks.
pub const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(900);

/// How long what the gateway sent a pod or an upstream may go unacknowledged, or the peer
/// keep its receive window shut, by default: squid's `write_timeout` (15 minutes).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(900);

/// Header fields whose values are a pod's credential for the API it calls (OpenAI,
/// Anthropic, Hugging Face, … `Authorization`; Anthropic `x-api-key`; Azure OpenAI
/// `api-key`; Gemini `x-goog-api-key`): not scanned unless a `dlp` block says otherwise.
pub const CREDENTIAL_HEADERS: [&str; 4] =
    ["authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// Query parameters of presigned URLs (AWS SigV4, Google Cloud Storage V4): not scanned
/// unless a `dlp` block says otherwise.
pub const CREDENTIAL_QUERY_PARAMETERS: [&str; 5] = [
    "x-amz-credential",
    "x-amz-security-token",
    "x-amz-signature",
    "x-goog-credential",
    "x-goog-signature",
];

impl DlpSettings {
    /// Every detector, with `action`, scanning bodies up to 1 MiB.
    pub fn all(action: palisade_policy::model::DlpAction) -> Self {
        DlpSettings {
            detectors: crate::dlp::ALL.to_vec(),
            action,
            max_body: 1 << 20,
            scan_heads: true,
            // Borrowed: a rule's `dlp` is read per request, and the defaults cost one
            // allocation each.
            credential_headers: CREDENTIAL_HEADERS.map(Cow::Borrowed).to_vec(),
            credential_query_parameters: CREDENTIAL_QUERY_PARAMETERS.map(Cow::Borrowed).to_vec(),
            forwarded_credentials: Vec::new(),
        }
    }

    /// The settings a `dlp` block asks for (a gateway's `spec.egress.dlp` or a rule's):
    /// the named detectors and sets (none named: all), scanning bodies up to 1 MiB, and
    /// request heads unless `scanHeads: false` (credential fields left out).
    pub fn from_spec(d: &palisade_policy::model::DlpSpec) -> Result<Self, String> {
        let mut settings = DlpSettings::all(d.action);
        settings.scan_heads = d.scan_heads.unwrap_or(true);
        let lower = |names: &[String]| {
            names
                .iter()
                .map(|n| Cow::Owned(n.trim().to_ascii_lowercase()))
                .collect()
        };
        if let Some(h) = &d.credential_headers {
            settings.credential_headers = lower(h);
        }
        if let Some(q) = &d.credential_query_parameters {
            settings.credential_query_parameters = lower(q);
        }
        for name in d.forwarded_credentials.iter().flatten() {
            match crate::dlp::ALL
                .into_iter()
                .find(|det| det.name() == name.trim())
            {
                Some(det) if det.provider_domains().is_some() => {
                    settings.forwarded_credentials.push(det)
                }
                _ => {
                    return Err(format!(
                        "dlp.forwardedCredentials: {name:?} is not a provider's key detector"
                    ))
                }
            }
        }
        if !d.detectors.is_empty() {
            settings.detectors.clear();
            for name in &d.detectors {
                let set = crate::dlp::Detector::parse_set(name)
                    .ok_or_else(|| format!("dlp.detectors: unknown detector {name:?}"))?;
                for det in set {
                    if !settings.detectors.contains(&det) {
                        settings.detectors.push(det);
                    }
                }
            }
        }
        Ok(settings)
    }
}

impl GatewayConfig {
    /// Defaults for `listen`: no transparent listener, no static names, every request an
    /// event, 10 s connect timeout, 64 KiB heads.
    pub fn new(listen: SocketAddr) -> Self {
        GatewayConfig {
            listen,
            transparent: None,
            hosts: HashMap::new(),
            proxy_users: HashMap::new(),
            events: EventSelection::All,
            cluster: None,
            node: None,
            connect_timeout: Duration::from_secs(10),
            max_head_bytes: 64 * 1024,
            idle_timeout: Duration::from_secs(120),
            upstream_idle_timeout: UPSTREAM_IDLE_TIMEOUT,
            send_timeout: SEND_TIMEOUT,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            transparent_fallback_port: None,
            intercept: None,
            dlp: None,
            answers: None,
            cluster_networks: Vec::new(),
        }
    }

    /// Builds the settings from `spec.egress`; relative paths resolve against `base`.
    pub fn from_spec(spec: &EgressSpec, base: &Path) -> Result<Self, EgressError> {
        let listen = spec.listen.parse().map_err(|_| {
            EgressError::Config(format!("listen {:?} is not host:port", spec.listen))
        })?;
        let mut cfg = GatewayConfig::new(listen);
        if let Some(t) = &spec.transparent {
            cfg.transparent =
                Some(t.parse().map_err(|_| {
                    EgressError::Config(format!("transparent {t:?} is not host:port"))
                })?);
        }
        if let Some(f) = &spec.hosts_file {
            let path = base.join(f);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| EgressError::Config(format!("hostsFile {}: {e}", path.display())))?;
            cfg.hosts.extend(parse_hosts(&text));
        }
        for (name, ip) in &spec.hosts {
            let ip = ip
                .parse()
                .map_err(|_| EgressError::Config(format!("hosts.{name}: {ip:?} is not an IP")))?;
            cfg.hosts.insert(normalize_host(name), ip);
        }
        for u in &spec.proxy_users {
            if !u.pod.contains('/') {
                return Err(EgressError::Config(format!(
                    "proxyUsers {:?}: pod {:?} is not NAMESPACE/NAME",
                    u.username, u.pod
                )));
            }
            cfg.add_proxy_user(&u.username, &u.password, &u.pod);
        }
        if let Some(d) = &spec.dlp {
            cfg.dlp = Some(DlpSettings::from_spec(d).map_err(EgressError::Config)?);
        }
        if let Some(secs) = spec.idle_timeout_seconds {
            cfg.idle_timeout = Duration::from_secs(secs.clamp(1, 86_400));
        }
        if let Some(secs) = spec.upstream_idle_timeout_seconds {
            cfg.upstream_idle_timeout = Duration::from_secs(secs.clamp(1, 86_400));
        }
        if let Some(secs) = spec.send_timeout_seconds {
            cfg.send_timeout = Duration::from_secs(secs.clamp(1, 86_400));
        }
        if let Some(e) = &spec.events {
            cfg.events = EventSelection::parse(e).ok_or_else(|| {
                EgressError::Config(format!("events {e:?} is not all, denied or none"))
            })?;
        }
        Ok(cfg)
    }

    /// Maps a `Proxy-Authorization: Basic` credential to a pod.
    pub fn add_proxy_user(&mut self, user: &str, password: &str, pod: &str) {
        let token = base64(format!("{user}:{password}").as_bytes());
        self.proxy_users.insert(token, pod.to_string());
    }
}

/// Lower case, no trailing dot.
pub fn normalize_host(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    match lower.strip_suffix('.') {
        Some(s) => s.to_string(),
        None => lower,
    }
}

/// The names of a hosts(5) file: `IP name [alias...]`, `#` comments.
pub fn parse_hosts(text: &str) -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) else {
            continue;
        };
        for name in words {
            out.push((normalize_host(name), ip));
        }
    }
    out
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o, "{i}");
        }
    }

    #[test]
    fn idle_timeout_comes_from_the_spec() {
        let spec = |idle: &str| -> EgressSpec {
            serde_json::from_str(&format!(r#"{{"listen": "127.0.0.1:3128"{idle}}}"#)).unwrap()
        };
        let base = Path::new(".");
        let default = GatewayConfig::from_spec(&spec(""), base).unwrap();
        assert_eq!(default.idle_timeout, Duration::from_secs(120));
        let set = GatewayConfig::from_spec(&spec(r#", "idleTimeoutSeconds": 30"#), base).unwrap();
        assert_eq!(set.idle_timeout, Duration::from_secs(30));
        assert_eq!(default.upstream_idle_timeout, Duration::from_secs(900));
        let set =
            GatewayConfig::from_spec(&spec(r#", "upstreamIdleTimeoutSeconds": 5"#), base).unwrap();
        assert_eq!(set.upstream_idle_timeout, Duration::from_secs(5));
        assert_eq!(default.send_timeout, Duration::from_secs(900));
        let set = GatewayConfig::from_spec(&spec(r#", "sendTimeoutSeconds": 7"#), base).unwrap();
        assert_eq!(set.send_timeout, Duration::from_secs(7));
    }

    #[test]
    fn dlp_head_settings_come_from_the_spec() {
        let spec =
            |json: &str| -> palisade_policy::model::DlpSpec { serde_json::from_str(json).unwrap() };
        let d = DlpSettings::from_spec(&spec(r#"{"detectors": ["secrets"]}"#)).unwrap();
        assert!(d.scan_heads);
        assert_eq!(d.credential_headers, CREDENTIAL_HEADERS);
        assert_eq!(d.credential_query_parameters, CREDENTIAL_QUERY_PARAMETERS);
        let d = DlpSettings::from_spec(&spec(
            r#"{"scanHeads": false, "credentialHeaders": ["X-Hub-Token"], "credentialQueryParameters": []}"#,
        ))
        .unwrap();
        assert!(!d.scan_heads);
        assert_eq!(d.credential_headers, ["x-hub-token"]);
        assert!(d.credential_query_parameters.is_empty());
        assert!(d.forwarded_credentials.is_empty());
        let d = DlpSettings::from_spec(&spec(
            r#"{"forwardedCredentials": ["anthropic-key", "gitlab-token"]}"#,
        ))
        .unwrap();
        assert_eq!(
            d.forwarded_credentials,
            [
                crate::dlp::Detector::AnthropicKey,
                crate::dlp::Detector::GitlabToken
            ]
        );
        // Only a provider's key can be forwarded: not a shape many take, not PII.
        for bad in ["openai-key", "card", "secrets", "nope"] {
            let json = format!(r#"{{"forwardedCredentials": ["{bad}"]}}"#);
            let e = DlpSettings::from_spec(&spec(&json)).unwrap_err();
            assert!(e.contains("forwardedCredentials") && e.contains(bad), "{e}");
        }
    }

    /// The names a policy may list (validated before the gateway reads them) are exactly
    /// the gateway's detectors and sets.
    #[test]
    fn policy_detector_names_are_the_gateways() {
        use palisade_policy::validate::{DLP_DETECTORS, DLP_PROVIDER_KEYS};
        let mut ours: Vec<&str> = vec!["secrets", "pii"];
        ours.extend(crate::dlp::ALL.iter().map(|d| d.name()));
        let mut theirs = DLP_DETECTORS.to_vec();
        ours.sort_unstable();
        theirs.sort_unstable();
        assert_eq!(ours, theirs);
        let mut bound: Vec<&str> = crate::dlp::ALL
            .iter()
            .filter(|d| d.provider_domains().is_some())
            .map(|d| d.name())
            .collect();
        let mut theirs = DLP_PROVIDER_KEYS.to_vec();
        bound.sort_unstable();
        theirs.sort_unstable();
        assert_eq!(bound, theirs);
    }

    #[test]
    fn hosts_file_names_and_comments() {
        let h =
            parse_hosts("127.0.0.1 localhost\n# x\n10.0.0.1 A.test. b.test # c.test\nbad line\n");
        assert_eq!(
            h,
            vec![
                ("localhost".into(), "127.0.0.1".parse().unwrap()),
                ("a.test".into(), "10.0.0.1".parse().unwrap()),
                ("b.test".into(), "10.0.0.1".parse().unwrap()),
            ]
        );
    }
}
