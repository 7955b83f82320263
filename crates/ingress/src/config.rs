//! Compiling `AIGateway` resources into what the proxy runs: routes in match order with
//! their backends, credentials, limits, WAF rulesets, guard and filter settings, and the TLS
//! configuration. Files the resources name (keys, JWKS, certificates, rules) are read here,
//! relative to the manifest that names them; every problem is reported with that
//! manifest's `file:line` and the field path, all at once.

use crate::auth::jwt::{parse_jwks, JwtSettings, JwtVerifier};
use crate::auth::keys::ApiKeys;
use crate::filter::FilterAction;
use crate::limits::Limits;
use crate::proxy::https::{self, HttpsUpstream};
use crate::waf::{self, Waf, WafSettings};
use palisade_egress::dlp::Detector;
use palisade_policy::diag::Origin;
use palisade_policy::model::{AIGateway, ClientAuth, GuardAction, LimitsSpec, Mode};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Default largest request body.
pub const DEFAULT_MAX_BODY: u64 = 8 << 20;
/// Default wait for a backend's response headers.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default longest silence of a backend between chunks of its response body: long enough
/// for a model thinking between streamed tokens, short enough that a stalled backend does
/// not hold a client connection (and its task) for ever.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A backend: where requests of a route go.
#[derive(Clone)]
pub struct Backend {
    /// `host:port`.
    pub authority: http::uri::Authority,
    /// Path prefix of the backend URL (`""` for none).
    pub base_path: String,
    /// `https` backends: the pooled TLS client trusting the route's CAs.
    pub tls: Option<BackendTls>,
}

/// How an `https` backend is reached.
#[derive(Clone)]
pub struct BackendTls {
    /// The client (its own connection pool).
    pub client: HttpsUpstream,
    /// Where its trust anchors come from (a file, or the system bundle).
    pub trust: String,
}

impl Backend {
    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

impl Backend {
    /// The `Host` header sent to the backend: the authority, without the scheme's default
    /// port.
    pub fn host_header(&self) -> &str {
        let default = if self.tls.is_some() { 443 } else { 80 };
        match self.authority.port_u16() {
            Some(p) if p == default => self
                .authority
                .as_str()
                .rsplit_once(':')
                .map_or(self.authority.as_str(), |(h, _)| h),
            _ => self.authority.as_str(),
        }
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field(
                "url",
                &format!("{}://{}{}", self.scheme(), self.authority, self.base_path),
            )
            .field("trust", &self.tls.as_ref().map(|t| &t.trust))
            .finish()
    }
}

/// Credentials a route accepts.
#[derive(Debug, Clone, Default)]
pub struct RouteAuth {
    /// API keys.
    pub keys: Option<Arc<ApiKeys>>,
    /// JWT verifier.
    pub jwt: Option<Arc<JwtVerifier>>,
    /// JWKS URL fetched at start and refreshed.
    pub jwks_url: Option<String>,
    /// Client-certificate identities (URI SAN, DNS SAN or subject CN) → consumer; the
    /// certificate must have been verified by this route's gateway's `clientCaFile`.
    pub mtls: Option<Arc<std::collections::BTreeMap<String, String>>>,
}

/// Rights of a named consumer.
#[derive(Debug, Clone, Default)]
pub struct ConsumerRights {
    /// Models allowed (empty: any the route serves).
    pub models: Vec<String>,
    /// Routes allowed (empty: any).
    pub routes: Vec<String>,
    /// Limits replacing the route's, field by field.
    pub limits: Option<LimitsSpec>,
}

/// Output filter settings of a route.
#[derive(Debug, Clone, Default)]
pub struct OutputFilters {
    /// DLP detectors.
    pub detectors: Vec<(Detector, FilterAction)>,
    /// Canary action, when a canary is injected.
    pub canary: Option<FilterAction>,
}

/// Prompt guard settings of a route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardSettings {
    /// What to do on detection.
    pub action: GuardAction,
    /// Score at or above which a prompt counts as an injection.
    pub threshold: f32,
}

