//! The limits of `palisade_observe::serve::serve` on a real listener: slow clients are
//! closed after the header timeout, no more than the connection limit are served at once
//! (the others wait in the listen queue and are served when a slot frees), and one client
//! address cannot take every slot.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use axum::routing::get;
use palisade_observe::serve::{serve, Limits};

fn start(limits: Limits) -> (u16, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route("/healthz", get(|| async { "ok\n" }));
    rt.spawn(serve(listener, app, limits, std::future::pending()));
    (port, rt)
}

fn get_healthz(port: u16) -> std::io::Result<String> {
    get_healthz_from("127.0.0.1", port)
}

/// `GET /healthz` from the local address `from` (any of 127.0.0.0/8).
fn get_healthz_from(from: &str, port: u16) -> std::io::Result<String> {
    let mut s = connect_from(from, port)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn connect_from(from: &str, port: u16) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let local: std::net::SocketAddr = (from.parse::<std::net::Ipv4Addr>().unwrap(), 0).into();
    socket.bind(&local.into())?;
    let server: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    socket.connect(&server.into())?;
    Ok(socket.into())
}

#[test]
fn a_trickling_client_is_closed_after_the_header_timeout() {
    let (port, _rt) = start(Limits {
        header_timeout: Duration::from_millis(500),
        ..Limits::default()
    });
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    // One byte every 200 ms: each byte is progress, but the head is never finished.
    let mut closed = None;
    for b in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa".iter() {
        if s.write_all(&[*b]).is_err() {
            closed = Some(start.elapsed());
            break;
        }
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(_) => {
                closed = Some(start.elapsed());
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                closed = Some(start.elapsed());
                break;
            }
            Err(_) => {}
        }
    }
    let t = closed.expect("the connection was still open after the whole trickle");
    assert!(
        t >= Duration::from_millis(400) && t < Duration::from_secs(3),
        "closed after {t:?}"
    );
}

#[test]
fn no_more_than_the_connection_limit_are_served_at_once() {
    let (port, _rt) = start(Limits {
        header_timeout: Duration::from_secs(2),
        max_connections: 2,
        ..Limits::default()
    });
    // Two silent clients take both slots.
    let a = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let b = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // A third is queued: its request is answered only when the header timeout has freed a
    // slot, not before.
    let start = Instant::now();
    let answer = get_healthz(port).unwrap();
    let waited = start.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        waited >= Duration::from_millis(1500),
        "answered after {waited:?} while both slots were held"
    );
    drop((a, b));
    // With the slots free, at once.
    let start = Instant::now();
    assert!(get_healthz(port).unwrap().starts_with("HTTP/1.1 200"));
    assert!(start.elapsed() < Duration::from_secs(1));
}

/// One address holding its share of connections cannot take the rest: its next connection
/// is closed at once, while another address is served straight away. On the old code the
/// third connection from 127.0.0.2 was served and the slots were one address's to take.
#[test]
fn one_client_cannot_take_every_slot() {
    let (port, _rt) = start(Limits {
        header_timeout: Duration::from_secs(5),
        max_connections: 8,
        max_connections_per_client: 2,
        ..Limits::default()
    });
    let held = [
        connect_from("127.0.0.2", port).unwrap(),
        connect_from("127.0.0.2", port).unwrap(),
    ];
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    let refused = get_healthz_from("127.0.0.2", port);
    assert!(
        !matches!(&refused, Ok(a) if a.starts_with("HTTP/1.1 200")),
        "a third connection from the same address was served: {refused:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let start = Instant::now();
    assert!(get_healthz_from("127.0.0.3", port)
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    assert!(start.elapsed() < Duration::from_secs(1));
    // Its own connections ended, the address is served again.
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    assert!(get_healthz_from("127.0.0.2", port)
        .unwrap()
        .starts_with("HTTP/1.1 200"));
}
