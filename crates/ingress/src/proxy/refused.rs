//! Security events for client certificates the gateway refused: a TLS handshake refused by
//! the client-certificate verifier (revoked, unknown revocation status, another CA, expired,
//! none presented where one is required), and an open connection closed because its
//! certificate is no longer accepted (a CRL revoking it, its CA removed).
//!
//! A flood of bad handshakes must not flood the event store: each gateway writes at most
//! [`MAX_PER_SECOND`] such events per second; the ones over that are counted, and the next
//! event the gateway writes carries the count (`http.suppressed`).

use crate::events::{certificate_event, CertificateRefusal};
use rustls::pki_types::CertificateDer;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most client-certificate refusal events one gateway writes per second.
pub const MAX_PER_SECOND: u32 = 10;

/// The reason code of a handshake error, when the client's certificate (or its absence)
/// was refused; `None` for other failures (a client that does not trust the gateway, a
/// scanner speaking something else), which are not security events.
pub(crate) fn reason(e: &rustls::Error) -> Option<&'static str> {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::NoCertificatesPresented => Some("client_certificate_required"),
        rustls::Error::InvalidCertificate(c) => Some(match c {
            C::Revoked => "client_certificate_revoked",
            C::UnknownRevocationStatus
            | C::ExpiredRevocationList
            | C::ExpiredRevocationListContext { .. } => "client_certificate_revocation_unknown",
            C::UnknownIssuer => "client_certificate_unknown_ca",
            C::Expired | C::ExpiredContext { .. } => "client_certificate_expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "client_certificate_not_yet_valid",
            _ => "client_certificate_invalid",
        }),
        _ => None,
    }
}

/// The rustls error inside a handshake's I/O error, if any.
pub(crate) fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
}

/// One second's count for a gateway.
struct Window {
    start: Instant,
    written: u32,
    suppressed: u64,
}

/// Per-gateway rate limit of refusal events.
#[derive(Default)]
pub struct RefusalEvents {
    windows: Mutex<HashMap<String, Window>>,
}

impl RefusalEvents {
    /// Whether `gateway` may write an event now: `Some(n)` with the events suppressed since
    /// its last one, `None` when this one is suppressed (and counted).
    fn admit(&self, gateway: &str, now: Instant) -> Option<u64> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let w = windows.entry(gateway.to_string()).or_insert(Window {
            start: now,
            written: 0,
            suppressed: 0,
        });
        if now.duration_since(w.start) >= Duration::from_secs(1) {
            w.start = now;
            w.written = 0;
        }
        if w.written < MAX_PER_SECOND {
            w.written += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            None
        }
    }
}

/// What is known of one refusal.
pub(crate) struct Refused<'a> {
    /// The client.
    pub client: SocketAddr,
    /// `namespace/name` of the gateway.
    pub gateway: &'a str,
    /// The server name the client asked for.
    pub sni: Option<&'a str>,
    /// Reason code.
    pub reason: &'static str,
    /// The certificate presented, if any.
    pub certificate: Option<&'a CertificateDer<'a>>,
    /// The connection's HTTP version (a connection closed after serving).
    pub version: Option<palisade_events::HttpVersion>,
    /// How long the connection was open (a connection closed after serving).
    pub duration: Option<Duration>,
}

/// Writes the event for `r`, unless the gateway's rate limit suppresses it.
pub(crate) fn record(shared: &super::Shared, r: Refused<'_>) {
    tracing::info!(client = %r.client, gateway = %r.gateway, reason = r.reason, "client certificate refused");
    let Some(tx) = &shared.events else { return };
    let Some(suppressed) = shared.refusals.admit(r.gateway, Instant::now()) else {
        return;
    };
    let event = certificate_event(
        &shared.origin,
        CertificateRefusal {
            client: r.client,
            gateway: r.gateway.to_string(),
            host: r.sni.map(str::to_string),
            reason: r.reason,
            certificate: r.certificate.map(|c| Box::new(certificate_info(c))),
            identity: r
                .certificate
                .and_then(|c| super::tls::client_identities(c).into_iter().next()),
            version: r.version,
            duration: r.duration,
            suppressed,
        },
    );
    tx.try_send(event);
}

/// The subject, issuer, serial number and alternative names of a certificate (what can be
/// read of it: a certificate that does not parse gives an empty record).
pub(crate) fn certificate_info(cert: &CertificateDer<'_>) -> palisade_events::ClientCertificate {
    use x509_parser::extensions::GeneralName;
    let Ok((_, c)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return palisade_events::ClientCertificate::default();
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
    uris.extend(dns);
    palisade_events::ClientCertificate {
        subject: Some(c.subject().to_string()),
        issuer: Some(c.issuer().to_string()),
        serial: Some(serial_hex(c.raw_serial())),
        names: uris,
    }
}

/// A serial number's bytes as lowercase hex, without the sign-padding zero byte DER adds
/// (serial 2 is `02`, as OpenSSL prints it).
fn serial_hex(raw: &[u8]) -> String {
    let raw = match raw {
        [0, rest @ ..] if !rest.is_empty() => rest,
        r => r,
    };
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_writes_at_most_the_limit_per_second_and_counts_the_rest() {
        let r = RefusalEvents::default();
        let t0 = Instant::now();
        for _ in 0..MAX_PER_SECOND {
            assert_eq!(r.admit("ml/gw", t0), Some(0));
        }
        for _ in 0..25 {
            assert_eq!(r.admit("ml/gw", t0 + Duration::from_millis(500)), None);
        }
        // Another gateway has its own budget.
        assert_eq!(r.admit("ml/other", t0), Some(0));
        // The next second: the first event carries the count.
        let t1 = t0 + Duration::from_millis(1000);
        assert_eq!(r.admit("ml/gw", t1), Some(25));
        assert_eq!(r.admit("ml/gw", t1), Some(0));
    }

    #[test]
    fn reasons_of_verifier_errors() {
        use rustls::CertificateError as C;
        let cert = |c| reason(&rustls::Error::InvalidCertificate(c));
        assert_eq!(cert(C::Revoked), Some("client_certificate_revoked"));
        assert_eq!(
            cert(C::UnknownIssuer),
            Some("client_certificate_unknown_ca")
        );
        assert_eq!(cert(C::Expired), Some("client_certificate_expired"));
        assert_eq!(
            cert(C::UnknownRevocationStatus),
            Some("client_certificate_revocation_unknown")
        );
        assert_eq!(
            reason(&rustls::Error::NoCertificatesPresented),
            Some("client_certificate_required")
        );
        assert_eq!(
            reason(&rustls::Error::AlertReceived(
                rustls::AlertDescription::UnknownCA
            )),
            None
        );
        assert_eq!(serial_hex(&[0, 0x80]), "80");
        assert_eq!(serial_hex(&[2]), "02");
    }
}