/// One route, ready to serve.
#[derive(Debug)]
pub struct Route {
    /// `namespace/name` of the AIGateway.
    pub gateway: String,
    /// Route name.
    pub name: String,
    /// Hosts matched (empty: any).
    pub hosts: Vec<String>,
    /// Path prefix.
    pub path_prefix: String,
    /// Backend.
    pub backend: Backend,
    /// Models served (empty: any).
    pub models: Vec<String>,
    /// Paths forwarded besides the built-in endpoint lists on a route that decides on
    /// request bodies (`extraEndpoints`).
    pub extra_endpoints: Vec<String>,
    /// Credentials; `None`: anonymous access.
    pub auth: Option<RouteAuth>,
    /// Named consumers of the gateway.
    pub consumers: Arc<HashMap<String, ConsumerRights>>,
    /// Route limits.
    pub limits: LimitsSpec,
    /// WAF.
    pub waf: Option<Arc<Waf>>,
    /// Feed prompt fields to the WAF too.
    pub waf_inspect_prompts: bool,
    /// Extra prompt fields.
    pub prompt_fields: Vec<String>,
    /// Prompt guard.
    pub guard: Option<GuardSettings>,
    /// Output filters.
    pub filters: OutputFilters,
    /// Response-header timeout.
    pub timeout: Duration,
    /// Longest silence of the backend between chunks of the response body.
    pub stream_idle_timeout: Duration,
    /// Audit mode: record, never refuse for content.
    pub audit: bool,
}

impl Route {
    /// The limits for `consumer`: theirs where set, else the route's.
    pub fn limits_for(&self, consumer: Option<&str>) -> (Limits, u64, Option<u64>) {
        let own = consumer
            .and_then(|c| self.consumers.get(c))
            .and_then(|c| c.limits.as_ref());
        let pick = |f: fn(&LimitsSpec) -> Option<f64>| own.and_then(f).or(f(&self.limits));
        let limits = Limits {
            requests_per_second: pick(|l| l.requests_per_second),
            burst: own.and_then(|l| l.burst).or(self.limits.burst),
            tokens_per_minute: own
                .and_then(|l| l.tokens_per_minute)
                .or(self.limits.tokens_per_minute),
        };
        let max_body = own
            .and_then(|l| l.max_body_bytes)
            .or(self.limits.max_body_bytes)
            .unwrap_or(DEFAULT_MAX_BODY);
        let max_prompt = own
            .and_then(|l| l.max_prompt_chars)
            .or(self.limits.max_prompt_chars);
        (limits, max_body, max_prompt)
    }

    /// Whether this route serves `host` and `path`.
    pub fn matches(&self, host: &str, path: &str) -> bool {
        let host_ok = self.hosts.is_empty() || self.hosts.iter().any(|h| host_matches(h, host));
        host_ok && prefix_matches(&self.path_prefix, path)
    }
}

/// `pattern` is a name or `*.suffix`; `host` may carry a port. Case and a trailing dot
/// (`llm.example.com.`, the same name to DNS and to backends) make no difference.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let host = strip_port(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    let pattern = pattern.strip_suffix('.').unwrap_or(pattern);
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// `host` without its `:port`.
pub(crate) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map(|h| &h[1..]).unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    }
}

/// Prefix match on path-segment boundaries (`/v1` matches `/v1` and `/v1/x`, not `/v10`).
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (prefix.ends_with('/')
            || path.len() == prefix.len()
            || path.as_bytes()[prefix.len()] == b'/')
}

/// TLS termination for one gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsEntry {
    /// `namespace/name` of the AIGateway.
    pub gateway: String,
    /// Names its certificate is chosen for (SNI).
    pub hosts: Vec<String>,
    /// Certificate chain (PEM).
    pub cert: std::path::PathBuf,
    /// Private key (PEM).
    pub key: std::path::PathBuf,
    /// CAs client certificates must chain to (mutual TLS), when required.
    pub client_ca: Option<std::path::PathBuf>,
    /// Revocation lists (PEM or DER) checked for every client certificate.
    pub client_crls: Vec<std::path::PathBuf>,
    /// Clients may connect without a certificate (`clientAuth: optional`).
    pub client_cert_optional: bool,
}

