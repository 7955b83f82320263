//! TLS termination with rustls (ring provider). Each gateway with `tls` has a server
//! configuration of its own — its certificate and, when it asks for mutual TLS, a verifier
//! of client certificates against its `clientCaFile` — chosen per handshake by the server
//! name the client sends (SNI; the first gateway's without one), offering HTTP/2 and
//! HTTP/1.1 by ALPN.
//!
//! The files are read again every [`RELOAD_INTERVAL`] (cert-manager rotates a Secret's
//! files in place): a gateway whose files changed gets a new configuration when the new
//! certificate, key and CAs load and the key belongs to the certificate; new handshakes use
//! it, connections already open keep theirs. A pair that does not load (half written,
//! mismatched, unreadable) is logged once and the last good one stays in use.
//!
//! Client certificates (`clientCaFile`) are checked against the gateway's revocation lists
//! (`clientCrlFiles`): every certificate of the chain below the trust anchor must be covered
//! by a CRL of its issuer that has not passed its `nextUpdate`, and not be listed in it
//! (unknown status is refused, as nginx's `ssl_crl` does). Gateways that verify client
//! certificates resume no TLS sessions (no session cache, no tickets): each connection's
//! certificate is verified in a full handshake against the CAs and CRLs in force, never
//! taken from an earlier handshake's verdict. When a gateway's CAs, CRLs or client-auth
//! mode change, its open connections are checked again ([`TlsServer::still_accepts`]) and
//! those now refused are shut down gracefully and closed.

use crate::config::TlsEntry;
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the certificate, key and client CA files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// The bytes of one gateway's TLS files, as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
    client_crls: Vec<Vec<u8>>,
}

