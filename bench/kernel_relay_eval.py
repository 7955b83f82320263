#!/usr/bin/env python3
"""Evaluation prototype: can the kernel relay CONNECT tunnel bytes faster than splice(2)?

A minimal CONNECT proxy (one thread per direction) whose tunnels are relayed in one of four
ways, so that they can be measured side by side with `bench/kernel-relay.sh`:

  splice           socket -> pipe -> socket with splice(2), what the gateway does today.
  skb-egress       (A) sk_skb verdict program on a SOCKHASH holding both tunnel sockets: every
                   skb received on one is redirected to the other's egress
                   (bpf_sk_redirect_hash, flags 0). User space touches no byte.
  msg              (B) Cilium-style local socket acceleration: a cgroup sock_ops program puts
                   every established IPv4 socket whose local or remote port is the proxy's port
                   into a SOCKHASH keyed by its 4-tuple; an sk_msg program on that map sends each
                   sendmsg straight into the local peer socket's receive queue
                   (bpf_msg_redirect_hash, BPF_F_INGRESS) -- the client<->proxy hop skips TCP.
                   The proxy reads the client with recv(2) and splices upstream -> client.
  msg-skb-ingress  (C) = (B) + an sk_skb verdict program on the upstream socket that redirects
                   its skbs into the *client's* socket receive queue (BPF_F_INGRESS): neither
                   the proxy nor the second TCP hop sees downloaded bytes.

No compiler: the programs are assembled here instruction by instruction (see `Asm`) and loaded
with the raw bpf(2) system call through ctypes. The cgroup program is attached with
BPF_LINK_CREATE, so it is detached when this process exits; map-attached programs go with the
maps. Needs root (CAP_BPF + CAP_NET_ADMIN) and cgroup2 for the `msg*` modes.

This is a measurement tool, not the gateway: no policy, CONNECT only, IPv4 only.
Usage: kernel_relay_eval.py --listen PORT --mode MODE [--hosts FILE] [--chunk BYTES]
       [--client-rcvbuf BYTES] [--fin-settle SECONDS]
"""
import argparse
import ctypes
import fcntl
import os
import select
import socket
import struct
import sys
import threading
import time

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long
NR_BPF = 321  # x86_64

# bpf(2) commands, map / program / attach types, helper ids (include/uapi/linux/bpf.h)
MAP_CREATE, MAP_LOOKUP, MAP_UPDATE, MAP_DELETE, PROG_LOAD, PROG_ATTACH, LINK_CREATE = 0, 1, 2, 3, 5, 8, 28
MAP_HASH, MAP_SOCKHASH = 1, 18
PROG_SOCK_OPS, PROG_SK_SKB, PROG_SK_MSG = 13, 14, 16
ATTACH_CGROUP_SOCK_OPS, ATTACH_SK_MSG_VERDICT, ATTACH_SK_SKB_VERDICT = 3, 7, 38
H_MAP_LOOKUP, H_SETSOCKOPT, H_GET_SOCKET_COOKIE = 1, 49, 46
H_SOCK_HASH_UPDATE, H_MSG_REDIRECT_HASH, H_SK_REDIRECT_HASH = 70, 71, 72
F_INGRESS = 1
SK_PASS = 1
SO_COOKIE = 57
SIOCOUTQ = 0x5411


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, len(attr))
    r = LIBC.syscall(NR_BPF, cmd, buf, len(attr))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, "bpf(cmd %d): %s" % (cmd, os.strerror(e)))
    return r


def map_create(mtype, key_size, value_size, max_entries=65536):
    return bpf(MAP_CREATE, struct.pack("<IIIII", mtype, key_size, value_size, max_entries, 0).ljust(128, b"\0"))


def map_elem(cmd, fd, key, value=None):
    kb = ctypes.create_string_buffer(key, len(key))
    vb = ctypes.create_string_buffer(value, len(value)) if isinstance(value, bytes) else (
        ctypes.create_string_buffer(value) if value else None)
    bpf(cmd, struct.pack("<IIQQQ", fd, 0, ctypes.addressof(kb), ctypes.addressof(vb) if vb else 0, 0).ljust(128, b"\0"))
    return vb.raw if vb else None


