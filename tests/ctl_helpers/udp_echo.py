#!/usr/bin/env python3
"""A UDP echo server for vsd's tests: every datagram goes back to its sender.

usage: udp_echo.py BIND_ADDR PORT
Python 3 standard library only; runs until killed.
"""
import socket
import sys


def main():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], int(sys.argv[2])))
    while True:
        data, peer = s.recvfrom(65536)
        try:
            s.sendto(data, peer)
        except OSError:
            pass


if __name__ == "__main__":
    main()