/// Everything the proxy serves.
#[derive(Debug, Default)]
pub struct Compiled {
    /// Routes in match order.
    pub routes: Vec<Arc<Route>>,
    /// TLS termination, per gateway that asks for it.
    pub tls: Vec<TlsEntry>,
}

impl Compiled {
    /// The first route serving `host` and `path`.
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.matches(host, path))
    }
}

struct Errors<'a> {
    origin: &'a Origin,
    list: Vec<String>,
}

impl Errors<'_> {
    fn push(&mut self, field: &str, msg: impl std::fmt::Display) {
        self.list.push(format!(
            "{}:{}: {field}: {msg}",
            self.origin.file, self.origin.line
        ));
    }
}

fn filter_action(a: GuardAction) -> FilterAction {
    match a {
        GuardAction::Block => FilterAction::Block,
        GuardAction::Redact => FilterAction::Redact,
        GuardAction::Flag => FilterAction::Flag,
        GuardAction::Log => FilterAction::Log,
    }
}

/// Compiles gateways (each with where it was read). Returns every error found.
pub fn compile(gateways: &[(AIGateway, Origin)]) -> Result<Compiled, Vec<String>> {
    let mut out = Compiled::default();
    let mut all_errors = Vec::new();
    let mut wafs: HashMap<WafSettings, Arc<Waf>> = HashMap::new();
    // One TLS client (and pool) per trust-anchor file, shared by the routes naming it.
    let mut tls_clients: HashMap<std::path::PathBuf, HttpsUpstream> = HashMap::new();
    for (gw, origin) in gateways {
        let mut errs = Errors {
            origin,
            list: Vec::new(),
        };
        let base = Path::new(&origin.file)
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let gname = match &gw.metadata.namespace {
            Some(ns) => format!("{ns}/{}", gw.metadata.name),
            None => gw.metadata.name.clone(),
        };
        let s = &gw.spec;
        if let Some(t) = &s.tls {
            out.tls.push(TlsEntry {
                gateway: gname.clone(),
                hosts: s.hosts.clone(),
                cert: base.join(&t.cert_file),
                key: base.join(&t.key_file),
                client_ca: t.client_ca_file.as_ref().map(|f| base.join(f)),
                client_crls: t.client_crl_files.iter().map(|f| base.join(f)).collect(),
                client_cert_optional: t.client_auth == Some(ClientAuth::Optional),
            });
            if t.client_ca_file.is_none() {
                if !t.client_crl_files.is_empty() {
                    errs.push(
                        "spec.tls.clientCrlFiles",
                        "needs clientCaFile (revocation lists are checked for client certificates)",
                    );
                }
                if t.client_auth.is_some() {
                    errs.push(
                        "spec.tls.clientAuth",
                        "needs clientCaFile (the CAs that verify client certificates)",
                    );
                }
            }
        }
        let consumers: Arc<HashMap<String, ConsumerRights>> = Arc::new(
            s.consumers
                .iter()
                .map(|c| {
                    (
                        c.name.clone(),
                        ConsumerRights {
                            models: c.models.clone(),
                            routes: c.routes.clone(),
                            limits: c.limits.clone(),
                        },
                    )
                })
                .collect(),
        );
        for (i, r) in s.routes.iter().enumerate() {
            let f = |k: &str| format!("spec.routes[{i}].{k}");
            let mut backend = match parse_backend(&r.backend) {
                Ok(b) => b,
                Err(e) => {
                    errs.push(&f("backend"), e);
                    continue;
                }
            };
            if r.backend_ca_file.is_some() && !r.backend.starts_with("https://") {
                errs.push(&f("backendCaFile"), "only https backends use a CA file");
            }
            if r.backend.starts_with("https://") {
                let (ca, field) = match &r.backend_ca_file {
                    Some(file) => (base.join(file), "backendCaFile"),
                    None => (
                        Path::new(palisade_egress::tls::SYSTEM_BUNDLE).to_path_buf(),
                        "backend",
                    ),
                };
                let client = match tls_clients.get(&ca) {
                    Some(c) => Ok(c.clone()),
                    None => palisade_egress::tls::load_roots(&ca)
                        .map_err(|e| match field {
                            "backend" => format!("{e} (system trust anchors; set backendCaFile to name the backend's CA)"),
                            _ => e.to_string(),
                        })
                        .and_then(https::client),
                };
                match client {
                    Ok(c) => {
                        tls_clients.insert(ca.clone(), c.clone());
                        backend.tls = Some(BackendTls {
                            client: c,
                            trust: ca.display().to_string(),
                        });
                    }
                    Err(e) => {
                        errs.push(&f(field), e);
                        continue;
                    }
                }
            }
            let auth = r.auth.as_ref().map(|a| {
                let mut ra = RouteAuth::default();
                if let Some(file) = &a.api_keys_file {
                    let p = base.join(file);
                    match std::fs::read_to_string(&p) {
                        Ok(t) => match ApiKeys::parse(&p.display().to_string(), &t) {
                            Ok(k) => ra.keys = Some(Arc::new(k)),
                            Err(e) => errs.push(&f("auth.apiKeysFile"), e),
                        },
                        Err(e) => {
                            errs.push(&f("auth.apiKeysFile"), format!("{}: {e}", p.display()))
                        }
                    }
                }
                if let Some(j) = &a.jwt {
                    let settings = JwtSettings {
                        algorithms: j.algorithms.clone(),
                        issuer: j.issuer.clone(),
                        audience: j.audience.clone(),
                        consumer_claim: j.consumer_claim.clone(),
                    };
                    let keys = match &j.jwks {
                        None => {
                            errs.push(&f("auth.jwt.jwks"), "a JWKS file or URL is required");
                            Vec::new()
                        }
                        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                            ra.jwks_url = Some(u.clone());
                            Vec::new()
                        }
                        Some(file) => {
                            let p = base.join(file);
                            match std::fs::read_to_string(&p) {
                                Ok(t) => parse_jwks(&t).unwrap_or_else(|e| {
                                    errs.push(&f("auth.jwt.jwks"), format!("{}: {e}", p.display()));
                                    Vec::new()
                                }),
                                Err(e) => {
                                    errs.push(&f("auth.jwt.jwks"), format!("{}: {e}", p.display()));
                                    Vec::new()
                                }
                            }
                        }
                    };
                    match JwtVerifier::new(&settings, keys) {
                        Ok(v) => ra.jwt = Some(Arc::new(v)),
                        Err(e) => errs.push(&f("auth.jwt.algorithms"), e),
                    }
                }
                if let Some(m) = &a.mtls {
                    if s.tls
                        .as_ref()
                        .and_then(|t| t.client_ca_file.as_ref())
                        .is_none()
                    {
                        errs.push(
                            &f("auth.mtls"),
                            "needs spec.tls.clientCaFile (the CAs that verify client certificates)",
                        );
                    }
                    ra.mtls = Some(Arc::new(m.identities.clone()));
                }
                if ra.keys.is_none()
                    && ra.jwt.is_none()
                    && ra.mtls.is_none()
                    && a.api_keys_file.is_none()
                    && a.jwt.is_none()
                {
                    errs.push(&f("auth"), "set apiKeysFile, jwt and/or mtls");
                }
                ra
            });
            let waf = match r.waf.as_ref().filter(|w| w.enabled) {
                None => None,
                Some(w) => match waf::settings(
                    &base,
                    w.rules.as_deref(),
                    w.setup.as_deref(),
                    w.paranoia_level,
                    w.anomaly_threshold,
                ) {
                    Err(e) => {
                        errs.push(&f("waf.rules"), e);
                        None
                    }
                    Ok(ws) => match wafs.get(&ws) {
                        Some(w) => Some(w.clone()),
                        None => match Waf::load(&ws) {
                            Ok(w) => {
                                let w = Arc::new(w);
                                wafs.insert(ws, w.clone());
                                Some(w)
                            }
                            Err(e) => {
                                errs.push(&f("waf"), e);
                                None
                            }
                        },
                    },
                },
            };
            let mut filters = OutputFilters::default();
            for of in &r.output_filters {
                let action = filter_action(of.action);
                match of.kind.as_str() {
                    "canary" => filters.canary = Some(action),
                    k => {
                        for d in Detector::parse_set(k).unwrap_or_default() {
                            filters.detectors.retain(|(x, _)| *x != d);
                            filters.detectors.push((d, action));
                        }
                    }
                }
            }
            let hosts = match &r.host {
                Some(h) => vec![h.clone()],
                None => s.hosts.clone(),
            };
            out.routes.push(Arc::new(Route {
                gateway: gname.clone(),
                name: r.name.clone(),
                hosts,
                path_prefix: r.path_prefix.clone().unwrap_or_else(|| "/".into()),
                backend,
                models: r.models.clone(),
                extra_endpoints: r.extra_endpoints.clone(),
                auth,
                consumers: consumers.clone(),
                limits: r.limits.clone().unwrap_or(LimitsSpec {
                    requests_per_second: None,
                    burst: None,
                    tokens_per_minute: None,
                    max_body_bytes: None,
                    max_prompt_chars: None,
                }),
                waf,
                waf_inspect_prompts: r.waf.as_ref().is_some_and(|w| w.inspect_prompts),
                prompt_fields: r
                    .waf
                    .as_ref()
                    .map(|w| w.prompt_fields.clone())
                    .unwrap_or_default(),
                guard: r.prompt_guard.as_ref().map(|g| GuardSettings {
                    action: g.action,
                    threshold: g.threshold.unwrap_or(0.5) as f32,
                }),
                filters,
                timeout: r
                    .timeout_seconds
                    .map(Duration::from_secs)
                    .unwrap_or(DEFAULT_TIMEOUT),
                stream_idle_timeout: r
                    .stream_idle_timeout_seconds
                    .map(Duration::from_secs)
                    .unwrap_or(DEFAULT_STREAM_IDLE_TIMEOUT),
                audit: s.mode == Mode::Audit,
            }));
        }
        all_errors.extend(errs.list);
    }
    if all_errors.is_empty() {
        Ok(out)
    } else {
        Err(all_errors)
    }
}

