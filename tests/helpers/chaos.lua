-- helpers.chaos: what the chaos specs (tests/chaos) share: memory samples
-- of a server process, a background well-behaved client (the checker), an
-- authenticated fake peer speaking the wire format of core/peer.c, and
-- socket pumps that send and read at once so a test never deadlocks on a
-- server that stops reading.
local herd = require "helpers.herd"
local socket = require "socket"

local M = {}

M.ROOT = os.getenv("PWD") or "."
M.LUA = "lua5.4"

-- Shell helpers are the herd helper's.
local sh, quote = herd.sh, herd.quote
M.sh, M.quote = sh, quote

-- ---- processes ------------------------------------------------------------

-- Resident set of a process in KiB (VmRSS), or nil when it is gone.
function M.rss_kb(pid)
  local s = herd.read_file("/proc/" .. pid .. "/status")
  return s and tonumber(s:match("VmRSS:%s*(%d+)"))
end

-- Tracks the largest RSS seen: s:sample() now and then, s.max, s.base.
function M.sampler(pid)
  local s = { pid = pid, base = M.rss_kb(pid) or 0 }
  s.max = s.base
  function s:sample()
    local v = M.rss_kb(self.pid)
    if v and v > self.max then self.max = v end
    return v
  end
  return s
end

-- Watches a process's RSS every 20 ms from a background process, so that
-- peaks between the test's own samples are seen too. w:max() is the
-- largest RSS in KiB so far; w:stop() ends the watcher and returns it.
function M.rss_watch(pid)
  local out = os.tmpname()
  local code = ([[
    local socket = require "socket"
    local max = 0
    while true do
      local f = io.open("/proc/%d/status")
      if not f then break end
      local kb = tonumber(f:read("a"):match("VmRSS:%%s*(%%d+)") or "")
      f:close()
      if not kb then break end
      if kb > max then
        max = kb
        local o = io.open("%s.tmp", "w") o:write(max) o:close()
        os.rename("%s.tmp", "%s")
      end
      local s = io.open("%s.stop") if s then s:close() break end
      socket.sleep(0.02)
    end]]):format(pid, out, out, out, out)
  local w = { out = out }
  w.pid = M.spawn("exec " .. M.LUA .. " -e " .. quote(code))
  function w:max() return tonumber(herd.read_file(self.out) or "") or 0 end
  function w:stop()
    local f = io.open(self.out .. ".stop", "w")
    f:close()
    M.stop_pid(self.pid)
    local m = self:max()
    os.remove(self.out)
    os.remove(self.out .. ".stop")
    return m
  end
  return w
end

-- True when bin was built with AddressSanitizer (its RSS includes shadow
-- memory, and valgrind cannot run it).
function M.sanitized(bin)
  return sh("grep -c __asan_init " .. quote(bin) .. " 2>/dev/null"):match("^[1-9]") ~= nil
end

-- Starts a shell command in the background; returns its pid.
function M.spawn(cmd)
  local pidfile = os.tmpname()
  os.execute(string.format("(%s) >/dev/null 2>&1 & echo $! >%s", cmd, pidfile))
  local pid = tonumber(herd.read_file(pidfile) or "")
  os.remove(pidfile)
  return pid
end

-- Stops a process this test started (by pid only), waits for it to go.
function M.stop_pid(pid, sig)
  if not pid then return end
  os.execute("kill -" .. (sig or "TERM") .. " " .. pid .. " 2>/dev/null")
  for _ = 1, 200 do
    if not herd.alive(pid) then return true end
    socket.sleep(0.01)
  end
  os.execute("kill -KILL " .. pid .. " 2>/dev/null")
  return false
end

-- ---- the checker: a well-behaved client in its own process ----------------

