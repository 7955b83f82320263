//! What runs inside a pod's network namespace: a server on every probed port, and a prober.
//! Both are run as `palisade lab serve` / `palisade lab probe` under `ip netns exec`.

use super::sctp;
use std::io::{BufRead, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One probe target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Target {
    /// Destination address.
    pub ip: IpAddr,
    /// Destination port.
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
}

/// Serves TCP and UDP ports (answering `ok`/echo) and reports SCTP INITs that arrive, one
/// line `sctp <src-ip> <dst-port> <tag>` each on stdout. Runs until killed.
pub fn serve(tcp: &[u16], udp: &[u16], sctp_ports: &[u16]) -> std::io::Result<()> {
    for &p in tcp {
        let l = TcpListener::bind(("0.0.0.0", p))?;
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                // Answer, then echo until the client closes (held connections).
                std::thread::spawn(move || {
                    let _ = c.write_all(b"ok\n");
                    let mut buf = [0u8; 256];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
    }
    for &p in udp {
        let s = UdpSocket::bind(("0.0.0.0", p))?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        });
    }
    if !sctp_ports.is_empty() {
        let wanted: Vec<u16> = sctp_ports.to_vec();
        let sock = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(132)),
        )?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut out = std::io::stdout();
            while let Ok(n) = (&sock).read(&mut buf) {
                if let Some((src, port, tag)) = sctp::parse_ipv4_init(&buf[..n]) {
                    if wanted.contains(&port) {
                        let _ = writeln!(out, "sctp {src} {port} {tag}");
                        let _ = out.flush();
                    }
                }
            }
        });
    }
    println!("ready");
    std::io::stdout().flush()?;
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Probes every target in parallel; prints one JSON line per target:
/// `{"ip":…,"port":…,"protocol":…,"ok":bool}` (SCTP: `ok` means sent; the server reports
/// delivery). `tag` marks SCTP INITs so the caller can match deliveries.
pub fn probe(targets: &[Target], timeout: Duration, tag: u32) -> Vec<(Target, bool)> {
    let (tx, rx) = mpsc::channel();
    for (i, t) in targets.iter().cloned().enumerate() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let ok = match t.protocol.as_str() {
                "TCP" => probe_tcp(SocketAddr::new(t.ip, t.port), timeout),
                "UDP" => probe_udp(SocketAddr::new(t.ip, t.port), timeout),
                _ => probe_sctp(t.ip, t.port, tag.wrapping_add(i as u32)),
            };
            let _ = tx.send((t, ok));
        });
    }
    drop(tx);
    let mut out: Vec<(Target, bool)> = rx.iter().collect();
    out.sort_by(|a, b| (a.0.ip, a.0.port, &a.0.protocol).cmp(&(b.0.ip, b.0.port, &b.0.protocol)));
    out
}

fn probe_tcp(addr: SocketAddr, timeout: Duration) -> bool {
    match TcpStream::connect_timeout(&addr, timeout) {
        Ok(mut s) => {
            let _ = s.set_read_timeout(Some(timeout));
            let mut buf = [0u8; 3];
            matches!(s.read(&mut buf), Ok(n) if n > 0)
        }
        Err(_) => false,
    }
}

fn probe_udp(addr: SocketAddr, timeout: Duration) -> bool {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().unwrap_or(addr)
    } else {
        "[::]:0".parse().unwrap_or(addr)
    };
    let Ok(s) = UdpSocket::bind(bind) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let start = Instant::now();
    let mut buf = [0u8; 64];
    // A few tries: the first datagram may race the server's start.
    while start.elapsed() < timeout {
        if s.send_to(b"palisade-probe", addr).is_err() {
            return false;
        }
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            if from == addr && &buf[..n] == b"palisade-probe" {
                return true;
            }
        }
    }
    false
}

fn probe_sctp(ip: IpAddr, port: u16, tag: u32) -> bool {
    let IpAddr::V4(_) = ip else { return false };
    let Ok(sock) = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(132)),
    ) else {
        return false;
    };
    let pkt = sctp::init_packet(40000 + (tag % 20000) as u16, port, tag);
    let dst = socket2::SockAddr::from(SocketAddr::new(ip, 0));
    sock.send_to(&pkt, &dst).is_ok()
}

/// Reads `sctp <ip> <port> <tag>` lines from a server's stdout.
pub fn parse_sctp_line(line: &str) -> Option<(IpAddr, u16, u32)> {
    let mut it = line.split_whitespace();
    if it.next()? != "sctp" {
        return None;
    }
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    ))
}

/// Reads lines from a reader into a channel until it closes.
pub fn pump_lines<R: Read + Send + 'static>(r: R, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

/// Holds one TCP connection open, exchanging a byte every `interval` until stdin closes;
/// prints `ready` once connected and finally `alive N` (N round trips) or `broken N`.
pub fn hold(addr: SocketAddr, interval: Duration) -> std::io::Result<bool> {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    c.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut hello = [0u8; 3];
    c.read_exact(&mut hello)?;
    println!("ready");
    std::io::stdout().flush()?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = std::io::stdin().read_to_string(&mut sink);
        s2.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let mut n = 0u64;
    let mut buf = [0u8; 1];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if c.write_all(b"x").is_err() || c.read_exact(&mut buf).is_err() {
            println!("broken {n}");
            return Ok(false);
        }
        n += 1;
        std::thread::sleep(interval);
    }
    println!("alive {n}");
    Ok(true)
}

/// Opens and closes TCP connections to `addr` from `threads` threads for `duration`;
/// returns completed connections per second (each reads the server's greeting).
pub fn connection_rate(addr: SocketAddr, threads: usize, duration: Duration) -> f64 {
    let deadline = Instant::now() + duration;
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut buf = [0u8; 3];
                while Instant::now() < deadline {
                    if let Ok(mut c) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                        if c.read_exact(&mut buf).is_ok() {
                            n += 1;
                        }
                        // Reset instead of FIN: no TIME_WAIT, so ports are not exhausted.
                        let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
                    }
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    total as f64 / duration.as_secs_f64()
}