class Asm:
    """eBPF instructions (struct bpf_insn: u8 code, u4 dst, u4 src, s16 off, s32 imm) with labels."""

    def __init__(self):
        self.out, self.labels, self.fix = [], {}, []

    def ins(self, code, dst=0, src=0, off=0, imm=0):
        self.out.append([code, dst, src, off, imm])

    def label(self, name):
        self.labels[name] = len(self.out)

    def jmp(self, code, dst, imm, target):  # BPF_JMP|op|BPF_K: if dst <op> imm goto target
        self.fix.append((len(self.out), target))
        self.ins(code, dst, 0, 0, imm)

    def mov_reg(self, d, s): self.ins(0xbf, d, s)            # ALU64 MOV X
    def mov_imm(self, d, v): self.ins(0xb7, d, 0, 0, v)      # ALU64 MOV K
    def add_imm(self, d, v): self.ins(0x07, d, 0, 0, v)      # ALU64 ADD K
    def ldx_w(self, d, s, off): self.ins(0x61, d, s, off)    # LDX MEM W
    def stx_w(self, d, s, off): self.ins(0x63, d, s, off)    # STX MEM W
    def stx_dw(self, d, s, off): self.ins(0x7b, d, s, off)   # STX MEM DW
    def st_w(self, d, off, v): self.ins(0x62, d, 0, off, v)  # ST MEM W (immediate)
    def xadd_dw(self, d, s, off): self.ins(0xdb, d, s, off, 0)  # STX ATOMIC DW, BPF_ADD
    def be32(self, d): self.ins(0xdc, d, 0, 0, 32)           # ALU END TO_BE 32 (bswap32 on LE)
    def call(self, helper): self.ins(0x85, 0, 0, 0, helper)
    def exit(self): self.ins(0x95)

    def ld_map(self, d, fd):  # LD IMM64 with src = BPF_PSEUDO_MAP_FD: two slots
        self.ins(0x18, d, 1, 0, fd)
        self.ins(0, 0, 0, 0, 0)

    def code(self):
        for at, target in self.fix:
            self.out[at][3] = self.labels[target] - at - 1
        return b"".join(struct.pack("<BBhi", c, (s << 4) | d, o, i) for c, d, s, o, i in self.out)


def prog_load(ptype, code, name):
    cb = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 16)
    attr = struct.pack("<IIQQIIQII16s", ptype, len(code) // 8, ctypes.addressof(cb), ctypes.addressof(lic),
                       1, len(log), ctypes.addressof(log), 0, 0, name.encode()[:15]).ljust(160, b"\0")
    try:
        return bpf(PROG_LOAD, attr)
    except OSError:
        sys.stderr.write(log.value.decode(errors="replace"))
        raise


def prog_attach(target_fd, prog_fd, attach_type):
    bpf(PROG_ATTACH, struct.pack("<IIII", target_fd, prog_fd, attach_type, 0).ljust(32, b"\0"))


def cookie(s):
    return struct.unpack("<Q", s.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8))[0]


def cgroup2_root():
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if parts[2] == "cgroup2":
                return parts[1]
    raise OSError("no cgroup2 mount")


# --- programs -------------------------------------------------------------------------------

