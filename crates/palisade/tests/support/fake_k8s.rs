//! A Kubernetes API server just big enough for Palisade's read-only source, shared by the
//! tests that run a component with `--source kubernetes`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Collections are `/api/v1/<resource>` or `/apis/<group>/<version>/<resource>`, also
/// under `namespaces/<ns>/`; single objects (a Lease by name) are not.
fn looks_like_a_collection(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(
        parts.as_slice(),
        ["api", "v1", _]
            | ["apis", _, _, _]
            | ["api", "v1", "namespaces", _, _]
            | ["apis", _, _, "namespaces", _, _]
    )
}

/// A kubeconfig in `dir` naming the server on `port` (plain HTTP, a dummy token).
pub(crate) fn kubeconfig(dir: &Path, port: u16) -> PathBuf {
    let f = dir.join("kubeconfig");
    std::fs::write(
        &f,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{port}\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: u\ncurrent-context: fake\n"),
    )
    .unwrap();
    f
}

/// Serves the API on a free loopback port: every collection lists empty except
/// `aigateways`, which lists `gateway`; watches are held open with nothing in them; anything
/// else (a Lease, say) is a 404. Returns the port.
pub(crate) fn serve(gateway: serde_json::Value) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let gateway = std::sync::Arc::new(gateway);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let gateway = std::sync::Arc::clone(&gateway);
            std::thread::spawn(move || api_connection(s, &gateway));
        }
    });
    port
}

fn api_connection(mut s: TcpStream, gateway: &serde_json::Value) {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_string();
        got.drain(..end + 4);
        // A body (a Lease being written, say) is read and ignored.
        let body_len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while got.len() < body_len {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got.drain(..body_len);
        let method = head.split_whitespace().next().unwrap_or("");
        let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        if query
            .split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1")
        {
            // Held open, nothing to say: the source keeps what it listed.
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            std::thread::sleep(Duration::from_secs(600));
            return;
        }
        if method != "GET" || !looks_like_a_collection(path) {
            let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#;
            let _ = write!(
                s,
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            continue;
        }
        let items = if path.ends_with("/aigateways") {
            vec![gateway.clone()]
        } else {
            Vec::new()
        };
        let body = serde_json::json!({
            "kind": "List", "apiVersion": "v1",
            "metadata": {"resourceVersion": "7"},
            "items": items,
        })
        .to_string();
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    }
}
