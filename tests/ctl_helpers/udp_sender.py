#!/usr/bin/env python3
"""A steady UDP sender for vsd's rate-estimator test.

usage: udp_sender.py HOST PORT PPS IP_PACKET_BYTES SECONDS

Sends datagrams whose IPv4 packets are IP_PACKET_BYTES long (20-byte IP
header + 8-byte UDP header + payload) at PPS packets per second for SECONDS,
paced in 10 ms ticks: at every tick it sends as many as needed to reach
round(elapsed * PPS). Once a second, and at the end, it prints (flushed)
    <monotonic_ms> <datagrams attempted so far> <send errors so far>
so the caller can compute the rate really sent (attempted - errors) over any
window. Python 3
standard library only.
"""
import socket
import sys
import time


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    pps, size, seconds = float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    payload = b"v" * (size - 28)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    s.setblocking(False)
    attempted = errors = 0
    start = time.monotonic()
    next_report = start
    while True:
        now = time.monotonic()
        elapsed = now - start
        if elapsed >= seconds:
            break
        if now >= next_report:
            print("%d %d %d" % (int(now * 1000), attempted, errors), flush=True)
            next_report += 1.0
        due = int(round(elapsed * pps))
        while attempted < due:
            attempted += 1
            try:
                s.send(payload)
            except OSError:
                # Not sent; the schedule stays fixed and the caller
                # subtracts these to get what really left.
                errors += 1
        time.sleep(max(0.0, 0.01 - (time.monotonic() - now)))
    print("%d %d %d" % (int(time.monotonic() * 1000), attempted, errors), flush=True)


if __name__ == "__main__":
    main()
