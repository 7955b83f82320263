//! Connecting to etcd: endpoint lists as users write them (`etcd://h:p,h:p`,
//! `http://h:p`, `https://h:p`), optional TLS client certificates, and request timeouts so a
//! cluster without quorum gives a clear error instead of a hang.

use crate::error::{FederationError, Result};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How to reach the federation's etcd.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// `host:port` of each etcd member.
    pub endpoints: Vec<String>,
    /// CA bundle (PEM) to verify etcd's certificates; enables TLS.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    pub key_file: Option<PathBuf>,
    /// Timeout of every request.
    pub timeout: Duration,
    /// The scheme the endpoints were written with: `Some(true)` for `https://`,
    /// `Some(false)` for `http://`, `None` for `etcd://` or none (TLS when a CA is given).
    pub https: Option<bool>,
}

impl EtcdOptions {
    /// Parses `etcd://h:p,h:p` (or `http://`, `https://`, bare `h:p`, comma-separated;
    /// a scheme may repeat on each entry, but `http://` and `https://` do not mix).
    pub fn parse(urls: &str) -> std::result::Result<EtcdOptions, String> {
        let mut endpoints = Vec::new();
        let mut https = None;
        for part in urls.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (scheme, rest) = ["etcd://", "http://", "https://"]
                .iter()
                .find_map(|s| Some((*s, part.strip_prefix(s)?)))
                .unwrap_or(("", part));
            let this = match scheme {
                "https://" => Some(true),
                "http://" => Some(false),
                _ => None,
            };
            if let (Some(a), Some(b)) = (https, this) {
                if a != b {
                    return Err("http:// and https:// endpoints cannot be mixed".into());
                }
            }
            https = https.or(this);
            let hostport = rest.trim_end_matches('/');
            let (host, port) = hostport
                .rsplit_once(':')
                .ok_or_else(|| format!("etcd endpoint {part:?} is not host:port"))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(format!("etcd endpoint {part:?} is not host:port"));
            }
            endpoints.push(hostport.to_string());
        }
        if endpoints.is_empty() {
            return Err(format!("no etcd endpoint in {urls:?}"));
        }
        Ok(EtcdOptions {
            endpoints,
            ca_file: None,
            cert_file: None,
            key_file: None,
            timeout: Duration::from_secs(3),
            https,
        })
    }

    fn tls(&self) -> Result<Option<TlsOptions>> {
        let files = self.ca_file.is_some() || self.cert_file.is_some();
        match (self.https, files) {
            (Some(false), true) => {
                return Err(FederationError::Config(
                    "TLS files are given but the etcd endpoints are http://; write https://".into(),
                ))
            }
            (None | Some(false), false) => return Ok(None),
            _ => {}
        }
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|e| FederationError::Config(format!("{}: {e}", p.display())))
        };
        let mut tls = TlsOptions::new();
        if let Some(ca) = &self.ca_file {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => tls = tls.identity(Identity::from_pem(read(c)?, read(k)?)),
            (None, None) => {}
            _ => {
                return Err(FederationError::Config(
                    "etcd client certificate and key go together".into(),
                ))
            }
        }
        Ok(Some(tls))
    }

    /// Connects for requests that need a leader (writes, linearizable reads, watches that
    /// must notice a lost quorum).
    pub async fn connect(&self) -> Result<Client> {
        self.connect_with(true).await
    }

    /// Connects to the first healthy endpoint, trying them in turn from a rotating start
    /// (a dead or partitioned endpoint costs one fast probe, not a failed request later);
    /// `require_leader: false` accepts a member that has lost quorum, for serializable reads.
    pub async fn connect_with(&self, require_leader: bool) -> Result<Client> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let tls = self.tls()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut opts = ConnectOptions::new()
            .with_timeout(self.timeout)
            .with_connect_timeout(self.timeout)
            .with_keep_alive(Duration::from_secs(2), self.timeout)
            .with_require_leader(require_leader);
        if let Some(t) = tls {
            opts = opts.with_tls(t);
        }
        let n = self.endpoints.len();
        let first = NEXT.fetch_add(1, Ordering::Relaxed);
        let probe = self.timeout.min(Duration::from_secs(1));
        let mut last = None;
        for i in 0..n {
            let url = format!("{scheme}://{}", self.endpoints[(first + i) % n]);
            let attempt = async {
                let mut c = Client::connect([url.as_str()], Some(opts.clone())).await?;
                // With require_leader, a member without a leader refuses this too.
                c.status().await?;
                Ok(c)
            };
            match within(probe, attempt).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(self.explain(e)),
            }
        }
        Err(last.unwrap_or_else(|| FederationError::Config("no etcd endpoint".into())))
    }
}

impl EtcdOptions {
    /// Leads a failed connection's error with what to change, for the usual TLS mistakes
    /// (the transport's own words stay after it).
    fn explain(&self, e: FederationError) -> FederationError {
        let FederationError::Etcd(inner) = &e else {
            return e;
        };
        let text = inner.to_string();
        let has = |s: &str| text.contains(s);
        let tls = self.ca_file.is_some() || self.https == Some(true);
        let hint = if has("UnknownIssuer") || has("invalid peer certificate") {
            "etcd's certificate is not trusted: --etcd-cacert must be the CA that signed it"
        } else if has("NotValidForName") {
            "etcd's certificate does not name the endpoint's host (use a name or IP in it)"
        } else if tls
            && (has("BadCertificate")
                || has("UnknownCA")
                || has("CertificateRequired")
                || has("canceled")
                || has("closed")
                || has("broken pipe"))
        {
            // TLS 1.3 servers check the client's certificate after the client has finished
            // its handshake: a refusal shows as an alert or just a closed connection.
            if self.cert_file.is_none() {
                "etcd closed the TLS connection; if it asks for client certificates \
                 (--client-cert-auth), give --etcd-cert and --etcd-key"
            } else {
                "etcd closed the TLS connection, so it likely refused the client certificate: \
                 --etcd-cert/--etcd-key must be signed by a CA etcd trusts (its \
                 --trusted-ca-file)"
            }
        } else if !tls && (has("broken pipe") || has("transport error") || has("closed")) {
            "etcd closed the connection; if it serves TLS, write https:// endpoints and give \
             --etcd-cacert"
        } else {
            return e;
        };
        FederationError::Config(format!("etcd: {hint} ({text})"))
    }
}

/// Runs an etcd request with a deadline.
pub async fn within<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => r.map_err(FederationError::from),
        Err(_) => Err(FederationError::Timeout(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_lists_parse() {
        let o = EtcdOptions::parse("etcd://127.0.0.1:23790,127.0.0.1:23791").unwrap();
        assert_eq!(o.endpoints, vec!["127.0.0.1:23790", "127.0.0.1:23791"]);
        let o = EtcdOptions::parse("https://a:1/, b:2").unwrap();
        assert_eq!(o.endpoints, vec!["a:1", "b:2"]);
        assert_eq!(o.https, Some(true));
        assert_eq!(EtcdOptions::parse("etcd://a:1").unwrap().https, None);
        assert!(EtcdOptions::parse("http://a:1,https://b:2")
            .unwrap_err()
            .contains("mixed"));
        assert!(EtcdOptions::parse("etcd://nohost").is_err());
        assert!(EtcdOptions::parse("a:notaport").is_err());
        assert!(EtcdOptions::parse(" , ").is_err());
    }
}
