#!/usr/bin/python3
"""Catch-up measurement: an empty server joins holders of N records.

    catchup.py --herd build/herd --records 1000000 --holders 2 --port 29200

Starts the holders (H1, and H2 linked to it when --holders 2), loads N
records into H1 (pipelined IAMATs) until every holder has them, then starts
the joiner J, linked to every holder, with an IAMAT probe every --probe-ms
at every server (one process each, so no probe waits behind another). It
reports, as one JSON line on stdout:

  seconds       from J's start until J holds N records
  received      records J received from peers (peer_records_in)
  stale         ... of which were not newer than its own
  probes        per server: count, p50/p99/max round trip (ms), failures
  growth_mb     per holder: RSS growth over the catch-up (MiB, peak)
  agree         whether J and H1 answer the same AT line for sampled clients

Servers listen on --port.. (clients) and +1000 (peers), pinned to no CPU.
Every process started is stopped by PID when the tool ends, however it
ends (servers also die with it: PR_SET_PDEATHSIG). Under tools/test.sh
(HERD_TEST_RUN set) its folder is /tmp/herd-test.<run>.*, kept for the
suite's sanitizer check and cleanup.
"""
import argparse
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL)


def ctl(sock_path, command, timeout=5.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall((command + "\n").encode())
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
        return out.decode(errors="replace")
    finally:
        s.close()


def stats(sock_path):
    t = {}
    try:
        for line in ctl(sock_path, "stats").splitlines():
            k, _, v = line.partition(" ")
            if v.strip().isdigit():
                t[k] = int(v)
    except OSError:
        pass
    return t


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def cpu_s(pid):
    """User + system CPU seconds of a process."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.01)
    return False


def load(port, n, prefix="c"):
    """Pipelined IAMATs for n clients; returns when every reply is read."""
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.settimeout(120)
    got = [0]

    def reader():
        buf = b""
        while got[0] < n:
            b = s.recv(1 << 20)
            if not b:
                break
            got[0] += b.count(b"\n")

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    chunk = 20000
    for base in range(0, n, chunk):
        lines = []
        for i in range(base, min(n, base + chunk)):
            lines.append("IAMAT %s%d +%d.5-%d.25 %d.%09d\n" % (
                prefix, i, i % 90, i % 180, 1600000000 + i, i))
        s.sendall("".join(lines).encode())
    t.join(180)
    s.close()
    return got[0]


def probe_main(args):
    """One probe: an IAMAT every --probe-ms until stdin closes; prints JSON."""
    s = socket.create_connection(("127.0.0.1", args.probe), 5)
    s.settimeout(5)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    rtt, fails, i = [], 0, 0
    buf = b""
    while not stop.is_set():
        i += 1
        line = "IAMAT probe-%d +1+1 %.9f\n" % (args.probe, time.time())
        t0 = time.perf_counter()
        try:
            s.sendall(line.encode())
            while b"\n" not in buf:
                b = s.recv(4096)
                if not b:
                    raise OSError("closed")
                buf += b
            _, _, buf = buf.partition(b"\n")
            rtt.append((time.perf_counter() - t0) * 1000.0)
        except OSError:
            fails += 1
            s.close()
            try:
                s = socket.create_connection(("127.0.0.1", args.probe), 5)
                s.settimeout(5)
            except OSError:
                pass
            buf = b""
        time.sleep(args.probe_ms / 1000.0)
    print(json.dumps({"rtt": rtt, "failures": fails}))


def summary(rtt, fails):
    if not rtt:
        return {"count": 0, "failures": fails}
    r = sorted(rtt)

    def pct(p):
        return round(r[min(len(r) - 1, int(len(r) * p))], 3)

    return {"count": len(r), "p50": pct(0.50), "p99": pct(0.99),
            "max": round(r[-1], 3), "failures": fails}


class Run:
    def __init__(self, args):
        self.args = args
        # Under tools/test.sh, where it stops leftovers and reads the
        # servers' stderr for sanitizer reports (and removes the folder).
        self.run_id = os.environ.get("HERD_TEST_RUN")
        self.tmp = tempfile.mkdtemp(prefix="herd-test.%s." % self.run_id if self.run_id
                                    else "herd-catchup-", dir="/tmp")
        self.procs = {}
        self.holders = ["H1"] if args.holders == 1 else ["H1", "H2"]
        self.names = self.holders + ["J"]
        self.port = {n: args.port + i for i, n in enumerate(self.names)}

    def sock(self, name):
        return os.path.join(self.tmp, "logs", name + ".sock")

    def write_config(self):
        links = ['{ "H1", "J" }']
        if len(self.holders) == 2:
            links += ['{ "H1", "H2" }', '{ "H2", "J" }']
        servers = ", ".join('%s = { port = %d }' % (n, self.port[n]) for n in self.names)
        cfg = os.path.join(self.tmp, "herd.lua")
        with open(cfg, "w") as f:
            f.write("return {\n  servers = { %s },\n  links = { %s },\n"
                    "  secret = 'catchup-secret',\n  log_io = false,\n"
                    "  log_dir = %r,\n  links_redial = { min_ms = 50, max_ms = 200 },\n"
                    "  limits = { max_records = %d },\n}\n"
                    % (servers, ", ".join(links), os.path.join(self.tmp, "logs"),
                       max(5000000, self.args.records + 100000)))
        return cfg

    def start(self, name, cfg):
        err = open(os.path.join(self.tmp, name + ".err"), "w")
        p = subprocess.Popen([self.args.herd, "--config", cfg, name], stdout=err,
                             stderr=err, preexec_fn=_die_with_parent)
        self.procs[name] = p
        if not wait_port(self.port[name]):
            raise SystemExit("catchup: %s did not start" % name)
        return p

    def stop_all(self):
        for p in list(self.procs.values()):
            if p.poll() is None:
                p.terminate()
        for p in list(self.procs.values()):
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def run(self):
        a = self.args
        cfg = self.write_config()
        for h in self.holders:
            self.start(h, cfg)
        t = time.monotonic()
        got = load(self.port["H1"], a.records)
        if got != a.records:
            raise SystemExit("catchup: the load got %d replies of %d" % (got, a.records))
        deadline = time.monotonic() + 120
        while any(stats(self.sock(h)).get("records", 0) < a.records for h in self.holders):
            if time.monotonic() > deadline:
                raise SystemExit("catchup: the holders never agreed")
            time.sleep(0.05)
        load_s = time.monotonic() - t
        time.sleep(a.settle)  # the holders' own reconciliation goes idle

        base_rss = {h: rss_kib(self.procs[h].pid) for h in self.holders}
        base_cpu = {h: cpu_s(self.procs[h].pid) for h in self.holders}
        probes = {}
        for n in self.names:
            if n == "J":
                continue
            probes[n] = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--probe", str(self.port[n]),
                 "--probe-ms", str(a.probe_ms)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, preexec_fn=_die_with_parent)
            self.procs["probe-" + n] = probes[n]
        time.sleep(0.3)
        t0 = time.monotonic()
        self.start("J", cfg)
        probes["J"] = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--probe", str(self.port["J"]),
             "--probe-ms", str(a.probe_ms)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, preexec_fn=_die_with_parent)
        self.procs["probe-J"] = probes["J"]
        peak = dict(base_rss)
        seconds, cpu = None, {}
        deadline = t0 + a.timeout
        while time.monotonic() < deadline:
            for h in self.holders:
                peak[h] = max(peak[h], rss_kib(self.procs[h].pid))
            # the N clients and one probe id per server
            if stats(self.sock("J")).get("records", 0) >= a.records + len(self.names):
                seconds = time.monotonic() - t0
                cpu = {h: round(cpu_s(self.procs[h].pid) - base_cpu[h], 2) for h in self.holders}
                cpu["J"] = round(cpu_s(self.procs["J"].pid), 2)
                break
            time.sleep(0.01)
        time.sleep(a.after)  # the probes keep going a little after
        for h in self.holders:
            peak[h] = max(peak[h], rss_kib(self.procs[h].pid))
        results = {}
        for n, p in probes.items():
            out, _ = p.communicate(b"", timeout=30)
            r = json.loads(out.decode() or '{"rtt": [], "failures": -1}')
            results[n] = summary(r["rtt"], r["failures"])
        js = stats(self.sock("J"))
        sample = [0, a.records // 3, a.records // 2, a.records - 1]
        agree = all(ctl(self.sock("J"), "record c%d" % i) == ctl(self.sock("H1"), "record c%d" % i)
                    for i in sample)
        hs = {h: stats(self.sock(h)) for h in self.holders}
        return {
            "records": a.records, "holders": len(self.holders),
            "load_seconds": round(load_s, 2),
            "seconds": round(seconds, 3) if seconds is not None else None,
            "joiner_records": js.get("records", 0),
            "received": js.get("peer_records_in", 0),
            "stale": js.get("peer_records_stale", 0),
            "sync_bytes": sum(s.get("sync_bytes_out", 0) for s in hs.values()),
            "sync_bytes_by": dict({h: s.get("sync_bytes_out", 0) for h, s in hs.items()},
                                  J=js.get("sync_bytes_out", 0)),
            "records_out_by": {h: s.get("peer_records_out", 0) for h, s in hs.items()},
            "probes": results,
            "growth_mb": {h: round((peak[h] - base_rss[h]) / 1024.0, 1) for h in self.holders},
            "agree": agree,
            "cpu_seconds": cpu,
        }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--herd", default="build/herd")
    p.add_argument("--records", type=int, default=1000000)
    p.add_argument("--holders", type=int, choices=(1, 2), default=1)
    p.add_argument("--port", type=int, default=29200)
    p.add_argument("--probe-ms", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--after", type=float, default=0.5)
    p.add_argument("--probe", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.probe:
        probe_main(args)
        return
    run = Run(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        print(json.dumps(run.run()))
    finally:
        run.stop_all()
        if not run.run_id:
            subprocess.call(["rm", "-rf", run.tmp])


if __name__ == "__main__":
    main()
