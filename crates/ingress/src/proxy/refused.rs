//! Security events for client certificates the gateway refused: a TLS handshake refused by
//! the client-certificate verifier (revoked, unknown revocation status, another CA, expired,
//! none presented where one is required), and an open connection closed because its
//! certificate is no longer accepted (a CRL revoking it, its CA removed).
//!
//! A flood of bad handshakes must not flood the event store: each gateway writes at most
//! [`MAX_PER_SECOND`] such events per second; the ones over that are counted, and the next
//! event the gateway writes carries the count (`http.suppressed`). When the burst stops,
//! the last refusal suppressed is written with the count of the others at the next
//! reload tick (every 2 s), so a burst is never left unreported.

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
    /// Refusals not written since the gateway's last event.
    suppressed: u64,
    /// The last of them.
    last: Option<CertificateRefusal>,
}

/// Per-gateway rate limit of refusal events.
#[derive(Default)]
pub struct RefusalEvents {
    windows: Mutex<HashMap<String, Window>>,
}

impl RefusalEvents {
    /// `r` with the count of refusals suppressed before it, when its gateway may write an
    /// event now; `None` when it is suppressed (counted, and kept as the last one).
    fn admit(&self, mut r: CertificateRefusal, now: Instant) -> Option<CertificateRefusal> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let w = windows.entry(r.gateway.clone()).or_insert(Window {
            start: now,
            written: 0,
            suppressed: 0,
            last: None,
        });
        if now.duration_since(w.start) >= Duration::from_secs(1) {
            w.start = now;
            w.written = 0;
        }
        if w.written < MAX_PER_SECOND {
            w.written += 1;
            r.suppressed = std::mem::take(&mut w.suppressed);
            w.last = None;
            Some(r)
        } else {
            w.suppressed += 1;
            w.last = Some(r);
            None
        }
    }

    /// For each gateway with refusals suppressed and no event written since its window
    /// closed: its last refusal, carrying the count of the others (so a burst that stops is
    /// reported without waiting for the next refusal). Forgets gateways quiet for a minute.
    fn overdue(&self, now: Instant) -> Vec<CertificateRefusal> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for w in windows.values_mut() {
            if w.suppressed == 0 || now.duration_since(w.start) < Duration::from_secs(1) {
                continue;
            }
            if let Some(mut last) = w.last.take() {
                last.suppressed = w.suppressed - 1;
                out.push(last);
            }
            w.suppressed = 0;
            w.start = now;
            w.written = 1;
        }
        windows.retain(|_, w| w.suppressed > 0 || now.duration_since(w.start) < QUIET);
        out
    }
}

/// How long a gateway's count is kept without a refusal.
const QUIET: Duration = Duration::from_secs(60);

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
    let Some(tx) = &shared.events else {
        return tracing::info!(client = %r.client, gateway = %r.gateway, reason = r.reason, "client certificate refused");
    };
    let refusal = CertificateRefusal {
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
        suppressed: 0,
    };
    match shared.refusals.admit(refusal, Instant::now()) {
        Some(refusal) => {
            tracing::info!(client = %r.client, gateway = %r.gateway, reason = r.reason, suppressed = refusal.suppressed, "client certificate refused");
            tx.try_send(certificate_event(&shared.origin, refusal));
        }
        None => {
            tracing::debug!(client = %r.client, gateway = %r.gateway, reason = r.reason, "client certificate refused (event suppressed)");
        }
    }
}

/// Writes the events of gateways whose suppressed refusals are still unreported (called
/// every [`super::tls::RELOAD_INTERVAL`]).
pub(crate) fn flush(shared: &super::Shared) {
    let Some(tx) = &shared.events else { return };
    for refusal in shared.refusals.overdue(Instant::now()) {
        tracing::info!(gateway = %refusal.gateway, suppressed = refusal.suppressed, "client certificate refusals suppressed");
        tx.try_send(certificate_event(&shared.origin, refusal));
    }
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

    fn refusal(gateway: &str, port: u16) -> CertificateRefusal {
        CertificateRefusal {
            client: SocketAddr::from(([127, 0, 0, 1], port)),
            gateway: gateway.into(),
            host: None,
            reason: "client_certificate_revoked",
            certificate: None,
            identity: None,
            version: None,
            duration: None,
            suppressed: 0,
        }
    }

    #[test]
    fn a_gateway_writes_at_most_the_limit_per_second_and_counts_the_rest() {
        let r = RefusalEvents::default();
        let t0 = Instant::now();
        let admitted = |x: Option<CertificateRefusal>| x.map(|x| (x.client.port(), x.suppressed));
        for p in 0..MAX_PER_SECOND as u16 {
            assert_eq!(admitted(r.admit(refusal("ml/gw", p), t0)), Some((p, 0)));
        }
        for p in 100..125 {
            let late = t0 + Duration::from_millis(500);
            assert_eq!(admitted(r.admit(refusal("ml/gw", p), late)), None);
        }
        // Another gateway has its own budget.
        assert_eq!(admitted(r.admit(refusal("ml/other", 1), t0)), Some((1, 0)));
        // Nothing overdue within the second.
        assert!(r.overdue(t0 + Duration::from_millis(900)).is_empty());
        // The next second: the first event carries the count.
        let t1 = t0 + Duration::from_millis(1000);
        assert_eq!(admitted(r.admit(refusal("ml/gw", 7), t1)), Some((7, 25)));
        assert_eq!(admitted(r.admit(refusal("ml/gw", 8), t1)), Some((8, 0)));
    }

    #[test]
    fn a_burst_that_stops_is_reported_by_its_last_refusal() {
        let r = RefusalEvents::default();
        let t0 = Instant::now();
        for p in 0..MAX_PER_SECOND as u16 + 5 {
            r.admit(refusal("ml/gw", p), t0);
        }
        let due = r.overdue(t0 + Duration::from_secs(2));
        let due: Vec<_> = due
            .iter()
            .map(|x| (x.client.port(), x.suppressed))
            .collect();
        // The last suppressed refusal stands for the four before it.
        assert_eq!(due, [(MAX_PER_SECOND as u16 + 4, 4)]);
        assert!(r.overdue(t0 + Duration::from_secs(4)).is_empty());
        // Quiet gateways are forgotten.
        r.overdue(t0 + Duration::from_secs(120));
        assert!(r.windows.lock().unwrap().is_empty());
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
