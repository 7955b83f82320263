//! HTTP/2 on the wire for the tests: frames and HPACK literals written by hand (so any
//! bytes can be sent, malformed ones included), frames read back, the `:status` of an
//! answer, and tunnels through the gateway, with any SNI.

use std::sync::Arc;

use super::http2::h2_tunnel;
use super::intercept::Intercepting;
use super::*;

pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub(crate) const DATA: u8 = 0;
pub(crate) const HEADERS: u8 = 1;
pub(crate) const RST_STREAM: u8 = 3;
pub(crate) const SETTINGS: u8 = 4;
pub(crate) const GOAWAY: u8 = 7;
pub(crate) const CONTINUATION: u8 = 9;
pub(crate) const END_STREAM: u8 = 1;
pub(crate) const END_HEADERS: u8 = 4;
pub(crate) const PROTOCOL_ERROR: u32 = 1;
pub(crate) const REFUSED_STREAM: u32 = 7;

/// An HPACK integer with an `n`-bit prefix, the prefix's other bits being `flags`
/// (RFC 7541 §5.1).
pub(crate) fn int(flags: u8, n: u32, mut v: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A field as an HPACK literal without indexing, new name, no Huffman coding: any bytes
/// go, upper case and repeated pseudo-header fields included.
pub(crate) fn lit(name: &str, value: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    int(0, 7, name.len(), &mut out);
    out.extend_from_slice(name.as_bytes());
    int(0, 7, value.len(), &mut out);
    out.extend_from_slice(value);
    out
}

pub(crate) fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    fields
        .iter()
        .flat_map(|(n, v)| lit(n, v.as_bytes()))
        .collect()
}

pub(crate) fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A frame read back: type, flags, stream, payload.
#[derive(Debug, Clone)]
pub(crate) struct Frame(
    pub(crate) u8,
    pub(crate) u8,
    pub(crate) u32,
    pub(crate) Vec<u8>,
);

pub(crate) fn frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        if bytes.len() < 9 + len {
            break;
        }
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
        out.push(Frame(
            bytes[3],
            bytes[4],
            stream,
            bytes[9..9 + len].to_vec(),
        ));
        bytes = &bytes[9 + len..];
    }
    out
}

/// How the gateway answered a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Status(u16),
    Reset(u32),
    GoAway(u32),
    Closed,
}

/// Three decimal digits Huffman-coded (RFC 7541 Appendix B: `0`-`2` take 5 bits, `3`-`9`
/// take 6, starting `011`).
pub(crate) fn huffman_digits(bytes: &[u8]) -> Option<u16> {
    let bit = |i: usize| Some((bytes.get(i / 8)? >> (7 - i % 8)) & 1);
    let (mut at, mut n) = (0usize, 0u16);
    for _ in 0..3 {
        let five = (0..5).try_fold(0u8, |a, k| Some(a << 1 | bit(at + k)?))?;
        if five < 3 {
            n = n * 10 + u16::from(five);
            at += 5;
        } else {
            let six = five << 1 | bit(at + 5)?;
            if !(0x19..=0x1f).contains(&six) {
                return None;
            }
            n = n * 10 + u16::from(six - 0x16);
            at += 6;
        }
    }
    Some(n)
}

/// The `:status` of a response header block, when it comes first as the gateway's HPACK
/// encoder writes it: indexed from the static table, or a literal with the static name.
pub(crate) fn status(block: &[u8]) -> Option<u16> {
    let mut b = block;
    // Dynamic table size updates.
    while b.first().is_some_and(|x| x & 0xe0 == 0x20) {
        b = &b[1..];
    }
    let first = *b.first()?;
    if first & 0x80 != 0 {
        return [200, 204, 206, 304, 400, 404, 500]
            .get(usize::from(first & 0x7f).checked_sub(8)?)
            .copied();
    }
    let name_index = if first & 0x40 != 0 {
        first & 0x3f
    } else {
        first & 0x0f
    };
    if name_index != 8 {
        return None;
    }
    let (huff, len) = (b[1] & 0x80 != 0, usize::from(b[1] & 0x7f));
    let value = b.get(2..2 + len)?;
    if huff {
        huffman_digits(value)
    } else {
        std::str::from_utf8(value).ok()?.parse().ok()
    }
}

/// The outcome of `stream` among `got`.
pub(crate) fn outcome(got: &[Frame], stream: u32, closed: bool) -> Outcome {
    for Frame(ty, flags, id, payload) in got {
        match *ty {
            HEADERS if *id == stream => {
                let mut p = &payload[..];
                if flags & 0x8 != 0 {
                    p = &p[1..p.len() - usize::from(p[0])];
                }
                if flags & 0x20 != 0 {
                    p = &p[5..];
                }
                return Outcome::Status(status(p).expect("a :status the test can read"));
            }
            RST_STREAM if *id == stream => {
                return Outcome::Reset(u32::from_be_bytes(payload[..4].try_into().unwrap()))
            }
            GOAWAY => {
                return Outcome::GoAway(u32::from_be_bytes(payload[4..8].try_into().unwrap()))
            }
            _ => {}
        }
    }
    if closed {
        Outcome::Closed
    } else {
        panic!("no answer for stream {stream}: {got:?}")
    }
}

/// Opens an `h2` tunnel, sends the preface, empty SETTINGS and `bytes` (from a task of
/// its own, so a gateway that stops reading does not stall the test), and reads until
/// `done` says the frames read so far are enough, the gateway closes, or 5 s pass.
/// Returns the frames and whether the connection was closed.
pub(crate) async fn exchange(
    i: &Intercepting,
    bytes: Vec<u8>,
    done: impl Fn(&[Frame]) -> bool,
) -> (Vec<Frame>, bool) {
    let tls = h2_tunnel(i).await;
    let (mut rd, mut wr) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        let all = [PREFACE, &frame(SETTINGS, 0, 0, &[]), &bytes].concat();
        for chunk in all.chunks(64 * 1024) {
            if wr.write_all(chunk).await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        // Keep the write half open until the test is done reading.
        tokio::time::sleep(Duration::from_secs(6)).await;
    });
    let mut buf = Vec::new();
    let mut closed = false;
    let read = async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    closed = true;
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if done(&frames(&buf)) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    writer.abort();
    (frames(&buf), closed)
}

/// Sends one request as a HEADERS frame on stream 1 and returns how it was answered.
pub(crate) async fn one(i: &Intercepting, fields: &[u8]) -> Outcome {
    let bytes = frame(HEADERS, END_STREAM | END_HEADERS, 1, fields);
    let answered = |f: &[Frame]| {
        f.iter().any(|Frame(ty, _, id, _)| {
            *id == 1 && matches!(*ty, HEADERS | RST_STREAM) || *ty == GOAWAY
        })
    };
    let (got, closed) = exchange(i, bytes, answered).await;
    outcome(&got, 1, closed)
}

/// Accepts any server certificate: the client below names another server in its SNI than
/// the leaf the gateway presents, to see what the gateway does (not what a client would).
#[derive(Debug)]
pub(crate) struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A tunnel to `hub.test` whose TLS names `sni` and offers `alpn`.
pub(crate) async fn tunnel_with_sni(
    i: &Intercepting,
    sni: &str,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let c = super::http2::connect_hub(i).await;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, c)
        .await
        .unwrap()
}
