//! The lane's idle backend connections, per worker thread and backend: only this thread's
//! requests use them, so there is no lock. A connection is kept only after a whole answer,
//! and checked for a close (or stray bytes) from the backend before it is used again.

use std::cell::RefCell;
use std::time::Duration;

use http::uri::Authority;
use tokio::net::TcpStream;

/// Idle connections kept per backend and thread.
const MAX_IDLE: usize = 256;
/// Longest wait for a backend's TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    static IDLE: RefCell<Vec<(Authority, Vec<TcpStream>)>> = const { RefCell::new(Vec::new()) };
}

/// An idle connection to `backend` that still looks open.
pub(super) fn checkout(backend: &Authority) -> Option<TcpStream> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.iter_mut().find(|(a, _)| a == backend)?;
        while let Some(s) = list.1.pop() {
            let mut probe = [0u8; 1];
            // Nothing to read is what an idle, open connection looks like; a close or
            // bytes nobody asked for retire it.
            if let Err(e) = s.try_read(&mut probe) {
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    return Some(s);
                }
            }
        }
        None
    })
}

/// Keeps `s` for later requests to `backend`.
pub(super) fn checkin(backend: &Authority, s: TcpStream) {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let at = match idle.iter().position(|(a, _)| a == backend) {
            Some(i) => i,
            None => {
                idle.push((backend.clone(), Vec::new()));
                idle.len() - 1
            }
        };
        let list = &mut idle[at].1;
        if list.len() < MAX_IDLE {
            list.push(s);
        }
    });
}

/// A new connection to `backend`.
pub(super) async fn connect(backend: &Authority) -> Result<TcpStream, ()> {
    let host = backend.host().trim_start_matches('[').trim_end_matches(']');
    let port = backend.port_u16().unwrap_or(80);
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        _ => Err(()),
    }
}
