#!/usr/bin/env python3
"""Egress gateway figures the shared anchor does not take (see bench/egress-extra.sh):
  handshakes  CONNECT + intercepted TLS handshake + one GET per connection, N threads
  requests    GET over intercepted keep-alive connections, N threads
  idle        RSS of the gateway per idle CONNECT tunnel
Prints `NAME value unit` lines."""
import argparse, os, socket, ssl, threading, time

def connect(proxy, target):
    s = socket.create_connection(proxy)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("proxy closed")
        head += chunk
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(head.split(b"\r\n")[0].decode())
    return s

def get(tls, host):
    tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += tls.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    n = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(body) < n:
        body += tls.recv(65536)
    return head.split(b"\r\n")[0]

def run_threads(n, seconds, fn):
    counts, stop = [0] * n, time.time() + seconds
    def work(i):
        while time.time() < stop:
            counts[i] += fn(stop)
    ts = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    return sum(counts) / seconds

def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int([l for l in f if l.startswith("VmRSS")][0].split()[1])

def main():
    a = argparse.ArgumentParser()
    a.add_argument("--proxy", required=True)
    a.add_argument("--cafile", required=True)
    a.add_argument("--tls-target", required=True)
    a.add_argument("--tunnel-target", required=True)
    a.add_argument("--pid", type=int, required=True)
    a.add_argument("--threads", type=int, default=8)
    a.add_argument("--seconds", type=float, default=8)
    a.add_argument("--idle", type=int, default=1000)
    o = a.parse_args()
    ph, pp = o.proxy.rsplit(":", 1)
    proxy = (ph, int(pp))
    host = o.tls_target.rsplit(":", 1)[0]
    ctx = ssl.create_default_context(cafile=o.cafile)

    def handshake(stop):
        s = connect(proxy, o.tls_target)
        with ctx.wrap_socket(s, server_hostname=host) as t:
            assert get(t, host).startswith(b"HTTP/1.1 200")
        return 1
    print(f"EGRESS_INTERCEPT_HANDSHAKES {run_threads(o.threads, o.seconds, handshake):.1f} conn/s", flush=True)

    def requests(stop):
        s = connect(proxy, o.tls_target)
        n = 0
        with ctx.wrap_socket(s, server_hostname=host) as t:
            while time.time() < stop:
                get(t, host)
                n += 1
        return n
    print(f"EGRESS_INTERCEPT_KEEPALIVE_RPS {run_threads(o.threads, o.seconds, requests):.1f} req/s", flush=True)

    before = rss_kb(o.pid)
    socks = [connect(proxy, o.tunnel_target) for _ in range(o.idle)]
    time.sleep(1)
    after = rss_kb(o.pid)
    print(f"EGRESS_IDLE_TUNNEL_MEMORY {(after - before) * 1024 / len(socks):.0f} bytes/tunnel", flush=True)
    for s in socks:
        s.close()

if __name__ == "__main__":
    main()
