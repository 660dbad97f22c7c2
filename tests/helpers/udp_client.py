#!/usr/bin/env python3
"""UDP client for the forwarding tests: sends --count queries to HOST:PORT,
each from a fresh socket bound to its own source port (--first-port + i,
so every query is a new connection at the director), and prints one line per answer. Exits 1 if any query goes
unanswered within --timeout seconds or an answer does not echo the query."""
import argparse
import socket
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--first-port", type=int, default=50000)
    ap.add_argument("--timeout", type=float, default=3.0)
    # pad each query to this many bytes (above the MTU: sent fragmented)
    ap.add_argument("--size", type=int, default=0)
    a = ap.parse_args()
    family = socket.AF_INET6 if ":" in a.host else socket.AF_INET
    failed = 0
    for i in range(a.count):
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.settimeout(a.timeout)
        s.bind(("", a.first_port + i))
        # connect() makes the kernel accept answers only from HOST:PORT: a
        # reply from the real server's own address would be refused.
        s.connect((a.host, a.port))
        query = f"query-{i}".encode()
        if len(query) < a.size:
            query += bytes((j * 31 + i) % 256 for j in range(a.size - len(query)))
        s.send(query)
        try:
            data = s.recv(65535)
        except (socket.timeout, ConnectionRefusedError) as e:
            print(f"NO ANSWER to query-{i}: {e!r}")
            failed += 1
            continue
        finally:
            s.close()
        name, _, echoed = data.partition(b" ")
        if echoed != query:
            print(f"BAD ANSWER to query-{i}: {len(data)} bytes")
            failed += 1
            continue
        print(name.decode())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
