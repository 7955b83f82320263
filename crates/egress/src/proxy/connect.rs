//! `CONNECT` tunnels: decided on the target name and port, then bytes copied both ways.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use palisade_events::TlsMode;
use std::io;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::forward::dial;
use super::{local, normal_host, Caller, ClientConn, RespBody};
use crate::decide::{decide, DenyReason, Target};
use crate::events::HttpLog;

/// Buffer per direction of a tunnel.
pub(crate) const TUNNEL_BUFFER: usize = 64 * 1024;

pub(crate) async fn handle(
    conn: &ClientConn,
    caller: Caller,
    mut req: Request<Incoming>,
    start: Instant,
) -> Response<RespBody> {
    // CONNECT takes `host:port` (RFC 9110 §9.3.6), nothing else.
    let target = req
        .uri()
        .authority()
        .filter(|_| req.uri().path_and_query().is_none())
        .and_then(|a| Some((a.host(), a.port_u16()?)));
    let Some((host, port)) = target else {
        conn.shared
            .stats
            .bad_requests
            .fetch_add(1, Ordering::Relaxed);
        return local(
            StatusCode::BAD_REQUEST,
            "palisade: bad request (connect-target)\n",
        );
    };
    let host = normal_host(host).into_owned();
    let mut d = decide(
        caller.engine.as_deref(),
        caller.pod,
        conn.peer,
        Target {
            host: &host,
            ip: None,
            port,
        },
        None,
    );
    let interceptor = conn.shared.cfg.intercept.clone();
    if d.needs_inspection() {
        match &interceptor {
            // Only some requests are allowed there: terminate TLS and decide each one.
            Some(i) => return intercept(conn, i, &host, port, req),
            // The tunnel would hide which requests pass.
            None => {
                d.allowed = false;
                d.deny = Some(DenyReason::NeedsInspection);
            }
        }
    }
    let budget = if d.allowed {
        conn.shared.budget(&caller, conn.peer, &host, &d)
    } else {
        None
    };
    if budget.as_ref().is_some_and(|b| b.remaining() == 0) {
        d.allowed = false;
        d.deny = Some(DenyReason::UploadBudget);
    }
    let mut log = conn.log(&caller, &host, port, "CONNECT");
    log.tls = TlsMode::Passthrough;
    if !d.allowed {
        let wait = budget.as_ref().map(|b| b.retry_after());
        let mut resp = conn.refuse(&caller, &d, log, start);
        if let (Some(DenyReason::UploadBudget), Some(w)) = (d.deny, wait) {
            resp.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from(w.as_secs().max(1)),
            );
        }
        return resp;
    }
    let (upstream, addr) = match dial(&conn.shared, &host, port, None).await {
        Ok(x) => x,
        Err(e) => {
            if conn.shared.wants_event(true) {
                log.status = e.status();
                log.allowed = true;
                log.policy = d.policy;
                log.duration = start.elapsed();
                conn.shared.emit(caller.engine.as_deref(), log);
            }
            return e.response();
        }
    };
    conn.shared.stats.tunnels.fetch_add(1, Ordering::Relaxed);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let shared = std::sync::Arc::clone(&conn.shared);
    log.allowed = true;
    log.audit = d.audit;
    log.policy = d.policy;
    log.status = 200;
    log.ip = Some(addr.ip());
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let watch = rechecks(
                    std::sync::Arc::clone(&shared),
                    caller.engine.clone(),
                    caller.pod,
                    log.client,
                    log.host.clone(),
                    log.port,
                );
                let r = tokio::select! {
                    r = relay(upgraded, upstream, budget.as_deref()) => r,
                    () = watch => Err(io::Error::other("closed: policy no longer allows it")),
                };
                record(r, log, addr, start, &shared, caller);
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    Response::new(RespBody::empty())
}

