#!/usr/bin/env python3
"""Client load for the ECMP tests (stdlib only): long-lived connections
plus a steady stream of new ones, every outcome logged with its time.

For each --target NAME=ADDR:PORT:
- --conns long-lived TCP connections, each sending "ping NAME I SEQ\\n"
  every --interval seconds and waiting for the echo server's
  "SERVER ping NAME I SEQ\\n". A connection is *broken* when it is reset or
  closed, when an answer does not arrive within --break-after seconds, or
  when the answering server changes; it is then replaced by a fresh one.
- --new-rate new connections per second, each one connect + one ping +
  close, *failed* when any step errs or takes longer than --new-timeout.

Log (--log): one JSON object per line, "t" in CLOCK_MONOTONIC seconds
(the clock the test reads), "ev" one of
  up      {target, n}                 all long connections of a target open
  break   {target, conn, why, server} a long connection broke (t: noticed)
  stall   {target, conn, secs}        an answer took longer than 0.25 s
                                      (t: when the ping was sent)
  new     {target, ok, secs, why}     a new connection's outcome (t: start)
  reopen  {target, conn, ok}          a broken long connection replaced
--ready is written once every target's long connections are open. Ends
after --duration seconds (bounded).
"""
import argparse
import asyncio
import json
import time


class Log:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)

    def write(self, ev, **kw):
        kw["t"] = round(time.monotonic(), 6)
        kw["ev"] = ev
        self.f.write(json.dumps(kw) + "\n")


async def exchange(reader, writer, msg, limit):
    writer.write(msg)
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), limit)
    if not line:
        raise ConnectionError("eof")
    server, _, rest = line.partition(b" ")
    if rest != msg:
        raise ConnectionError("bad echo %r" % line[:80])
    return server.decode()


async def open_conn(addr, port, limit):
    return await asyncio.wait_for(asyncio.open_connection(addr, port), limit)


async def long_conn(log, name, i, addr, port, a, opened):
    """One long-lived connection slot: kept open, replaced when broken."""
    first = True
    while True:
        try:
            reader, writer = await open_conn(addr, port, a.new_timeout)
        except (OSError, asyncio.TimeoutError) as e:
            log.write("reopen", target=name, conn=i, ok=False, why=type(e).__name__)
            await asyncio.sleep(a.interval)
            continue
        if first:
            opened()
            first = False
        else:
            log.write("reopen", target=name, conn=i, ok=True)
        server, seq, why = None, 0, None
        try:
            while True:
                seq += 1
                msg = b"ping %s %d %d\n" % (name.encode(), i, seq)
                sent = time.monotonic()
                try:
                    got = await exchange(reader, writer, msg, a.break_after)
                except asyncio.TimeoutError:
                    why = "timeout"
                    break
                except (ConnectionError, OSError) as e:
                    why = type(e).__name__ + ": " + str(e)[:60]
                    break
                took = time.monotonic() - sent
                if took > 0.25:
                    log.write("stall", target=name, conn=i, secs=round(took, 3), t0=round(sent, 6))
                if server is not None and got != server:
                    why = "server changed %s -> %s" % (server, got)
                    break
                server = got
                await asyncio.sleep(max(0.0, a.interval - took))
        finally:
            writer.transport.abort()
        log.write("break", target=name, conn=i, why=why, server=server)


async def new_conns(log, name, addr, port, a):
    period = 1.0 / a.new_rate
    pending = set()
    n = 0
    while True:
        n += 1

        async def one(k):
            t0 = time.monotonic()
            why = None
            try:
                async def go():
                    reader, writer = await asyncio.open_connection(addr, port)
                    try:
                        await exchange(reader, writer, b"new %s %d\n" % (name.encode(), k), a.new_timeout)
                    finally:
                        writer.close()
                await asyncio.wait_for(go(), a.new_timeout)
            except asyncio.TimeoutError:
                why = "timeout"
            except (ConnectionError, OSError) as e:
                why = type(e).__name__ + ": " + str(e)[:60]
            log.f.write(json.dumps({"t": round(t0, 6), "ev": "new", "target": name,
                                    "ok": why is None, "secs": round(time.monotonic() - t0, 3),
                                    "why": why}) + "\n")

        task = asyncio.ensure_future(one(n))
        pending.add(task)
        task.add_done_callback(pending.discard)
        await asyncio.sleep(period)


async def main_async(a):
    log = Log(a.log)
    targets = []
    for spec in a.target:
        name, _, hp = spec.partition("=")
        host, _, port = hp.rpartition(":")
        targets.append((name, host, int(port)))
    left = {name: a.conns for name, _, _ in targets}
    all_up = asyncio.Event()

    def opened_for(name):
        def opened():
            left[name] -= 1
            if left[name] == 0:
                log.write("up", target=name, n=a.conns)
                if all(v == 0 for v in left.values()):
                    all_up.set()
        return opened

    tasks = []
    for name, host, port in targets:
        for i in range(a.conns):
            tasks.append(asyncio.ensure_future(
                long_conn(log, name, i, host, port, a, opened_for(name))))
            # spread the SYNs and, later, the pings
            await asyncio.sleep(a.interval / a.conns / len(targets))
    await asyncio.wait_for(all_up.wait(), 60)
    with open(a.ready, "w") as f:
        f.write("ready\n")
    for name, host, port in targets:
        if a.new_rate > 0:
            tasks.append(asyncio.ensure_future(new_conns(log, name, host, port, a)))
    await asyncio.sleep(a.duration)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", action="append", required=True)
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--break-after", type=float, default=6.0)
    ap.add_argument("--new-rate", type=float, default=5.0)
    ap.add_argument("--new-timeout", type=float, default=5.0)
    ap.add_argument("--duration", type=float, default=300.0)
    ap.add_argument("--log", required=True)
    ap.add_argument("--ready", required=True)
    a = ap.parse_args()
    try:
        asyncio.run(main_async(a))
    except asyncio.TimeoutError:
        raise SystemExit("long connections did not all open within 60 s")


if __name__ == "__main__":
    main()
