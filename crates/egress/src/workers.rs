//! Thread-per-core serving, shared by the egress and ingress gateways.
//!
//! Each worker thread runs its own single-threaded tokio runtime, so a connection, the
//! upstream connections it opens and everything it does stay on one thread with no
//! cross-thread wake-ups (the model of nginx's workers). One accept loop hands the accepted
//! connections to the workers in turn. Letting every worker accept from the shared socket
//! instead lets one of them take a whole burst of connections (a load generator opening 64
//! at once) and leaves the other cores idle.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

/// A connection on its way to a worker.
type Handoff = (std::net::TcpStream, SocketAddr);

/// Starts `workers` threads named `{name}-{i}` (each first runs `init`), then accepts on
/// `listener` for ever, handing connection `k` to worker `k mod workers`, which serves it
/// in a task of its own with `serve`. Dropping the returned future (or its failure) stops
/// the workers: their connections are dropped with their runtimes.
pub async fn serve_on_workers<I, S, F>(
    listener: TcpListener,
    name: &str,
    workers: usize,
    init: I,
    serve: S,
) -> std::io::Result<()>
where
    I: Fn() + Send + Sync + 'static,
    S: Fn(TcpStream, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let (init, serve) = (Arc::new(init), Arc::new(serve));
    let mut hands: Vec<UnboundedSender<Handoff>> = Vec::new();
    for i in 0..workers.max(1) {
        let (tx, mut rx) = unbounded_channel::<Handoff>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (init, serve) = (Arc::clone(&init), Arc::clone(&serve));
        std::thread::Builder::new()
            .name(format!("{name}-{i}"))
            .spawn(move || {
                init();
                runtime.block_on(async move {
                    while let Some((stream, peer)) = rx.recv().await {
                        match TcpStream::from_std(stream) {
                            Ok(s) => {
                                tokio::spawn(serve(s, peer));
                            }
                            Err(e) => tracing::warn!(%peer, error = %e, "connection not taken"),
                        }
                    }
                });
            })?;
        hands.push(tx);
    }
    let mut next = 0;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        if hands[next].send((stream, peer)).is_err() {
            return Err(std::io::Error::other(format!(
                "{name} worker {next} stopped"
            )));
        }
        next = (next + 1) % hands.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use tokio::io::AsyncWriteExt;

    /// Every connection of a burst is served, and by every worker in turn.
    #[tokio::test]
    async fn a_burst_of_connections_is_spread_over_the_workers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve_on_workers(
            listener,
            "test-worker",
            2,
            || {},
            |mut s: TcpStream, _| async move {
                let me = std::thread::current().name().unwrap_or("").to_string();
                let _ = s.write_all(me.as_bytes()).await;
            },
        ));
        let mut seen = Vec::new();
        for _ in 0..6 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let mut name = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut c, &mut name)
                .await
                .unwrap();
            seen.push(name);
        }
        server.abort();
        let names: HashSet<_> = seen.iter().cloned().collect();
        assert_eq!(
            names,
            HashSet::from(["test-worker-0".to_string(), "test-worker-1".to_string()]),
            "{seen:?}"
        );
        assert_eq!(seen.iter().filter(|n| *n == "test-worker-0").count(), 3);
    }
}
