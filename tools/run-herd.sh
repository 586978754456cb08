#!/bin/sh
# Runs every server of a herd config in the foreground; Ctrl-C stops them
# all. Usage: tools/run-herd.sh CONFIG
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
wait
