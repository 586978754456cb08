#!/bin/sh
# Runs the busted suites and ends with the plain line "N passed, N failed".
# tools/test.sh [default|chaos]
cd "$(dirname "$0")/.." || exit 1
run="${1:-default}"
out=$(mktemp)
HERD_TEST_RUN="r$$"
export HERD_TEST_RUN
trap 'rm -f "$out"' EXIT
busted --run="$run" -o tests/helpers/summary.lua 2>&1 | tee "$out"

# Any server a failed spec left behind is stopped here, by PID.
pkill -f -- "--config /tmp/herd-test\.$HERD_TEST_RUN\." 2>/dev/null
grep -q '^[0-9]* passed, [0-9]* failed$' "$out" || echo "0 passed, 1 failed"
grep -q "^[0-9]* passed, 0 failed$" "$out" || exit 1
rm -rf /tmp/herd-test.$HERD_TEST_RUN.*
exit 0