/// Parses `http(s)://host[:port][/base]`; an `https` backend's TLS client is added by
/// [`compile`].
pub fn parse_backend(url: &str) -> Result<Backend, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    let default_port = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        _ => return Err(format!("{url:?} must be an http:// or https:// URL")),
    };
    let mut authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("{url:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "{url:?}: user information is not allowed in a backend URL"
        ));
    }
    if authority.port().is_none() {
        authority = format!("{}:{default_port}", authority.host())
            .parse()
            .map_err(|e| format!("{url:?}: {e}"))?;
    }
    if uri.query().is_some() {
        return Err(format!("{url:?}: a backend URL has no query"));
    }
    Ok(Backend {
        authority,
        base_path: uri.path().trim_end_matches('/').to_string(),
        tls: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_prefixes() {
        assert!(host_matches("api.example.com", "API.example.com:8443"));
        assert!(host_matches("*.example.com", "llm.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "evilexample.com"));
        // A trailing dot names the same host (before, `llm.example.com.` matched no
        // host-bound route and fell through to a catch-all one).
        assert!(host_matches("api.example.com", "api.example.com."));
        assert!(host_matches("api.example.com", "api.example.com.:8443"));
        assert!(host_matches("*.example.com", "llm.example.com."));
        assert!(!host_matches("*.example.com", "example.com."));
        assert!(prefix_matches("/v1", "/v1/chat/completions"));
        assert!(prefix_matches("/", "/anything"));
        assert!(!prefix_matches("/v1", "/v10/x"));
    }

    #[test]
    fn backends() {
        let b = parse_backend("http://127.0.0.1:8000/api/").unwrap();
        assert_eq!(b.authority.as_str(), "127.0.0.1:8000");
        assert_eq!(b.base_path, "/api");
        assert_eq!(
            parse_backend("http://llm").unwrap().authority.as_str(),
            "llm:80"
        );
        assert!(parse_backend("ftp://x").is_err());
        assert_eq!(
            parse_backend("https://llm.internal/v1")
                .unwrap()
                .authority
                .as_str(),
            "llm.internal:443"
        );
        assert!(parse_backend("https://user:pw@llm").is_err());
        assert_eq!(parse_backend("http://llm").unwrap().host_header(), "llm");
        assert_eq!(
            parse_backend("http://[::1]:8000").unwrap().host_header(),
            "[::1]:8000"
        );
    }
}
