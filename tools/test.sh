#!/bin/sh
# Runs the busted suites and ends with the plain line "N passed, N failed".
# tools/test.sh [default|chaos|state|tree]
# Servers a failed spec left behind are stopped, and sanitizer reports from
# any server (a SANITIZE=1 build) count as failures.
cd "$(dirname "$0")/.." || exit 1
run="${1:-default}"
out=$(mktemp)
HERD_TEST_RUN="r$$"
export HERD_TEST_RUN
trap 'rm -f "$out"' EXIT
busted --run="$run" -o tests/helpers/summary.lua 2>&1 | tee "$out" | grep -v '^[0-9]* passed, [0-9]* failed$'
pkill -f -- "--config /tmp/herd-test\.$HERD_TEST_RUN\." 2>/dev/null
summary=$(grep '^[0-9]* passed, [0-9]* failed$' "$out" | tail -1)
passed=${summary%% passed*}
failed=${summary#*, }
failed=${failed%% failed}
[ -n "$summary" ] || { passed=0; failed=1; echo "busted did not finish"; }
reports=$(grep -l "ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:" \
  /tmp/herd-test.$HERD_TEST_RUN.*/*.err 2>/dev/null)
if [ -n "$reports" ]; then
  echo "sanitizer reports from the servers:"
  for f in $reports; do echo "== $f"; grep -A25 "ERROR: \|runtime error:" "$f" | head -60; done
  failed=$((failed + $(echo "$reports" | wc -l)))
fi
[ "$failed" = 0 ] && rm -rf /tmp/herd-test.$HERD_TEST_RUN.*
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
