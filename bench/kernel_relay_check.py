#!/usr/bin/env python3
"""Correctness checks for one CONNECT proxy (used by bench/kernel-relay.sh).

  download   GET FILE through a tunnel at full speed: length and sha256 of the body
  slow       the same, but the client waits --pause s after the request, then reads 64 KiB at a
             time: a relay that lets the FIN overtake bytes it still holds truncates here;
             recv errors (EAGAIN on a blocking socket, EFAULT) are counted
  parked     the client asks for FILE and reads nothing for --pause s: bytes the proxy's
             upstream socket has received minus every socket queue `ss` shows on the path
             (client receive queue, proxy send queue, proxy upstream receive queue) = bytes
             held somewhere else (a psock backlog, or an sk_msg ingress queue, which `ss`
             does not show), and the growth of the host's TCP memory meanwhile; a relay that
             honours flow control holds about the socket buffers, not the whole file
  upload     N MiB client -> in-process sink upstream, then the client's FIN: the sink answers
             with the sha256 and length it saw and closes (checks upload bytes, upload EOF and
             download EOF)
  banner     an in-process upstream that speaks first (1 MiB the moment it accepts, i.e. most
             likely before a kernel relay has taken the sockets over), then echoes the sha256
             of what the client sends and closes: bytes queued before the hand-over
Prints `name key=value ...` lines; exit status 1 when a check fails.
"""
import argparse
import errno
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time


def tunnel(proxy, target):
    s = socket.create_connection(proxy)
    s.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target.encode(), target.encode()))
    head = b""
    while not head.endswith(b"\r\n\r\n"):  # read byte by byte: no body byte is consumed here
        b = s.recv(1)
        if not b:
            raise OSError("proxy closed during CONNECT")
        head += b
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError("CONNECT answered %r" % head[:40])
    return s


def read_all(s, size, pause=0.0):
    time.sleep(pause)
    buf, errors = bytearray(), {}
    while True:
        try:
            d = s.recv(size)
        except OSError as e:
            errors[errno.errorcode.get(e.errno, str(e.errno))] = errors.get(errno.errorcode.get(e.errno, str(e.errno)), 0) + 1
            if sum(errors.values()) > 1000:
                break
            time.sleep(0.001)
            continue
        if not d:
            break
        buf += d
    return bytes(buf), errors


def body_of(resp):
    head, _, body = resp.partition(b"\r\n\r\n")
    return body


def ss_queues(port_a, port_b):
    """{(local, peer): [recvq, sendq, bytes_received]} for connected sockets touching the two ports."""
    out = subprocess.run(["ss", "-tanHi"], capture_output=True, text=True).stdout.splitlines()
    res, cur = {}, None
    for line in out:
        if not line.startswith((" ", "\t")):
            f = line.split()
            if f[0] in ("LISTEN", "TIME-WAIT", "SYN-SENT", "SYN-RECV"):
                cur = None
                continue
            cur = (f[3], f[4])
            res[cur] = [int(f[1]), int(f[2]), 0]
        elif cur:
            for tok in line.split():
                if tok.startswith("bytes_received:"):
                    res[cur][2] = int(tok.split(":")[1])
    return {k: v for k, v in res.items() if k[0].endswith((":%d" % port_a, ":%d" % port_b)) or
            k[1].endswith((":%d" % port_a, ":%d" % port_b))}


