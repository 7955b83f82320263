//! The gateway server: listeners, per-client-connection state, and the request dispatch.
//!
//! Each client connection keeps its own upstream connection (re-used while the client asks
//! for the same host and port), so the hot path takes no shared lock: the policy snapshot
//! is read through an [`ArcSwapOption`] and counters are relaxed atomics.

mod body;
mod connect;
mod forward;
mod guard;
mod http2;
mod inside;
mod lean;
mod splice;
mod transparent;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use palisade_events::{EventSender, TlsMode};
use palisade_policy::{Engine, PodId};
use tokio::net::{TcpListener, TcpStream};

use crate::config::GatewayConfig;
use crate::decide::{Decision, DenyReason};
use crate::events::{http_event, HttpLog, Origin};
use crate::resolve::Resolver;
use crate::EgressError;

pub(crate) use body::{ReqBody, RespBody};

/// The policy the gateway enforces; `None` until a good snapshot is loaded (everything is
/// then refused). Publish a new engine with `store`; requests in flight finish on the old.
pub type EngineHandle = Arc<ArcSwapOption<Engine>>;

/// A handle with no policy yet.
pub fn engine_handle() -> EngineHandle {
    Arc::new(ArcSwapOption::empty())
}

/// Publishes `engine` (or withdraws the policy with `None`).
pub fn publish(handle: &EngineHandle, engine: Option<Arc<Engine>>) {
    handle.store(engine);
}

/// Counters of a running gateway.
#[derive(Debug, Default)]
pub struct GatewayStats {
    /// Requests and tunnels seen.
    pub requests: AtomicU64,
    /// Refused by policy.
    pub denied: AtomicU64,
    /// Tunnels opened (CONNECT and transparent TLS).
    pub tunnels: AtomicU64,
    /// Upstreams that could not be reached or failed mid-request.
    pub upstream_errors: AtomicU64,
    /// Requests refused as malformed.
    pub bad_requests: AtomicU64,
}

pub(crate) struct Shared {
    pub(crate) cfg: GatewayConfig,
    pub(crate) engine: EngineHandle,
    pub(crate) events: Option<EventSender>,
    pub(crate) origin: Origin,
    pub(crate) resolver: Resolver,
    pub(crate) stats: Arc<GatewayStats>,
    pub(crate) budgets: crate::budget::UploadBudgets,
}

impl Shared {
    pub(crate) fn emit(&self, engine: Option<&Engine>, log: HttpLog) {
        if let Some(tx) = &self.events {
            tx.try_send(http_event(engine, &self.origin, log));
        }
    }

    pub(crate) fn wants_event(&self, allowed: bool) -> bool {
        self.events.is_some() && self.cfg.events.wants(allowed)
    }

    /// The upload budget of this caller under the allowing rule, when it has one.
    ///
    /// One budget per pod and *rule*, shared by every name the rule allows: keyed by name, a
    /// wildcard rule (`*.uploads.example`) would give a fresh budget to each subdomain a
    /// pod cares to make up (`host` is the key only when no rule is known).
    pub(crate) fn budget(
        &self,
        caller: &Caller,
        client: std::net::IpAddr,
        host: &str,
        d: &crate::decide::Decision,
    ) -> Option<Arc<crate::budget::BudgetCell>> {
        let limit = d.demands.as_ref()?.upload_budget?;
        let who = caller
            .pod
            .and_then(|p| {
                caller
                    .engine
                    .as_ref()?
                    .pods()
                    .get(p as usize)
                    .map(|i| i.key())
            })
            .unwrap_or_else(|| client.to_string());
        let scope = match &d.policy {
            Some(p) => format!(
                "{} {}/{} {}",
                p.kind,
                p.namespace.as_deref().unwrap_or(""),
                p.name,
                p.rule
            ),
            None => host.to_string(),
        };
        Some(self.budgets.cell(&who, &scope, limit))
    }
}

/// A bound gateway; [`EgressGateway::run`] serves it.
pub struct EgressGateway {
    explicit: TcpListener,
    transparent: Option<TcpListener>,
    shared: Arc<Shared>,
}

