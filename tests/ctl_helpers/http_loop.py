#!/usr/bin/env python3
"""Sequential HTTP/1.0 GETs, one TCP connection each, for vsd's end-to-end tests.

usage: http_loop.py HOST PORT PATH COUNT INTERVAL_S TIMEOUT_S [STOP_FILE]

Prints one line per attempt and flushes it at once:
    <seq> <monotonic_ms_at_start> ok <body first line>
    <seq> <monotonic_ms_at_start> fail <reason>
It ends after COUNT attempts, or earlier once STOP_FILE exists. Attempts
start every INTERVAL_S seconds (or right after the previous one ends, if
that took longer). Python 3 standard library only.
"""
import os
import socket
import sys
import time


def get(host, port, path, timeout):
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.settimeout(timeout)
        s.sendall(("GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path, host)).encode())
        data = b""
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("response not complete")
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status:
        raise RuntimeError("status %r" % status)
    return body.decode(errors="replace").strip().split("\n", 1)[0]


def main():
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    count, interval, timeout = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
    stop = sys.argv[7] if len(sys.argv) > 7 else None
    next_t = time.monotonic()
    for seq in range(count):
        if stop and os.path.exists(stop):
            break
        now = time.monotonic()
        if now < next_t:
            time.sleep(next_t - now)
        start = time.monotonic()
        next_t = start + interval
        ms = int(start * 1000)
        try:
            body = get(host, port, path, timeout)
            print("%d %d ok %s" % (seq, ms, body), flush=True)
        except Exception as e:  # every failure is a result to report
            reason = ("%s: %s" % (type(e).__name__, e)).replace("\n", " ")
            print("%d %d fail %s" % (seq, ms, reason), flush=True)


if __name__ == "__main__":
    main()
