#!/usr/bin/env python3
"""Hand-made IPIP packets for proving ipip_decap.py (stdlib only).

  send --rs RIP --proto udp|tcp --src IP:PORT --dst IP:PORT [--payload TEXT]
      sends one IPv4-in-IPv4 packet to RIP: the inner packet (UDP datagram
      or TCP SYN, checksums computed here) is built by hand, the outer header
      by the kernel (raw socket of protocol 4).
  expect-udp --bind IP:PORT --ready FILE [--timeout S]
      prints the first datagram received on IP:PORT and the sender.
  expect-synack --iface DEV --port PORT --ready FILE [--timeout S]
      prints the first TCP SYN-ACK to PORT seen on DEV (AF_PACKET).
Exit status 1 when nothing arrives in time."""
import argparse
import socket
import struct
import sys
import time


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src, dst, proto, payload):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0x1234, 0x4000, 64, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + payload


def l4(src, dst, proto, seg, csum_at):
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto, len(seg))
    c = csum(pseudo + seg)
    if proto == 17 and c == 0:
        c = 0xFFFF
    return seg[:csum_at] + struct.pack("!H", c) + seg[csum_at + 2:]


def addr(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def send(a):
    (sip, sport), (dip, dport) = addr(a.src), addr(a.dst)
    if a.proto == "udp":
        data = a.payload.encode()
        seg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
        inner = ipv4(sip, dip, 17, l4(sip, dip, 17, seg, 6))
    else:
        # SYN with an MSS option
        seg = struct.pack("!HHIIBBHHH", sport, dport, 0x01020304, 0, 6 << 4, 0x02, 64240, 0, 0)
        seg += struct.pack("!BBH", 2, 4, 1460)
        inner = ipv4(sip, dip, 6, l4(sip, dip, 6, seg, 16))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IPIP)
    raw.sendto(inner, (a.rs, 0))
    print(f"sent {len(inner)}-byte inner {a.proto} packet {a.src} -> {a.dst} inside IPIP to {a.rs}")
    return 0


def expect_udp(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(addr(a.bind))
    s.settimeout(a.timeout)
    open(a.ready, "w").write("ready\n")
    try:
        data, peer = s.recvfrom(65535)
    except socket.timeout:
        print("no datagram")
        return 1
    print(f"udp from {peer[0]}:{peer[1]}: {data.decode(errors='replace')}")
    return 0


def expect_synack(a):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
    s.bind((a.iface, 0x0800))
    open(a.ready, "w").write("ready\n")
    end = time.monotonic() + a.timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            print("no SYN-ACK")
            return 1
        s.settimeout(left)
        try:
            pkt, _ = s.recvfrom(65535)
        except socket.timeout:
            continue
        if len(pkt) < 40 or pkt[9] != 6:
            continue
        ihl = (pkt[0] & 0x0F) * 4
        sport, dport = struct.unpack_from("!HH", pkt, ihl)
        flags = pkt[ihl + 13]
        if dport == a.port and flags & 0x12 == 0x12:
            src = socket.inet_ntoa(pkt[12:16])
            dst = socket.inet_ntoa(pkt[16:20])
            print(f"syn-ack from {src}:{sport} to {dst}:{dport}")
            return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("send")
    p.add_argument("--rs", required=True)
    p.add_argument("--proto", choices=["udp", "tcp"], required=True)
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--payload", default="hello")
    p = sub.add_parser("expect-udp")
    p.add_argument("--bind", required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--timeout", type=float, default=5)
    p = sub.add_parser("expect-synack")
    p.add_argument("--iface", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--timeout", type=float, default=5)
    a = ap.parse_args()
    return {"send": send, "expect-udp": expect_udp, "expect-synack": expect_synack}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