impl EgressGateway {
    /// Binds the explicit proxy (and the transparent listener, when configured).
    pub async fn bind(
        cfg: GatewayConfig,
        engine: EngineHandle,
        events: Option<EventSender>,
    ) -> Result<EgressGateway, EgressError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| EgressError::Bind { addr, source })
        };
        let explicit = bind(cfg.listen).await?;
        let transparent = match cfg.transparent {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let origin = Origin {
            cluster: cfg.cluster.clone(),
            node: cfg.node.clone(),
        };
        let resolver = Resolver::new(cfg.hosts.clone());
        Ok(EgressGateway {
            explicit,
            transparent,
            shared: Arc::new(Shared {
                cfg,
                engine,
                events,
                origin,
                resolver,
                stats: Arc::default(),
                budgets: crate::budget::UploadBudgets::default(),
            }),
        })
    }

    /// The explicit proxy's address.
    pub fn local_addr(&self) -> Result<SocketAddr, EgressError> {
        self.explicit.local_addr().map_err(EgressError::Io)
    }

    /// The transparent listener's address.
    pub fn transparent_addr(&self) -> Option<SocketAddr> {
        self.transparent.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Counters, shared with the running gateway.
    pub fn stats(&self) -> Arc<GatewayStats> {
        Arc::clone(&self.shared.stats)
    }

    /// Serves until this future is dropped.
    ///
    /// The explicit listener is served by `cfg.workers` threads, each with its own
    /// single-threaded runtime (thread per core, see [`crate::workers`]): a client
    /// connection, its upstream connection and its tunnel stay on one thread, with no
    /// cross-thread wake-ups.
    pub async fn run(self) -> Result<(), EgressError> {
        let EgressGateway {
            explicit,
            transparent,
            shared,
        } = self;
        let t = transparent.map(|l| tokio::spawn(transparent::serve(l, Arc::clone(&shared))));
        let _guard = AbortOnDrop(t);
        let workers = shared.cfg.workers;
        crate::workers::serve_on_workers(
            explicit,
            "egress",
            workers,
            || {},
            move |stream, peer| {
                let shared = Arc::clone(&shared);
                bound_sends(&stream, &shared);
                async move {
                    // Proxy credentials name the pod per request: the full path reads them.
                    if shared.cfg.proxy_users.is_empty() {
                        lean::serve(stream, peer, shared).await;
                    } else {
                        serve_client(stream, peer, shared, Mode::Explicit).await;
                    }
                }
            },
        )
        .await
        .map_err(EgressError::Io)
    }
}

struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
    }
}

/// How a client connection reached the gateway.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
    /// The explicit proxy: absolute-form requests and CONNECT.
    Explicit,
    /// The transparent listener: origin-form requests with `Host`, going to the socket's
    /// original destination (`None` when the connection was not redirected).
    Transparent(Option<SocketAddr>),
    /// Requests inside intercepted TLS, all for the tunnel's `host:port`.
    Intercepted(String, u16),
}

/// Serves one client TCP connection with hyper, watching its request framing.
pub(crate) async fn serve_client(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mode: Mode,
) {
    let head_limit = shared.cfg.max_head_bytes.max(8192);
    let guard = guard::Guarded::new(stream, head_limit, Arc::clone(&shared.stats));
    serve_io(guard, peer, shared, mode).await;
}

/// Serves HTTP/1.1 on any byte stream.
pub(crate) async fn serve_io<I>(io: I, peer: SocketAddr, shared: Arc<Shared>, mode: Mode)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let head_limit = shared.cfg.max_head_bytes.max(8192);
    let idle = shared.cfg.idle_timeout;
    let activity = crate::idle::Activity::new();
    let svc = service(ClientConn::new(peer, shared, mode), Arc::clone(&activity));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_buf_size(head_limit)
        .timer(TokioTimer::new())
        .header_read_timeout(idle);
    // hyper's header timeout starts with the first byte of a request: a kept-alive
    // connection with nothing in flight is closed after the idle time here.
    let served = crate::idle::serve_until_idle(
        builder
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades(),
        &activity,
        idle,
        |c| c.graceful_shutdown(),
    );
    if let Some(Err(e)) = served.await {
        tracing::debug!(%peer, error = %e, "client connection ended with an error");
    }
}