-- Starts tests/chaos/tools/checker.lua against host:port. Returns a handle;
-- handle:stop() ends it and returns its summary as a table (ok, wrong,
-- errors, max_ms, p99_ms, samples = { wrong answers }).
function M.checker(opts)
  local out = os.tmpname()
  local cmd = string.format("exec %s %s/tests/chaos/tools/checker.lua %s %d %s %s %d %s",
    M.LUA, M.ROOT, opts.host or "127.0.0.1", opts.port, opts.name, out,
    opts.seconds or 600, quote(opts.prefix or "chk"))
  if opts.netns then cmd = "exec ip netns exec " .. opts.netns .. " " .. cmd:gsub("^exec ", "") end
  local h = { out = out, pid = M.spawn(cmd) }
  function h:stop()
    local f = io.open(self.out .. ".stop", "w")
    if f then f:close() end
    local deadline = socket.gettime() + 10
    local text
    repeat
      text = herd.read_file(self.out)
      if text and text:find("\nend\n", 1, true) then break end
      socket.sleep(0.05)
    until socket.gettime() > deadline
    M.stop_pid(self.pid)
    os.remove(self.out .. ".stop")
    os.remove(self.out)
    local r = { samples = {} }
    for k, v in (text or ""):gmatch("([%w_]+)=(%S+)") do r[k] = tonumber(v) or v end
    for l in (text or ""):gmatch("wrong: ([^\n]*)") do r.samples[#r.samples + 1] = l end
    r.ok, r.wrong, r.errors = r.ok or 0, r.wrong or -1, r.errors or -1
    return r
  end
  -- Progress so far (the checker rewrites its file every half second).
  function h:peek()
    local r = {}
    for k, v in (herd.read_file(self.out) or ""):gmatch("([%w_]+)=(%S+)") do r[k] = tonumber(v) or v end
    return r
  end
  return h
end

-- ---- sockets --------------------------------------------------------------

-- A TCP connection with a timeout, optionally from a given local address.
function M.connect(host, port, timeout, from)
  local c = socket.tcp()
  c:settimeout(timeout or 5)
  if from then
    local ok, err = c:bind(from, 0)
    if not ok then c:close() return nil, err end
  end
  local ok, err = c:connect(host, port)
  if not ok then c:close() return nil, err end
  return c
end

-- Sends data while reading whatever comes back, so that a server which
-- stops reading until its replies are read cannot deadlock the test.
-- Stops after want_lines reply lines (if given) or when the peer closes or
-- nothing moves for `quiet` seconds. Returns received text, sent bytes,
-- and "closed" / "quiet" / "done".
function M.pump(c, data, opts)
  opts = opts or {}
  local quiet = opts.quiet or 3
  local got, sent = {}, 0
  local lines = 0
  c:settimeout(0)
  local last = socket.gettime()
  local why
  while true do
    local progressed = false
    if sent < #data then
      local i, err, partial = c:send(data, sent + 1, math.min(#data, sent + 65536))
      local n = i or partial
      if n and n > sent then
        sent = n
        progressed = true
      elseif err == "closed" then
        why = "closed"
        break
      end
    end
    local s, err, partial = c:receive(65536)
    local chunk = s or partial
    if chunk and #chunk > 0 then
      got[#got + 1] = chunk
      progressed = true
      if opts.want_lines then
        local _, k = chunk:gsub("\n", "")
        lines = lines + k
        if lines >= opts.want_lines then why = "done" break end
      end
    end
    if err == "closed" then why = "closed" break end
    if progressed then
      last = socket.gettime()
    else
      if sent >= #data and not opts.want_lines and opts.until_closed ~= true then
        if socket.gettime() - last > (opts.settle or 0.3) then why = "done" break end
      end
      if socket.gettime() - last > quiet then why = "quiet" break end
      socket.select({ c }, sent < #data and { c } or nil, 0.05)
    end
  end
  c:settimeout(5)
  return table.concat(got), sent, why
end

-- Random bytes (all 256 values, newlines included).
function M.random_bytes(n, rng)
  rng = rng or math.random
  local parts = {}
  for i = 1, n // 4 do
    parts[i] = string.pack("<I4", rng(0, 0xffffffff))
  end
  return table.concat(parts) .. string.rep("\0", n % 4)
end

-- ---- the peer wire format (see the header of core/peer.c) ------------------

M.F = { HELLO = 1, RECORD = 3, SUMS = 4, LEAF = 5, PING = 6, PONG = 7, TREEKEY = 8,
  SUMS_REQ = 9, DONE = 10, SYNCREC = 11, HINT = 12, BUSY = 13 }
M.VERSION = 2

function M.frame(ftype, payload, version)
  payload = payload or ""
  return string.pack(">I4BB", #payload + 2, version or M.VERSION, ftype) .. payload
end

-- Reads one frame: type, payload; or nil, err.
function M.read_frame(c)
  local head, err = c:receive(6)
  if not head then return nil, err end
  local n, _, ftype = string.unpack(">I4BB", head)
  local payload = ""
  if n > 2 then
    payload, err = c:receive(n - 2)
    if not payload then return nil, err end
  end
  return ftype, payload
end

function M.record_payload(client, sec, nsec, line)
  return string.pack(">i8i4s2s2", sec, nsec, client, line)
end

-- The test tool that speaks TLS to a peer port (tests/tools/peer_tls.c),
-- built beside the herd binary.
M.peer_tls = herd.bin:gsub("herd$", "peer_tls")

-- Runs peer_tls with args (a string of quoted options) and returns its
-- output line and whether it exited 0.
function M.peer_tls_check(args)
  local out = sh(quote(M.peer_tls) .. " --check " .. args .. " 2>&1")
  return out:gsub("%s+$", ""), out:match("^ok") ~= nil
end

-- Connects to a server's peer port as the neighbour `me` over TLS with the
-- herd secret (through a peer_tls relay, which exits when the socket
-- closes). Returns a plain socket carrying the link's frames, or nil and
-- why. opts.args: more peer_tls options (certificates, a wrong key...).
function M.peer_login(host, port, me, them, secret, opts)
  opts = opts or {}
  local out = os.tmpname()
  local args = opts.args or ("--secret " .. quote(secret))
  os.execute(quote(M.peer_tls) .. " --host " .. quote(host) .. " --connect " .. port
    .. " --me " .. quote(me) .. " --them " .. quote(them) .. " " .. args
    .. " --listen 0 > " .. out .. " 2>&1 &")
  local lport
  local deadline = socket.gettime() + 3
  repeat
    local text = herd.read_file(out) or ""
    lport = tonumber(text:match("ready (%d+)"))
    if not lport then socket.sleep(0.01) end
  until lport or socket.gettime() > deadline
  os.remove(out)
  if not lport then return nil, "peer_tls did not start" end
  local c, err = M.connect("127.0.0.1", lport, 3)
  if not c then return nil, err end
  return c
end

-- True once the server has closed c (reads and discards what it sends).
function M.closed_by_peer(c, timeout)
  c:settimeout(0.05)
  local deadline = socket.gettime() + (timeout or 3)
  repeat
    local _, err = c:receive(65536)
    if err == "closed" then return true end
  until socket.gettime() > deadline
  return false
end

-- ---- records --------------------------------------------------------------

-- A server's records as a sorted, newline-joined dump (for comparisons).
function M.dump(ctl)
  local lines = {}
  for l in (ctl or ""):gmatch("[^\n]+") do lines[#lines + 1] = l end
  table.sort(lines)
  return table.concat(lines, "\n"), #lines
end

-- "sec.frac" -> integer nanoseconds.
function M.ns(t)
  local s, f = t:match("^(%d+)%.?(%d*)$")
  if not s then return nil end
  f = (f .. "000000000"):sub(1, 9)
  return tonumber(s) * 1000000000 + tonumber(f)
end

-- ---- writers: clients that count acknowledged IAMATs ----------------------

-- Starts tests/chaos/tools/writer.lua. servers: { { name=, host=, port= } }.
-- handle:finish() waits for it (or stops it) and returns
-- { written=, acked=, failed=, newest = { client = timestamp } }.
function M.writer(servers, seconds, seed, opts)
  opts = opts or {}
  local parts = {}
  for _, s in ipairs(servers) do
    parts[#parts + 1] = ("%s=%s:%d"):format(s.name, s.host or "127.0.0.1", s.port)
  end
  local out = os.tmpname()
  local cmd = ("exec %s %s/tests/chaos/tools/writer.lua %s %s %s %d %d"):format(M.LUA, M.ROOT,
    table.concat(parts, ","), seconds, out, seed, opts.clients or 150)
  local w = { out = out, pid = M.spawn(cmd) }
  function w:finish(timeout, stop)
    if stop then
      local f = io.open(self.out .. ".stop", "w")
      f:close()
    end
    local text
    local deadline = socket.gettime() + (timeout or 30)
    repeat
      text = herd.read_file(self.out)
      if text and text:find("\nend\n$") then break end
      socket.sleep(0.05)
    until socket.gettime() > deadline
    M.stop_pid(self.pid)
    os.remove(self.out)
    os.remove(self.out .. ".stop")
    local r = { newest = {} }
    for k, v in (text or ""):gmatch("([%w_]+)=(%d+)") do r[k] = tonumber(v) end
    for client, t in (text or ""):gmatch("acked (%S+) (%S+)") do r.newest[client] = t end
    return r
  end
  return w
end

-- Acknowledged IAMATs missing from a records dump: those whose client has
-- no record, or only an older one. newest: client -> timestamp.
function M.lost(dump, newest)
  local stored = {}
  for line in dump:gmatch("[^\n]+") do
    local client, t = line:match("^AT %S+ %S+ (%S+) %S+ (%S+)$")
    if client then stored[client] = t end
  end
  local lost, samples = 0, {}
  for client, t in pairs(newest) do
    local s = stored[client]
    if not s or M.ns(s) < M.ns(t) then
      lost = lost + 1
      if #samples < 5 then samples[#samples + 1] = client .. " " .. t .. " (stored " .. tostring(s) .. ")" end
    end
  end
  return lost, samples
end

-- ---- certificates -----------------------------------------------------------

-- Makes a throwaway CA in dir (ca.crt, ca.key) and, for each name, a key
-- and a certificate for it (dir/NAME.crt, dir/NAME.key, the name as DNS
-- subject alternative name) signed by that CA, with the openssl command
-- line. Nothing private is ever committed: specs make them at run time.
function M.make_certs(dir, names, ca)
  ca = ca or "ca"
  local q = quote
  local function run(cmd)
    local rc, out = herd.command(cmd)
    assert(rc == 0, cmd .. ": " .. out)
  end
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
  run("openssl req -x509 " .. ec .. " -keyout " .. q(dir .. "/" .. ca .. ".key")
    .. " -out " .. q(dir .. "/" .. ca .. ".crt") .. " -subj /CN=herd-test-" .. ca .. " -days 2")
  for _, name in ipairs(names) do
    local base = dir .. "/" .. name
    local f = assert(io.open(base .. ".ext", "w"))
    f:write("subjectAltName=DNS:" .. name .. "\n")
    f:close()
    run("openssl req " .. ec .. " -keyout " .. q(base .. ".key") .. " -out " .. q(base .. ".csr")
      .. " -subj /CN=" .. name)
    run("openssl x509 -req -in " .. q(base .. ".csr") .. " -CA " .. q(dir .. "/" .. ca .. ".crt")
      .. " -CAkey " .. q(dir .. "/" .. ca .. ".key") .. " -CAcreateserial -days 2 -out "
      .. q(base .. ".crt") .. " -extfile " .. q(base .. ".ext"))
  end
end

return M
