#!/usr/bin/python3
"""The bench's driver (run it through run.sh).

Starts each system under test on 127.0.0.1 (ports 30000-32999), pinned with
taskset to the server CPUs, drives it with loadgen pinned to the load CPUs,
runs every figure --reps times, and prints one table in which every row shows
herd beside its baselines, with the ratio.  Every process it starts is killed
by PID when it ends, however it ends.
"""
import argparse
import ctypes
import json
import math
import re
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LOADGEN = os.path.join(HERE, "loadgen")
LINESERVER = os.path.join(HERE, "lineserver")
MOCK = os.path.join(HERE, "mock_places")
ASYNCIO_HERD = os.path.join(HERE, "asyncio_herd.py")
PY = "/usr/bin/python3"

FIVE = ["Riley", "Jaquez", "Juzang", "Campbell", "Bernard"]
LINKS = [("Riley", "Jaquez"), ("Riley", "Juzang"), ("Bernard", "Jaquez"),
         ("Bernard", "Juzang"), ("Bernard", "Campbell"), ("Juzang", "Campbell")]
WRITER, READER = "Riley", "Campbell"  # two hops apart: Riley - Juzang - Campbell
MESH = ["S%02d" % i for i in range(1, 21)]  # the 20-server full mesh (issue 17)
MESH_LINKS = [(a, b) for i, a in enumerate(MESH) for b in MESH[i + 1:]]
MESH50 = ["S%02d" % i for i in range(1, 51)]  # the 50-server row: 1,225 links
MESH50_LINKS = [(a, b) for i, a in enumerate(MESH50) for b in MESH50[i + 1:]]
SECRET = "herd-bench-secret-not-for-production"
# How long the growth group's floor sleeps 1 ms at a time: about as long as
# its 5M load runs.
HICCUP_S = 25
LADDER = [1000, 2000, 3000, 5000, 7000, 10000, 15000, 20000, 30000, 50000, 70000,
          100000, 150000, 200000, 300000, 500000, 700000, 1000000]
PROP_P99_LIMIT_US = 10000
# The propagation poll: any query that answers "? ..." for an unknown client
# and an AT line (plus, for WHATSAT, JSON and a blank line) for a known one.
# WHEREIS (examples/whereis for herd, built into the asyncio baseline)
# reads the store without a places lookup, so the poll costs little.
POLL = os.environ.get("BENCH_POLL", "WHEREIS %s")
POLL_LINES = 1 if not POLL.startswith("WHATSAT") else 0
HERD_SCRIPTS = [s for s in os.environ.get(
    "BENCH_HERD_SCRIPT",
    os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples/whereis/whereis.lua")
    if POLL.startswith("WHEREIS") else "").split(":") if s]

T0 = time.monotonic()
QUIET_WINDOW = 0.2   # seconds of /proc/stat per look at the machine
QUIET_BUSY = 0.15    # a CPU busier than this over the window: not quiet


def log(msg):
    sys.stderr.write("[%5.1fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stderr.flush()


def cpu_times():
    """{cpu: (busy jiffies, all jiffies)} from /proc/stat."""
    out = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu") and line[3].isdigit():
                    name, *vals = line.split()
                    vals = [int(v) for v in vals[:8]]  # user nice system idle iowait irq softirq steal
                    out[int(name[3:])] = (sum(vals) - vals[3] - vals[4], sum(vals))
    except OSError:
        pass
    return out


def parse_cpus(spec):
    """taskset's list ("0", "0,2", "1-3") as a set of CPU numbers."""
    cpus = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        if lo.strip().isdigit():
            cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


class NA(Exception):
    """A figure that cannot be measured for a system, with the reason."""


# ------------------------------------------------------------------ processes

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    # PR_SET_PDEATHSIG: a server outlives no killed bench
    _libc.prctl(1, signal.SIGKILL)


class Procs:
    def __init__(self, pidfile):
        self.procs = []
        self.pidfile = pidfile

    def _write_pidfile(self):
        if self.pidfile:
            with open(self.pidfile, "w") as f:
                f.write("".join("%d\n" % p.pid for p in self.procs if p.poll() is None))

    def start(self, cmd, env=None, stderr_path=None):
        err = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
        p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                             preexec_fn=_die_with_parent, close_fds=True)
        if stderr_path:
            err.close()
        p.stderr_path = stderr_path
        self.procs.append(p)
        self._write_pidfile()
        return p

    def stop(self, p, grace=2.0):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            except ProcessLookupError:
                pass
        if p in self.procs:
            self.procs.remove(p)
        self._write_pidfile()

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p, grace=1.0)


# ---------------------------------------------------------------------- ports

class Ports:
    """Hands out client ports in 30000-30999; peers take port + 1000 (31000-31999),
    herd's TLS client port port + 2000 (32000-32999)."""

    def __init__(self):
        self.next = 30000 + (os.getpid() % 50) * 10

    @staticmethod
    def free(port):
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
        finally:
            s.close()

    def take(self, n):
        for _ in range(400):
            if self.next + n > 31000:
                self.next = 30000
            ports = list(range(self.next, self.next + n))
            self.next += n
            if all(self.free(p) and self.free(p + 1000) and self.free(p + 2000) for p in ports):
                return ports
        raise NA("no free ports in 30000-32999")


def wait_listening(port, proc, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", port))
            return True
        except OSError:
            time.sleep(0.01)
        finally:
            s.close()
    return False


def tail(path, n=6):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-n:]) or "(no output)"
    except OSError:
        return "(no output)"


# -------------------------------------------------------------------- systems

class System:
    key = label = ""
    five = True       # can run the five-server herd
    records = True    # stores records (memory figure)
    groups = None     # figure groups it runs (None: all)
    propagation = True  # runs the propagation figures in the five-server herd

    def __init__(self, bench):
        self.bench = bench

    def unavailable(self):
        return None

    def write_config(self, ports, names, links, tmp):
        raise NotImplementedError

    def command(self, cfg, name, port, places_url):
        raise NotImplementedError

    def env(self, places_url, logdir):
        return dict(os.environ)


class Herd(System):
    key, label = "herd", "herd"
    BIN = os.environ.get("BENCH_HERD_BIN") or os.path.join(ROOT, "build", "herd")

    def unavailable(self):
        if not os.access(self.BIN, os.X_OK):
            return "%s does not exist or is not executable (make)" % os.path.relpath(self.BIN, ROOT)
        return None

    def write_config(self, ports, names, links, tmp, tls=False):
        """tls: each server also has tls_port = port + 2000 (a throwaway
        self-signed certificate: the bench's load generator does not verify)."""
        path = os.path.join(tmp, "herd.lua")
        with open(path, "w") as f:
            f.write("-- generated by tests/bench/bench.py\nreturn {\n  servers = {\n")
            for n, p in zip(names, ports):
                if tls:
                    f.write("    %s = { port = %d, tls_port = %d },\n" % (n, p, p + 2000))
                else:
                    f.write("    %s = { port = %d },\n" % (n, p))
            if tls:
                cert, key = self.bench.client_tls_files()
                f.write('  },\n  client_tls = { cert = "%s", key = "%s" },\n' % (cert, key))
                f.write("  links = {\n")
            else:
                f.write("  },\n  links = {\n")
            for a, b in links:
                f.write('    { "%s", "%s" },\n' % (a, b))
            f.write('  },\n  secret = "%s",\n  log_dir = "%s",\n'
                    '  places = { provider = "local" },\n}\n' % (SECRET, os.path.join(tmp, "logs")))
        return path

    def command(self, cfg, name, port, places_url):
        extra = []
        for s in HERD_SCRIPTS:
            extra += ["--script", os.path.abspath(s)]
        return [self.BIN, "--config", cfg] + extra + [name]

    def env(self, places_url, logdir):
        e = dict(os.environ)
        e["HERD_SECRET"] = SECRET
        e["HERD_LOG_DIR"] = logdir
        if places_url:
            e["HERD_PLACES_PROVIDER"] = "google"
            e["HERD_PLACES_URL"] = places_url
            e["HERD_PLACES_KEY"] = "bench-key"
        else:
            e.pop("HERD_PLACES_PROVIDER", None)
            e.pop("HERD_PLACES_URL", None)
        return e


class HerdTree(Herd):
    """herd with dissemination = "tree" (records along each origin's
    shortest-path tree), beside the flooding herd."""
    key, label = "herd_tree", "herd tree"
    groups = ("five", "mesh")

    def write_config(self, ports, names, links, tmp, tls=False):
        path = super().write_config(ports, names, links, tmp, tls)
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace('  secret = "%s",\n' % SECRET,
                                 '  dissemination = "tree",\n  secret = "%s",\n' % SECRET))
        return path


class HerdState(Herd):
    """herd keeping its records on disk (HERD_STATE_DIR, state_sync batch)."""
    key, label = "herd", "herd"

    def __init__(self, bench, state_dir):
        super().__init__(bench)
        self.state_dir = state_dir

    def env(self, places_url, logdir):
        e = super().env(places_url, logdir)
        e["HERD_STATE_DIR"] = self.state_dir
        return e


