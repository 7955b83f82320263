//! TLS interception: Palisade's own CA, leaf certificates minted per host (and cached) to
//! terminate a client's TLS, and the client side that re-originates TLS to the upstream,
//! verified against the system roots or a configured bundle — never skipped.
//!
//! rustls with the ring provider, configured explicitly (`builder_with_provider`), so no
//! process-wide default provider is needed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::EgressError;

/// Where Debian-family systems keep the trusted roots.
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Leaf configurations kept at most (then the cache starts over).
const MAX_LEAVES: usize = 10_000;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn err(what: &str, e: impl std::fmt::Display) -> EgressError {
    EgressError::Config(format!("{what}: {e}"))
}

/// A new CA for interception: `(certificate PEM, private key PEM)`.
pub fn generate_ca(common_name: &str) -> Result<(String, String), EgressError> {
    let key = KeyPair::generate().map_err(|e| err("CA key", e))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA", e))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Palisade");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).map_err(|e| err("CA", e))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Trust anchors for upstream certificates: the PEM bundle at `path`.
pub fn load_roots(path: &Path) -> Result<RootCertStore, EgressError> {
    let mut roots = RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(path).map_err(|e| err(&path.display().to_string(), e))?;
    for c in certs {
        let c = c.map_err(|e| err(&path.display().to_string(), e))?;
        // Certificates rustls cannot use as anchors are skipped, as browsers do.
        let _ = roots.add(c);
    }
    if roots.is_empty() {
        return Err(EgressError::Config(format!(
            "{}: no usable CA certificates",
            path.display()
        )));
    }
    Ok(roots)
}

/// Terminates clients' TLS with minted leaves and connects upstream with verified TLS.
pub struct Interceptor {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    leaves: Mutex<HashMap<String, Arc<ServerConfig>>>,
    client: Arc<ClientConfig>,
}

impl std::fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interceptor").finish_non_exhaustive()
    }
}

impl Interceptor {
    /// From the CA's PEM certificate and key, trusting `roots` upstream.
    pub fn new(
        ca_cert_pem: &str,
        ca_key_pem: &str,
        roots: RootCertStore,
    ) -> Result<Self, EgressError> {
        let key = KeyPair::from_pem(ca_key_pem).map_err(|e| err("CA key", e))?;
        let issuer =
            Issuer::from_ca_cert_pem(ca_cert_pem, key).map_err(|e| err("CA certificate", e))?;
        let ca_der = CertificateDer::from_pem_slice(ca_cert_pem.as_bytes())
            .map_err(|e| err("CA certificate", e))?;
        let mut client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| err("TLS", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Interceptor {
            issuer,
            ca_der,
            leaves: Mutex::new(HashMap::new()),
            client: Arc::new(client),
        })
    }

    /// The client-side TLS settings (upstream connections).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.client)
    }

    /// The server-side TLS settings for `host`, with a leaf minted on first use.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, EgressError> {
        if let Some(c) = self.leaves.lock().ok().and_then(|m| m.get(host).cloned()) {
            return Ok(c);
        }
        let key = KeyPair::generate().map_err(|e| err("leaf key", e))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| err("leaf", e))?;
        params.subject_alt_names = vec![match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.to_string()
                    .try_into()
                    .map_err(|e| err("leaf name", e))?,
            ),
        }];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        let leaf = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| err("leaf", e))?;
        let chain = vec![leaf.der().clone(), self.ca_der.clone()];
        let key = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| err("leaf key", e))?;
        let mut cfg = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| err("TLS", e))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| err("leaf", e))?;
        // HTTP/2 first, as clients expect; the upstream is always spoken to in HTTP/1.1.
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let cfg = Arc::new(cfg);
        if let Ok(mut m) = self.leaves.lock() {
            if m.len() >= MAX_LEAVES {
                m.clear();
            }
            m.insert(host.to_string(), Arc::clone(&cfg));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_ca_mints_cached_leaves() {
        let (cert, key) = generate_ca("test CA").unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(cert.as_bytes()).unwrap())
            .unwrap();
        let i = Interceptor::new(&cert, &key, roots).unwrap();
        let a = i.server_config("hub.test").unwrap();
        let b = i.server_config("hub.test").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(i.server_config("10.0.0.1").is_ok());
    }
}