/// Relays a tunnel: zero-copy between the two sockets when hyper hands the client socket
/// back (it always does for plain TCP), else through buffers.
async fn relay(
    upgraded: hyper::upgrade::Upgraded,
    mut upstream: TcpStream,
    budget: Option<&crate::budget::BudgetCell>,
) -> io::Result<(u64, u64)> {
    match upgraded.downcast::<TokioIo<super::guard::Guarded>>() {
        Ok(parts) => {
            let (client, unread) = parts.io.into_inner().into_parts();
            // Bytes the client sent after its CONNECT head, already read by hyper (or by
            // the lean lane and not yet by hyper).
            let early = (parts.read_buf.len() + unread.len()) as u64;
            if early > 0 {
                if budget.is_some_and(|b| b.take(early).is_err()) {
                    return Err(io::Error::other(super::splice::BUDGET_USED_UP));
                }
                upstream.write_all(&parts.read_buf).await?;
                upstream.write_all(&unread).await?;
            }
            let (up, down) = super::splice::tunnel(&client, &upstream, budget).await?;
            Ok((up + early, down))
        }
        Err(upgraded) => {
            // Not a plain socket (never the case today): buffered copy, and the budget
            // counted when the tunnel ends.
            let mut client = TokioIo::new(upgraded);
            let r = tokio::io::copy_bidirectional_with_sizes(
                &mut client,
                &mut upstream,
                TUNNEL_BUFFER,
                TUNNEL_BUFFER,
            )
            .await;
            if let (Ok((up, _)), Some(b)) = (&r, budget) {
                let _ = b.take(*up);
            }
            r
        }
    }
}

/// How often an open tunnel looks for a new policy snapshot.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Returns when a new policy snapshot no longer allows the tunnel (never otherwise): open
/// tunnels are checked again on every policy change, and those now denied are closed.
pub(crate) async fn rechecks(
    shared: std::sync::Arc<super::Shared>,
    mut engine: Option<std::sync::Arc<palisade_policy::Engine>>,
    mut pod: Option<palisade_policy::PodId>,
    client: std::net::IpAddr,
    host: String,
    port: u16,
) {
    let mut tick = tokio::time::interval(RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = shared.engine.load_full();
        let same = match (&now, &engine) {
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if same {
            continue;
        }
        // Pod ids are per snapshot: follow the pod by name.
        let key = pod.and_then(|p| engine.as_ref()?.pods().get(p as usize).map(|i| i.key()));
        pod = key.and_then(|k| now.as_ref()?.pod_by_key(&k));
        let target = Target {
            host: &host,
            ip: None,
            port,
        };
        let d = decide(now.as_deref(), pod, client, target, None);
        // A passthrough tunnel hides the requests: closed once the rule wants them seen.
        if !d.allowed || d.needs_inspection() {
            shared.stats.denied.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%client, host, "tunnel closed after a policy change");
            return;
        }
        engine = now;
    }
}

/// Records a finished tunnel.
pub(crate) fn record(
    r: io::Result<(u64, u64)>,
    mut log: HttpLog,
    addr: SocketAddr,
    start: Instant,
    shared: &super::Shared,
    caller: Caller,
) {
    if shared.wants_event(true) {
        match r {
            Ok((up, down)) => {
                log.bytes_in = up;
                log.bytes_out = down;
            }
            Err(e) if e.to_string() == super::splice::BUDGET_USED_UP => {
                log.reason = Some(DenyReason::UploadBudget.code());
            }
            Err(_) => {}
        }
        log.ip = Some(addr.ip());
        log.duration = start.elapsed();
        shared.emit(caller.engine.as_deref(), log);
    }
}

/// Answers the CONNECT, then terminates the client's TLS with a leaf for `host` and serves
/// the requests inside, each decided and forwarded over verified TLS.
fn intercept(
    conn: &ClientConn,
    interceptor: &crate::tls::Interceptor,
    host: &str,
    port: u16,
    mut req: Request<Incoming>,
) -> Response<RespBody> {
    let server = match interceptor.server_config(host) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(host, error = %e, "no certificate for interception");
            return local(
                StatusCode::BAD_GATEWAY,
                "palisade: bad gateway (intercept-certificate)\n",
            );
        }
    };
    conn.shared.stats.tunnels.fetch_add(1, Ordering::Relaxed);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let shared = std::sync::Arc::clone(&conn.shared);
    let peer = SocketAddr::new(conn.peer, 0);
    let host = host.to_string();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let tls = match tokio_rustls::TlsAcceptor::from(server)
            .accept(TokioIo::new(upgraded))
            .await
        {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(%host, error = %e, "client TLS handshake failed");
                return;
            }
        };
        // Domain fronting: the SNI must name the server the tunnel was opened to.
        if let Some(sni) = tls.get_ref().1.server_name() {
            if !sni.eq_ignore_ascii_case(&host) {
                tracing::debug!(%host, sni, "SNI differs from the CONNECT target");
                return;
            }
        }
        let mode = super::Mode::Intercepted(host, port);
        if super::http2::negotiated(tls.get_ref().1.alpn_protocol()) {
            super::http2::serve(tls, peer, shared, mode).await;
        } else {
            super::serve_io(tls, peer, shared, mode).await;
        }
    });
    Response::new(RespBody::empty())
}