def tcp_mem_pages():
    """Pages charged to TCP sockets host-wide (/proc/net/sockstat `TCP: ... mem N`)."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                fields = line.split()
                return int(fields[fields.index("mem") + 1])
    return 0


def banner_server(banner):
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)

    def serve():
        while True:
            c, _ = ls.accept()
            c.sendall(banner)
            h = hashlib.sha256()
            got = 0
            while got < 4096:
                d = c.recv(4096 - got)
                if not d:
                    break
                h.update(d)
                got += len(d)
            c.sendall(h.hexdigest().encode())
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    return ls.getsockname()[1]


def sink_server():
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)

    def serve():
        while True:
            c, _ = ls.accept()
            h, n = hashlib.sha256(), 0
            while True:
                d = c.recv(1 << 16)
                if not d:
                    break
                h.update(d)
                n += len(d)
            c.sendall(b"%d %s\n" % (n, h.hexdigest().encode()))
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    return ls.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", required=True, help="HOST:PORT")
    ap.add_argument("--target", required=True, help="CONNECT authority of the HTTP upstream")
    ap.add_argument("--path", required=True)
    ap.add_argument("--sha256", required=True, help="of the file at --path")
    ap.add_argument("--length", type=int, required=True)
    ap.add_argument("--pause", type=float, default=2.0)
    ap.add_argument("--upload-mib", type=int, default=8)
    a = ap.parse_args()
    ph, pp = a.proxy.rsplit(":", 1)
    proxy = (ph, int(pp))
    req = b"GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (a.path.encode(), a.target.encode())
    ok = True

    for name, pause, size in (("download", 0.0, 1 << 20), ("slow", a.pause, 1 << 16)):
        s = tunnel(proxy, a.target)
        s.sendall(req)
        resp, errors = read_all(s, size, pause)
        s.close()
        body = body_of(resp)
        good = len(body) == a.length and hashlib.sha256(body).hexdigest() == a.sha256
        ok &= good and not errors
        print("%s ok=%d body_bytes=%d sha256_match=%d recv_errors=%s" % (
            name, good and not errors, len(body), hashlib.sha256(body).hexdigest() == a.sha256,
            ",".join("%s:%d" % kv for kv in errors.items()) or "none"))

    mem0 = tcp_mem_pages()
    s = tunnel(proxy, a.target)
    s.sendall(req)
    time.sleep(a.pause)
    mem1 = tcp_mem_pages()
    up_port = int(a.target.rsplit(":", 1)[1])
    q = ss_queues(int(pp), up_port)
    s.close()
    upstream_rx = max((v[2] for k, v in q.items() if k[1].endswith(":%d" % up_port)), default=0)
    queued = sum(v[0] + v[1] for k, v in q.items() if not k[0].endswith(":%d" % up_port))
    parked = max(0, upstream_rx - queued)
    print("parked upstream_received=%d socket_queues=%d parked_outside_sockets=%d tcp_mem_growth=%d" % (
        upstream_rx, queued, parked, (mem1 - mem0) * 4096))
    ok &= parked < (16 << 20)

    port = sink_server()
    s = tunnel(proxy, "%s:%d" % (a.target.rsplit(":", 1)[0], port))
    data = os.urandom(a.upload_mib << 20)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(20)
    try:
        reply, errors = read_all(s, 1 << 16)
    except socket.timeout:
        reply, errors = b"", {"timeout": 1}
    s.close()
    want = b"%d %s\n" % (len(data), hashlib.sha256(data).hexdigest().encode())
    good = reply == want
    ok &= good
    print("upload ok=%d sent=%d sink_saw=%r" % (good, len(data), reply.strip()[:20]))

    banner = os.urandom(1 << 20)
    port = banner_server(banner)
    s = tunnel(proxy, "%s:%d" % (a.target.rsplit(":", 1)[0], port))
    s.settimeout(20)
    got = b""
    msg = os.urandom(4096)
    try:
        while len(got) < len(banner):
            d = s.recv(1 << 16)
            if not d:
                break
            got += d
        s.sendall(msg)
        reply, errors = read_all(s, 1 << 16)
    except (socket.timeout, OSError) as e:
        reply, errors = b"", {type(e).__name__: 1}
    s.close()
    good = got == banner and reply == hashlib.sha256(msg).hexdigest().encode()
    ok &= good
    print("banner ok=%d banner_intact=%d echo_ok=%d errors=%s" % (
        good, got == banner, reply == hashlib.sha256(msg).hexdigest().encode(),
        ",".join("%s:%d" % kv for kv in errors.items()) or "none"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
