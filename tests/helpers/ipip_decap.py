#!/usr/bin/env python3
"""Userspace IPIP decapsulation for a TUN-mode real server (stdlib only).

This kernel has no ipip module, so a real server cannot terminate the
director's IP-in-IP tunnel itself. This helper reads IPv4 packets of
protocol 4 addressed to --addr from --iface with an AF_PACKET socket and
writes the inner packet to a TUN device (--tun), where the kernel receives
it as if it had arrived there: the VIP lives on the namespace's loopback,
so the inner packet is delivered locally and answered straight to the
client. The kernel itself must drop protocol 4 (nftables), or it answers
every tunnelled packet with ICMP protocol-unreachable.

IPv6 packets in IPv4 (protocol 41) are decapsulated the same way. With an
IPv6 --addr it does the same for IPv6-in-IPv6 (and IPv4-in-IPv6):
IPv6 packets of next header 41 (or 4) with no extension headers, for a
kernel without the ip6_tunnel module (nftables must drop next header 41).

Each distinct outer source address is appended once to --log as
"outer SRC"; --ready is written once the TUN device is up.
"""
import argparse
import fcntl
import os
import signal
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
ETH_P_IP = 0x0800
PACKET_HOST = 0
IPPROTO_IPIP = 4


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    # bring it up (ifreq: 16-byte name, then a short of flags)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    req = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH", name.encode(), 0) + b"\0" * 22)
    flags = struct.unpack("16sH", req[:18])[1] | IFF_UP
    fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", name.encode(), flags) + b"\0" * 22)
    s.close()
    # Inner packets come from clients that are routed elsewhere: reverse-path
    # filtering on the tun device would drop them.
    try:
        with open(f"/proc/sys/net/ipv4/conf/{name}/rp_filter", "w") as f:
            f.write("0\n")
    except OSError:
        pass
    return fd


def inner_of(pkt, local):
    """The inner packet of an IPIP packet for `local`, or None."""
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        return None
    ihl = (pkt[0] & 0x0F) * 4
    total = struct.unpack_from("!H", pkt, 2)[0]
    frag = struct.unpack_from("!H", pkt, 6)[0]
    if ihl < 20 or total < ihl or total > len(pkt):
        return None
    if pkt[9] == IPPROTO_IPIP:
        version, least = 4, 20
    elif pkt[9] == IPPROTO_IPV6:  # IPv6 in IPv4
        version, least = 6, 40
    else:
        return None
    if pkt[16:20] != local:
        return None
    if frag & 0x3FFF:  # MF set or non-zero offset: no reassembly here
        return None
    inner = pkt[ihl:total]
    if len(inner) < least or inner[0] >> 4 != version:
        return None
    return inner, socket.inet_ntoa(pkt[12:16])


ETH_P_IPV6 = 0x86DD
IPPROTO_IPV6 = 41


def inner_of6(pkt, local):
    """The inner packet of an IPv6 packet tunnelling IPv6 or IPv4 to
    `local` (no extension headers), or None."""
    if len(pkt) < 40 or pkt[0] >> 4 != 6:
        return None
    plen = struct.unpack_from("!H", pkt, 4)[0]
    if 40 + plen > len(pkt) or pkt[24:40] != local:
        return None
    if pkt[6] == IPPROTO_IPV6:
        version, least = 6, 40
    elif pkt[6] == IPPROTO_IPIP:
        version, least = 4, 20
    else:
        return None
    inner = pkt[40 : 40 + plen]
    if len(inner) < least or inner[0] >> 4 != version:
        return None
    return inner, socket.inet_ntop(socket.AF_INET6, pkt[8:24])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iface", required=True)
    ap.add_argument("--addr", required=True, help="this real server's address (outer destination)")
    ap.add_argument("--tun", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--ready", required=True)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    if ":" in a.addr:
        local = socket.inet_pton(socket.AF_INET6, a.addr)
        ethertype, decap = ETH_P_IPV6, inner_of6
    else:
        local = socket.inet_aton(a.addr)
        ethertype, decap = ETH_P_IP, inner_of
    tun = open_tun(a.tun)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ethertype))
    sock.bind((a.iface, ethertype))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    seen = set()
    log = open(a.log, "a")
    with open(a.ready, "w") as f:
        f.write("ready\n")
    while True:
        pkt, addr = sock.recvfrom(65535)
        if addr[2] != PACKET_HOST:  # skip our own outgoing packets
            continue
        got = decap(pkt, local)
        if got is None:
            continue
        inner, outer_src = got
        if outer_src not in seen:
            seen.add(outer_src)
            log.write(f"outer {outer_src}\n")
            log.flush()
        try:
            os.write(tun, inner)
        except OSError as e:
            print(f"tun write: {e}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
