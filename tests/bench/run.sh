#!/bin/bash
# The herd bench: herd beside its baselines, one table.
#
#   tests/bench/run.sh            full run (3 rounds, under 15 minutes)
#   tests/bench/run.sh --quick    smoke run (1 round of short runs, under 3 minutes)
#   tests/bench/run.sh --only herd,line --reps 5 ...   (see bench.py --help)
#
# Builds the bench's C programs, then runs bench.py, which starts every system
# under test on 127.0.0.1 (ports 30000-32999), pins servers and the load
# generator to separate CPUs, and prints the table.  The raw loadgen lines, the
# table and the chart (SVG, gnuplot) are kept in build/bench/; a full run also
# copies the chart to docs/bench.svg, which the README shows.  Every process
# started is killed by PID on exit, however the run ends.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3

make -s -C "$HERE" || { echo "bench: building tests/bench failed" >&2; exit 1; }
[ -x "$PY" ] || { echo "bench: $PY (Debian's python3) is missing" >&2; exit 1; }
"$PY" -c 'import aiohttp' 2>/dev/null ||
    { echo "bench: python3-aiohttp is missing (apt-get install python3-aiohttp)" >&2; exit 1; }

OUT=$ROOT/build/bench
mkdir -p "$OUT"
STAMP=$(date +%Y%m%d-%H%M%S)
PIDFILE=$OUT/pids.$$
BENCH_PID=

kill_pids() {  # kill_pids SIGNAL PID...
    local sig=$1; shift
    for pid in "$@"; do kill "-$sig" "$pid" 2>/dev/null; done
}

cleanup() {
    trap - EXIT INT TERM
    if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
        kill -TERM "$BENCH_PID" 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$BENCH_PID" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$BENCH_PID" 2>/dev/null
    fi
    if [ -s "$PIDFILE" ]; then
        mapfile -t pids < "$PIDFILE"
        kill_pids TERM "${pids[@]}"
        sleep 0.5
        kill_pids KILL "${pids[@]}"
    fi
    rm -f "$PIDFILE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 10,000 idle connections need as many descriptors, in the server and in loadgen
ulimit -n "$(ulimit -Hn)" 2>/dev/null

# bench.py keeps within its own time budget; this is the backstop
timeout --signal=TERM --kill-after=10 900 \
    "$PY" "$HERE/bench.py" --pidfile "$PIDFILE" --raw "$OUT/raw-$STAMP.txt" \
    --table "$OUT/table-$STAMP.txt" --chart "$OUT/chart-$STAMP.svg" \
    --publish "$ROOT/docs/bench.svg" "$@" &
BENCH_PID=$!
wait "$BENCH_PID"
rc=$?
BENCH_PID=
[ $rc -eq 0 ] && echo "raw results: build/bench/raw-$STAMP.txt, table: build/bench/table-$STAMP.txt," \
    "chart: build/bench/chart-$STAMP.svg" >&2
exit $rc
