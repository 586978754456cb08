#!/usr/bin/python3
"""asyncio_herd: the asyncio baseline of the bench.

The classic CS 131 proxy-herd design done well, so that herd is measured
against asyncio at its best and not against a straw man:

- asyncio streams, one coroutine per client connection, many messages per
  connection. By default the seed design: one line per
  `await reader.readline()`, its reply written and drained before the next
  (a WHATSAT awaited in place). With --batched, beyond it: each read is
  split into lines and all the replies of one read go out in one write
  (each reply whole, in order, even behind a slow WHATSAT);
- the client protocol of SPEC section 4 (IAMAT, WHATSAT, "? " for anything
  else), with exact integer nanosecond time differences;
- persistent peer links on peer_port (port + 1000 by default) with a simple
  line protocol (no authentication: the bench runs on 127.0.0.1), flooding of
  every new record to every neighbour but the one it came from, the
  newest-timestamp rule (ties broken by comparing the AT lines, so every
  server ends on the same winner), redial with backoff and jitter, and a full
  exchange of records when a link comes up;
- WHATSAT through aiohttp (one shared session, no connection limit) to a
  legacy Nearby Search URL (--places-url or HERD_PLACES_URL); without a URL,
  a stub answers ZERO_RESULTS at once (the baseline has no offline data,
  which only flatters it);
- every input and output line logged to <log_dir>/<NAME>.log, written once
  per read and flushed once per turn of the event loop;
- one command beyond the protocol, for the bench's propagation probe when it
  is told to use it (BENCH_POLL="WHEREIS %s"): WHEREIS <client> answers the
  stored AT line, or "? ..." when there is none.

usage: asyncio_herd.py --config herd.json NAME [--uvloop] [--batched]
       [--places-url URL] [--places-key KEY] [--log-dir DIR] [--no-log]

The config is JSON: {"servers": {"A": {"port": 30001}, ...},
                     "links": [["A", "B"], ...]}
(host defaults to 127.0.0.1, peer_port to port + 1000).
Run it with Debian's /usr/bin/python3; --uvloop uses uvloop when installed.
"""
import argparse
import asyncio
import collections
import json
import os
import random
import re
import signal
import sys
import time

LOC_RE = re.compile(rb"([+-])(\d{1,2}(?:\.\d+)?)([+-])(\d{1,3}(?:\.\d+)?)")
RADIUS_RE = re.compile(rb"\d+(?:\.\d*)?|\.\d+")
MAX_LINE = 64 * 1024
READ_SIZE = 256 * 1024
HIGH_WATER = 1 << 20
NS = 1_000_000_000


def parse_time(t):
    """POSIX seconds with up to nine decimals -> integer ns, or None."""
    sec, dot, frac = t.partition(b".")
    if not sec.isdigit() or len(sec) > 12:
        return None
    if dot:
        if not frac.isdigit() or len(frac) > 9:
            return None
        return int(sec) * NS + int(frac.ljust(9, b"0"))
    return int(sec) * NS


def parse_loc(loc):
    m = LOC_RE.fullmatch(loc)
    if not m:
        return None
    lat = float(m.group(2))
    lon = float(m.group(4))
    if lat > 90 or lon > 180:
        return None
    if m.group(1) == b"-":
        lat = -lat
    if m.group(3) == b"-":
        lon = -lon
    return lat, lon