def prog_skb_redirect(peer_map, counters, target_map, flags):
    """sk_skb verdict: count skb->len under this socket's cookie, then redirect the skb to the
    socket that `peer_map` names for this cookie (its value is the key into `target_map`, or
    the cookie itself is the key when peer_map is None). Lookup miss: SK_PASS (keep locally)."""
    a = Asm()
    a.mov_reg(6, 1)                      # r6 = skb
    a.call(H_GET_SOCKET_COOKIE)          # r0 = cookie of the receiving socket
    a.stx_dw(10, 0, -8)                  # fp[-8] = cookie
    a.ld_map(1, counters)
    a.mov_reg(2, 10); a.add_imm(2, -8)
    a.call(H_MAP_LOOKUP)                 # r0 = &counters[cookie]
    a.jmp(0x15, 0, 0, "route")           # if r0 == NULL goto route
    a.ldx_w(1, 6, 0)                     # r1 = skb->len (__sk_buff.len, offset 0)
    a.xadd_dw(0, 1, 0)                   # atomic *r0 += r1
    a.label("route")
    if peer_map is None:
        a.mov_reg(3, 10); a.add_imm(3, -8)   # key = cookie
    else:
        a.ld_map(1, peer_map)
        a.mov_reg(2, 10); a.add_imm(2, -8)
        a.call(H_MAP_LOOKUP)             # r0 = &peer_map[cookie] (a key of target_map)
        a.jmp(0x15, 0, 0, "pass")
        a.mov_reg(3, 0)
    a.mov_reg(1, 6)
    a.ld_map(2, target_map)
    a.mov_imm(4, flags)
    a.call(H_SK_REDIRECT_HASH)           # SK_PASS when found, SK_DROP when not
    a.jmp(0x55, 0, 0, "out")             # if r0 != SK_DROP goto out
    a.label("pass")
    a.mov_imm(0, SK_PASS)
    a.label("out")
    a.exit()
    return a.code()


def prog_sockops(sockhash, port, rcvbuf):
    """sock_ops: on (active|passive) ESTABLISHED of an IPv4 socket whose local or remote port is
    `port`, insert it into `sockhash` under {local_ip4, remote_ip4, local_port, remote_port}
    (ports in host order); optionally set SO_RCVBUF on it."""
    a = Asm()
    a.mov_reg(6, 1)
    a.ldx_w(2, 6, 0)                     # op
    a.jmp(0x15, 2, 4, "est")             # BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB
    a.jmp(0x55, 2, 5, "out")             # != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB
    a.label("est")
    a.ldx_w(2, 6, 20)                    # family
    a.jmp(0x55, 2, socket.AF_INET, "out")
    a.ldx_w(3, 6, 68)                    # local_port, host order
    a.ldx_w(4, 6, 64)                    # remote_port, network order in the upper 16 bits
    a.be32(4)                            # -> host order
    a.jmp(0x15, 3, port, "ins")
    a.jmp(0x55, 4, port, "out")
    a.label("ins")
    a.ldx_w(2, 6, 28); a.stx_w(10, 2, -16)   # key.lip = local_ip4
    a.ldx_w(2, 6, 24); a.stx_w(10, 2, -12)   # key.rip = remote_ip4
    a.stx_w(10, 3, -8)                       # key.lport
    a.stx_w(10, 4, -4)                       # key.rport
    a.mov_reg(1, 6)
    a.ld_map(2, sockhash)
    a.mov_reg(3, 10); a.add_imm(3, -16)
    a.mov_imm(4, 0)                      # BPF_ANY
    a.call(H_SOCK_HASH_UPDATE)
    if rcvbuf:
        a.st_w(10, -20, rcvbuf)
        a.mov_reg(1, 6); a.mov_imm(2, socket.SOL_SOCKET); a.mov_imm(3, socket.SO_RCVBUF)
        a.mov_reg(4, 10); a.add_imm(4, -20); a.mov_imm(5, 4)
        a.call(H_SETSOCKOPT)
    a.label("out")
    a.mov_imm(0, 1)
    a.exit()
    return a.code()


def prog_msg_to_peer(sockhash):
    """sk_msg: redirect the message into the ingress of the local socket whose key is this
    socket's 4-tuple seen from the other end; SK_PASS (plain TCP) when there is none."""
    a = Asm()
    a.mov_reg(6, 1)
    a.ldx_w(2, 6, 16)                    # sk_msg_md.family
    a.jmp(0x55, 2, socket.AF_INET, "pass")
    a.ldx_w(2, 6, 20); a.stx_w(10, 2, -16)   # peer.lip = remote_ip4
    a.ldx_w(2, 6, 24); a.stx_w(10, 2, -12)   # peer.rip = local_ip4
    a.ldx_w(2, 6, 60); a.be32(2); a.stx_w(10, 2, -8)  # peer.lport = remote_port
    a.ldx_w(2, 6, 64); a.stx_w(10, 2, -4)    # peer.rport = local_port
    a.mov_reg(1, 6)
    a.ld_map(2, sockhash)
    a.mov_reg(3, 10); a.add_imm(3, -16)
    a.mov_imm(4, F_INGRESS)
    a.call(H_MSG_REDIRECT_HASH)
    a.jmp(0x55, 0, 0, "out")
    a.label("pass")
    a.mov_imm(0, SK_PASS)
    a.label("out")
    a.exit()
    return a.code()


