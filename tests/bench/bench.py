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
SECRET = "herd-bench-secret-not-for-production"
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


def log(msg):
    sys.stderr.write("[%5.1fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stderr.flush()


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
    """Hands out client ports in 30000-30999; peers take port + 1000 (31000-31999)."""

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
            if all(self.free(p) and self.free(p + 1000) for p in ports):
                return ports
        raise NA("no free ports in 30000-31999")


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

    def write_config(self, ports, names, links, tmp):
        path = os.path.join(tmp, "herd.lua")
        with open(path, "w") as f:
            f.write("-- generated by tests/bench/bench.py\nreturn {\n  servers = {\n")
            for n, p in zip(names, ports):
                f.write("    %s = { port = %d },\n" % (n, p))
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
    def __init__(self, bench, system, names, links, places_url=None):
        self.bench, self.system = bench, system
        self.names = names
        self.tmp = tempfile.mkdtemp(prefix="herd-bench-", dir=bench.tmp)
        os.makedirs(os.path.join(self.tmp, "logs"), exist_ok=True)
        self.ports = dict(zip(names, bench.ports.take(len(names))))
        self.cfg = system.write_config([self.ports[n] for n in names], names, links, self.tmp)
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
                if not wait_listening(self.ports[n], self.procs[n]):
                    p = self.procs[n]
                    why = ("exited with %s" % p.returncode) if p.poll() is not None else \
                        "not listening after 5 s"
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
    Fig("a_one", "IAMAT/s alone, one per connection", "/s", "higher", "≥ 0.8× C line"),
    Fig("f_n1", "IAMAT/s 5-server herd, 1 in flight", "/s", "higher", "≥ 0.5× C line"),
    Fig("f_n16", "IAMAT/s 5-server herd, 16 in flight", "/s", "higher", "≥ 10× asyncio, ≥ 5× uvloop"),
    Fig("f_one", "IAMAT/s 5-server herd, one per conn", "/s", "higher", "≥ 0.8× C line"),
    Fig("p_low50", "2-hop propagation p50, low rate (µs)", "us", "lower", ""),
    Fig("p_low99", "2-hop propagation p99, low rate (µs)", "us", "lower", "< 1000 µs"),
    Fig("p_max", "highest rate with 2-hop p99 < 10 ms", "/s", "higher", "printed"),
    Fig("p_max99", "2-hop p99 at own highest rate (µs)", "us", "lower", ""),
    Fig("p_at_a99", "2-hop p99 at asyncio's highest rate", "us", "lower", "≥ 10× lower than asyncio"),
    Fig("p_at_u99", "2-hop p99 at uvloop's highest rate", "us", "lower", ""),
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
    Fig("start", "start-up to listening (ms)", "ms", "lower", "< 20 ms"),
    Fig("f_hs", "peer link handshake, median of the herd's links (ms)", "ms", "lower", "printed"),
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
GROUPS = [  # figure groups, in the order they run; --groups picks some
    ("start", ["start"]),
    ("alone", ["a_n1", "a_n16", "a_one", "rtt1", "w_local", "w_localq"]),
    ("idle", ["m_conn"]),
    ("records", ["m_rec"]),
    ("whatsat", ["w_total", "w_p99", "w_rtt0", "w_http0", "w_over"]),
    ("five", ["f_n1", "f_n16", "f_one", "p_low50", "p_low99", "p_max", "p_max99",
              "p_at_a99", "p_at_u99", "f_hs"]),
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
        self.lgcpu = {}       # (fig, system) -> list of load generator CPU %
        self.na = {}          # (fig, system) -> reason
        self.note = {}        # (fig, system) -> short note for the cell
        self.rawlog = open(args.raw, "w") if args.raw else None
        self.mock_url = self.mock0_url = None
        self.mock0_port = 0
        # herd first: if the time budget runs out, a baseline's figures go
        self.systems = [Herd(self), HerdInsecure(self), Line(self), Asyncio(self), Uvloop(self),
                        AsyncioBatched(self), UvloopBatched(self)]
        self.max_rate = {}
        self.groups = set(g for g in args.groups.split(",") if g)

    # -------------------------------------------------------------- loadgen
    def loadgen(self, mode, *args, timeout=60, env=None, pin=None):
        if self.time_left() < 0:
            raise NA("time budget of %.0f s used up (--budget)" % self.args.budget)
        cmd = (self.pin_load if pin is None else pin) + [LOADGEN, mode] + [str(a) for a in args]
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

    def record(self, fig, sysk, value, lg=None, show=None):
        self.results.setdefault((fig, sysk), []).append(value)
        if lg is not None:
            self.lgcpu.setdefault((fig, sysk), []).append(lg)
        log("  %-9s %-42s %s%s" % (sysk, FIG[fig].label, fmt_value(value, FIG[fig]),
                                    "  (load gen cpu %.0f%%)" % lg if lg is not None else ""))

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

    # ------------------------------------------------------------- figures
    def throughput(self, sysk, cl, name, prefix):
        port = cl.port(name)
        for fig, mode, args in (("_n1", "iamat", ["--inflight", 1]),
                                ("_n16", "iamat", ["--inflight", 16]),
                                ("_one", "oneshot", ["--conns", 32])):
            key = prefix + fig
            try:
                for _ in range(self.reps):
                    r = self.loadgen(mode, "--port", port, "--duration", self.dur,
                                     "--warmup", self.warm, *args, timeout=self.dur + 30)
                    self.check_ok(r, FIG[key].label)
                    self.record(key, sysk, r["rate"], r["lg_cpu_pct"])
            except NA as e:
                self.mark_na([key], sysk, str(e))
            if not cl.alive():
                raise NA("%s died during %s" % (sysk, FIG[key].label))

    def prop(self, cl, rate, dur, warm):
        return self.loadgen("prop", "--port", cl.port(WRITER), "--port2", cl.port(READER),
                            "--rate", rate, "--duration", dur, "--warmup", warm,
                            "--poll-fmt", POLL, "--poll-lines", POLL_LINES,
                            timeout=dur + warm + 30)

    def sustained(self, r):
        return r.get("sustained") == 1 and r["p99_us"] < PROP_P99_LIMIT_US

    def propagation(self, sysk, cl):
        # low rate: probes only
        try:
            for _ in range(self.reps):
                r = self.prop(cl, 0, self.prop_dur, self.warm)
                if r["timeouts"] or not r["seen"]:
                    raise NA("probes not seen at %s within 1 s (%d of %d lost)%s"
                             % (READER, r["timeouts"], r["probes"],
                                " " + r["first_error"] if "first_error" in r else ""))
                self.record("p_low50", sysk, r["p50_us"], r["lg_cpu_pct"])
                self.record("p_low99", sysk, r["p99_us"], r["lg_cpu_pct"])
        except NA as e:
            self.mark_na(["p_low50", "p_low99", "p_max", "p_max99", "p_at_a99", "p_at_u99"], sysk, str(e))
            return
        if not getattr(cl.system, "ladder", True):
            self.mark_na(["p_max", "p_max99", "p_at_a99", "p_at_u99"], sysk, "not selected (--groups)")
            return
        # ladder: the highest offered rate that is sustained with p99 < 10 ms
        best = None
        for rate in LADDER:
            if self.time_left() < 60:
                log("  time budget: ladder stops at %d/s" % rate)
                break
            ok = False
            for attempt in range(3):  # a noisy machine gets two more chances
                r = self.prop(cl, rate, self.ladder_dur, 0.3)
                ok = self.sustained(r)
                log("  %-9s ladder %7d/s: achieved %7.0f/s p99 %8.0f µs backlog %d%s"
                    % (sysk, rate, r["achieved"], r["p99_us"], r["backlog"],
                       "  sustained" if ok else "  NOT sustained"))
                if ok:
                    break
            if not ok:
                break
            best = rate
        if best is None:
            self.mark_na(["p_max", "p_max99"], sysk, "not sustained even at %d/s" % LADDER[0])
        else:
            self.max_rate[sysk] = best
            for _ in range(self.reps):
                r = self.prop(cl, best, self.prop_dur, self.warm)
                self.record("p_max", sysk, r["achieved"], r["lg_cpu_pct"])
                self.record("p_max99", sysk, r["p99_us"], r["lg_cpu_pct"])
        if sysk == "asyncio" and best:
            self.record_p99_at(sysk, cl, "p_at_a99", best, own=True)
        if sysk == "uvloop" and best:
            self.record_p99_at(sysk, cl, "p_at_u99", best, own=True)

    def record_p99_at(self, sysk, cl, fig, rate, own=False):
        if own:  # the baseline's own runs at its highest rate are the reference
            for v, lg in zip(self.results.get(("p_max99", sysk), []),
                             self.lgcpu.get(("p_max99", sysk), [])):
                self.record(fig, sysk, v, lg)
            self.note[(fig, sysk)] = "@%s/s" % short(rate)
            return
        for _ in range(self.reps):
            r = self.prop(cl, rate, self.prop_dur, self.warm)
            self.record(fig, sysk, r["p99_us"], r["lg_cpu_pct"])
        self.note[(fig, sysk)] = "@%s/s" % short(rate)

    def run_system(self, s):
        sysk = s.key
        why = s.unavailable()
        if why:
            self.mark_na([f.key for f in FIGS], sysk, why)
            return
        log("== %s" % s.label)

        for group, figs in GROUPS:
            if self.groups and group not in self.groups:
                self.mark_na(figs, sysk, "not selected (--groups)")
                continue
            if s.groups is not None and group not in s.groups:
                self.mark_na(figs, sysk, "not selected (--groups)")
                continue
            try:
                getattr(self, "fig_" + group)(s, sysk)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:  # a bench bug costs its figures, not the run
                import traceback
                traceback.print_exc()
                self.mark_na(figs, sysk, "bench error: %s: %s" % (type(e).__name__, e))

    def fig_start(self, s, sysk):
        # start-up to listening
        try:
            for _ in range(self.reps):
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
                self.record("start", sysk, r["ms"])
        except NA as e:
            self.mark_na(["start"], sysk, str(e))

    def fig_alone(self, s, sysk):
        # alone: throughput and round trips
        try:
            cl = Cluster(self, s, ["Riley"], [])
            try:
                self.throughput(sysk, cl, "Riley", "a")
                try:
                    for _ in range(self.reps):
                        r = self.loadgen("iamat", "--port", cl.port("Riley"), "--conns", 1,
                                         "--duration", self.dur, "--warmup", self.warm,
                                         timeout=self.dur + 30)
                        self.check_ok(r, "round trip")
                        self.record("rtt1", sysk, r["p50_us"], r["lg_cpu_pct"])
                except NA as e:
                    self.mark_na(["rtt1"], sysk, str(e))
                if sysk == "herd":
                    try:
                        for _ in range(self.reps):
                            r = self.loadgen("whatsat", "--port", cl.port("Riley"), "--conns", 1,
                                             "--rounds", self.local_rounds, timeout=60)
                            self.check_ok(r, "local WHATSAT")
                            if r["missing"]:
                                raise NA("%d WHATSATs unanswered" % r["missing"])
                            self.record("w_local", sysk, r["p50_us"], r["lg_cpu_pct"])
                        w = statistics.median(self.results[("w_local", sysk)])
                        i = statistics.median(self.results.get(("rtt1", sysk), [0]))
                        self.record("w_localq", sysk, max(0.0, w - i))
                    except NA as e:
                        self.mark_na(["w_local", "w_localq"], sysk, str(e))
                elif sysk in ("asyncio", "uvloop", "asyncio_b", "uvloop_b"):
                    self.mark_na(["w_local", "w_localq"], sysk, "no offline places data (stub)")
                else:
                    self.mark_na(["w_local", "w_localq"], sysk, "no WHATSAT")
            finally:
                cl.stop()
        except NA as e:
            self.mark_na(["a_n1", "a_n16", "a_one", "rtt1", "w_local", "w_localq"], sysk, str(e))

    def fig_idle(self, s, sysk):
        # memory per idle connection: a fresh server each time
        try:
            for _ in range(self.reps):
                cl = Cluster(self, s, ["Riley"], [])
                try:
                    r = self.loadgen("idle", "--port", cl.port("Riley"), "--conns", self.idle_conns,
                                     "--pid", cl.pid("Riley"), "--duration", 0, timeout=90)
                    if r["failed"] or r["open"] < self.idle_conns:
                        raise NA("only %d of %d connections opened (%s)"
                                 % (r["open"], self.idle_conns, r.get("first_error", "")))
                    if r["closed_by_server"]:
                        raise NA("server closed %d idle connections" % r["closed_by_server"])
                    self.record("m_conn", sysk, r["bytes_per_conn"], r["lg_cpu_pct"])
                finally:
                    cl.stop()
        except NA as e:
            self.mark_na(["m_conn"], sysk, str(e))

    def fig_records(self, s, sysk):
        # memory per stored record
        if s.records and self.time_left() < 90:
            self.mark_na(["m_rec"], sysk, "time budget (--budget) too short for the preload")
        elif s.records:
            try:
                for _ in range(self.reps):
                    cl = Cluster(self, s, ["Riley"], [])
                    try:
                        r = self.loadgen("iamat", "--port", cl.port("Riley"), "--count", self.records,
                                         "--conns", 8, "--inflight", 64, "--pid", cl.pid("Riley"),
                                         "--duration", 240, timeout=260)
                        self.check_ok(r, "preload")
                        self.record("m_rec", sysk, r["bytes_per_record"], r["lg_cpu_pct"])
                    finally:
                        cl.stop()
            except NA as e:
                self.mark_na(["m_rec"], sysk, str(e))
        else:
            self.mark_na(["m_rec"], sysk, "stores nothing")

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

    def fig_whatsat(self, s, sysk):
        # WHATSAT against the mock provider
        if sysk == "line":
            self.mark_na(["w_total", "w_p99", "w_rtt0", "w_http0", "w_over"], sysk, "no WHATSAT")
            return
        try:
            cl = Cluster(self, s, ["Riley"], [], places_url=self.mock_url)
            try:
                # one burst to open the provider connections, not counted
                r = self.loadgen("whatsat", "--port", cl.port("Riley"), "--conns", 1000, timeout=60)
                self.check_ok(r, "WHATSAT warm-up")
                for _ in range(self.reps):
                    r = self.loadgen("whatsat", "--port", cl.port("Riley"), "--conns", 1000,
                                     timeout=60)
                    self.check_ok(r, "WHATSAT")
                    if r["missing"]:
                        raise NA("%d of 1000 WHATSATs unanswered" % r["missing"])
                    self.record("w_total", sysk, r["total_ms"], r["lg_cpu_pct"])
                    self.record("w_p99", sysk, r["p99_us"] / 1000, r["lg_cpu_pct"])
            finally:
                cl.stop()
        except NA as e:
            self.mark_na(["w_total", "w_p99"], sysk, str(e))
        self.whatsat_overhead(s, sysk)

    def whatsat_overhead(self, s, sysk):
        """What a WHATSAT adds to its provider's round trip: one query at a
        time against a mock that answers at once, then the same mock's
        direct HTTP round trip from the server's CPU (where the server's
        own requests start), in the same round; the overhead is the
        difference of the two p50s, per round."""
        figs = ["w_rtt0", "w_http0", "w_over"]
        try:
            cl = Cluster(self, s, ["Riley"], [], places_url=self.mock0_url)
            try:
                for _ in range(self.reps):
                    r = self.loadgen("whatsat", "--port", cl.port("Riley"), "--conns", 1,
                                     "--rounds", self.local_rounds, timeout=60)
                    self.check_ok(r, "WHATSAT vs 0 ms mock")
                    if r["missing"]:
                        raise NA("%d WHATSATs unanswered" % r["missing"])
                    h = self.loadgen("http", "--port", self.mock0_port, "--conns", 1,
                                     "--rounds", self.local_rounds, timeout=60,
                                     pin=self.pin_server)
                    self.check_ok(h, "direct HTTP")
                    self.record("w_rtt0", sysk, r["p50_us"], r["lg_cpu_pct"])
                    self.record("w_http0", sysk, h["p50_us"], h["lg_cpu_pct"])
                    self.record("w_over", sysk, r["p50_us"] - h["p50_us"])
            finally:
                cl.stop()
        except NA as e:
            self.mark_na(figs, sysk, str(e))

    def fig_five(self, s, sysk):
        # the five-server herd
        five = ["f_n1", "f_n16", "f_one", "p_low50", "p_low99", "p_max", "p_max99", "p_at_a99", "p_at_u99"]
        if not s.five:
            self.mark_na([f for f in five if not f.startswith("f_")], sysk, "no herd, no flooding")
            return
        try:
            cl = Cluster(self, s, FIVE, LINKS)
            try:
                missing = converge(cl)
                if missing:
                    log("  %s: an IAMAT at %s was not seen at %s within 5 s (links? WHATSAT?)"
                        % (sysk, WRITER, ", ".join(missing)))
                self.handshakes(sysk, cl)
                self.throughput(sysk, cl, WRITER, "f")
                if s.propagation:
                    self.propagation(sysk, cl)
                else:
                    self.mark_na([f for f in five if not f.startswith("f_")], sysk,
                                 "not selected (--groups)")
            finally:
                cl.stop()
        except NA as e:
            self.mark_na(five, sysk, str(e))

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
        self.record("f_hs", sysk, statistics.median(times))
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
        for s in self.systems:
            if only and s.key not in only:
                self.mark_na([f.key for f in FIGS], s.key, "not selected (--only)")
                continue
            self.run_system(s)
        if (not only or "herd" in only) and (not self.groups or "five" in self.groups):
            self.herd_at_baseline_rates()
        self.procs.stop(mock)
        self.procs.stop(mock0)

    def herd_at_baseline_rates(self):
        """herd's 2-hop p99 at the highest rate each baseline sustained."""
        s = self.systems[0]
        todo = [(b, f) for b, f in (("asyncio", "p_at_a99"), ("uvloop", "p_at_u99"))
                if ("p_low99", "herd") in self.results]
        for base, fig in todo:
            if base not in self.max_rate:
                self.mark_na([fig], "herd", "%s has no highest rate" % base)
        todo = [(b, f) for b, f in todo if b in self.max_rate]
        if not todo:
            return
        log("== herd at the baselines' highest rates")
        try:
            cl = Cluster(self, s, FIVE, LINKS)
            try:
                converge(cl)
                for base, fig in todo:
                    self.record_p99_at("herd", cl, fig, self.max_rate[base])
            finally:
                cl.stop()
        except NA as e:
            self.mark_na([f for _, f in todo], "herd", str(e))


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


def fmt_ratio(r):
    if r is None:
        return ""
    return "×%.2f" % r if r < 10 else "×%.1f" % r


def target_status(b, fig, vals):
    h = vals.get("herd")
    if h is None:
        return ""
    a, u, l = vals.get("asyncio"), vals.get("uvloop"), vals.get("line")
    k = fig.key
    if k == "f_n16" and vals.get("herd_plain") and a is None and u is None:
        # TLS links against plaintext ones: at most 15 % slower
        return "met" if h >= 0.85 * vals["herd_plain"] else "NOT met"
    if k in ("a_n16", "f_n16"):
        ok = (a is None or h >= 10 * a) and (u is None or h >= 5 * u)
        return "" if a is None and u is None else ("met" if ok else "NOT met")
    if k in ("a_n1", "f_n1"):
        return "" if l is None else ("met" if h >= 0.5 * l else "NOT met")
    if k in ("a_one", "f_one"):
        return "" if l is None else ("met" if h >= 0.8 * l else "NOT met")
    if k == "p_low99":
        return "met" if h < 1000 else "NOT met"
    if k == "p_at_a99":
        return "" if a is None else ("met" if h * 10 <= a else "NOT met")
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
    if k == "start":
        return "met" if h < 20 else "NOT met"
    if k == "c2_s":
        return "met" if h < 3 else "NOT met"
    if k == "c2_rx":
        return "met" if h < 1.2 else "NOT met"
    if k[:2] in ("c1", "c2") and k.endswith("p99"):
        return "met" if h < 5 else "NOT met"
    if k[:2] in ("c1", "c2") and k.endswith("max"):
        return "met" if h < 20 else "NOT met"
    return ""


SYSTEM_COLUMNS = ("herd_plain", "asyncio", "uvloop", "asyncio_b", "uvloop_b", "line")


def table(b):
    line_alone = {"f_n1": "a_n1", "f_n16": "a_n16", "f_one": "a_one"}
    hdr = ["figure", "herd"]
    labels = {s.key: s.label for s in b.systems}
    for sk in SYSTEM_COLUMNS:
        hdr += [labels[sk], "herd ÷"]
    hdr += ["target", "status", "lg cpu"]
    rows = []
    for fig in FIGS:
        vals, txt = {}, {}
        for sk in ("herd",) + SYSTEM_COLUMNS:
            src = fig
            if sk == "line" and fig.key in line_alone:
                src = FIG[line_alone[fig.key]]
            v, t = cell(b, src, sk)
            if v is not None and src is not fig:
                t += " (alone)"
            vals[sk], txt[sk] = v, t
        lg = [x for sk in ("herd",) + SYSTEM_COLUMNS
              for x in b.lgcpu.get((fig.key, sk), [])]
        row = [fig.label, txt["herd"]]
        for sk in SYSTEM_COLUMNS:
            row += [txt[sk], fmt_ratio(ratio(fig, vals["herd"], vals[sk]))]
        rows.append(row + [fig.target, target_status(b, fig, vals),
                           ("%.0f%%" % max(lg)) if lg else ""])
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
        if t and p:
            notes.append("TLS links vs insecure = true, %s: %s vs %s, %+.1f %%%s"
                         % (FIG[k].label, short(t), short(p), 100.0 * (t - p) / p,
                            (" (target ≥ -15 %%: %s)" % ("met" if t >= 0.85 * p else "NOT met"))
                            if k == "f_n16" else ""))
    for (sk, why), figs in sorted(reasons.items()):
        if why.startswith("not selected"):
            continue
        notes.append("n/a %s: %s" % (sk, why))
    return "\n".join(out), notes


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
    p.add_argument("--budget", type=float, default=540,
                   help="seconds after which no new run starts (default 540)")
    p.add_argument("--pidfile", default="")
    p.add_argument("--raw", default="", help="file for every loadgen command and RESULT line")
    p.add_argument("--table", default="", help="also write the table here")
    args = p.parse_args()
    for exe in (LOADGEN, LINESERVER, MOCK):
        if not os.access(exe, os.X_OK):
            sys.exit("bench: %s is missing: make -C tests/bench" % exe)

    b = Bench(args)

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
    head = ["", "herd bench: %s, %d run(s) per figure, median (min–max)%s" % (
        time.strftime("%Y-%m-%d %H:%M"), b.reps, ", QUICK smoke run" if b.quick else ""),
        "machine: %s, %d CPUs; servers on CPU %s, load generator on CPU %s%s" % (
            cpu_model(), os.cpu_count() or 0, args.server_cpus, args.load_cpus,
            "" if b.pin_server else " (not pinned)"),
        "herd ÷ X: how many times better herd is than X (> 1: herd better); "
        "lg cpu: the load generator's highest CPU use in that row",
        "propagation polled with \"%s\"" % POLL, ""]
    text = "\n".join(head) + "\n" + tbl + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")
    print(text)
    if args.table:
        with open(args.table, "w") as f:
            f.write(text)
    log("done in %.0f s" % (time.monotonic() - T0))


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