/// The per-request service of one client connection, HTTP/1.1 or HTTP/2 (`http2::serve`):
/// every request is decided, inspected and recorded the same way whatever the client spoke.
/// Each request is in flight for `activity` until its response body is dropped.
pub(crate) fn service(
    conn: Arc<ClientConn>,
    activity: Arc<crate::idle::Activity>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<crate::idle::Tracked<RespBody>>,
    Error = Infallible,
    Future = impl std::future::Future<
        Output = Result<Response<crate::idle::Tracked<RespBody>>, Infallible>,
    > + Send,
> + Clone {
    hyper::service::service_fn(move |req| {
        let (conn, guard) = (Arc::clone(&conn), activity.begin());
        async move {
            let resp = conn.handle(req).await;
            Ok::<_, Infallible>(crate::idle::Activity::track(resp, guard))
        }
    })
}

/// Idle upstream connections one client connection keeps (HTTP/2 clients send requests
/// side by side, each needing its own HTTP/1.1 upstream connection).
const MAX_IDLE_UPSTREAMS: usize = 4;

/// Who is asking: the pod, the engine that named it, and the HTTP version it spoke.
pub(crate) struct Caller {
    pub(crate) engine: Option<Arc<Engine>>,
    pub(crate) pod: Option<PodId>,
    pub(crate) version: Option<hyper::Version>,
}

/// One client connection's state.
pub(crate) struct ClientConn {
    pub(crate) peer: IpAddr,
    pub(crate) mode: Mode,
    pub(crate) shared: Arc<Shared>,
    /// Upstream connections this client used (each taken while a request uses it).
    upstreams: Mutex<Vec<forward::Upstream>>,
}

impl ClientConn {
    pub(crate) fn new(peer: SocketAddr, shared: Arc<Shared>, mode: Mode) -> Arc<Self> {
        Arc::new(ClientConn {
            peer: peer.ip(),
            mode,
            shared,
            upstreams: Mutex::new(Vec::new()),
        })
    }

    /// A kept connection to `host:port`: one ready for a request, else (when `may_wait`)
    /// one still finishing its last response.
    pub(crate) fn take_upstream(
        &self,
        host: &str,
        port: u16,
        may_wait: bool,
    ) -> Option<forward::Upstream> {
        let mut kept = self.upstreams.lock().ok()?;
        kept.retain(|u| !u.is_closed());
        let i = kept
            .iter()
            .position(|u| u.goes_to(host, port) && u.is_ready())
            .or_else(|| {
                may_wait
                    .then(|| kept.iter().position(|u| u.goes_to(host, port)))
                    .flatten()
            })?;
        Some(kept.swap_remove(i))
    }

    /// Keeps `up` for later requests (the oldest goes when too many are kept).
    pub(crate) fn keep_upstream(&self, up: forward::Upstream) {
        if let Ok(mut kept) = self.upstreams.lock() {
            if kept.len() >= MAX_IDLE_UPSTREAMS {
                kept.remove(0);
            }
            kept.push(up);
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<RespBody> {
        self.shared.stats.requests.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let Some(caller) = self.caller(&req) else {
            self.shared.stats.denied.fetch_add(1, Ordering::Relaxed);
            let mut r = local(
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                DenyReason::BadCredential.body(),
            );
            r.headers_mut().insert(
                PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"palisade\""),
            );
            return r;
        };
        if req.method() == Method::CONNECT && !matches!(self.mode, Mode::Intercepted(..)) {
            connect::handle(self, caller, req, start).await
        } else {
            forward::handle(self, caller, req, start).await
        }
    }

    /// The pod behind the request: a proxy credential (standalone mode), else the source IP.
    /// `None`: a credential was given and is not known.
    fn caller<B>(&self, req: &Request<B>) -> Option<Caller> {
        let engine = self.shared.engine.load_full();
        let users = &self.shared.cfg.proxy_users;
        let credential = if users.is_empty() {
            None
        } else {
            req.headers().get(PROXY_AUTHORIZATION)
        };
        let pod = match credential {
            Some(v) => {
                let token = v
                    .to_str()
                    .ok()
                    .and_then(|v| {
                        v.strip_prefix("Basic ")
                            .or_else(|| v.strip_prefix("basic "))
                    })
                    .map(str::trim);
                match token.and_then(|t| users.get(t)) {
                    Some(key) => engine.as_ref().and_then(|e| e.pod_by_key(key)),
                    None => return None,
                }
            }
            None => engine.as_ref().and_then(|e| e.pod_by_ip(self.peer)),
        };
        Some(Caller {
            engine,
            pod,
            version: Some(req.version()),
        })
    }

    /// Records a refusal and builds its `403`.
    pub(crate) fn refuse(
        &self,
        caller: &Caller,
        d: &Decision,
        mut log: HttpLog,
        start: Instant,
    ) -> Response<RespBody> {
        let reason = d.deny.unwrap_or(DenyReason::FqdnNotAllowed);
        self.shared.stats.denied.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(client = %self.peer, host = %log.host, reason = reason.code(), "denied");
        let status = StatusCode::from_u16(reason.status()).unwrap_or(StatusCode::FORBIDDEN);
        if self.shared.wants_event(false) {
            log.status = status.as_u16();
            log.duration = start.elapsed();
            log.policy = d.policy.clone();
            log.reason = Some(reason.code());
            self.shared.emit(caller.engine.as_deref(), log);
        }
        local(status, reason.body())
    }

    /// The skeleton of this request's event.
    pub(crate) fn log(&self, caller: &Caller, host: &str, port: u16, method: &str) -> HttpLog {
        HttpLog {
            client: self.peer,
            pod: caller.pod,
            host: host.to_string(),
            port,
            ip: None,
            method: method.to_string(),
            path: None,
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            duration: std::time::Duration::ZERO,
            allowed: false,
            audit: false,
            policy: None,
            tls: TlsMode::None,
            version: caller.version.and_then(crate::events::http_version),
            detections: Vec::new(),
            ai: None,
            reason: None,
        }
    }
}

/// A short `text/plain` answer from the gateway itself.
pub(crate) fn local(status: StatusCode, body: &'static str) -> Response<RespBody> {
    let mut r = Response::new(RespBody::text(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// `host` in lower case without a trailing dot, borrowing when it already is.
pub(crate) fn normal_host(host: &str) -> std::borrow::Cow<'_, str> {
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(trimmed)
    }
}

/// Lets the kernel drop a connection whose peer stops taking what the gateway sends (its
/// receive window shut, or no acknowledgements) for the send timeout: `TCP_USER_TIMEOUT`,
/// which since Linux 5.11 also bounds zero-window probing. The pending write then fails
/// and the connection, its other side and its task go, tunnels included, with no timer per
/// write.
pub(crate) fn bound_sends(stream: &tokio::net::TcpStream, shared: &Shared) {
    let _ = socket2::SockRef::from(stream).set_tcp_user_timeout(Some(shared.cfg.send_timeout));
}
