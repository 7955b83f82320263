//! TLS termination with rustls (ring provider): one certificate, or one per gateway
//! chosen by SNI, offering HTTP/2 and HTTP/1.1 by ALPN.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::host_matches;

#[derive(Debug)]
struct SniResolver {
    by_host: Vec<(Vec<String>, Arc<CertifiedKey>)>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name() {
            if let Some((_, k)) = self
                .by_host
                .iter()
                .find(|(hosts, _)| hosts.iter().any(|h| host_matches(h, name)))
            {
                return Some(k.clone());
            }
        }
        self.by_host.first().map(|(_, k)| k.clone())
    }
}

/// A server configuration from `(hosts, cert file, key file)` entries.
pub fn server_config(
    entries: &[(Vec<String>, PathBuf, PathBuf)],
) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut by_host = Vec::new();
    for (hosts, cert, key) in entries {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", cert.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate", cert.display()));
        }
        let key =
            PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| format!("{}: {e}", entries[0].2.display()))?;
        by_host.push((hosts.clone(), Arc::new(CertifiedKey::new(certs, signing))));
    }
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { by_host }));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
