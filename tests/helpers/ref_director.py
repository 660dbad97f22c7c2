#!/usr/bin/env python3
"""A tiny reference director for DR and TUN (stdlib only), used to prove the
test topologies and real-server setups correct independently of vsd.

Listens on --lan with an AF_PACKET socket, answers ARP for --vip with the
interface's own MAC, and forwards every IPv4 frame for the VIP to a real
server chosen round-robin per new flow (protocol, client address, client
port):
  dr:  rewrites the destination MAC to the real server's (--rs IP=MAC) and
       sends the frame back out of --lan;
  tun: sends the IP packet inside a new IPv4 header (protocol 4) to the real
       server (--rs IP) through a raw socket; the kernel picks the outer
       source, the address toward the real server. A packet with DF that
       would not fit --mtu once encapsulated is answered with ICMP
       fragmentation-needed (next-hop MTU = --mtu - 20), as a director must.
The namespace must not forward (ip_forward=0) so its kernel drops the VIP
frames silently. Writes --ready once listening."""
import argparse
import os
import signal
import socket
import struct
import sys

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
PACKET_HOST = 0
PACKET_BROADCAST = 1


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def mac_bytes(text):
    return bytes(int(x, 16) for x in text.split(":"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["dr", "tun"], required=True)
    ap.add_argument("--lan", required=True)
    ap.add_argument("--vip", required=True)
    ap.add_argument("--rs", action="append", required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--mtu", type=int, default=1500)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    vip = socket.inet_aton(a.vip)
    with open(f"/sys/class/net/{a.lan}/address") as f:
        my_mac = mac_bytes(f.read().strip())
    servers = []
    for spec in a.rs:
        ip, _, mac = spec.partition("=")
        servers.append((ip, mac_bytes(mac) if mac else None))

    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((a.lan, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    raw = icmp = None
    if a.mode == "tun":
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IPIP)
        icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    flows = {}
    turn = 0
    with open(a.ready, "w") as f:
        f.write("ready\n")
    while True:
        frame, addr = sock.recvfrom(65535)
        if addr[2] not in (PACKET_HOST, PACKET_BROADCAST) or len(frame) < 14:
            continue
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        if ethertype == ETH_P_ARP and len(frame) >= 42:
            op = struct.unpack_from("!H", frame, 20)[0]
            if op == 1 and frame[38:42] == vip:
                sha, spa = frame[22:28], frame[28:32]
                reply = (sha + my_mac + struct.pack("!H", ETH_P_ARP)
                         + struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 2)
                         + my_mac + vip + sha + spa)
                sock.send(reply)
            continue
        if ethertype != ETH_P_IP or frame[0:6] != my_mac or len(frame) < 34:
            continue
        pkt = frame[14:]
        if pkt[16:20] != vip:
            continue
        ihl = (pkt[0] & 0x0F) * 4
        total = struct.unpack_from("!H", pkt, 2)[0]
        pkt = pkt[:total]
        proto = pkt[9]
        sport = struct.unpack_from("!H", pkt, ihl)[0] if len(pkt) >= ihl + 2 else 0
        key = (proto, pkt[12:16], sport)
        rs = flows.get(key)
        if rs is None:
            rs = servers[turn % len(servers)]
            turn += 1
            flows[key] = rs
        if a.mode == "dr":
            sock.send(rs[1] + my_mac + frame[12:14] + pkt)
        elif len(pkt) + 20 > a.mtu and pkt[6] & 0x40:
            # too big for the tunnel and DF set: frag-needed to the client,
            # quoting the IP header and 8 bytes of the packet
            body = struct.pack("!BBHHH", 3, 4, 0, 0, a.mtu - 20) + pkt[: ihl + 8]
            body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
            icmp.sendto(body, (socket.inet_ntoa(pkt[12:16]), 0))
        else:
            raw.sendto(pkt, (rs[0], 0))


if __name__ == "__main__":
    sys.exit(main())
