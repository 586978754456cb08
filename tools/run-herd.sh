#!/bin/sh
# Runs every server of a herd config in the foreground; Ctrl-C stops them
# all, and so does SIGINT or SIGTERM sent to this script, to `make run`
# alone, or the end of its parent. Usage: tools/run-herd.sh CONFIG
cd "$(dirname "$0")/.." || exit 1
config="${1:-examples/cs131/herd.lua}"
bin="${HERD_BIN:-build/herd}"
names=$(lua5.4 -e "
  local c = dofile('$config')
  local n = {}
  for name, s in pairs(c.servers) do n[#n + 1] = name end
  table.sort(n)
  for _, name in ipairs(n) do
    local s = c.servers[name]
    print(name .. ' ' .. (s.host or '127.0.0.1') .. ' ' .. s.port .. ' ' .. (s.peer_port or s.port + 1000))
  end") || exit 1
"$bin" --config "$config" --check || exit 1
pids=""
stop() {
  trap - INT TERM
  echo
  echo "stopping the herd"
  [ -n "$pids" ] && kill $pids 2>/dev/null
  wait
  exit 0
}
trap stop INT TERM
echo "$names" | while read -r name host port peer; do
  printf '  %-9s clients %s:%s   peers %s:%s\n' "$name" "$host" "$port" "$host" "$peer"
done
for name in $(echo "$names" | cut -d' ' -f1); do
  "$bin" --config "$config" "$name" &
  pids="$pids $!"
done
first=$(echo "$names" | sort -k3 -n | head -1)
set -- $first
echo
echo "Logs go to the config's log_dir. Try, in another terminal:"
echo "  printf 'IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 %s\\\\n' \"\$(date +%s.%N)\" | nc -q1 $2 $3"
echo "  printf 'WHATSAT kiwi.cs.ucla.edu 10 5\\\\n' | nc -q1 $2 $3"
echo "Ctrl-C stops every server."
# GNU make passes SIGTERM on to its children but not SIGINT: it waits for
# them inside its handler, with SIGINT blocked. So `kill -INT` of `make
# run` is seen here as a make parent blocking SIGINT (bit 2 of SigBlk).
parent=$PPID
parent_is_make=""
case "$(cat /proc/$parent/comm 2>/dev/null)" in make | gmake) parent_is_make=1 ;; esac
parent_interrupted() {
  [ -n "$parent_is_make" ] || return 1
  blk=$(sed -n 's/^SigBlk:[[:space:]]*//p' /proc/$parent/status 2>/dev/null)
  [ -n "$blk" ] && [ $((0x$blk & 2)) -ne 0 ]
}
ppid() { read -r _ _ _ p _ </proc/$$/stat && echo "$p"; }
while [ "$(ppid)" = "$parent" ] && ! parent_interrupted; do
  alive=""
  for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ -n "$alive" ] || exit 0
  sleep 0.2 &
  wait $! # a trapped signal ends the wait at once
done
stop
