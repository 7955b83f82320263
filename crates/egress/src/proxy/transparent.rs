//! The transparent listener: connections the agent redirects, with their original
//! destination read from the socket.

use std::sync::Arc;

use tokio::net::TcpListener;

use super::Shared;

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        drop((stream, peer, &shared));
    }
}
