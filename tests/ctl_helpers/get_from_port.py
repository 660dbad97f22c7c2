#!/usr/bin/env python3
"""HTTP/1.0 GET from a fixed client port: get_from_port.py LOCAL_PORT HOST PORT PATH.

curl --local-port cannot bind a port its kernel still holds in TIME_WAIT
(it sets no SO_REUSEADDR), and whether the client or the server closes
first is a race. This client sets SO_REUSEADDR and lets the namespace's
kernel reuse a TIME_WAIT tuple for a new connection (tcp_tw_reuse = 1,
a per-namespace setting), so the tests see vsd's behaviour, not the
client's. Prints the body; exit 0 on status 200, 1 otherwise.
"""
import socket
import sys

local_port, host, port, path = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open("/proc/sys/net/ipv4/tcp_tw_reuse", "w") as f:
    f.write("1")
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", local_port))
s.settimeout(8)
try:
    s.connect((host, port))
    s.settimeout(10)
    s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except OSError as e:
    print(f"get_from_port: {e}", file=sys.stderr)
    sys.exit(1)
head, _, body = data.partition(b"\r\n\r\n")
sys.stdout.write(body.decode(errors="replace"))
status = head.split(b" ", 2)[1:2]
sys.exit(0 if status == [b"200"] else 1)
