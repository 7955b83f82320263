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
}

impl EtcdOptions {
    /// Parses `etcd://h:p,h:p` (or `http://`, `https://`, bare `h:p`, comma-separated;
    /// a scheme may repeat on each entry).
    pub fn parse(urls: &str) -> std::result::Result<EtcdOptions, String> {
        let mut endpoints = Vec::new();
        for part in urls.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let hostport = ["etcd://", "http://", "https://"]
                .iter()
                .find_map(|s| part.strip_prefix(s))
                .unwrap_or(part)
                .trim_end_matches('/');
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
        })
    }

    fn tls(&self) -> Result<Option<TlsOptions>> {
        if self.ca_file.is_none() && self.cert_file.is_none() {
            return Ok(None);
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
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| FederationError::Config("no etcd endpoint".into())))
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
        let o = EtcdOptions::parse("http://a:1/, https://b:2").unwrap();
        assert_eq!(o.endpoints, vec!["a:1", "b:2"]);
        assert!(EtcdOptions::parse("etcd://nohost").is_err());
        assert!(EtcdOptions::parse("a:notaport").is_err());
        assert!(EtcdOptions::parse(" , ").is_err());
    }
}