def parse_result(out):
    line = next((l for l in out.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        return None
    res = {}
    for kv in line.split()[1:]:
        k, _, v = kv.partition("=")
        try:
            res[k] = float(v)
        except ValueError:
            res[k] = v
    return res


class HerdInsecure(Herd):
    """herd with plaintext links (insecure = true): what TLS costs."""
    key, label = "herd_plain", "herd insecure"
    groups = ("five",)
    ladder = False  # the low-rate propagation only

    def write_config(self, ports, names, links, tmp):
        path = super().write_config(ports, names, links, tmp)
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace('  secret = "%s",\n' % SECRET, "  insecure = true,\n"))
        return path

    def env(self, places_url, logdir):
        e = super().env(places_url, logdir)
        e.pop("HERD_SECRET", None)
        return e


class Asyncio(System):
    key, label = "asyncio", "asyncio"
    extra = []

    def write_config(self, ports, names, links, tmp):
        path = os.path.join(tmp, "herd.json")
        with open(path, "w") as f:
            json.dump({"servers": {n: {"port": p} for n, p in zip(names, ports)},
                       "links": [list(l) for l in links]}, f)
        return path

    def command(self, cfg, name, port, places_url):
        cmd = [PY, ASYNCIO_HERD, "--config", cfg, name, "--log-dir",
               os.path.join(os.path.dirname(cfg), "logs")] + self.extra
        if places_url:
            cmd += ["--places-url", places_url, "--places-key", "bench-key"]
        return cmd


class Uvloop(Asyncio):
    key, label = "uvloop", "asyncio+uvloop"
    extra = ["--uvloop"]

    def unavailable(self):
        r = subprocess.run([PY, "-c", "import uvloop"], capture_output=True)
        return None if r.returncode == 0 else "uvloop is not importable (apt-get install python3-uvloop)"


class AsyncioBatched(Asyncio):
    """Beyond the seed design: a whole read of lines per wake-up, one write."""
    key, label = "asyncio_b", "asyncio batched"
    extra = ["--batched"]
    groups = ("alone", "five")
    propagation = False


class UvloopBatched(Uvloop):
    key, label = "uvloop_b", "uvloop batched"
    extra = ["--uvloop", "--batched"]
    groups = ("alone", "five")
    propagation = False


class Line(System):
    key, label = "line", "C line server"
    five = False
    records = False

    def write_config(self, ports, names, links, tmp):
        return None

    def command(self, cfg, name, port, places_url):
        return [LINESERVER, "--port", str(port)]


# --------------------------------------------------------------------- running

class Cluster:
    def __init__(self, bench, system, names, links, places_url=None, tls=False, listen_s=5.0):
        self.bench, self.system = bench, system
        self.names = names
        self.tmp = tempfile.mkdtemp(prefix="herd-bench-", dir=bench.tmp)
        os.makedirs(os.path.join(self.tmp, "logs"), exist_ok=True)
        self.ports = dict(zip(names, bench.ports.take(len(names))))
        self.cfg = system.write_config([self.ports[n] for n in names], names, links, self.tmp,
                                       **({"tls": True} if tls else {}))
        self.procs = {}
        env = system.env(places_url, os.path.join(self.tmp, "logs"))
        try:
            for n in names:
                cmd = bench.pin_server + system.command(self.cfg, n, self.ports[n], places_url)
                try:
                    self.procs[n] = bench.procs.start(
                        cmd, env=env, stderr_path=os.path.join(self.tmp, n + ".err"))
                except OSError as e:
                    raise NA("cannot run %s: %s" % (cmd[len(bench.pin_server)], e))
            for n in names:
                if not wait_listening(self.ports[n], self.procs[n], listen_s):
                    p = self.procs[n]
                    why = ("exited with %s" % p.returncode) if p.poll() is not None else \
                        "not listening after %.0f s" % listen_s
                    raise NA("%s %s did not start: %s: %s" % (system.key, n, why,
                                                              tail(p.stderr_path)))
        except BaseException:
            self.stop()
            raise

    def pid(self, name):
        return self.procs[name].pid

    def port(self, name):
        return self.ports[name]

    def alive(self):
        return all(p.poll() is None for p in self.procs.values())

    def stop(self):
        for p in self.procs.values():
            self.bench.procs.stop(p)
        shutil.rmtree(self.tmp, ignore_errors=True)


def exchange(port, data, until, timeout=2.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        buf = b""
        deadline = time.monotonic() + timeout
        while not until(buf) and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf
    finally:
        s.close()


def converge(cluster, timeout=5.0):
    """An IAMAT at the writer is seen (by the poll query) at every other server."""
    cid = "conv%d" % int(time.time() * 1000)
    deadline = time.monotonic() + timeout
    missing = [n for n in cluster.names if n != WRITER]
    try:
        exchange(cluster.port(WRITER), ("IAMAT %s +34.068930-118.445127 %.9f\n"
                                        % (cid, time.time())).encode(), lambda b: b"\n" in b)
    except OSError:
        return missing
    while missing and time.monotonic() < deadline:
        for n in list(missing):
            try:
                r = exchange(cluster.port(n), ((POLL % cid) + "\n").encode(),
                             lambda b: (b.startswith(b"? ") or POLL_LINES) and b"\n" in b
                             or b"\n\n" in b)
            except OSError:
                continue
            if r.startswith(b"AT "):
                missing.remove(n)
        time.sleep(0.02)
    return missing


# ------------------------------------------------------------------ figures

class Fig:
    def __init__(self, key, label, unit, better, target="", scale=1.0, fmt="num"):
        self.key, self.label, self.unit, self.better = key, label, unit, better
        self.target, self.scale, self.fmt = target, scale, fmt


FIGS = [
    Fig("a_n1", "IAMAT/s alone, 1 in flight x8 conns", "/s", "higher", "≥ 0.5× C line"),
    Fig("a_n16", "IAMAT/s alone, 16 in flight x8 conns", "/s", "higher", "≥ 10× asyncio, ≥ 5× uvloop"),
    Fig("a_tls16", "IAMAT/s alone over tls_port, 16 in flight x8", "/s", "higher", "printed"),
    Fig("a_one", "IAMAT/s alone, one per connection", "/s", "higher", "≥ 0.8× C line"),
    Fig("f_n1", "IAMAT/s 5-server herd, 1 in flight", "/s", "higher", "≥ 0.5× C line"),
    Fig("f_n16", "IAMAT/s 5-server herd, 16 in flight", "/s", "higher", "≥ 10× asyncio, ≥ 5× uvloop"),
    Fig("f_one", "IAMAT/s 5-server herd, one per conn", "/s", "higher", "≥ 0.8× C line"),
    Fig("p_low50", "2-hop propagation p50, low rate (µs)", "us", "lower", ""),
    Fig("p_low99", "2-hop propagation p99, low rate (µs)", "us", "lower", "< 1000 µs"),
    Fig("p_max", "highest rate with 2-hop p99 < 10 ms (ladder)", "/s", "higher", "printed"),
    Fig("p_max99", "2-hop p99 in that rate's ladder run (µs)", "us", "lower", "< 10 ms by definition"),
    Fig("p_at_a99", "2-hop p99 at asyncio's ladder rate (µs)", "us", "lower", "≥ 10× lower than asyncio"),
    Fig("p_at_u99", "2-hop p99 at uvloop's ladder rate (µs)", "us", "lower", ""),
    Fig("w_total", "1000 WHATSATs vs 200 ms mock: total ms", "ms", "lower", "≤ 300 ms"),
    Fig("w_p99", "1000 WHATSATs vs 200 ms mock: p99 ms", "ms", "lower", ""),
    Fig("w_rtt0", "WHATSAT p50 vs 0 ms mock, 1 conn (µs)", "us", "lower", ""),
    Fig("w_http0", "direct HTTP p50 to that mock (µs)", "us", "lower", ""),
    Fig("w_over", "WHATSAT overhead: WHATSAT − HTTP p50 (µs)", "us", "lower", "≤ 100 µs"),
    Fig("rtt1", "IAMAT round trip p50, 1 conn (µs)", "us", "lower", ""),
    Fig("w_local", "WHATSAT local p50, 1 conn (µs)", "us", "lower", ""),
    Fig("w_localq", "local query ≈ WHATSAT − IAMAT p50 (µs)", "us", "lower", "< 50 µs"),
    Fig("m_conn", "RSS bytes per idle connection (10k)", "B", "lower", "≤ 1024 B"),
    Fig("m_rec", "RSS bytes per stored record (1M)", "B", "lower", "≤ 200 B"),
    Fig("g_max", "loading 5M clients under a 1 ms probe: longest pause (ms)", "ms", "lower", "< 5 ms"),
    Fig("g_p99", "loading 5M clients under a 1 ms probe: p99 (ms)", "ms", "lower", ""),
    Fig("g_turn", "loading 5M clients under a 1 ms probe: the server's longest loop turn (ms)",
        "ms", "lower", "< 5 ms"),
    Fig("start", "start-up to listening (ms)", "ms", "lower", "< 20 ms"),
    Fig("s_start", "start-up with 1M stored records (ms)", "ms", "lower", "< 1000 ms"),
    Fig("s_w99", "IAMAT p99 while 1M records are written, state_dir (µs)", "us", "lower", "< 5000 µs"),
    Fig("s_w99n", "the same without state_dir (µs)", "us", "lower", "printed"),
    Fig("s_rec", "RSS bytes per stored record, state_dir (1M)", "B", "lower", "< 2× without"),
    Fig("f_hs", "peer link handshake, median of the herd's links (ms)", "ms", "lower", "printed"),
    Fig("p_cut99", "2-hop p99 at 5k/s, Riley-Juzang cut midway (µs)", "us", "lower", "tree < 50 ms"),
    Fig("m20_rx", "20-server mesh: peer records received per IAMAT", "", "lower", "tree ≤ 38"),
    Fig("m20_n16", "IAMAT/s 20-server mesh, 16 in flight x8 conns", "/s", "higher", "printed"),
    Fig("m20_drain", "20-server mesh: ms after that load until no record moves", "ms", "lower", "printed"),
    Fig("m20_all", "20-server mesh: IAMAT/s all servers absorbed", "/s", "higher", "tree ≥ 5× flood"),
    Fig("m50_up", "50-server mesh: s from start until all 1,225 links are up", "s", "lower", "printed"),
    Fig("m50_rx", "50-server mesh: peer records received per IAMAT", "", "lower", "tree ≤ 98"),
    Fig("m50_n16", "IAMAT/s 50-server mesh, 16 in flight x8 conns, 1 s", "/s", "higher", "printed"),
    Fig("m50_drain", "50-server mesh: ms after that load until no record moves", "ms", "lower", "printed"),
    Fig("m50_all", "50-server mesh: IAMAT/s all servers absorbed", "/s", "higher", "printed"),
]
# Catch-up: an empty server joins holders of N records (tests/tools/catchup.py),
# an IAMAT probe every 1 ms at every server; N = 1M (--quick: 50k), and 5M.
CATCHUP = [(1, "c1", "1 holder"), (2, "c2", "2 holders")]
for _size, _tag in ((1, ""), (5, "_5m")):
    for _h, _k, _what in CATCHUP:
        _n = "%dM catch-up, %s" % (_size, _what)
        FIGS += [
            Fig(_k + _tag + "_s", _n + ": seconds to agree", "s", "lower",
                "< 3 s" if _h == 2 and not _tag else "printed"),
            Fig(_k + _tag + "_rx", _n + ": records received (M)", "M", "lower",
                "< 1.2 M" if _h == 2 and not _tag else "printed"),
            Fig(_k + _tag + "_hp99", _n + ": probe p99 at holders (ms)", "ms", "lower", "< 5 ms"),
            Fig(_k + _tag + "_hmax", _n + ": probe max at holders (ms)", "ms", "lower", "< 20 ms"),
            Fig(_k + _tag + "_jp99", _n + ": probe p99 at joiner (ms)", "ms", "lower", "< 5 ms"),
            Fig(_k + _tag + "_jmax", _n + ": probe max at joiner (ms)", "ms", "lower", "< 20 ms"),
            Fig(_k + _tag + "_mem", _n + ": holder RSS growth (MB)", "MB", "lower", "printed"),
        ]
CATCHUP_FIGS = [f.key for f in FIGS if f.key[:2] in ("c1", "c2")]
CATCHUP_TOOL = os.path.join(ROOT, "tests", "tools", "catchup.py")
FIG = {f.key: f for f in FIGS}
GROUPS = [  # figure groups, in the order they run (the time budget cuts the last); --groups picks some
    ("start", ["start"]),
    ("alone", ["a_n1", "a_n16", "a_tls16", "a_one", "rtt1", "w_local", "w_localq"]),
    ("five", ["f_n1", "f_n16", "f_one", "p_low50", "p_low99", "p_max", "p_max99",
              "p_at_a99", "p_at_u99", "f_hs", "p_cut99"]),
    ("mesh", ["m20_rx", "m20_n16", "m20_drain", "m20_all",
              "m50_up", "m50_rx", "m50_n16", "m50_drain", "m50_all"]),
    ("whatsat", ["w_total", "w_p99", "w_rtt0", "w_http0", "w_over"]),
    ("idle", ["m_conn"]),
    ("records", ["m_rec"]),
    ("growth", ["g_max", "g_p99", "g_turn"]),
    ("state", ["s_start", "s_w99", "s_w99n", "s_rec"]),
    ("catchup", CATCHUP_FIGS),
]


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.reps = args.reps or (1 if args.quick else 3)
        self.dur = 0.5 if args.quick else 1.5        # throughput and round-trip runs
        self.warm = 0.2 if args.quick else 0.5
        self.prop_dur = 0.5 if args.quick else 2.0   # propagation: enough probes for a p99
        self.ladder_dur = 0.5 if args.quick else 1.2
        self.idle_conns = 2000 if args.quick else 10000
        self.records = 50000 if args.quick else 1000000
        self.growth_records = 300000 if args.quick else 5000000
        self.local_rounds = 300 if args.quick else 2000
        # 10,000 idle connections need as many descriptors in server and loadgen
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = self.idle_conns + 1024
        if soft < want:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
            except (ValueError, OSError):
                pass
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            if soft < want:
                self.idle_conns = max(100, soft - 1024)
                log("file descriptor limit %d: idle connections cut to %d" % (soft, self.idle_conns))
        ncpu = os.cpu_count() or 1
        if ncpu >= 2 and shutil.which("taskset") and not args.no_pin:
            self.pin_server = ["taskset", "-c", args.server_cpus]
            self.pin_load = ["taskset", "-c", args.load_cpus]
        else:
            self.pin_server, self.pin_load = [], []
        self.tmp = tempfile.mkdtemp(prefix="herd-bench-")
        self.procs = Procs(args.pidfile)
        self.ports = Ports()
        self.results = {}     # (fig, system) -> list of values
        self.by_round = {}    # (fig, system) -> {round: value}, for the ratios per round
        self.busy = {}        # (fig, system) -> [run started on a busy machine?]
        self.round = None     # the round being run (interleave)
        self.lgcpu = {}       # (fig, system) -> list of load generator CPU %
        self.na = {}          # (fig, system) -> reason
        self.note = {}        # (fig, system) -> short note for the cell
        self.floor = {}       # fig -> what the machine alone allows, per round
        self.rawlog = open(args.raw, "w") if args.raw else None
        self.mock_url = self.mock0_url = None
        self.tls_files = None
        self.mock0_port = 0
        # the order within each round
        self.systems = [Herd(self), HerdTree(self), HerdInsecure(self), Asyncio(self),
                        Uvloop(self), Line(self), AsyncioBatched(self), UvloopBatched(self)]
        self.round_rate = {}  # (system, round) -> its ladder's rate
        self.ladder_idx = {}  # system -> its last ladder step
        # waiting for a quiet machine: at most quiet_wait before a run, and
        # quiet_left in all, so a machine that stays busy costs a bounded time
        self.quiet_wait = 0.5 if args.quick else 2.0
        self.quiet_left = 15.0 if args.quick else 90.0
        self.last_quiet = None  # was the machine quiet before the last loadgen run?
        self.cpus = parse_cpus(args.server_cpus) | parse_cpus(args.load_cpus) \
            if self.pin_server else set()
        self.groups = set(g for g in args.groups.split(",") if g)

    def client_tls_files(self):
        """A self-signed certificate and key for herd's tls_port, made once."""
        if self.tls_files is None:
            d = os.path.join(self.tmp, "tls")
            os.makedirs(d, exist_ok=True)
            cert, key = os.path.join(d, "server.crt"), os.path.join(d, "server.key")
            r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                                "-subj", "/CN=herd-bench", "-days", "2"], capture_output=True)
            if r.returncode != 0:
                raise NA("openssl req failed: %s" % r.stderr.decode(errors="replace")[:200])
            self.tls_files = (cert, key)
        return self.tls_files

    # -------------------------------------------------------------- loadgen
    def loadgen(self, mode, *args, timeout=60, env=None, pin=None, before=None):
        """before: called once the machine is quiet, just before the run."""
        if self.time_left() < 0:
            raise NA("time budget of %.0f s used up (--budget)" % self.args.budget)
        cmd = (self.pin_load if pin is None else pin) + [LOADGEN, mode] + [str(a) for a in args]
        self.last_quiet = self.wait_quiet()
        if before:
            before()
        try:
            r = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
                               env=env)
        except subprocess.TimeoutExpired:
            raise NA("loadgen %s timed out after %d s" % (mode, timeout))
        out = r.stdout.decode(errors="replace")
        if self.rawlog:
            self.rawlog.write("# %s\n%s" % (" ".join(cmd), out))
            if r.stderr:
                self.rawlog.write("# stderr: %s\n" % r.stderr.decode(errors="replace").strip())
            self.rawlog.flush()
        line = next((l for l in out.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            raise NA("loadgen %s failed: %s" % (mode, (r.stderr.decode(errors="replace").strip()
                                                       or "exit %d" % r.returncode)[:200]))
        res = {}
        for kv in line.split()[1:]:
            k, _, v = kv.partition("=")
            try:
                res[k] = float(v)
            except ValueError:
                res[k] = v
        if "error" in res:
            raise NA("loadgen %s: %s %s" % (mode, res["error"], res.get("first_error", "")))
        return res

    def record(self, fig, sysk, value, lg=None, busy=True):
        """A figure's value from the last loadgen run (busy=None: a value
        derived from others, not a run of its own)."""
        self.results.setdefault((fig, sysk), []).append(value)
        if self.round is not None:
            self.by_round.setdefault((fig, sysk), {})[self.round] = value
        if lg is not None:
            self.lgcpu.setdefault((fig, sysk), []).append(lg)
        if busy is not None and self.last_quiet is not None:
            self.busy.setdefault((fig, sysk), []).append(not self.last_quiet)
        log("  %-9s %-42s %s%s%s" % (sysk, FIG[fig].label, fmt_value(value, FIG[fig]),
                                      "  (load gen cpu %.0f%%)" % lg if lg is not None else "",
                                      "  (busy machine)" if busy is not None
                                      and self.last_quiet is False else ""))

    def mark_na(self, figs, sysk, reason):
        for f in figs:
            if (f, sysk) not in self.results:
                self.na.setdefault((f, sysk), reason)
        log("  %-9s n/a: %s (%s)" % (sysk, reason, ", ".join(figs)))

    def check_ok(self, res, what):
        bad = res.get("bad", 0) or 0
        errs = res.get("errors", 0) or 0
        failed = res.get("failed", 0) or 0
        if bad or errs or failed:
            raise NA("%s: %d bad replies, %d errors, %d failed (%s)"
                     % (what, bad, errs, failed, res.get("first_error", "")))

    def time_left(self):
        return self.args.budget - (time.monotonic() - T0)

    # ---------------------------------------------------------- quiet machine
    def cpu_busy(self, window):
        """The busiest of the bench's CPUs over `window` seconds, 0..1, from
        /proc/stat (steal counts as busy: on a VM it is another guest)."""
        a = cpu_times()
        time.sleep(window)
        b = cpu_times()
        busy = 0.0
        for c in self.cpus or list(b):
            if c in a and c in b and b[c][1] > a[c][1]:
                busy = max(busy, (b[c][0] - a[c][0]) / (b[c][1] - a[c][1]))
        return busy

    def wait_quiet(self):
        """Before each measurement: wait, a bounded time, until no CPU the
        bench uses is more than QUIET_BUSY busy (our idle servers cost
        nothing, so what is left is other work, or ours still draining).
        Returns True when the machine was quiet, False when the wait ran
        out; the table counts the runs that started on a busy machine."""
        start = time.monotonic()
        limit = max(0.0, min(self.quiet_wait, self.quiet_left))
        while True:
            busy = self.cpu_busy(QUIET_WINDOW)
            if busy <= QUIET_BUSY:
                quiet = True
                break
            if time.monotonic() - start + QUIET_WINDOW > limit:
                quiet = False
                break
        self.quiet_left -= max(0.0, time.monotonic() - start - QUIET_WINDOW)
        return quiet

    # ------------------------------------------------------------- rounds
    def start_clusters(self, systems, names, links, figs, places_url=None, options=None):
        """One cluster per system, all up at once (idle ones cost nothing),
        so the rounds can go from one system to the next.  options(system):
        more keyword arguments for that system's Cluster."""
        clusters = {}
        for s in systems:
            try:
                clusters[s.key] = Cluster(self, s, names, links, places_url,
                                          **(options(s) if options else {}))
            except NA as e:
                self.mark_na(figs, s.key, str(e))
        return clusters

    def interleave(self, systems, steps, clusters=None, rounds=None):
        """Runs the rows round by round: in each round every step (a row or
        rows measured by one run) for every system in turn (herd, asyncio,
        uvloop, line server, then the next step), so a noisy minute falls
        on all the systems a ratio compares and each ratio is taken within
        a round.  steps: (figs, applies(system), run(system, cluster)).  A
        step that fails for a system is not retried in later rounds."""
        failed = set()
        for rnd in range(rounds or self.reps):
            for i, (figs, applies, run) in enumerate(steps):
                for s in systems:
                    cl = clusters.get(s.key) if clusters is not None else None
                    if (clusters is not None and cl is None) or (s.key, i) in failed \
                            or not applies(s):
                        continue
                    self.round, self.last_quiet = rnd, None
                    try:
                        run(s, cl)
                    except NA as e:
                        self.mark_na(figs, s.key, str(e))
                        failed.add((s.key, i))
                    finally:
                        self.round = None
                    if cl is not None and not cl.alive():
                        self.mark_na([f for fs, _, _ in steps for f in fs], s.key,
                                     "%s died during %s" % (s.key, FIG[figs[0]].label))
                        clusters.pop(s.key).stop()

    @staticmethod
    def stop_clusters(*dicts):
        for d in dicts:
            for cl in d.values():
                cl.stop()

    # ------------------------------------------------------------- runs
    def rate_run(self, fig, sysk, port, mode, args):
        r = self.loadgen(mode, "--port", port, "--duration", self.dur,
                         "--warmup", self.warm, *args, timeout=self.dur + 30)
        self.check_ok(r, FIG[fig].label)
        self.record(fig, sysk, r["rate"], r["lg_cpu_pct"])

    def throughput_steps(self, prefix, name, applies=lambda s: True):
        steps = []
        for fig, mode, args in (("_n1", "iamat", ["--inflight", 1]),
                                ("_n16", "iamat", ["--inflight", 16]),
                                ("_one", "oneshot", ["--conns", 32])):
            key = prefix + fig
            steps.append(([key], applies,
                           lambda s, cl, key=key, mode=mode, args=args:
                           self.rate_run(key, s.key, cl.port(name), mode, args)))
        return steps

    def prop(self, cl, rate, dur, warm, before=None):
        return self.loadgen("prop", "--port", cl.port(WRITER), "--port2", cl.port(READER),
                            "--rate", rate, "--duration", dur, "--warmup", warm,
                            "--poll-fmt", POLL, "--poll-lines", POLL_LINES,
                            timeout=dur + warm + 30, before=before)

    def sustained(self, r):
        return r.get("sustained") == 1 and r["p99_us"] < PROP_P99_LIMIT_US

    def prop_low(self, s, cl):
        r = self.prop(cl, 0, self.prop_dur, self.warm)
        if r["timeouts"] or not r["seen"]:
            raise NA("probes not seen at %s within 1 s (%d of %d lost)%s"
                     % (READER, r["timeouts"], r["probes"],
                        " " + r["first_error"] if "first_error" in r else ""))
        self.record("p_low50", s.key, r["p50_us"], r["lg_cpu_pct"])
        self.record("p_low99", s.key, r["p99_us"], r["lg_cpu_pct"])

    def floor_run(self):
        """The low-rate 2-hop figure's floor on this machine, measured in the
        same round with no server at all: a byte around a chain of three
        relay processes pinned like the servers, one at a time at the
        probes' pace (the record's path: client, Riley, Juzang, Campbell,
        client).  Only wake-ups and loopback TCP: no server can do better."""
        pin = ["--child-cpus", self.args.server_cpus] if self.pin_server else []
        try:
            r = self.loadgen("floor", "--hops", 3, "--duration", self.prop_dur,
                             "--warmup", self.warm, *pin, timeout=self.prop_dur + self.warm + 30)
        except NA as e:
            log("  machine floor: %s" % e)
            return
        self.floor.setdefault("p_low99", []).append(r["p99_us"])
        log("  machine    3-relay chain p50 %.0f µs p99 %.0f µs (no server)"
            % (r["p50_us"], r["p99_us"]))

    def ladder_step(self, sysk, cl, rate):
        """A ladder rate: sustained within three tries (a shared machine has
        noisy seconds, and one of them should not end a ladder)?  Returns
        the sustaining run's result, or None."""
        for _ in range(3):
            r = self.prop(cl, rate, self.ladder_dur, 0.3)
            ok = self.sustained(r)
            log("  %-9s ladder %7d/s: achieved %7.0f/s p99 %8.0f µs backlog %d%s"
                % (sysk, rate, r["achieved"], r["p99_us"], r["backlog"],
                   "  sustained" if ok else "  NOT sustained"))
            if ok:
                r["quiet"] = self.last_quiet
                return r
        return None

    def ladder(self, s, cl):
        """The highest ladder rate sustained with a 2-hop p99 under 10 ms, in
        this round; both rows come from that one sustaining run, so its p99
        is under 10 ms by definition.  Round 1 climbs from the bottom; later
        rounds start two steps below the last round's rate (and step down if
        that fails).  A round that sustains no rate leaves the rows n/a
        there, but the next round tries again: that is a figure, not a
        failure of the bench."""
        sysk = s.key
        start = max(0, self.ladder_idx.get(sysk, 0) - 2)
        best = None
        i = start
        while i < len(LADDER):
            if self.time_left() < min(60, self.args.budget / 10):
                self.note[("p_max", sysk)] = "(ladder cut by --budget)"
                break
            r = self.ladder_step(sysk, cl, LADDER[i])
            if r is None:
                break
            best, i = (i, r), i + 1
        if best is None:
            for i in range(start - 1, -1, -1):
                r = self.ladder_step(sysk, cl, LADDER[i])
                if r is not None:
                    best = (i, r)
                    break
        if best is None:
            self.mark_na(["p_max", "p_max99"], sysk, "not sustained even at %d/s" % LADDER[0])
            return
        i, r = best
        self.last_quiet = r["quiet"]  # the busy column counts the sustaining run
        self.ladder_idx[sysk] = i
        self.round_rate[(sysk, self.round)] = LADDER[i]
        self.record("p_max", sysk, LADDER[i], r["lg_cpu_pct"])
        self.record("p_max99", sysk, r["p99_us"], r["lg_cpu_pct"])

    def p99_at_baselines(self, s, cl):
        """The 2-hop p99 at the rate each baseline's ladder found in this
        round: herd's, and the baseline's own in a fresh run (not its
        sustaining ladder run, the best of up to three tries), one after
        the other, so both get the same single run."""
        for base, fig in (("asyncio", "p_at_a99"), ("uvloop", "p_at_u99")):
            if s.key not in ("herd", base):
                continue
            rate = self.round_rate.get((base, self.round))
            if rate is None:
                self.mark_na([fig], s.key, "%s sustained no ladder rate" % base)
                continue
            r = self.prop(cl, rate, self.ladder_dur, 0.3)
            self.record(fig, s.key, r["p99_us"], r["lg_cpu_pct"])
            self.note_rate(fig, s.key, rate)

    def note_rate(self, fig, sysk, rate):
        """The cell says at which rates (one per round) it was measured."""
        rates = self.note.get((fig, sysk), "@/s")[1:-2].split(", ")
        if short(rate) not in rates:  # no "|": the table is also Markdown
            self.note[(fig, sysk)] = "@%s/s" % ", ".join([x for x in rates if x] + [short(rate)])

    # ------------------------------------------------------------- groups
    # Each figure group is run by group_<name>(systems) with its rows
    # interleaved, or else by fig_<name>(system, key) for one system after
    # the other (the way to add a herd-only row).

    def group_start(self, systems):
        self.interleave(systems, [(["start"], lambda s: True, self.step_start)])

    def step_start(self, s, _cl):
        tmp = tempfile.mkdtemp(prefix="herd-bench-", dir=self.tmp)
        os.makedirs(os.path.join(tmp, "logs"))
        port = self.ports.take(1)[0]
        cfg = s.write_config([port], ["Riley"], [], tmp)
        cmd = s.command(cfg, "Riley", port, None)
        pin = ["--child-cpus", self.args.server_cpus] if self.pin_server else []
        env = s.env(None, os.path.join(tmp, "logs"))
        try:
            r = self.loadgen("startup", "--port", port, "--timeout-ms", 5000, *pin,
                             "--", *cmd, timeout=30, env=env)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if r["ms"] < 0:
            raise NA("did not start listening within 5 s")
        self.record("start", s.key, r["ms"])

    def group_alone(self, systems):
        figs = ["a_n1", "a_n16", "a_one", "rtt1", "w_local", "w_localq"]
        for s in systems:
            if s.key != "herd":
                self.mark_na(["w_local", "w_localq"], s.key, "no offline places data (stub)"
                             if isinstance(s, Asyncio) else "no WHATSAT")
        clusters = self.start_clusters(systems, ["Riley"], [], figs,
                                       options=lambda s: {"tls": s.key == "herd"})
        try:
            self.interleave(systems, self.throughput_steps("a", "Riley") + [
                (["a_tls16"], lambda s: s.key == "herd", self.step_tls16),
                (["rtt1"], lambda s: True, self.step_rtt1),
                (["w_local", "w_localq"], lambda s: s.key == "herd", self.step_local),
            ], clusters)
        finally:
            self.stop_clusters(clusters)

    def step_tls16(self, s, cl):
        """The same load as a_n16, inside TLS, on herd's tls_port."""
        r = self.loadgen("iamat", "--tls", "--port", cl.port("Riley") + 2000,
                         "--duration", self.dur, "--warmup", self.warm,
                         "--inflight", 16, timeout=self.dur + 30)
        self.check_ok(r, FIG["a_tls16"].label)
        self.record("a_tls16", s.key, r["rate"], r["lg_cpu_pct"])

    def step_rtt1(self, s, cl):
        r = self.loadgen("iamat", "--port", cl.port("Riley"), "--conns", 1,
                         "--duration", self.dur, "--warmup", self.warm, timeout=self.dur + 30)
        self.check_ok(r, "round trip")
        self.record("rtt1", s.key, r["p50_us"], r["lg_cpu_pct"])

    def step_local(self, s, cl):
        r = self.loadgen("whatsat", "--port", cl.port("Riley"), "--conns", 1,
                         "--rounds", self.local_rounds, timeout=60)
        self.check_ok(r, "local WHATSAT")
        if r["missing"]:
            raise NA("%d WHATSATs unanswered" % r["missing"])
        self.record("w_local", s.key, r["p50_us"], r["lg_cpu_pct"])
        rtt = self.by_round.get(("rtt1", s.key), {}).get(self.round)
        if rtt is not None:
            self.record("w_localq", s.key, max(0.0, r["p50_us"] - rtt), busy=None)

    def group_idle(self, systems):
        # one round: memory does not move with the machine's noise (the
        # runs of 2026-11-26: 761 (761–761) B, 169 (169–169) B), and the
        # time goes to the figures that do
        self.interleave(systems, [(["m_conn"], lambda s: True, self.step_idle)], rounds=1)

    def step_idle(self, s, _cl):
        # memory per idle connection: a fresh server each time
        cl = Cluster(self, s, ["Riley"], [])
        try:
            r = self.loadgen("idle", "--port", cl.port("Riley"), "--conns", self.idle_conns,
                             "--pid", cl.pid("Riley"), "--duration", 0, timeout=90)
            if r["failed"] or r["open"] < self.idle_conns:
                raise NA("only %d of %d connections opened (%s)"
                         % (r["open"], self.idle_conns, r.get("first_error", "")))
            if r["closed_by_server"]:
                raise NA("server closed %d idle connections" % r["closed_by_server"])
            self.record("m_conn", s.key, r["bytes_per_conn"], r["lg_cpu_pct"])
        finally:
            cl.stop()

    def group_records(self, systems):
        for s in systems:
            if not s.records:
                self.mark_na(["m_rec"], s.key, "stores nothing")
        systems = [s for s in systems if s.records]
        if self.time_left() < 90:
            for s in systems:
                self.mark_na(["m_rec"], s.key, "time budget (--budget) too short for the preload")
            return
        self.interleave(systems, [(["m_rec"], lambda s: True, self.step_records)], rounds=1)

    def fig_growth(self, s, sysk):
        # the longest pause while the store grows from empty to 5M records
        # (the default max_records: 4,999,999 loaded + the probe's client),
        # one run: a 5M load takes most of a minute
        figs = ["g_max", "g_p99", "g_turn"]
        if sysk != "herd":
            self.mark_na(figs, sysk, "herd only (one 5M load takes most of a minute)")
            return
        if self.time_left() < 120:
            self.mark_na(figs, sysk, "time budget (--budget) too short for the load")
            return
        try:
            self.hiccups(HICCUP_S)
            cl = Cluster(self, s, ["Riley"], [])
            try:
                r = self.loadgen("iamat", "--port", cl.port("Riley"), "--count",
                                 self.growth_records - 1, "--conns", 8, "--inflight", 64,
                                 "--probe-ms", 1, "--duration", 300, timeout=330)
                self.check_ok(r, "load under a probe")
                self.record("g_max", sysk, r["probe_max_us"] / 1000, r["lg_cpu_pct"])
                self.record("g_p99", sysk, r["probe_p99_us"] / 1000, r["lg_cpu_pct"])
                # the server's own share of the longest pause: its longest
                # loop turn (work between two polls), beside the probe's
                turn_us = self.ctl_stats(cl, "Riley").get("loop_turn_us_max")
                if turn_us is not None:
                    self.record("g_turn", sysk, turn_us / 1000, r["lg_cpu_pct"])
                log("  longest pause with %d records loaded; %d probes, p50 %.2f ms"
                    % (r["probe_max_at"], r["probes"], r["probe_p50_us"] / 1000))
            finally:
                cl.stop()
        except NA as e:
            self.mark_na(figs, sysk, str(e))

    def hiccups(self, seconds):
        """The growth figure's floor: on the servers' CPU with no server, how
        much longer than asked a 1 ms sleep took, over about as long as the
        load runs: pauses the machine makes by itself."""
        try:
            r = self.loadgen("hiccup", "--duration", seconds, timeout=seconds + 30,
                             pin=self.pin_server)
        except NA as e:
            log("  machine hiccups: %s" % e)
            return
        self.floor.setdefault("g_max", []).append(r["max_us"] / 1000)
        log("  machine    a 1 ms sleep overslept by up to %.1f ms in %d s (p99 %.2f ms, no server)"
            % (r["max_us"] / 1000, seconds, r["p99_us"] / 1000))

    def fig_catchup(self, s, sysk):
        # an empty server catching up with holders, probed at every server
        if sysk != "herd":
            self.mark_na(CATCHUP_FIGS, sysk, "herd only")
            return
        sizes = [(self.records, "")] + ([] if self.quick else [(5000000, "_5m")])
        for n, tag in sizes:
            for holders, k, _ in CATCHUP:
                figs = [f for f in CATCHUP_FIGS if f.startswith(k + tag + "_") and
                        (tag or "_5m" not in f)]
                reps = self.reps if not tag else 1
                try:
                    for _ in range(reps):
                        if self.time_left() < (60 if not tag else 180):
                            raise NA("time budget (--budget) too short")
                        base = self.ports.take(3)[0]
                        cmd = [PY, CATCHUP_TOOL, "--herd", s.BIN, "--records", str(n),
                               "--holders", str(holders), "--port", str(base),
                               "--timeout", "120"]
                        r = subprocess.run(cmd, capture_output=True, timeout=900,
                                           stdin=subprocess.DEVNULL)
                        out = r.stdout.decode(errors="replace").strip()
                        if self.rawlog:
                            self.rawlog.write("# %s\n%s\n" % (" ".join(cmd), out))
                            self.rawlog.flush()
                        if r.returncode != 0 or not out:
                            raise NA("catchup.py failed: %s" % r.stderr.decode(errors="replace")[-200:])
                        res = json.loads(out.splitlines()[-1])
                        if res["seconds"] is None or not res["agree"]:
                            raise NA("the joiner did not catch up within 120 s")
                        hs = [v for name, v in res["probes"].items() if name != "J"]
                        self.record(k + tag + "_s", sysk, res["seconds"])
                        self.record(k + tag + "_rx", sysk, res["received"] / 1e6)
                        self.record(k + tag + "_hp99", sysk, max(p["p99"] for p in hs))
                        self.record(k + tag + "_hmax", sysk, max(p["max"] for p in hs))
                        self.record(k + tag + "_jp99", sysk, res["probes"]["J"]["p99"])
                        self.record(k + tag + "_jmax", sysk, res["probes"]["J"]["max"])
                        self.record(k + tag + "_mem", sysk, max(res["growth_mb"].values()))
                except NA as e:
                    self.mark_na(figs, sysk, str(e))
                except subprocess.TimeoutExpired:
                    self.mark_na(figs, sysk, "catchup.py timed out")

    def fig_state(self, s, sysk):
        # state on disk: loading 1M records, serving while writing them, memory
        figs = ["s_start", "s_w99", "s_w99n", "s_rec"]
        if sysk != "herd":
            self.mark_na(figs, sysk, "no state on disk")
            return
        if self.time_left() < 120:
            self.mark_na(figs, sysk, "time budget (--budget) too short for the preloads")
            return
        try:
            for _ in range(self.reps):
                state = tempfile.mkdtemp(prefix="herd-bench-state-", dir=self.tmp)
                try:
                    w = self.write_under_probe(HerdState(self, state))
                    self.record("s_w99", sysk, w["probe"]["p99_us"], w["probe"]["lg_cpu_pct"])
                    self.record("s_rec", sysk, w["writer"]["bytes_per_record"])
                    self.record("s_start", sysk, self.start_with_state(s, state))
                finally:
                    shutil.rmtree(state, ignore_errors=True)
                w = self.write_under_probe(s)
                self.record("s_w99n", sysk, w["probe"]["p99_us"], w["probe"]["lg_cpu_pct"])
        except NA as e:
            self.mark_na(figs, sysk, str(e))

    def write_under_probe(self, system):
        """self.records IAMATs for new clients (8 connections, 8 in flight each)
        while one connection probes the round trip, one IAMAT at a time."""
        cl = Cluster(self, system, ["Riley"], [])
        try:
            port = cl.port("Riley")
            cmd = self.pin_load + [LOADGEN, "iamat", "--port", str(port), "--count", str(self.records),
                                   "--conns", "8", "--inflight", "8", "--pid", str(cl.pid("Riley")),
                                   "--duration", "240"]
            writer = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            try:
                probe = self.loadgen("iamat", "--port", port, "--conns", 1, "--inflight", 1,
                                     "--duration", self.dur, "--warmup", self.warm, timeout=60)
                out, _ = writer.communicate(timeout=260)
            finally:
                if writer.poll() is None:
                    writer.kill()
                    writer.wait()
            wr = parse_result(out.decode(errors="replace"))
            if self.rawlog:
                self.rawlog.write("# %s\n%s" % (" ".join(cmd), out.decode(errors="replace")))
            if wr is None:
                raise NA("the writer failed")
            self.check_ok(wr, "writer")
            self.check_ok(probe, "probe")
            if wr["seconds"] < self.dur + self.warm:
                log("  note: the writer finished in %.1f s, before the probe's %.1f s" %
                    (wr["seconds"], self.dur + self.warm))
            return {"writer": wr, "probe": probe}
        finally:
            cl.stop()

    def start_with_state(self, s, state):
        """Start-up to listening of a server whose state holds the records."""
        tmp = tempfile.mkdtemp(prefix="herd-bench-", dir=self.tmp)
        os.makedirs(os.path.join(tmp, "logs"))
        try:
            port = self.ports.take(1)[0]
            cfg = s.write_config([port], ["Riley"], [], tmp)
            cmd = s.command(cfg, "Riley", port, None)
            pin = ["--child-cpus", self.args.server_cpus] if self.pin_server else []
            env = HerdState(self, state).env(None, os.path.join(tmp, "logs"))
            r = self.loadgen("startup", "--port", port, "--timeout-ms", 10000, *pin,
                             "--", *cmd, timeout=30, env=env)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if r["ms"] < 0:
            raise NA("did not start listening within 10 s")
        return r["ms"]

    def step_records(self, s, _cl):
        # memory per stored record: a fresh server each time
        cl = Cluster(self, s, ["Riley"], [])
        try:
            r = self.loadgen("iamat", "--port", cl.port("Riley"), "--count", self.records,
                             "--conns", 8, "--inflight", 64, "--pid", cl.pid("Riley"),
                             "--duration", 240, timeout=260)
            self.check_ok(r, "preload")
            self.record("m_rec", s.key, r["bytes_per_record"], r["lg_cpu_pct"])
        finally:
            cl.stop()

    def group_whatsat(self, systems):
        figs = ["w_total", "w_p99", "w_rtt0", "w_http0", "w_over"]
        for s in systems:
            if isinstance(s, Line):
                self.mark_na(figs, s.key, "no WHATSAT")
        systems = [s for s in systems if not isinstance(s, Line)]
        slow = self.start_clusters(systems, ["Riley"], [], figs[:2], self.mock_url)
        fast = self.start_clusters(systems, ["Riley"], [], figs[2:], self.mock0_url)
        try:
            for sysk, cl in list(slow.items()):
                try:  # one uncounted burst opens the server's provider connections
                    self.check_ok(self.loadgen("whatsat", "--port", cl.port("Riley"),
                                               "--conns", 1000, timeout=60), "WHATSAT warm-up")
                except NA as e:
                    self.mark_na(figs[:2], sysk, str(e))
                    slow.pop(sysk).stop()
            self.interleave(systems, [
                (figs[:2], lambda s: s.key in slow, lambda s, _: self.step_burst(s, slow[s.key])),
                (figs[2:], lambda s: s.key in fast, lambda s, _: self.step_overhead(s, fast[s.key])),
            ])
        finally:
            self.stop_clusters(slow, fast)

    def step_burst(self, s, cl):
        r = self.loadgen("whatsat", "--port", cl.port("Riley"), "--conns", 1000, timeout=60)
        self.check_ok(r, "WHATSAT")
        if r["missing"]:
            raise NA("%d of 1000 WHATSATs unanswered" % r["missing"])
        self.record("w_total", s.key, r["total_ms"], r["lg_cpu_pct"])
        self.record("w_p99", s.key, r["p99_us"] / 1000, r["lg_cpu_pct"])

    def step_overhead(self, s, cl):
        """What a WHATSAT adds to its provider's round trip: one query at a
        time against a mock that answers at once, then the same mock's
        direct HTTP round trip from the server's CPU (where the server's
        own requests start), in the same round; the overhead is the
        difference of the two p50s, per round."""
        r = self.loadgen("whatsat", "--port", cl.port("Riley"), "--conns", 1,
                         "--rounds", self.local_rounds, timeout=60)
        self.check_ok(r, "WHATSAT vs 0 ms mock")
        if r["missing"]:
            raise NA("%d WHATSATs unanswered" % r["missing"])
        h = self.loadgen("http", "--port", self.mock0_port, "--conns", 1,
                         "--rounds", self.local_rounds, timeout=60, pin=self.pin_server)
        self.check_ok(h, "direct HTTP")
        self.record("w_rtt0", s.key, r["p50_us"], r["lg_cpu_pct"])
        self.record("w_http0", s.key, h["p50_us"], h["lg_cpu_pct"])
        self.record("w_over", s.key, r["p50_us"] - h["p50_us"], busy=None)

    def group_five(self, systems):
        five = ["f_n1", "f_n16", "f_one", "f_hs"]
        prop = ["p_low50", "p_low99", "p_max", "p_max99", "p_at_a99", "p_at_u99"]
        for s in systems:
            if not s.five:
                self.mark_na(prop + ["f_hs"], s.key, "no herd, no flooding")
            elif not s.propagation:
                self.mark_na(prop, s.key, "not selected (--groups)")
            elif not getattr(s, "ladder", True):
                self.mark_na(prop[2:], s.key, "not selected (--groups)")
        systems = [s for s in systems if s.five]
        clusters = self.start_clusters(systems, FIVE, LINKS, five + prop)
        try:
            for sysk, cl in clusters.items():
                missing = converge(cl)
                if missing:
                    log("  %s: an IAMAT at %s was not seen at %s within 5 s (links? WHATSAT?)"
                        % (sysk, WRITER, ", ".join(missing)))
                self.handshakes(sysk, cl)
            self.interleave(systems, self.throughput_steps("f", WRITER) + [
                (prop[:2], lambda s: s.propagation, self.prop_low),
                ([], lambda s: s is systems[0], lambda s, cl: self.floor_run()),
                (prop[2:4], lambda s: s.propagation and getattr(s, "ladder", True), self.ladder),
                (prop[4:], lambda s: s.key in ("herd", "asyncio", "uvloop"), self.p99_at_baselines),
                (["p_cut99"], lambda s: s.key in ("herd", "herd_tree"), self.prop_cut),
            ], clusters)
        finally:
            self.stop_clusters(clusters)

    def ctl(self, cl, name, *command):
        env = cl.system.env(None, os.path.join(cl.tmp, "logs"))
        r = subprocess.run([cl.system.BIN, "ctl", "--config", cl.cfg, name] + list(command),
                           capture_output=True, timeout=10, env=env)
        return r.stdout.decode(errors="replace")

    def prop_cut(self, s, cl):
        """The 2-hop propagation (Riley to Campbell, whose path in Riley's
        tree is Riley - Juzang - Campbell) at 5k/s while Riley's link to
        Juzang is cut a third into the run, for longer than the run: the
        tree's fallback (or the flood's other paths) carries what follows."""
        import threading
        dur = max(self.prop_dur, 1.5)
        cut_ms = int((dur + self.warm + 2) * 1000)
        said = []
        timer = threading.Timer(self.warm + dur / 3, lambda: said.append(
            self.ctl(cl, WRITER, "cut", "Juzang", str(cut_ms))))
        try:
            r = self.prop(cl, 5000, dur, self.warm, before=timer.start)
        finally:
            timer.cancel()
        if len(said) != 1 or not said[0].startswith("ok"):
            raise NA("herd ctl %s cut Juzang did not say ok: %r" % (WRITER, said))
        if not r["seen"]:
            raise NA("no probe seen at %s within 1 s (%d of %d lost)"
                     % (READER, r["timeouts"], r["probes"]))
        self.record("p_cut99", s.key, r["p99_us"], r["lg_cpu_pct"])
        self.note[("p_cut99", s.key)] = "%d of %d probes not seen in 1 s" % (r["timeouts"], r["probes"]) \
            if r["timeouts"] else self.note.get(("p_cut99", s.key), "")
        deadline = time.monotonic() + cut_ms / 1000 + 10
        while time.monotonic() < deadline:  # the next round needs the link back
            if " down " not in self.ctl(cl, WRITER, "links") and \
                    " cut " not in self.ctl(cl, WRITER, "links"):
                break
            time.sleep(0.2)

    def group_mesh(self, systems):
        """The 20-server full mesh, flood against tree: the peer records all
        servers receive per IAMAT (from herd ctl stats), the IAMAT rate at
        one server, and how long the herd takes to finish forwarding after
        the load stops (polled). Then the 50-server mesh, one system at a
        time and one short run each (1,225 TLS links on this machine's
        cores; flooding needs tens of seconds to forward half a second of
        load)."""
        figs = ["m20_rx", "m20_n16", "m20_drain", "m20_all"]
        figs50 = ["m50_up", "m50_rx", "m50_n16", "m50_drain", "m50_all"]
        for s in systems:
            if not isinstance(s, Herd):
                self.mark_na(figs + figs50, s.key, "herd only (its stats count the receptions)")
        systems = [s for s in systems if isinstance(s, Herd)]
        clusters = self.start_clusters(systems, MESH, MESH_LINKS, figs)
        try:
            for cl in clusters.values():
                self.mesh_links_up(cl)
            self.interleave(systems, [(figs, lambda s: True, self.step_mesh)], clusters)
        finally:
            self.stop_clusters(clusters)
        for s in systems:
            if self.time_left() < 150:
                self.mark_na(figs50, s.key, "time budget (--budget) too short for the 50-server mesh")
                continue
            t0 = time.monotonic()
            # 50 servers starting at once on a shared core take longer than
            # the usual 5 s to listen
            clusters = self.start_clusters([s], MESH50, MESH50_LINKS, figs50,
                                           options=lambda s: {"listen_s": 30.0})
            try:
                for cl in clusters.values():
                    try:
                        self.mesh_links_up(cl, timeout=120)
                        self.record("m50_up", s.key, time.monotonic() - t0, busy=None)
                        time.sleep(2)  # the link-up reconciliations are over
                        self.step_mesh(s, cl, "m50", dur=1.0, warm=0.5)
                    except NA as e:
                        self.mark_na(figs50, s.key, str(e))
            finally:
                self.stop_clusters(clusters)

    def ctl_stats(self, cl, name):
        env = cl.system.env(None, os.path.join(cl.tmp, "logs"))
        r = subprocess.run([cl.system.BIN, "ctl", "--config", cl.cfg, name, "stats"],
                           capture_output=True, timeout=10, env=env)
        out = {}
        for line in r.stdout.decode(errors="replace").splitlines():
            k, _, v = line.partition(" ")
            if v.isdigit():
                out[k] = int(v)
        return out

    def mesh_sum(self, cl, key):
        return sum(self.ctl_stats(cl, n).get(key, 0) for n in cl.names)

    def mesh_links_up(self, cl, timeout=30.0):
        want = len(cl.names) - 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            env = cl.system.env(None, os.path.join(cl.tmp, "logs"))
            up = 0
            for n in cl.names:
                r = subprocess.run([cl.system.BIN, "ctl", "--config", cl.cfg, n, "links"],
                                   capture_output=True, timeout=10, env=env)
                up += r.stdout.decode(errors="replace").count(" up ") == want
            if up == len(cl.names):
                return
            time.sleep(0.2)
        raise NA("the mesh's links did not all come up in %.0f s" % timeout)

    def step_mesh(self, s, cl, fig="m20", dur=None, warm=None):
        dur = self.dur if dur is None else dur
        warm = self.warm if warm is None else warm
        first = cl.names[0]
        rx0 = self.mesh_sum(cl, "peer_records_in")
        acks0 = self.ctl_stats(cl, first).get("replies_out", 0)
        r = self.loadgen("iamat", "--port", cl.port(first), "--duration", dur,
                         "--warmup", warm, "--inflight", 16, timeout=dur + 30)
        self.check_ok(r, FIG[fig + "_n16"].label)
        end = time.monotonic()
        self.record(fig + "_n16", s.key, r["rate"], r["lg_cpu_pct"])
        last, moved = None, end
        while time.monotonic() - end < 90:  # until the receptions stop moving
            rx = self.mesh_sum(cl, "peer_records_in")
            if rx != last:
                last, moved = rx, time.monotonic()
            elif time.monotonic() - moved > 0.5:
                break
            time.sleep(0.1)
        acks = self.ctl_stats(cl, first).get("replies_out", 0) - acks0
        if acks <= 0:
            raise NA("no IAMAT acknowledged")
        self.record(fig + "_rx", s.key, (last - rx0) / acks, busy=None)
        self.record(fig + "_drain", s.key, (moved - end) * 1000, busy=None)
        # What the whole herd kept up with: every IAMAT acknowledged (the
        # warm-up's too) over the load's time and the time to forward it all.
        self.record(fig + "_all", s.key, acks / (warm + dur + moved - end), busy=None)

    def handshakes(self, sysk, cl):
        """The link handshake times the herd's servers logged ("handshake
        1.5 ms" in each "link ... up" line)."""
        if not isinstance(cl.system, Herd):
            self.mark_na(["f_hs"], sysk, "no link handshake to time")
            return
        times = []
        for name in cl.names:
            try:
                with open(os.path.join(cl.tmp, "logs", name + ".log")) as f:
                    for line in f:
                        m = re.search(r"link \S+ up \(.*handshake ([0-9.]+) ms\)", line)
                        if m:
                            times.append(float(m.group(1)))
            except OSError:
                pass
        if not times:
            self.mark_na(["f_hs"], sysk, "no 'link ... up' line with a handshake time")
            return
        self.record("f_hs", sysk, statistics.median(times), busy=None)
        self.note[("f_hs", sysk)] = "max %.1f, %d links" % (max(times), len(times))

    def run(self):
        mock_port = 32000 + os.getpid() % 500
        while not Ports.free(mock_port):
            mock_port += 1
        mock = self.procs.start(self.pin_load + [MOCK, "--port", str(mock_port), "--delay-ms", "200"],
                                stderr_path=os.path.join(self.tmp, "mock.err"))
        if not wait_listening(mock_port, mock):
            raise SystemExit("bench: mock_places did not start: " + tail(mock.stderr_path))
        self.mock_url = "http://127.0.0.1:%d/maps/api/place/nearbysearch/json" % mock_port
        self.mock0_port = mock_port + 1
        while not Ports.free(self.mock0_port):
            self.mock0_port += 1
        mock0 = self.procs.start(self.pin_load + [MOCK, "--port", str(self.mock0_port), "--delay-ms", "0"],
                                 stderr_path=os.path.join(self.tmp, "mock0.err"))
        if not wait_listening(self.mock0_port, mock0):
            raise SystemExit("bench: mock_places --delay-ms 0 did not start: " + tail(mock0.stderr_path))
        self.mock0_url = "http://127.0.0.1:%d/maps/api/place/nearbysearch/json" % self.mock0_port
        only = set(self.args.only.split(",")) if self.args.only else None
        systems = []
        for s in self.systems:
            why = "not selected (--only)" if only and s.key not in only else s.unavailable()
            if why:
                self.mark_na([f.key for f in FIGS], s.key, why)
            else:
                systems.append(s)
        for group, figs in GROUPS:
            chosen = [s for s in systems if s.groups is None or group in s.groups]
            for s in systems:
                if s not in chosen or (self.groups and group not in self.groups):
                    self.mark_na(figs, s.key, "not selected (--groups)")
            if (self.groups and group not in self.groups) or not chosen:
                continue
            log("== %s: %s" % (group, ", ".join(s.label for s in chosen)))
            try:
                if hasattr(self, "group_" + group):
                    getattr(self, "group_" + group)(chosen)
                else:
                    for s in chosen:
                        self.last_quiet = None  # a row without a loadgen run has no busy flag
                        getattr(self, "fig_" + group)(s, s.key)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:  # a bench bug costs its figures, not the run
                import traceback
                traceback.print_exc()
                for s in chosen:
                    self.mark_na(figs, s.key, "bench error: %s: %s" % (type(e).__name__, e))
        self.procs.stop(mock)
        self.procs.stop(mock0)


# ------------------------------------------------------------------ the table

def short(v):
    if v >= 1e6:
        return "%.2fM" % (v / 1e6)
    if v >= 1e4:
        return "%.0fk" % (v / 1e3)
    if v >= 1e3:
        return "%.1fk" % (v / 1e3)
    return "%.0f" % v


def fmt_value(v, fig):
    if fig.unit == "/s":
        return short(v)
    if fig.unit in ("ms",) and v < 100:
        return "%.1f" % v
    if v < 10:
        return "%.2f" % v
    return "%.0f" % v


def cell(b, fig, sysk):
    vals = b.results.get((fig.key, sysk))
    if not vals:
        return None, "n/a"
    med = statistics.median(vals)
    txt = fmt_value(med, fig)
    if len(vals) > 1:
        txt += " (%s–%s)" % (fmt_value(min(vals), fig), fmt_value(max(vals), fig))
    n = b.note.get((fig.key, sysk))
    if n:
        txt += " " + n
    return med, txt


def ratio(fig, herd, other):
    """How many times better herd is (> 1 = herd better)."""
    if herd is None or other is None or herd <= 0 or other <= 0:
        return None
    return herd / other if fig.better == "higher" else other / herd


def round_ratios(b, fig, sysk):
    """herd against sysk in each round where both ran this figure."""
    h = b.by_round.get((fig.key, "herd"), {})
    o = b.by_round.get((fig.key, sysk), {})
    return [x for x in (ratio(fig, h[r], o[r]) for r in sorted(h) if r in o) if x is not None]


def ratio_cell(b, fig, sysk, herd_med, other_med, same_fig=True):
    """The median of the per-round ratios (min–max over the rounds); the
    ratio of the medians when the two were not measured in the same rounds."""
    rs = round_ratios(b, fig, sysk) if same_fig else []
    if not rs:
        r = ratio(fig, herd_med, other_med)
        return r, fmt_ratio(r)
    med = statistics.median(rs)
    txt = fmt_ratio(med)
    if len(rs) > 1:
        txt += " (%s–%s)" % (fmt_ratio(min(rs))[1:], fmt_ratio(max(rs))[1:])
    return med, txt


def fmt_ratio(r):
    if r is None:
        return ""
    return "×%.2f" % r if r < 10 else "×%.1f" % r


def target_status(fig, vals, rats):
    """vals: each system's median; rats: herd's ratio to each system."""
    h = vals.get("herd")
    if h is None:
        return ""
    a, u, l = rats.get("asyncio"), rats.get("uvloop"), rats.get("line")
    k = fig.key
    t = vals.get("herd_tree")
    if k == "m20_rx" and t is not None:
        return "met" if t <= 38 else "NOT met"
    if k == "p_cut99" and t is not None:
        return "met" if t < 50000 else "NOT met"
    if k == "m20_all" and rats.get("herd_tree"):
        return "met" if rats["herd_tree"] <= 0.2 else "NOT met"  # herd (flood) ÷ tree
    if k == "f_n16" and rats.get("herd_plain") and a is None and u is None:
        # TLS links against plaintext ones: at most 15 % slower
        return "met" if rats["herd_plain"] >= 0.85 else "NOT met"
    if k in ("a_n16", "f_n16"):
        ok = (a is None or a >= 10) and (u is None or u >= 5)
        return "" if a is None and u is None else ("met" if ok else "NOT met")
    if k in ("a_n1", "f_n1"):
        return "" if l is None else ("met" if l >= 0.5 else "NOT met")
    if k in ("a_one", "f_one"):
        return "" if l is None else ("met" if l >= 0.8 else "NOT met")
    if k == "p_low99":
        return "met" if h < 1000 else "NOT met"
    if k == "p_at_a99":
        return "" if a is None else ("met" if a >= 10 else "NOT met")
    if k == "w_total":
        return "met" if h <= 300 else "NOT met"
    if k == "w_over":
        return "met" if h <= 100 else "NOT met"
    if k == "w_localq":
        return "met" if h < 50 else "NOT met"
    if k == "m_conn":
        return "met" if h <= 1024 else "NOT met"
    if k == "m_rec":
        return "met" if h <= 200 else "NOT met"
    if k in ("g_max", "g_turn"):
        return "met" if h < 5 else "NOT met"
    if k == "start":
        return "met" if h < 20 else "NOT met"
    if k == "s_start":
        return "met" if h < 1000 else "NOT met"
    if k == "s_w99":
        return "met" if h < 5000 else "NOT met"
    if k == "c2_s":
        return "met" if h < 3 else "NOT met"
    if k == "c2_rx":
        return "met" if h < 1.2 else "NOT met"
    if k[:2] in ("c1", "c2") and k.endswith("p99"):
        return "met" if h < 5 else "NOT met"
    if k[:2] in ("c1", "c2") and k.endswith("max"):
        return "met" if h < 20 else "NOT met"
    return ""


SYSTEM_COLUMNS = ("herd_tree", "herd_plain", "asyncio", "uvloop", "asyncio_b", "uvloop_b", "line")
LINE_ALONE = {"f_n1": "a_n1", "f_n16": "a_n16", "f_one": "a_one"}  # the line server has no herd


def row_cells(b, fig):
    """Each system's median and cell text, and herd's ratio to each."""
    vals, txt, rats, rtxt = {}, {}, {}, {}
    for sk in ("herd",) + SYSTEM_COLUMNS:
        src = FIG[LINE_ALONE[fig.key]] if sk == "line" and fig.key in LINE_ALONE else fig
        v, t = cell(b, src, sk)
        if v is not None and src is not fig:
            t += " (alone)"
        vals[sk], txt[sk] = v, t
        if sk != "herd":
            rats[sk], rtxt[sk] = ratio_cell(b, fig, sk, vals["herd"], v, src is fig)
    return vals, txt, rats, rtxt


def table(b):
    hdr = ["figure", "herd"]
    labels = {s.key: s.label for s in b.systems}
    for sk in SYSTEM_COLUMNS:
        hdr += [labels[sk], "herd ÷"]
    hdr += ["target", "status", "lg cpu", "busy"]
    rows = []
    for fig in FIGS:
        vals, txt, rats, rtxt = row_cells(b, fig)
        lg = [x for sk in ("herd",) + SYSTEM_COLUMNS
              for x in b.lgcpu.get((fig.key, sk), [])]
        busy = [x for sk in ("herd",) + SYSTEM_COLUMNS for x in b.busy.get((fig.key, sk), [])]
        row = [fig.label, txt["herd"]]
        for sk in SYSTEM_COLUMNS:
            row += [txt[sk], rtxt[sk]]
        rows.append(row + [fig.target, target_status(fig, vals, rats),
                           ("%.0f%%" % max(lg)) if lg else "",
                           "%d/%d" % (sum(busy), len(busy)) if busy else ""])
    widths = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
    out = []

    def fmt_row(r):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    out.append(fmt_row(hdr))
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        out.append(fmt_row(r))
    # the reasons behind n/a cells, once each
    reasons = {}
    for (fk, sk), why in b.na.items():
        reasons.setdefault((sk, why), []).append(fk)
    notes = []
    for k in ("f_n1", "f_n16"):  # what TLS links cost (target at 16: at most 15 %)
        t, p = cell(b, FIG[k], "herd")[0], cell(b, FIG[k], "herd_plain")[0]
        rs = round_ratios(b, FIG[k], "herd_plain")
        if t and p and rs:
            cost = [100.0 * (r - 1) for r in rs]
            notes.append("TLS links vs insecure = true, %s: %s vs %s, %+.1f %% (%+.1f … %+.1f %% "
                         "over %d rounds)%s"
                         % (FIG[k].label, short(t), short(p), statistics.median(cost),
                            min(cost), max(cost), len(cost),
                            (" (target ≥ -15 %%: %s)" % ("met" if statistics.median(rs) >= 0.85
                                                          else "NOT met"))
                            if k == "f_n16" else ""))
    for k, what in (("p_low99", "%.0f µs: a byte around three relay processes pinned like the "
                                "servers, at the probes' pace"),
                    ("g_max", "%%.1f ms: the longest oversleep of a 1 ms sleep on the servers' "
                              "CPU over %d s" % HICCUP_S)):
        if b.floor.get(k):  # what no server can beat here, measured in the same run
            v = b.floor[k]
            notes.append("machine floor for \"%s\", no server: %s (median; %s over %d run(s))"
                         % (FIG[k].label, what % statistics.median(v),
                            "–".join(what.split(":")[0] % x for x in (min(v), max(v))), len(v)))
    t, p = cell(b, FIG["a_tls16"], "herd")[0], cell(b, FIG["a_n16"], "herd")[0]
    if t and p:  # what TLS costs a client, same load
        notes.append("TLS client port vs plain port, 16 in flight x8: %s vs %s, %+.1f %%"
                     % (short(t), short(p), 100.0 * (t - p) / p))
    for (sk, why), figs in sorted(reasons.items()):
        if why.startswith("not selected") or why == "no TLS client port":
            continue
        notes.append("n/a %s: %s" % (sk, why))
    return "\n".join(out), notes


# ------------------------------------------------------------------ the chart

CHART_ROWS = [("a_n1", "alone, 1 in flight"), ("a_n16", "alone, 16 in flight"),
              ("f_n1", "5 servers, 1 in flight"), ("f_n16", "5 servers, 16 in flight")]
CHART_SYSTEMS = [("herd", "#1b6ca8"), ("asyncio", "#e08a1e"), ("uvloop", "#c23b3b"),
                 ("line", "#7f7f7f")]


def chart(b, svg, title):
    """The main comparison as an SVG bar chart (gnuplot): IAMAT/s alone and
    in the five-server herd, each bar the median, its error bar the range
    over the rounds.  Returns None, or why no chart was drawn."""
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        return "gnuplot is missing (apt-get install gnuplot-nox)"
    labels = {s.key: s.label for s in b.systems}
    dat = os.path.splitext(svg)[0] + ".dat"
    lows = []
    with open(dat, "w") as f:
        f.write("# figure %s: median min max each\n" % " ".join(k for k, _ in CHART_SYSTEMS))
        for fk, name in CHART_ROWS:
            cols = []
            for sk, _ in CHART_SYSTEMS:
                vals = b.results.get((fk, sk)) if not (sk == "line" and fk.startswith("f_")) else None
                if vals:
                    lows.append(min(vals))
                    cols += ["%.0f" % statistics.median(vals), "%.0f" % min(vals), "%.0f" % max(vals)]
                else:
                    cols += ["?", "?", "?"]
            f.write('"%s" %s\n' % (name, " ".join(cols)))
    if not lows:
        return "no IAMAT/s figure to draw"
    ymin = 10 ** math.floor(math.log10(max(1.0, min(lows))))
    n = len(CHART_SYSTEMS)
    plots, labels_at = [], []
    for j, (sk, color) in enumerate(CHART_SYSTEMS):
        c = 2 + 3 * j
        plots.append("'%s' using %d:%d:%d%s title '%s' lc rgb '%s'"
                     % (dat, c, c + 1, c + 2, ":xtic(1)" if j == 0 else "", labels[sk], color))
        # the median above each bar; a clustered bar j sits at x + (j - (n-1)/2) / (n + gap)
        labels_at.append("'%s' using ($0 + (%d - %.1f) / %d.0):(column(%d) * 1.4):"
                         "(column(%d) >= 1e6 ? sprintf('%%.2fM', column(%d) / 1e6) : column(%d) >= 1e4 ? "
                         "sprintf('%%.0fk', column(%d) / 1e3) : sprintf('%%.1fk', column(%d) / 1e3)) "
                         "with labels font ',9' notitle"
                         % (dat, j, (n - 1) / 2.0, n + 2, c + 2, c, c, c, c, c))
    script = "\n".join([
        "set terminal svg size 960,540 dynamic enhanced font 'Sans,12' background rgb 'white'",
        "set output '%s'" % svg,
        "set title \"%s\" noenhanced" % title.replace('"', "'"),
        "set datafile missing '?'",
        "set style data histogram",
        "set style histogram errorbars gap 2 lw 1",
        "set style fill solid 0.85 border -1",
        "set boxwidth 0.9",
        "set logscale y",
        "set yrange [%g:*]" % ymin,
        "set format y '%.0s%c'",
        "set ylabel 'IAMAT/s (log scale)'",
        "set xlabel 'bars: median; error bars: min–max over the rounds. "
        "The C line server has no herd: alone only.' noenhanced",
        "set xrange [-0.6:%.1f]" % (len(CHART_ROWS) - 0.4),
        "set grid ytics",
        "set key top right",
        "set xtics nomirror noenhanced",
        "plot " + ", \\\n     ".join(plots + labels_at),
    ]) + "\n"
    gp = os.path.splitext(svg)[0] + ".gp"
    with open(gp, "w") as f:
        f.write(script)
    r = subprocess.run([gnuplot, gp], capture_output=True)
    if r.returncode != 0 or not os.path.exists(svg):
        return "gnuplot failed: %s" % r.stderr.decode(errors="replace").strip()[:300]
    return None


def main():
    p = argparse.ArgumentParser(description="herd bench driver")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 rep, short runs, small sizes")
    p.add_argument("--reps", type=int, default=0, help="runs per figure (3; --quick: 1)")
    p.add_argument("--only", default="",
                   help="comma list of systems: herd,herd_plain,asyncio,uvloop,asyncio_b,uvloop_b,line")
    p.add_argument("--groups", default="",
                   help="comma list of figure groups: " + ",".join(g for g, _ in GROUPS))
    p.add_argument("--server-cpus", default=os.environ.get("BENCH_SERVER_CPUS", "0"))
    p.add_argument("--load-cpus", default=os.environ.get("BENCH_LOAD_CPUS", "1"))
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--budget", type=float, default=0,
                   help="seconds after which no new run starts (default 720; --quick: 160)")
    p.add_argument("--pidfile", default="")
    p.add_argument("--raw", default="", help="file for every loadgen command and RESULT line")
    p.add_argument("--table", default="", help="also write the table here")
    p.add_argument("--chart", default="", help="draw the main comparison here (SVG, gnuplot)")
    p.add_argument("--publish", default="",
                   help="copy the chart here too, after a full run (no --quick, --only, --groups, --reps)")
    args = p.parse_args()
    args.budget = args.budget or (160 if args.quick else 720)
    for exe in (LOADGEN, LINESERVER, MOCK):
        if not os.access(exe, os.X_OK):
            sys.exit("bench: %s is missing: make -C tests/bench" % exe)

    b = Bench(args)
    load0 = loadavg()

    def on_signal(sig, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        b.run()
    except KeyboardInterrupt:
        log("interrupted")
        b.procs.stop_all()
        shutil.rmtree(b.tmp, ignore_errors=True)
        sys.exit(130)
    finally:
        b.procs.stop_all()
        shutil.rmtree(b.tmp, ignore_errors=True)

    tbl, notes = table(b)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    head = ["", "herd bench: %s, %d round(s), median (min–max over the rounds)%s" % (
        when, b.reps, ", QUICK smoke run" if b.quick else ""),
        "machine: %s, %d CPUs, %s; servers on CPU %s, load generator on CPU %s%s" % (
            cpu_model(), os.cpu_count() or 0, os_release(), args.server_cpus, args.load_cpus,
            "" if b.pin_server else " (not pinned)"),
        "each round runs every system in turn for each figure (herd, asyncio, uvloop, ...); "
        "herd ÷ X: herd against X in each round (> 1: herd better), median (min–max) over "
        "the rounds",
        "lg cpu: the load generator's highest CPU use in the row; busy: runs of the row that "
        "started with a CPU of the bench more than %.0f %% busy (/proc/stat, %.1f s) after "
        "waiting up to %.1f s for it to calm down; load average %s at the start, %s at the end"
        % (100 * QUIET_BUSY, QUIET_WINDOW, b.quiet_wait, load0, loadavg()),
        "the ladder rows come from one run: the highest rate sustained with a 2-hop p99 under "
        "10 ms, and the p99 of that run; the p99 at a baseline's ladder rate is one fresh run "
        "of herd and one of the baseline at that rate, in the same round",
        "propagation polled with \"%s\"" % POLL, ""]
    text = "\n".join(head) + "\n" + tbl + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")
    print(text)
    if args.table:
        with open(args.table, "w") as f:
            f.write(text)
    if args.chart:
        why = chart(b, args.chart, "herd bench %s%s: IAMAT/s, median of %d round(s)"
                    % (when, " (quick)" if b.quick else "", b.reps))
        if why:
            log("no chart: " + why)
        else:
            log("chart: " + os.path.relpath(args.chart, ROOT))
            full = not (args.quick or args.only or args.groups or args.reps)
            if args.publish and full:
                shutil.copyfile(args.chart, args.publish)
                log("chart copied to " + os.path.relpath(args.publish, ROOT))
    log("done in %.0f s" % (time.monotonic() - T0))


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def os_release():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"') + ", Linux " + os.uname().release
    except OSError:
        pass
    return "Linux " + os.uname().release


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