# --- relays ---------------------------------------------------------------------------------

class Kernel:
    def __init__(self, mode, port, client_rcvbuf):
        self.mode = mode
        self.counters = map_create(MAP_HASH, 8, 8)
        if mode == "skb-egress":
            self.pair = map_create(MAP_SOCKHASH, 8, 4)   # cookie(a) -> socket b
            prog_attach(self.pair, prog_load(PROG_SK_SKB, prog_skb_redirect(None, self.counters, self.pair, 0), "relay_egress"),
                        ATTACH_SK_SKB_VERDICT)
            return
        self.local = map_create(MAP_SOCKHASH, 16, 4)
        prog_attach(self.local, prog_load(PROG_SK_MSG, prog_msg_to_peer(self.local), "relay_msg"), ATTACH_SK_MSG_VERDICT)
        so = prog_load(PROG_SOCK_OPS, prog_sockops(self.local, port, client_rcvbuf), "relay_sockops")
        self.cg = os.open(cgroup2_root(), os.O_RDONLY | os.O_DIRECTORY)
        self.link = bpf(LINK_CREATE, struct.pack("<IIII", so, self.cg, ATTACH_CGROUP_SOCK_OPS, 0).ljust(64, b"\0"))
        if mode == "msg-skb-ingress":
            self.route = map_create(MAP_HASH, 8, 16)      # cookie(upstream) -> key of the client socket
            self.ups = map_create(MAP_SOCKHASH, 8, 4)
            prog_attach(self.ups, prog_load(PROG_SK_SKB, prog_skb_redirect(self.route, self.counters, self.local, F_INGRESS),
                                            "relay_ingress"), ATTACH_SK_SKB_VERDICT)

    def count(self, key):
        try:
            return struct.unpack("<Q", map_elem(MAP_LOOKUP, self.counters, key, 8))[0]
        except OSError:
            return 0

    def forget(self, keys, maps):
        for k in keys:
            for m in maps:
                try:
                    map_elem(MAP_DELETE, m, k)
                except OSError:
                    pass


def sent_total(s):
    """Bytes ever queued on s: acknowledged + still in the send queue."""
    ti = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    acked = struct.unpack_from("<Q", ti, 120)[0]  # tcpi_bytes_acked
    return acked + struct.unpack("<i", fcntl.ioctl(s.fileno(), SIOCOUTQ, b"\0" * 4))[0]


def wait_rdhup(s):
    p = select.poll()
    p.register(s, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    while not p.poll(1000):
        pass


def splice_one_way(a, b, chunk):
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, 1031, chunk)  # F_SETPIPE_SZ
        while True:
            n = os.splice(a.fileno(), w, chunk)
            if n == 0:
                break
            while n:
                n -= os.splice(r, b.fileno(), n)
    finally:
        os.close(r)
        os.close(w)
    b.shutdown(socket.SHUT_WR)


def recv_one_way(a, b):
    while True:
        try:
            d = a.recv(1 << 16)
        except BlockingIOError:  # tcp_bpf's recvmsg can say EAGAIN on a blocking socket
            select.select([a], [], [], 1)
            continue
        if not d:
            break
        b.sendall(d)
    b.shutdown(socket.SHUT_WR)


