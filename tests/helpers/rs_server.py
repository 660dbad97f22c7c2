#!/usr/bin/env python3
"""A real server for the end-to-end forwarding tests (stdlib only).

Serves files from --dir over HTTP (an `id` file names the server), answers
a POST with the server's name and the sha256 of the body, and echoes
UDP datagrams prefixed with the server's name. Every distinct peer address
(TCP or UDP) is appended once to --peer-log, so a test can tell which source
addresses reached the server (FULLNAT: only the director's local addresses).
Writes --ready once both sockets listen. Runs until SIGTERM/SIGKILL.
--family 6 serves IPv6 (on "::") instead of IPv4.
"""
import argparse
import hashlib
import http.server
import os
import signal
import socket
import struct
import sys
import threading


class Peers:
    """Distinct peer addresses, appended to a log file as they appear."""

    def __init__(self, path):
        self.path = path
        self.seen = set()
        self.lock = threading.Lock()
        open(path, "a").close()

    def note(self, kind, addr):
        key = (kind, addr)
        with self.lock:
            if key in self.seen:
                return
            self.seen.add(key)
            with open(self.path, "a") as f:
                f.write(f"{kind} {addr}\n")


class Server(http.server.ThreadingHTTPServer):
    # The default backlog of 5 would drop SYNs under 200 concurrent clients.
    request_queue_size = 4096
    allow_reuse_address = True
    daemon_threads = True


class Server6(Server):
    address_family = socket.AF_INET6


def make_handler(name, directory, peers):
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=directory, **kw)

        def log_message(self, fmt, *args):
            pass

        def setup(self):
            super().setup()
            peers.note("tcp", self.client_address[0])

        def do_POST(self):
            """Answers "NAME SHA256" of the request body."""
            left = int(self.headers.get("Content-Length", "0"))
            digest = hashlib.sha256()
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                digest.update(chunk)
                left -= len(chunk)
            body = f"{name} {digest.hexdigest()}\n".encode()
            self.send_response(200 if left == 0 else 400)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


def udp_echo(sock, name, peers):
    """Echo each datagram from the address it was sent to (IP_PKTINFO): a
    DR or TUN real server receives on the VIP, and a wildcard socket would
    otherwise answer from its own address, which the client rejects."""
    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    while True:
        data, anc, _flags, peer = sock.recvmsg(65535, socket.CMSG_SPACE(12))
        peers.note("udp", peer[0])
        cmsg = []
        for level, kind, cdata in anc:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(cdata) >= 12:
                _ifindex, _spec_dst, dst = struct.unpack("I4s4s", cdata[:12])
                # in_pktinfo: ifindex 0, source dst, ipi_addr unused on send
                cmsg = [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("I4s4s", 0, dst, bytes(4)))]
        sock.sendmsg([name.encode() + b" " + data], cmsg, 0, peer)


IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)


def udp_echo6(sock, name, peers):
    """udp_echo for IPv6: answer from the address the datagram was sent to
    (IPV6_PKTINFO), as a DR or TUN real server must."""
    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
    while True:
        data, anc, _flags, peer = sock.recvmsg(65535, socket.CMSG_SPACE(20))
        peers.note("udp", peer[0])
        cmsg = []
        for level, kind, cdata in anc:
            if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(cdata) >= 20:
                # in6_pktinfo: the destination address, then the interface
                cmsg = [(socket.IPPROTO_IPV6, IPV6_PKTINFO, cdata[:16] + struct.pack("I", 0))]
        sock.sendmsg([name.encode() + b" " + data], cmsg, 0, peer)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--http-port", type=int, default=80)
    ap.add_argument("--udp-port", type=int, default=9000)
    ap.add_argument("--peer-log", required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--family", type=int, choices=(4, 6), default=4)
    a = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    peers = Peers(a.peer_log)
    handler = make_handler(a.name, a.dir, peers)
    if a.family == 6:
        httpd = Server6(("::", a.http_port), handler)
        udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        udp.bind(("::", a.udp_port))
        echo = udp_echo6
    else:
        httpd = Server(("0.0.0.0", a.http_port), handler)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("0.0.0.0", a.udp_port))
        echo = udp_echo
    threading.Thread(target=echo, args=(udp, a.name, peers), daemon=True).start()
    with open(a.ready, "w") as f:
        f.write("ready\n")
    httpd.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