impl Files {
    fn read(e: &TlsEntry) -> Result<Files, String> {
        let read = |p: &Path| std::fs::read(p).map_err(|err| format!("{}: {err}", p.display()));
        Ok(Files {
            cert: read(&e.cert)?,
            key: read(&e.key)?,
            client_ca: e.client_ca.as_deref().map(read).transpose()?,
            client_crls: e
                .client_crls
                .iter()
                .map(|p| read(p))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// One gateway's loaded configuration.
struct Loaded {
    entry: TlsEntry,
    files: Files,
    config: Arc<ServerConfig>,
    /// The verifier of client certificates in `config`, when the gateway asks for them.
    verifier: Option<Verifier>,
}

type Verifier = Arc<dyn rustls::server::danger::ClientCertVerifier>;

/// The TLS configurations in force, in the gateways' order.
#[derive(Default)]
struct TlsSet {
    gateways: Vec<Loaded>,
}

/// The gateway's TLS termination: what handshakes use, reloaded when files change.
pub struct TlsServer {
    current: ArcSwap<TlsSet>,
    /// Bumped when `current` changes, so open connections are checked again.
    generation: tokio::sync::watch::Sender<u64>,
    /// Files that failed to load, so each bad version is logged once.
    failed: Mutex<Vec<(TlsEntry, Files)>>,
}

/// Why an open connection is no longer accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its gateway is no longer configured.
    GatewayGone,
    /// Its certificate (or its lack of one) is refused: the reason code.
    Certificate(&'static str),
}

/// The configuration chosen for a handshake.
pub struct Chosen {
    /// The server configuration.
    pub config: Arc<ServerConfig>,
    /// `namespace/name` of the gateway it belongs to.
    pub gateway: String,
    /// Whether the gateway verifies client certificates (its connections are checked
    /// again when its configuration changes).
    pub verifies_clients: bool,
}

impl TlsServer {
    /// Loads every entry; the first problem is an error (at start nothing is served
    /// without its certificate).
    pub fn load(entries: &[TlsEntry]) -> Result<TlsServer, String> {
        let mut gateways = Vec::with_capacity(entries.len());
        for e in entries {
            let files = Files::read(e)?;
            let (config, verifier) = server_config(e, &files)?;
            gateways.push(Loaded {
                entry: e.clone(),
                files,
                config: Arc::new(config),
                verifier,
            });
        }
        Ok(TlsServer {
            current: ArcSwap::from_pointee(TlsSet { gateways }),
            generation: tokio::sync::watch::Sender::new(0),
            failed: Mutex::new(Vec::new()),
        })
    }

    /// The configuration for a client hello naming `sni`: the first gateway whose hosts
    /// match it, else the first gateway (as [`super::sni`] expects).
    pub fn choose(&self, sni: Option<&str>) -> Option<Chosen> {
        let set = self.current.load();
        let at = super::sni::pick(set.gateways.iter().map(|g| g.entry.hosts.as_slice()), sni);
        set.gateways.get(at).map(|g| Chosen {
            config: g.config.clone(),
            gateway: g.entry.gateway.clone(),
            verifies_clients: g.entry.client_ca.is_some(),
        })
    }

    /// A receiver told of every change of the configurations in force.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Whether `gateway`'s configuration in force would accept a handshake presenting
    /// `chain` (`None`: no certificate): its CAs, revocation lists and client-auth mode. A
    /// gateway no longer configured accepts nothing.
    pub fn still_accepts(&self, gateway: &str, chain: Option<&[CertificateDer<'static>]>) -> bool {
        self.refusal(gateway, chain).is_none()
    }

    /// Why `gateway`'s configuration in force would refuse a handshake presenting `chain`
    /// (see [`TlsServer::still_accepts`]); `None` when it would accept it.
    pub fn refusal(
        &self,
        gateway: &str,
        chain: Option<&[CertificateDer<'static>]>,
    ) -> Option<Refusal> {
        let set = self.current.load();
        let Some(g) = set.gateways.iter().find(|g| g.entry.gateway == gateway) else {
            return Some(Refusal::GatewayGone);
        };
        let verifier = g.verifier.as_ref()?;
        let err = match chain {
            Some([leaf, intermediates @ ..]) => verifier
                .verify_client_cert(leaf, intermediates, rustls::pki_types::UnixTime::now())
                .err()?,
            _ if verifier.client_auth_mandatory() => rustls::Error::NoCertificatesPresented,
            _ => return None,
        };
        Some(Refusal::Certificate(
            super::refused::reason(&err).unwrap_or("client_certificate_invalid"),
        ))
    }

    /// Reads the files of `entries` (the gateways now configured) again and swaps in new
    /// configurations for those that changed and load. A gateway whose new files do not
    /// load keeps its last good configuration; a gateway new since the last load that
    /// does not load leaves the whole set as it was (the order decides the default
    /// certificate, which must match [`super::sni`]). Returns whether anything changed.
    pub fn reload(&self, entries: &[TlsEntry]) -> bool {
        if entries.is_empty() {
            // The listener terminates TLS: never left without a certificate.
            return false;
        }
        let old = self.current.load_full();
        let mut next = Vec::with_capacity(entries.len());
        for e in entries {
            let prev = old.gateways.iter().find(|g| &g.entry == e);
            let files = match Files::read(e) {
                Ok(f) => f,
                Err(err) => match prev {
                    Some(p) => {
                        self.log_once(e, None, &err);
                        next.push(Loaded {
                            entry: e.clone(),
                            files: p.files.clone(),
                            config: p.config.clone(),
                            verifier: p.verifier.clone(),
                        });
                        continue;
                    }
                    None => {
                        self.log_once(e, None, &err);
                        return false;
                    }
                },
            };
            if let Some(p) = prev.filter(|p| p.files == files) {
                next.push(Loaded {
                    entry: e.clone(),
                    files,
                    config: p.config.clone(),
                    verifier: p.verifier.clone(),
                });
                continue;
            }
            match server_config(e, &files) {
                Ok((cfg, verifier)) => {
                    tracing::info!(gateway = %e.gateway, cert = %e.cert.display(), "TLS certificate loaded");
                    next.push(Loaded {
                        entry: e.clone(),
                        files,
                        config: Arc::new(cfg),
                        verifier,
                    });
                }
                Err(err) => {
                    self.log_once(e, Some(files), &err);
                    match prev {
                        Some(p) => next.push(Loaded {
                            entry: e.clone(),
                            files: p.files.clone(),
                            config: p.config.clone(),
                            verifier: p.verifier.clone(),
                        }),
                        None => return false,
                    }
                }
            }
        }
        let changed = old.gateways.len() != next.len()
            || old
                .gateways
                .iter()
                .zip(&next)
                .any(|(a, b)| a.entry != b.entry || !Arc::ptr_eq(&a.config, &b.config));
        if changed {
            self.current.store(Arc::new(TlsSet { gateways: next }));
            self.generation.send_modify(|g| *g += 1);
            return true;
        }
        false
    }

    /// Logs a failed load, once per distinct content (`None`: unreadable).
    fn log_once(&self, e: &TlsEntry, files: Option<Files>, err: &str) {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        let key = files.unwrap_or(Files {
            cert: err.as_bytes().to_vec(),
            key: Vec::new(),
            client_ca: None,
            client_crls: Vec::new(),
        });
        if failed.iter().any(|(fe, ff)| fe == e && *ff == key) {
            return;
        }
        failed.retain(|(fe, _)| fe != e);
        failed.push((e.clone(), key));
        tracing::warn!(gateway = %e.gateway, error = %err, "TLS files not loaded; the previous certificate stays in use");
    }
}

/// Polls the files of the gateways configured in `shared` and reloads what changed, until
/// dropped.
pub(crate) async fn reload_loop(shared: Arc<super::Shared>) {
    let Some(tls) = shared.tls_server.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(RELOAD_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let entries = shared.config.load().tls.clone();
        let tls = tls.clone();
        // Small files, read off the runtime's threads all the same.
        let _ = tokio::task::spawn_blocking(move || tls.reload(&entries)).await;
        super::refused::flush(&shared);
    }
}

/// The server configuration of one gateway from its files' bytes.
fn server_config(e: &TlsEntry, files: &Files) -> Result<(ServerConfig, Option<Verifier>), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&files.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("{}: {err}", e.cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", e.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_slice(&files.key)
        .map_err(|err| format!("{}: {err}", e.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?;
    let mut client_verifier = None;
    let builder = match (&e.client_ca, &files.client_ca) {
        (Some(path), Some(pem)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pem) {
                let c = c.map_err(|err| format!("{}: {err}", path.display()))?;
                roots
                    .add(c)
                    .map_err(|err| format!("{}: {err}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no CA certificate", path.display()));
            }
            let mut crls = Vec::new();
            for (p, bytes) in e.client_crls.iter().zip(&files.client_crls) {
                let list =
                    revocation_lists(bytes).map_err(|err| format!("{}: {err}", p.display()))?;
                if list.iter().any(|c| stale(c)) {
                    // Loaded all the same (an older list would be no better): the
                    // certificates of its issuer are refused until a current one arrives.
                    tracing::warn!(gateway = %e.gateway, crl = %p.display(), "CRL past its nextUpdate: client certificates of its issuer are refused");
                }
                crls.extend(list);
            }
            let mut b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .with_crls(crls)
                .enforce_revocation_expiration();
            if e.client_cert_optional {
                b = b.allow_unauthenticated();
            }
            let verifier = b.build().map_err(|err| {
                let files = std::iter::once(path)
                    .chain(&e.client_crls)
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>();
                format!("{}: {err}", files.join(", "))
            })?;
            client_verifier = Some(verifier.clone());
            builder.with_client_cert_verifier(Arc::new(Recording(verifier)))
        }
        _ => builder.with_no_client_auth(),
    };
    // `with_single_cert` refuses a key that does not belong to the certificate (a pair
    // caught half rotated).
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|err| format!("{} / {}: {err}", e.cert.display(), e.key.display()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if e.client_ca.is_some() {
        // A resumed session would keep the verdict of its first handshake (rustls does not
        // verify the certificate again): a certificate revoked, expired or from a CA removed
        // since would stay in. No session cache (TLS 1.2 IDs, TLS 1.3 stateful tickets) and
        // no tickets: every connection verifies its certificate in a full handshake.
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
    }
    Ok((cfg, client_verifier))
}

thread_local! {
    /// The certificate and error of the last client certificate a handshake on this thread
    /// refused (see [`Recording`]).
    static REFUSED: std::cell::RefCell<Option<(CertificateDer<'static>, rustls::Error)>> =
        const { std::cell::RefCell::new(None) };
}

/// The verifier of a gateway's handshakes: the WebPKI verifier, remembering on the
/// running thread the certificate it refused and why. rustls reports only the error, and
/// drops the connection with the certificate; a handshake's poll that fails right after the
/// verifier ran takes them back ([`take_refused`]) for the security event.
#[derive(Debug)]
struct Recording(Verifier);

/// Forgets what an earlier handshake on this thread left (before polling a handshake).
pub(crate) fn clear_refused() {
    REFUSED.with(|r| r.borrow_mut().take());
}

/// The certificate the verifier refused in the handshake just polled on this thread, and
/// why.
pub(crate) fn take_refused() -> Option<(CertificateDer<'static>, rustls::Error)> {
    REFUSED.with(|r| r.borrow_mut().take())
}

impl rustls::server::danger::ClientCertVerifier for Recording {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verdict = self.0.verify_client_cert(end_entity, intermediates, now);
        if let Err(e) = &verdict {
            let cert = end_entity.clone().into_owned();
            REFUSED.with(|r| *r.borrow_mut() = Some((cert, e.clone())));
        }
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.0.requires_raw_public_keys()
    }
}

/// Whether a revocation list's `nextUpdate` has passed.
fn stale(crl: &CertificateRevocationListDer<'_>) -> bool {
    x509_parser::parse_x509_crl(crl.as_ref())
        .ok()
        .and_then(|(_, c)| c.next_update())
        .is_some_and(|t| t < x509_parser::time::ASN1Time::now())
}

/// The revocation lists of one file: PEM (one or more `X509 CRL` blocks) or one DER list.
/// Their content (signature, issuer) is checked when the verifier is built.
fn revocation_lists(bytes: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    if bytes.starts_with(&[0x30]) {
        return Ok(vec![CertificateRevocationListDer::from(bytes.to_vec())]);
    }
    let crls = CertificateRevocationListDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| err.to_string())?;
    if crls.is_empty() {
        return Err("no certificate revocation list (PEM X509 CRL or DER)".into());
    }
    Ok(crls)
}

/// The names a verified client certificate proves, most specific first: URI SANs (SPIFFE
/// IDs), then DNS SANs, then the subject's common names. Empty when it cannot be read.
pub fn client_identities(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, c)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::URI(u) => uris.push(u.to_string()),
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                _ => {}
            }
        }
    }
    let cns = c
        .subject()
        .iter_common_name()
        .filter_map(|a| a.as_str().ok().map(str::to_string));
    uris.into_iter().chain(dns).chain(cns).collect()
}

#[cfg(test)]
mod tests;