def tunnel(c, u, args, k):
    mode = args.mode
    if mode == "splice":
        t = threading.Thread(target=splice_one_way, args=(c, u, args.chunk))
        t.start()
        splice_one_way(u, c, args.chunk)
        t.join()
        return ""
    if mode == "msg":
        t = threading.Thread(target=recv_one_way, args=(c, u))
        t.start()
        splice_one_way(u, c, args.chunk)
        t.join()
        return ""
    if mode == "skb-egress":
        kc, ku = struct.pack("<Q", cookie(c)), struct.pack("<Q", cookie(u))
        base = {c: sent_total(c), u: sent_total(u)}
        for key in (kc, ku):
            map_elem(MAP_UPDATE, k.counters, key, struct.pack("<Q", 0))
        map_elem(MAP_UPDATE, k.pair, kc, struct.pack("<I", u.fileno()))  # program on u
        map_elem(MAP_UPDATE, k.pair, ku, struct.pack("<I", c.fileno()))  # program on c
        for s in (c, u):  # SO_RCVLOWAT runs sk_data_ready: bytes queued before the insert go through the program
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)

        def half(src, dst, key):
            wait_rdhup(src)
            deadline = time.monotonic() + 10
            while sent_total(dst) - base[dst] < k.count(key) and time.monotonic() < deadline:
                time.sleep(0.001)
            dst.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=half, args=(c, u, kc))
        t.start()
        half(u, c, ku)
        t.join()
        up, down = k.count(kc), k.count(ku)
        k.forget((kc, ku), (k.pair, k.counters))
        return "up=%d down=%d" % (up, down)
    # msg-skb-ingress
    lip, gwport = c.getsockname()
    rip, eport = c.getpeername()
    client_key = socket.inet_aton(rip) + socket.inet_aton(lip) + struct.pack("<II", eport, gwport)
    ku = struct.pack("<Q", cookie(u))
    map_elem(MAP_UPDATE, k.counters, ku, struct.pack("<Q", 0))
    map_elem(MAP_UPDATE, k.route, ku, client_key)
    map_elem(MAP_UPDATE, k.ups, ku, struct.pack("<I", u.fileno()))
    u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
    t = threading.Thread(target=recv_one_way, args=(c, u))
    t.start()
    wait_rdhup(u)
    # Nothing tells the proxy when the client has been handed the redirected bytes: settle on
    # the counter, then wait --fin-settle seconds more before the FIN.
    last = -1
    while k.count(ku) != last:
        last = k.count(ku)
        time.sleep(0.005)
    time.sleep(args.fin_settle)
    c.shutdown(socket.SHUT_WR)
    t.join()
    down = k.count(ku)
    k.forget((ku,), (k.ups, k.route, k.counters))
    return "down=%d" % down


def resolve(host, hosts):
    return hosts.get(host, host)


def handle(c, args, k, hosts):
    try:
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = c.recv(4096)
            if not d:
                return
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        parts = head.split(b"\r\n")[0].split(b" ")
        if len(parts) != 3 or parts[0] != b"CONNECT":
            c.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, port = parts[1].decode().rsplit(":", 1)
        u = socket.socket()
        u.connect((resolve(host, hosts), int(port)))
        if rest:
            u.sendall(rest)
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        note = tunnel(c, u, args, k)
        if note and args.verbose:
            print("tunnel %s" % note, file=sys.stderr)
        u.close()
    except Exception as e:  # a failed tunnel is reported, the proxy goes on
        print("tunnel error: %r" % e, file=sys.stderr)
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1")
    ap.add_argument("--mode", choices=["splice", "skb-egress", "msg", "msg-skb-ingress"], required=True)
    ap.add_argument("--hosts", help="hosts-format file for CONNECT names")
    ap.add_argument("--chunk", type=int, default=1 << 20, help="splice chunk and pipe size")
    ap.add_argument("--client-rcvbuf", type=int, default=4 << 20,
                    help="msg-skb-ingress: SO_RCVBUF the sock_ops program sets on the sockets it inserts (0: leave)")
    ap.add_argument("--fin-settle", type=float, default=0.0, help="msg-skb-ingress: extra wait before the FIN")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    hosts = {}
    if args.hosts:
        with open(args.hosts) as f:
            for line in f:
                fields = line.split("#")[0].split()
                for name in fields[1:]:
                    hosts[name] = fields[0]
    k = None if args.mode == "splice" else Kernel(args.mode, args.listen,
                                                  args.client_rcvbuf if args.mode == "msg-skb-ingress" else 0)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", args.listen))
    ls.listen(512)
    print("listening 127.0.0.1:%d mode %s" % (args.listen, args.mode), file=sys.stderr, flush=True)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=handle, args=(c, args, k, hosts), daemon=True).start()


if __name__ == "__main__":
    main()
