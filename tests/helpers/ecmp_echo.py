#!/usr/bin/env python3
"""A line echo server for the ECMP tests (stdlib only).

Listens on every --port (all addresses: DR delivers to the VIP on lo,
FULLNAT to the server's own address) and answers each line with
"NAME LINE". Writes --ready once every socket listens. Runs until killed.
"""
import argparse
import asyncio


async def serve(name, ports, ready):
    async def handle(reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                writer.write(name.encode() + b" " + line)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    servers = []
    for port in ports:
        servers.append(
            await asyncio.start_server(handle, "0.0.0.0", port, backlog=4096, reuse_address=True)
        )
    with open(ready, "w") as f:
        f.write("ready\n")
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", type=int, action="append", required=True)
    ap.add_argument("--ready", required=True)
    a = ap.parse_args()
    asyncio.run(serve(a.name, a.port, a.ready))


if __name__ == "__main__":
    main()
