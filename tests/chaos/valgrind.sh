#!/bin/sh
# The valgrind session alone (tests/chaos/valgrind_spec.lua): two linked
# servers under memcheck --leak-check=full --error-exitcode=1 through
# IAMATs, WHATSATs, a link cut, a reload, a restart and SIGTERM.
#   tests/chaos/valgrind.sh [BINARY]     (default build/herd; not ASan)
cd "$(dirname "$0")/../.." || exit 1
[ -n "$1" ] && HERD_VALGRIND_BIN=$1 && export HERD_VALGRIND_BIN
HERD_TEST_RUN="vg$$"
export HERD_TEST_RUN
busted --run=chaos tests/chaos/valgrind_spec.lua
rc=$?
pkill -f -- "--config /tmp/herd-test\.$HERD_TEST_RUN\." 2>/dev/null
[ "$rc" = 0 ] && rm -rf /tmp/herd-test.$HERD_TEST_RUN.*
exit $rc
