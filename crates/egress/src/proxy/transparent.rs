//! The transparent listener: connections the agent redirects, with their original
//! destination read from the socket (`SO_ORIGINAL_DST`). TLS is decided on the
//! ClientHello's SNI without terminating it and then tunnelled; anything else is served
//! as HTTP/1.1 with the name from `Host`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_events::TlsMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::forward::dial;
use super::{serve_client, Caller, Mode, Shared};
use crate::decide::{decide, DenyReason, DnsCheck, Target};
use crate::events::HttpLog;
use crate::sni::{parse_client_hello, ClientHello, MAX_HELLO};

/// How long a client gets to send its ClientHello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        super::bound_sends(&stream, &shared);
        tokio::spawn(handle(stream, peer, Arc::clone(&shared)));
    }
}

/// The destination the client meant, when the connection was redirected to us.
fn original_destination(stream: &TcpStream) -> Option<SocketAddr> {
    let sock = socket2::SockRef::from(stream);
    let local = stream.local_addr().ok()?;
    let orig = match local {
        SocketAddr::V4(_) => sock.original_dst_v4(),
        SocketAddr::V6(_) => sock.original_dst_v6(),
    }
    .ok()?
    .as_socket()?;
    // Not redirected: conntrack reports the address we were reached on.
    (orig != local).then_some(orig)
}

async fn handle(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let original = original_destination(&stream);
    let mut first = [0u8; 1];
    match tokio::time::timeout(HELLO_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return,
    }
    if first[0] != 0x16 {
        serve_client(stream, peer, shared, Mode::Transparent(original)).await;
        return;
    }
    let start = Instant::now();
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    // Read (and keep) the ClientHello; it is replayed to the upstream.
    let mut hello = Vec::with_capacity(1024);
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match parse_client_hello(&hello) {
                ClientHello::NeedMore if hello.len() <= MAX_HELLO + 5 => {}
                other => return other,
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return ClientHello::Malformed("connection closed"),
                Ok(n) => hello.extend_from_slice(&buf[..n]),
            }
        }
    };
    let server_name = match tokio::time::timeout(HELLO_TIMEOUT, read).await {
        Ok(ClientHello::Parsed { server_name }) => server_name,
        Ok(other) => {
            shared.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, ?other, "transparent TLS: no usable ClientHello");
            return;
        }
        Err(_) => return,
    };
    let engine = shared.engine.load_full();
    let caller = Caller {
        pod: engine.as_ref().and_then(|e| e.pod_by_ip(peer.ip())),
        engine,
        version: None,
    };
    let (host, port) = match (&server_name, original) {
        (Some(n), Some(o)) => (n.clone(), o.port()),
        (None, Some(o)) => (o.ip().to_string(), o.port()),
        (Some(n), None) => match shared.cfg.transparent_fallback_port {
            Some(p) => (n.clone(), p),
            None => return,
        },
        (None, None) => return,
    };
    let mut d = decide(
        caller.engine.as_deref(),
        caller.pod,
        peer.ip(),
        Target {
            host: &host,
            ip: original.map(|o| o.ip()),
            port,
        },
        None,
    );
    if d.needs_inspection() {
        d.allowed = false;
        d.deny = Some(DenyReason::NeedsInspection);
    }
    // Where the tunnel goes: the original destination when the client's DNS answers vouch
    // for it, else the name itself (a client whose DNS we never saw picks any address).
    let mut to = original;
    if let (true, Some(o)) = (d.allowed, original) {
        let answers = shared.cfg.answers.as_deref();
        match crate::decide::dns_check(answers, peer.ip(), &host, o.ip()) {
            DnsCheck::Agrees => {}
            DnsCheck::Disagrees => {
                d.allowed = false;
                d.deny = Some(DenyReason::DnsMismatch);
            }
            DnsCheck::Unknown => to = None,
        }
    }
    // The ClientHello is the first of the bytes the upload budget counts.
    let budget = if d.allowed {
        shared.budget(&caller, peer.ip(), &host, &d)
    } else {
        None
    };
    if let (true, Some(b)) = (d.allowed, &budget) {
        if b.take(hello.len() as u64).is_err() {
            d.allowed = false;
            d.deny = Some(DenyReason::UploadBudget);
        }
    }
    let mut log = HttpLog {
        client: peer.ip(),
        pod: caller.pod,
        host: host.clone(),
        port,
        ip: original.map(|o| o.ip()),
        method: String::new(),
        path: None,
        status: 0,
        bytes_in: 0,
        bytes_out: 0,
        duration: Duration::ZERO,
        allowed: d.allowed,
        audit: d.audit,
        policy: d.policy.clone(),
        tls: TlsMode::Passthrough,
        version: None,
        detections: Vec::new(),
        ai: None,
        reason: d.deny.map(DenyReason::code),
    };
    if !d.allowed {
        shared.stats.denied.fetch_add(1, Ordering::Relaxed);
        if shared.wants_event(false) {
            log.status = 403;
            log.duration = start.elapsed();
            shared.emit(caller.engine.as_deref(), log);
        }
        // A TLS client gets no HTTP answer: the connection is closed.
        return;
    }
    let (mut upstream, addr) = match dial(&shared, &host, port, to).await {
        Ok(x) => x,
        Err(e) => {
            if shared.wants_event(true) {
                log.status = e.status();
                log.duration = start.elapsed();
                shared.emit(caller.engine.as_deref(), log);
            }
            return;
        }
    };
    shared.stats.tunnels.fetch_add(1, Ordering::Relaxed);
    if upstream.write_all(&hello).await.is_err() {
        return;
    }
    let watch = super::connect::rechecks(
        Arc::clone(&shared),
        caller.engine.clone(),
        caller.pod,
        peer.ip(),
        host.clone(),
        port,
    );
    let r = tokio::select! {
        r = super::splice::tunnel(&stream, &upstream, budget.as_deref()) => r,
        () = watch => Err(std::io::Error::other("closed: policy no longer allows it")),
    };
    let r = r.map(|(up, down)| (up + hello.len() as u64, down));
    log.status = 200;
    super::connect::record(r, log, addr, start, &shared, caller);
}