def fmt_diff(d):
    sign = "+" if d >= 0 else "-"
    d = abs(d)
    return ("%s%d.%09d" % (sign, d // NS, d % NS)).encode()


class Herd:
    def __init__(self, args, config):
        self.name = args.name
        servers = config["servers"]
        if self.name not in servers:
            sys.exit("asyncio_herd: unknown server %r; the config has: %s"
                     % (self.name, ", ".join(sorted(servers))))
        self.servers = servers
        me = servers[self.name]
        self.host = me.get("host", "127.0.0.1")
        self.port = me["port"]
        self.peer_port = me.get("peer_port", self.port + 1000)
        self.neighbours = sorted({b if a == self.name else a
                                  for a, b in config.get("links", [])
                                  if self.name in (a, b)})
        self.name_b = self.name.encode()
        self.records = {}          # client id -> (ts_ns, AT line without newline)
        self.peers = {}            # neighbour name -> StreamWriter
        self.places_url = args.places_url
        self.places_key = args.places_key or ""
        self.session = None
        self.log = None
        self.log_parts = []
        self.log_flush_scheduled = False
        if not args.no_log:
            os.makedirs(args.log_dir, exist_ok=True)
            self.log = open(os.path.join(args.log_dir, self.name + ".log"), "ab",
                            buffering=1 << 16)
        self.loop = None
        self.tasks = set()
        self.batched = args.batched

    # ------------------------------------------------------------- logging
    def logl(self, entries):
        """entries: list of bytes, each one log line with its newline."""
        if self.log is None:
            return
        self.log.write(b"".join(entries))
        if not self.log_flush_scheduled:
            self.log_flush_scheduled = True
            self.loop.call_soon(self.flush_log)

    def flush_log(self):
        self.log_flush_scheduled = False
        if self.log is not None:
            self.log.flush()

    def stamp(self):
        return ("%.6f " % time.time()).encode()

    # ------------------------------------------------------------- records
    def store(self, ts, at_line, client_id):
        """Keep the record if it is newer; True when it is (and must flood)."""
        old = self.records.get(client_id)
        if old is not None and (ts < old[0] or (ts == old[0] and at_line <= old[1])):
            return False
        self.records[client_id] = (ts, at_line)
        return True

    def flood(self, lines, skip=None):
        if not lines:
            return
        data = b"".join(lines)
        for name, w in self.peers.items():
            if name != skip and not w.is_closing():
                w.write(data)

    # ------------------------------------------------------- client protocol
    def handle_line(self, line, now, flood_out):
        """Returns the reply (bytes) or a coroutine for WHATSAT."""
        f = line.split()
        if not f:
            return None
        cmd = f[0]
        if cmd == b"IAMAT" and len(f) == 4:
            ts = parse_time(f[3])
            if ts is not None and parse_loc(f[2]) is not None:
                at = b"AT %s %s %s %s %s" % (self.name_b, fmt_diff(now - ts), f[1], f[2], f[3])
                if self.store(ts, at, f[1]):
                    flood_out.append(b"FLOOD " + at + b"\n")
                return at + b"\n"
        elif cmd == b"WHATSAT" and len(f) == 4:
            rec = self.records.get(f[1])
            radius, bound = f[2], f[3]
            if (rec is not None and RADIUS_RE.fullmatch(radius) and bound.isdigit()
                    and 0 < float(radius) <= 50 and int(bound) <= 20):
                return self.whatsat(rec[1], float(radius), int(bound))
        elif cmd == b"WHEREIS" and len(f) == 2:
            # bench-only inspection: the stored AT line (see README.md)
            rec = self.records.get(f[1])
            if rec is not None:
                return rec[1] + b"\n"
        return b"? " + line + b"\n"

    def whatsat(self, at_line, radius, bound):
        if not self.places_url:
            body = {"html_attributions": [], "results": [], "status": "ZERO_RESULTS"}
            return self.format_places(at_line, body, bound)
        return self.whatsat_http(at_line, radius, bound)

    def format_places(self, at_line, body, bound):
        if isinstance(body.get("results"), list):
            body["results"] = body["results"][:bound]
        text = json.dumps(body, indent=3)
        text = re.sub(r"\n+", "\n", text).rstrip("\n")
        return at_line + b"\n" + text.encode() + b"\n\n"

    async def whatsat_http(self, at_line, radius, bound):
        loc = parse_loc(at_line.split()[4])
        params = {"location": "%.6f,%.6f" % loc, "radius": str(int(radius * 1000))}
        if self.places_key:
            params["key"] = self.places_key
        try:
            async with self.session.get(self.places_url, params=params) as resp:
                if resp.status != 200:
                    raise RuntimeError("HTTP %d" % resp.status)
                body = await resp.json(content_type=None)
                if not isinstance(body, dict):
                    raise ValueError("not a JSON object")
        except Exception as e:  # any failure is answered in the same shape
            body = {"html_attributions": [], "results": [], "status": "UNKNOWN_ERROR",
                    "error_message": "places provider: %s" % (str(e) or type(e).__name__)}
        return self.format_places(at_line, body, bound)

    async def handle_client(self, reader, writer):
        peer = writer.get_extra_info("peername")
        who = ("%s:%d" % peer[:2]).encode() if peer else b"?"
        pending = collections.deque()   # replies (bytes or tasks), in order
        state = {"flusher": None}
        buf = b""
        try:
            while True:
                data = await reader.read(READ_SIZE)
                eof = not data
                if eof:
                    if not buf.strip():
                        break
                    lines = [buf]
                    buf = b""
                else:
                    buf += data
                    if b"\n" not in data:
                        if len(buf) > MAX_LINE:
                            writer.write(b"? line too long\n")
                            break
                        continue
                    lines = buf.split(b"\n")
                    buf = lines.pop()
                now = time.time_ns()
                out = []
                flood_out = []
                log = []
                st = self.stamp()
                for line in lines:
                    if line.endswith(b"\r"):
                        line = line[:-1]
                    r = self.handle_line(line, now, flood_out)
                    if r is None:
                        continue
                    log.append(st + b"IN " + who + b" " + line + b"\n")
                    if isinstance(r, bytes):
                        if pending:
                            pending.append(r)
                        else:
                            out.append(r)
                            log.append(st + b"OUT " + who + b" " + r.split(b"\n", 1)[0] + b"\n")
                    else:
                        if not pending and out:
                            writer.write(b"".join(out))
                            out = []
                        pending.append(asyncio.ensure_future(r))
                        if state["flusher"] is None or state["flusher"].done():
                            state["flusher"] = asyncio.ensure_future(
                                self.flush_pending(pending, writer, who))
                if out:
                    writer.write(b"".join(out))
                self.logl(log)
                self.flood(flood_out)
                if eof:
                    break
                if writer.transport.get_write_buffer_size() > HIGH_WATER:
                    await writer.drain()
            if state["flusher"] is not None:
                await state["flusher"]
        except (ConnectionError, OSError):
            pass
        finally:
            for item in pending:
                if not isinstance(item, bytes):
                    item.cancel()
            writer.close()

    async def handle_client_lines(self, reader, writer):
        """The seed design: one line per await, each reply written (and
        drained) before the next line is read; a WHATSAT is awaited in
        place, so replies stay in order."""
        peer = writer.get_extra_info("peername")
        who = ("%s:%d" % peer[:2]).encode() if peer else b"?"
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than the stream's limit
                    writer.write(b"? line too long\n")
                    break
                if not line:
                    break
                line = line.rstrip(b"\r\n")
                flood_out = []
                r = self.handle_line(line, time.time_ns(), flood_out)
                if r is None:
                    continue
                st = self.stamp()
                self.logl([st + b"IN " + who + b" " + line + b"\n"])
                if not isinstance(r, bytes):
                    r = await r
                writer.write(r)
                self.logl([st + b"OUT " + who + b" " + r.split(b"\n", 1)[0] + b"\n"])
                self.flood(flood_out)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def flush_pending(self, pending, writer, who):
        """Write the queued replies in order, waiting for each WHATSAT."""
        while pending:
            item = pending[0]
            if not isinstance(item, bytes):
                item = await item
            pending.popleft()
            if writer.is_closing():
                continue
            writer.write(item)
            self.logl([self.stamp() + b"OUT " + who + b" " + item.split(b"\n", 1)[0] + b"\n"])

    # ------------------------------------------------------------ peer links
    def peer_lines(self, lines, src):
        """Handle FLOOD lines from neighbour src; flood what is new onward."""
        fwd = []
        for line in lines:
            f = line.split()
            # FLOOD AT <server> <diff> <client> <loc> <time>
            if len(f) != 7 or f[0] != b"FLOOD" or f[1] != b"AT":
                continue
            ts = parse_time(f[6])
            if ts is None:
                continue
            at = b" ".join(f[1:])
            if self.store(ts, at, f[4]):
                fwd.append(line + b"\n")
        self.flood(fwd, skip=src)

    async def peer_session(self, name, reader, writer):
        old = self.peers.get(name)
        if old is not None and not old.is_closing():
            old.close()
        self.peers[name] = writer
        self.logl([self.stamp() + b"LINK UP " + name.encode() + b"\n"])
        # reconcile: send every record we hold
        if self.records:
            writer.write(b"".join(b"FLOOD " + at + b"\n" for _, at in self.records.values()))
        buf = b""
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                buf += data
                lines = buf.split(b"\n")
                buf = lines.pop()
                self.peer_lines(lines, name)
                if len(buf) > MAX_LINE:
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            if self.peers.get(name) is writer:
                del self.peers[name]
            writer.close()
            self.logl([self.stamp() + b"LINK DOWN " + name.encode() + b"\n"])

    async def handle_peer(self, reader, writer):
        try:
            hello = await asyncio.wait_for(reader.readline(), 5)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            writer.close()
            return
        f = hello.split()
        if len(f) != 2 or f[0] != b"HELLO" or f[1].decode(errors="replace") not in self.neighbours:
            writer.close()
            return
        await self.peer_session(f[1].decode(), reader, writer)

    async def dial(self, name):
        """Keep a link to a neighbour we dial (the one with the greater name)."""
        s = self.servers[name]
        host = s.get("host", "127.0.0.1")
        port = s.get("peer_port", s["port"] + 1000)
        delay = 0.05
        while True:
            try:
                reader, writer = await asyncio.open_connection(host, port)
                delay = 0.05
                writer.write(b"HELLO " + self.name_b + b"\n")
                await self.peer_session(name, reader, writer)
            except (ConnectionError, OSError):
                self.logl([self.stamp() + b"LINK FAIL " + name.encode() + b"\n"])
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)

    # ------------------------------------------------------------------ run
    async def main(self):
        self.loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, stop.set)
        if self.places_url:
            import aiohttp
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=10))
        handler = self.handle_client if self.batched else self.handle_client_lines
        clients = await asyncio.start_server(handler, self.host, self.port,
                                             backlog=4096, reuse_address=True,
                                             limit=READ_SIZE)
        peers = await asyncio.start_server(self.handle_peer, self.host, self.peer_port,
                                           backlog=256, reuse_address=True,
                                           limit=READ_SIZE)
        for n in self.neighbours:
            if n > self.name:
                t = asyncio.ensure_future(self.dial(n))
                self.tasks.add(t)
        self.logl([self.stamp() + b"START " + self.name_b + b"\n"])
        await stop.wait()
        clients.close()
        peers.close()
        for t in self.tasks:
            t.cancel()
        for w in list(self.peers.values()):
            w.close()
        if self.session is not None:
            await self.session.close()
        self.logl([self.stamp() + b"STOP " + self.name_b + b"\n"])
        self.flush_log()


def main():
    p = argparse.ArgumentParser(description="asyncio proxy herd (bench baseline)")
    p.add_argument("--config", required=True, help="JSON: servers and links")
    p.add_argument("name")
    p.add_argument("--uvloop", action="store_true", help="run on uvloop")
    p.add_argument("--places-url", default=os.environ.get("HERD_PLACES_URL"))
    p.add_argument("--places-key", default=os.environ.get("HERD_PLACES_KEY"))
    p.add_argument("--log-dir", default=os.environ.get("HERD_LOG_DIR", "logs"))
    p.add_argument("--no-log", action="store_true")
    p.add_argument("--batched", action="store_true",
                   help="handle a whole read of lines per wake-up (beyond the seed design)")
    args = p.parse_args()
    with open(args.config) as f:
        config = json.load(f)
    if args.uvloop:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    herd = Herd(args, config)
    asyncio.run(herd.main())


if __name__ == "__main__":
    main()
