-- Hostile clients and a hostile peer against one live server, while a
-- well-behaved client (tests/chaos/tools/checker.lua, its own process)
-- keeps checking its answers byte for byte. SPEC section 7: no input
-- crashes the server, makes it allocate without bound or stop serving
-- others; each case gets a bounded reaction; no stored location is lost.
-- Each case prints its figures; the last checks the server's peak RSS
-- (sampled every 20 ms by a watcher process) against a stated bound.
-- Ports: clients 27001-27002, peers 28001-28002.
local herd = require "helpers.herd"
local chaos = require "helpers.chaos"
local socket = require "socket"

local PORT, PEER = 27001, 28001
local LIMITS = {
  max_line = 8192,                     -- the default
  max_connections = 2600,
  max_connections_per_address = 2000,
  first_line_ms = 3000,
  idle_ms = 6000,
  stall_ms = 2000,
  peer_timeout_ms = 3000,
}
-- The bound on the server's resident memory during the whole file. A plain
-- build idles near 10 MiB; an ASan build carries shadow memory and
-- quarantine, so it gets a larger absolute bound.
local RSS_BOUND_MB = 128
local RSS_BOUND_SAN_MB = 768
local SAMPLE = chaos.ROOT .. "/data/places-sample.bin"

local function lines_of(text)
  local t = {}
  for l in text:gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

local function mb(kb) return kb / 1024 end

describe("hostile clients against a live server #chaos", function()
  local h, chk, watch, pid
  local sanitized = chaos.sanitized(herd.bin)
  local inputs = {} -- what each case threw at the server, for the summary

  lazy_setup(function()
    local places = { provider = "local" }
    if herd.read_file(SAMPLE) then places.data = SAMPLE end
    h = herd.start({
      servers = { H = { port = PORT, peer_port = PEER }, P = { port = 27002, peer_port = 28002 } },
      links = { { "H", "P" } },
      limits = LIMITS,
      places = places,
      links_redial = { min_ms = 1000, max_ms = 5000 },
    }, { only = { "H" }, env = { HERD_PLACES_PROVIDER = "local" } })
    pid = h:pid("H")
    watch = chaos.rss_watch(pid)
    chk = chaos.checker({ port = PORT, name = "H", seconds = 180 })
    assert.truthy(herd.eventually(function() return (chk:peek().ok or 0) > 20 end, 5),
      "the checker got no answers")
  end)

  after_each(function()
    if chk then print(("  (checker so far: %s answers, worst latency %s ms)"):format(chk:peek().ok, chk:peek().max_ms)) end
  end)

  lazy_teardown(function()
    if watch then watch:stop() end
    if chk and chk.pid then chaos.stop_pid(chk.pid) end
    if h then h:stop() end
  end)

  it("answers 1 MiB lines with a bounded '? ' reply and reads on", function()
    local big = string.rep("x", 1 << 20)
    local replies = 0
    for k = 1, 6 do
      local c = assert(chaos.connect("127.0.0.1", PORT))
      local tail = "IAMAT long" .. k .. " +1+1 100.5"
      local got, sent, why = chaos.pump(c, big .. "\n" .. tail .. "\n", { want_lines = 2, quiet = 5 })
      c:close()
      local l = lines_of(got)
      assert.equal(why, "done", "replies: " .. #got .. " bytes")
      assert.equal("? " .. string.rep("x", 256), l[1])
      assert.matches("^AT H [+-]%d+%.%d+ long" .. k .. " %+1%+1 100%.5$", l[2])
      replies = replies + 2
    end
    -- One 16 MiB line without any newline, then a valid line.
    local c = assert(chaos.connect("127.0.0.1", PORT))
    local got = chaos.pump(c, string.rep("y", 16 << 20) .. "\nIAMAT huge +1+1 101.5\n",
      { want_lines = 2, quiet = 10 })
    c:close()
    local l = lines_of(got)
    assert.equal("? " .. string.rep("y", 256), l[1])
    assert.matches(" huge %+1%+1 101%.5$", l[2])
    local st = h:stats("H")
    local _, logged = h:log("H"):gsub("line longer than 8192 bytes", "")
    assert.equal(7, logged) -- one log line per over-long line
    inputs.long = string.format("6 lines of 1 MiB and 1 of 16 MiB: each answered '? ' + 256 bytes, "
      .. "logged once (%d log lines); lines_too_long=%d", logged, st.lines_too_long)
    print(string.format("\n1 MiB lines: 22 MiB sent on 7 connections, %d replies, all correct; "
      .. "%s; peak RSS so far %.1f MiB", replies + 2, inputs.long, mb(watch:max())))
  end)

  it("answers NUL bytes and random binary line by line, exactly, and stays in sync", function()
    math.randomseed(12345)
    local total, expected_replies = 0, 0
    local function blank(s) return not s:find("[^ \t\n\v\f\r]") end
    for k = 1, 8 do
      local junk = chaos.random_bytes(256 * 1024)
      if k == 1 then junk = string.rep("\0", 64 * 1024) .. "\n" .. junk end
      local tail = "IAMAT bin" .. k .. " +1+1 200.5"
      local want = {}
      for seg in (junk .. "\n"):gmatch("([^\n]*)\n") do
        if #seg > LIMITS.max_line then
          want[#want + 1] = "? " .. seg:sub(1, 256)
        else
          seg = seg:gsub("\r$", "")
          if not blank(seg) then want[#want + 1] = "? " .. seg end
        end
      end
      local c = assert(chaos.connect("127.0.0.1", PORT))
      local got, _, why = chaos.pump(c, junk .. "\n" .. tail .. "\n",
        { want_lines = #want + 1, quiet = 5 })
      c:close()
      total = total + #junk
      expected_replies = expected_replies + #want
      local l = lines_of(got)
      assert.equal("done", why)
      assert.equal(#want + 1, #l)
      for i = 1, #want do
        if l[i] ~= want[i] then
          error(("connection %d, reply %d differs: %q vs %q"):format(k, i, l[i]:sub(1, 80), want[i]:sub(1, 80)))
        end
      end
      assert.matches("^AT H [+-]%d+%.%d+ bin" .. k .. " %+1%+1 200%.5$", l[#l])
    end
    inputs.binary = string.format("%.1f MiB of random bytes and NULs on 8 connections: "
      .. "%d '? ' replies, each the exact line", total / 1048576, expected_replies)
    print(string.format("\nbinary: %s, then a valid IAMAT answered on each; peak RSS %.1f MiB",
      inputs.binary, mb(watch:max())))
  end)

  local quiet -- a client that sends one line, then nothing: idle_ms closes it

  it("holds thousands of idle connections, refuses past the limits, closes them at the deadline", function()
    quiet = h:client("H")
    assert.matches("^AT H ", quiet:request("IAMAT quiet +1+1 1.5"))
    local before = h:stats("H")
    local a, b = os.tmpname(), os.tmpname()
    local t0 = socket.gettime()
    -- 3000 from one address (limit 2000 per address), then 1000 from
    -- another (total limit 2600): the rest are refused at once.
    local pa, pb
    finally(function()
      chaos.stop_pid(pa)
      chaos.stop_pid(pb)
      os.remove(a)
      os.remove(b)
    end)
    pa = chaos.spawn(("exec %s tests/chaos/tools/idle.lua 127.0.0.1 %d 3000 127.0.0.2 %s 20")
      :format(chaos.LUA, PORT, a))
    assert.truthy(herd.eventually(function()
      return (herd.read_file(a) or ""):match("closed=(%d+)") == "1000"
    end, 10), "the per-address limit did not hold: " .. tostring(herd.read_file(a)))
    pb = chaos.spawn(("exec %s tests/chaos/tools/idle.lua 127.0.0.1 %d 1000 127.0.0.3 %s 20")
      :format(chaos.LUA, PORT, b))
    local full = herd.eventually(function()
      local s = h:stats("H")
      return s.refused - before.refused >= 1400 and s
    end, 10)
    assert.truthy(full, "the total limit did not hold")
    local open_peak = full.connections
    -- While full, the checker's connection still gets answers; a new
    -- connection is refused (closed at once).
    local ok_before = chk:peek().ok
    herd.sleep(1.2) -- the checker reports every 0.5 s
    assert.is_true(chk:peek().ok > ok_before, "the checker stalled while the server was full")
    local c = assert(chaos.connect("127.0.0.1", PORT))
    assert.is_true(chaos.closed_by_peer(c, 2), "a connection past the limit was not refused")
    c:close()
    -- Nobody sends a line: every idle one is closed by the deadline.
    local closed = herd.eventually(function()
      local s = h:stats("H")
      return s.connections <= 2 and s
    end, LIMITS.first_line_ms / 1000 + 5, 0.1)
    local t_closed = socket.gettime() - t0
    assert.truthy(closed, "idle connections were not closed")
    local refused = closed.refused - before.refused
    local timeouts = closed.timeouts - before.timeouts
    -- Refusals are logged at most once a second, each line counting the rest.
    local _, refusal_lines = h:log("H"):gsub("connection refused: limit of", "")
    assert.is_true(refusal_lines < 20, refusal_lines .. " refusal log lines")
    -- A new client is served again.
    local c2 = h:client("H")
    assert.matches("^AT H ", c2:request("IAMAT afteridle +1+1 300.5"))
    c2:close()
    inputs.idle = string.format("4000 idle connections from 2 addresses: %d held (peak), %d refused "
      .. "(%d log lines), %d closed at the %d ms first-line deadline (all gone %.1f s after opening)",
      open_peak, refused, refusal_lines, timeouts, LIMITS.first_line_ms, t_closed)
    print(string.format("\nidle: %s; peak RSS %.1f MiB", inputs.idle, mb(watch:max())))
    assert.is_true(refused >= 1400)
    assert.is_true(timeouts >= 2500)
  end)

  it("serves slow writers and cuts off clients that never finish a line", function()
    local before = h:stats("H")
    local out = os.tmpname()
    -- 300 slowloris connections that each send an unfinished line once.
    local loris
    finally(function() chaos.stop_pid(loris) os.remove(out) end)
    loris = chaos.spawn(("exec %s tests/chaos/tools/idle.lua 127.0.0.1 %d 300 127.0.0.4 %s 15 %s")
      :format(chaos.LUA, PORT, out, chaos.quote("IAMAT slowloris +1+1")))
    -- 20 slow writers: one byte each every 50 ms, a whole line in ~1.5 s.
    local writers = {}
    for k = 1, 20 do
      writers[k] = { c = assert(chaos.connect("127.0.0.1", PORT)),
        line = ("IAMAT slow%02d +1+1 400.5\n"):format(k), at = 0 }
    end
    -- 5 drip clients: a byte every 200 ms, never a newline.
    local drips = {}
    for k = 1, 5 do drips[k] = assert(chaos.connect("127.0.0.1", PORT)) end
    local t0 = socket.gettime()
    local done = false
    local tick = 0
    while not done do
      done = true
      tick = tick + 1
      for _, w in ipairs(writers) do
        if w.at < #w.line then
          w.at = w.at + 1
          w.c:send(w.line:sub(w.at, w.at))
          done = false
        end
      end
      if tick % 4 == 0 then for _, d in ipairs(drips) do d:send("z") end end
      socket.sleep(0.05)
    end
    local slow_ms = (socket.gettime() - t0) * 1000
    for k, w in ipairs(writers) do
      local reply = w.c:receive("*l")
      assert.matches(("^AT H [+-]%%d+%%.%%d+ slow%02d %%+1%%+1 400%%.5$"):format(k), reply)
      w.c:close()
    end
    -- The drips keep sending but never finish a line: cut at the deadline.
    local cut = 0
    local deadline = socket.gettime() + LIMITS.first_line_ms / 1000 + 3
    while socket.gettime() < deadline and cut < #drips do
      cut = 0
      for _, d in ipairs(drips) do
        local _, err = d:send("z")
        d:settimeout(0)
        local _, rerr = d:receive(1)
        d:settimeout(5)
        if err == "closed" or rerr == "closed" then cut = cut + 1 end
      end
      socket.sleep(0.2)
    end
    for _, d in ipairs(drips) do d:close() end
    assert.equal(#drips, cut)
    local loris_closed = herd.eventually(function()
      return tonumber((herd.read_file(out) or ""):match("closed=(%d+)")) == 300
    end, LIMITS.first_line_ms / 1000 + 4, 0.1)
    assert.truthy(loris_closed, "slowloris connections were not all closed")
    local st = h:stats("H")
    assert.truthy(h:log("H"):find("no complete line before the deadline", 1, true), "no log line for the deadline")
    -- The quiet client from the idle case is past idle_ms by now.
    local quiet_closed = herd.eventually(function()
      return h:log("H"):find("connection closed: idle", 1, true)
    end, LIMITS.idle_ms / 1000 + 3, 0.2)
    assert.truthy(quiet_closed, "a connection idle past idle_ms was not closed")
    assert.is_true(chaos.closed_by_peer(quiet.sock, 1))
    quiet:close()
    inputs.slow = string.format("20 slow writers (1 byte / 50 ms, %.0f ms a line) all answered; "
      .. "300 slowloris and 5 drip clients closed at the %d ms deadline (%d timeouts); a client quiet "
      .. "after one line closed at idle_ms (%d ms)",
      slow_ms, LIMITS.first_line_ms, st.timeouts - before.timeouts, LIMITS.idle_ms)
    print(string.format("\nslow: %s; peak RSS %.1f MiB", inputs.slow, mb(watch:max())))
  end)

  it("cuts off a client that writes 100,000 IAMATs without reading, in bounded memory", function()
    local before = h:stats("H")
    local parts = {}
    for i = 1, 100000 do
      parts[i] = ("IAMAT noread%d +1+1 %d.5\n"):format(i % 1000, 1000 + i)
    end
    local data = table.concat(parts)
    -- A small receive buffer, so the kernel cannot soak up megabytes of
    -- replies on the client's behalf (tcp_rmem autotuning would).
    local c = socket.tcp4()
    c:setoption("recv-buffer-size", 32768)
    c:settimeout(5)
    assert(c:connect("127.0.0.1", PORT))
    c:settimeout(0)
    local sent, why = 0, nil
    local t0 = socket.gettime()
    local last_progress = t0
    while socket.gettime() - t0 < 20 do
      local i, err, partial = c:send(data, sent + 1)
      local n = i or partial
      if n and n > sent then
        sent = n
        last_progress = socket.gettime()
      end
      if err and err ~= "timeout" then why = err break end
      if sent >= #data then
        -- Everything written: probe whether the server has closed it.
        local _, perr = c:send("\n")
        if perr and perr ~= "timeout" then why = perr break end
      end
      socket.sleep(0.02)
    end
    local t_cut = socket.gettime() - last_progress
    c:close()
    local st = h:stats("H")
    assert.truthy(why, "the server never cut the client off")
    assert.truthy(h:log("H"):find("not reading its replies", 1, true), "no log line for the stalled client")
    local handled = st.lines_in - before.lines_in
    inputs.noread = string.format("100,000 IAMATs (%.1f MB) written, replies never read: the kernel "
      .. "took %.1f MB, the server handled %d lines (their replies filling the socket buffers), "
      .. "stopped reading, and cut the client %.1f s after its output stalled (stall_ms %d)",
      #data / 1e6, sent / 1e6, handled, t_cut, LIMITS.stall_ms)
    print(string.format("\nno reader: %s; peak RSS %.1f MiB", inputs.noread, mb(watch:max())))
    assert.is_true(handled < 100000, "the server read everything without anyone reading replies")
  end)

  it("holds back the rest of a read when replies pile up: short WHATSATs with long answers, never read", function()
    -- 19 bytes in, ~5 KB out (20 places near UCLA): one 64 KiB read is
    -- 3,449 requests, 17 MB of answers. The server must stop handling at
    -- out_pause, not at the end of the read.
    local c0 = h:client("H")
    c0:request("IAMAT amp +34.068930-118.445127 " .. herd.now())
    c0:send("WHATSAT amp 50 20\n")
    local one = assert(c0:until_blank())
    c0:close()
    local before = h:stats("H")
    local base = chaos.rss_kb(pid)
    local line = "WHATSAT amp 50 20\n"
    local burst = string.rep(line, (256 * 1024) // #line)
    local socks = {}
    for k = 1, 20 do
      local s = socket.tcp4()
      s:setoption("recv-buffer-size", 4096)
      s:settimeout(5)
      assert(s:connect("127.0.0.1", PORT))
      s:settimeout(0)
      s:send(burst)
      socks[k] = s
    end
    herd.sleep(1.5)
    local grown = (chaos.rss_kb(pid) or 0) - base
    local st = h:stats("H")
    for _, s in ipairs(socks) do s:close() end
    local handled = st.lines_in - before.lines_in
    print(string.format("\nWHATSAT, never read: 20 connections sent %d requests (%.1f MB), whose answers "
      .. "would be %.0f MB; the server handled %d and grew by %.1f MiB",
      20 * (#burst // #line), 20 * #burst / 1e6, 20 * (#burst // #line) * #one / 1e6, handled, grown / 1024))
    inputs.amplify = string.format("20 clients each sending 256 KiB of WHATSATs (%d KB answers each) "
      .. "without reading: %d of %d handled, RSS +%.1f MiB", #one // 1000, handled,
      20 * (#burst // #line), grown / 1024)
    assert.is_true(handled < 20 * (#burst // #line) / 2, "the server handled nearly everything")
  end)

  it("answers 100,000 pipelined IAMATs in order to a client that reads them", function()
    local parts, want = {}, {}
    for i = 1, 100000 do
      local client, t = "pipe" .. (i % 1000), (5000 + i) .. ".25"
      parts[i] = "IAMAT " .. client .. " +1+1 " .. t .. "\n"
      want[i] = " " .. client .. " +1+1 " .. t
    end
    local c = assert(chaos.connect("127.0.0.1", PORT))
    local t0 = socket.gettime()
    local got, sent, why = chaos.pump(c, table.concat(parts), { want_lines = 100000, quiet = 10 })
    local secs = socket.gettime() - t0
    c:close()
    assert.equal("done", why)
    local i = 0
    for l in got:gmatch("([^\n]*)\n") do
      i = i + 1
      local tail = l:match("^AT H [+-]%d+%.%d+(.*)$")
      if tail ~= want[i] then error(("reply %d: %q, wanted ...%q"):format(i, l, want[i])) end
    end
    assert.equal(100000, i)
    local line = h:record("H", "pipe0")
    assert.matches(" pipe0 %+1%+1 105000%.25$", line)
    print(string.format("\npipelined: 100,000 IAMATs (%.1f MB) answered in order in %.1f s (%.0f/s)",
      sent / 1e6, secs, 100000 / secs))
  end)

  it("closes a peer link on malformed frames from a process that knows the secret, and keeps its store", function()
    local secret = herd.secret
    local F, frame, rec = chaos.F, chaos.frame, chaos.record_payload
    local before = h:stats("H")
    local good_line = "AT P +0.000000001 peerok +1+1 600.5"
    -- A valid record first: the fake peer is a real, trusted neighbour.
    local c = assert(chaos.peer_login("127.0.0.1", PEER, "P", "H", secret))
    c:send(frame(F.RECORD, rec("peerok", 600, 500000000, good_line)))
    assert.truthy(herd.eventually(function() return h:record("H", "peerok") == good_line end))
    c:send(frame(F.PING))
    c:close()
    -- Each case: a fresh authenticated link, one bad frame, then the link
    -- must be closed by the server.
    local KID = "\0\0\0\0" -- SUMS and LEAF start with the tree key's id
    local closing = {
      { "length 0", string.pack(">I4", 0) },
      { "length 1", string.pack(">I4B", 1, 1) },
      { "length 4 GiB", string.pack(">I4BB", 0xffffffff, 1, F.RECORD) .. "abc" },
      { "length past peer_max_frame", string.pack(">I4BB", (1 << 20) + 1, 1, F.RECORD) },
      { "version 3", frame(F.PING, "", 3) },
      { "version 1 (before reconciliation by pull)", frame(F.PING, "", 1) },
      { "version 0", frame(F.RECORD, rec("v0", 1, 0, "AT P +0.1 v0 +1+1 1.0"), 0) },
      { "unknown type 99", frame(99, "xyz") },
      { "type 0", frame(0, "") },
      { "HELLO inside TLS", frame(F.HELLO, "\1P" .. string.rep("n", 32)) },
      { "type 2 (the old AUTH) after the handshake", frame(2, string.rep("m", 32)) },
      { "RECORD empty", frame(F.RECORD, "") },
      { "RECORD truncated", frame(F.RECORD, rec("trunc", 1, 0, "AT P +0.1 trunc +1+1 1.0"):sub(1, 20)) },
      { "RECORD client length past the end", frame(F.RECORD, string.pack(">i8i4I2", 1, 0, 60000) .. "abc") },
      { "RECORD line length past the end", frame(F.RECORD, string.pack(">i8i4s2I2", 1, 0, "x", 9000) .. "AT") },
      { "RECORD empty client", frame(F.RECORD, rec("", 1, 0, "AT P +0.1 x +1+1 1.0")) },
      { "RECORD empty line", frame(F.RECORD, rec("x", 1, 0, "")) },
      { "RECORD nsec negative", frame(F.RECORD, rec("neg", 1, -1, "AT P +0.1 neg +1+1 1.0")) },
      { "RECORD nsec 10^9", frame(F.RECORD, rec("big", 1, 1000000000, "AT P +0.1 big +1+1 1.0")) },
      { "SUMS short", frame(F.SUMS, KID .. "\0\0\0\0\0") },
      { "SUMS level past the depth", frame(F.SUMS, KID .. string.pack(">BI4", 3, 0) .. string.rep("\0", 256)) },
      { "SUMS index past the width", frame(F.SUMS, KID .. string.pack(">BI4", 1, 32) .. string.rep("\0", 256)) },
      { "SUMS level 255", frame(F.SUMS, KID .. string.pack(">BI4", 255, 0xffffffff) .. string.rep("\0", 256)) },
      { "LEAF index past the leaves", frame(F.LEAF, KID .. string.pack(">I4BI2", 32768, 1, 0)) },
      { "LEAF 65535 entries, none sent", frame(F.LEAF, KID .. string.pack(">I4BI2", 5, 1, 65535)) },
      { "LEAF entry cut short", frame(F.LEAF, KID .. string.pack(">I4BI2s2", 5, 1, 1, "abc") .. "\0\0") },
      { "TREEKEY short", frame(F.TREEKEY, string.rep("k", 15)) },
      { "TREEKEY long", frame(F.TREEKEY, string.rep("k", 17)) },
    }
    local closed = 0
    for _, case in ipairs(closing) do
      local p = assert(chaos.peer_login("127.0.0.1", PEER, "P", "H", secret))
      p:send(case[2])
      local was_closed = chaos.closed_by_peer(p, 2)
      p:close()
      assert.is_true(was_closed, "link stayed up after: " .. case[1])
      closed = closed + 1
    end
    -- Well-framed but wrong records: dropped with a warning, link stays.
    local dropping = {
      { "not an AT line", rec("bad1", 700, 0, "HELLO there") },
      { "client does not match", rec("bad2", 700, 0, "AT P +0.000000001 other +1+1 700.0") },
      { "timestamp does not match", rec("bad3", 700, 0, "AT P +0.000000001 bad3 +1+1 701.0") },
      { "bad location", rec("bad4", 700, 0, "AT P +0.000000001 bad4 +91+1 700.0") },
      { "NUL bytes", rec("bad\0", 700, 0, "AT P +0.000000001 bad\0 +1+1 700.0") },
      { "client id of 4000 bytes", rec(string.rep("c", 4000), 700, 0,
        "AT P +0.000000001 " .. string.rep("c", 4000) .. " +1+1 700.0") },
      { "timestamp of year 292 billion", rec("bad5", math.maxinteger, 0,
        "AT P +0.000000001 bad5 +1+1 9223372036854775807.0") },
      { "negative timestamp", rec("bad6", -5, 0, "AT P +0.000000001 bad6 +1+1 -5.0") },
    }
    local p = assert(chaos.peer_login("127.0.0.1", PEER, "P", "H", secret))
    for _, case in ipairs(dropping) do p:send(frame(F.RECORD, case[2])) end
    -- Random payloads of every type but the closing ones, after auth, from
    -- other connections: each either closes the link or is ignored.
    p:send(frame(F.PING))
    local ftype = chaos.read_frame(p)
    while ftype and ftype ~= F.PONG do ftype = chaos.read_frame(p) end
    assert.equal(F.PONG, ftype, "the link died on well-framed records")
    p:close()
    math.randomseed(777)
    local random_frames = 0
    for _ = 1, 40 do
      local q = assert(chaos.peer_login("127.0.0.1", PEER, "P", "H", secret))
      local burst = {}
      for j = 1, 25 do
        burst[j] = frame(math.random(3, 8), chaos.random_bytes(math.random(0, 300)))
      end
      q:send(table.concat(burst))
      random_frames = random_frames + #burst
      chaos.closed_by_peer(q, 0.05)
      q:close()
    end
    -- Before the TLS handshake: plaintext frames of the old wire format,
    -- and a crowd of silent connections (at most 8 from one address wait
    -- for a handshake; older ones make room).
    local pre = {
      frame(F.HELLO, string.rep("h", 600)),
      frame(F.RECORD, rec("preauth", 800, 0, "AT P +0.000000001 preauth +1+1 800.0")),
      frame(F.HELLO, "\255P"),
    }
    for _, bytes in ipairs(pre) do
      local q = assert(chaos.connect("127.0.0.1", PEER, 3))
      q:send(bytes)
      assert.is_true(chaos.closed_by_peer(q, 2))
      q:close()
    end
    local q = assert(chaos.connect("127.0.0.1", PEER, 3))
    q:send(frame(F.HELLO, "\1P" .. string.rep("n", 32)) .. frame(2, string.rep("m", 32)))
    assert.is_true(chaos.closed_by_peer(q, 2))
    q:close()
    local crowd = {}
    for k = 1, 150 do crowd[k] = assert(chaos.connect("127.0.0.1", PEER, 3)) end
    local refused = 0
    for _, s in ipairs(crowd) do if chaos.closed_by_peer(s, 0.05) then refused = refused + 1 end end
    for _, s in ipairs(crowd) do s:close() end
    assert.is_true(refused >= 150 - 64, refused .. " of 150 silent peer connections refused")
    -- Nothing of it reached the store, and the store is still well formed.
    for _, name in ipairs({ "bad1", "bad2", "other", "bad3", "bad4", "bad5", "bad6", "preauth", "v0",
      "neg", "big", "trunc" }) do
      assert.is_nil(h:record("H", name), name)
    end
    assert.equal(good_line, h:record("H", "peerok"))
    local dump, n = chaos.dump(h:ctl("H", "records"))
    for l in dump:gmatch("[^\n]+") do
      assert.matches("^AT %S+ [+-]%d+%.%d%d%d%d%d%d%d%d%d %S+ [+-][%d.]+[+-][%d.]+ %d+%.?%d*$", l)
    end
    local st = h:stats("H")
    inputs.peer = string.format("%d malformed frames that each closed the link, %d well-framed "
      .. "bad records dropped (link kept), %d random frames, 4 bad handshakes, 150 silent "
      .. "connections (%d refused); %d records in the store, all well formed",
      closed, #dropping, random_frames, refused, n)
    print(string.format("\npeer frames: %s; peak RSS %.1f MiB", inputs.peer, mb(watch:max())))
    assert.is_true(st.peer_frames_in > before.peer_frames_in)
  end)

  it("never acknowledges an IAMAT whose record the store cannot keep", function()
    local c = h:client("H")
    -- A client id over the store's 1024 bytes: "? ", nothing stored.
    local long_id = string.rep("k", 2000)
    local r1 = c:request("IAMAT " .. long_id .. " +1+1 1.5")
    assert.truthy(r1:match("^%? IAMAT kkkk"), "acknowledged: " .. r1:sub(1, 60))
    assert.is_nil(h:record("H", long_id))
    -- An AT line over the store's 8192 bytes from an IAMAT under max_line.
    -- (IAMAT: 1011 + 7174 = 8185 bytes; AT: 1032 + 7174 = 8206 bytes.)
    local id = string.rep("q", 1000)
    local loc = "+" .. string.rep("0", 7170) .. "1+1"
    local reply = c:request("IAMAT " .. id .. " " .. loc .. " 1.5")
    assert.truthy(reply:match("^%? IAMAT qqqq"), "acknowledged: " .. reply:sub(1, 60))
    assert.is_nil(h:record("H", id))
    -- Just under both: acknowledged and stored.
    local ok_reply = c:request("IAMAT " .. id .. " +1+1 1.5")
    assert.matches("^AT H ", ok_reply)
    assert.equal(ok_reply, h:record("H", id))
    c:close()
  end)

  it("kept the well-behaved client's answers correct and memory under the bound throughout", function()
    local peak = watch:stop()
    watch = nil
    local r = chk:stop()
    chk = nil
    local bound = (sanitized and RSS_BOUND_SAN_MB or RSS_BOUND_MB)
    print(string.format("\nwell-behaved client: %d answers checked, %d wrong, %d errors, "
      .. "latency max %.1f ms (p99 %.1f ms); server peak RSS %.1f MiB (bound %d MiB%s)",
      r.ok, r.wrong, r.errors, r.max_ms or -1, r.p99_ms or -1, mb(peak), bound,
      sanitized and ", ASan build" or ""))
    for _, s in ipairs(r.samples) do print("  wrong: " .. s) end
    assert.is_true(herd.alive(pid), "the server died")
    assert.equal(0, r.wrong)
    assert.equal(0, r.errors)
    assert.is_true(r.ok > 100)
    assert.is_true(mb(peak) < bound, ("peak RSS %.1f MiB over the bound"):format(mb(peak)))
    -- A clean stop after all of it.
    assert.is_true(h:signal("H", "TERM", 10))
    assert.equal(0, h:exit_code("H"))
  end)
end)

describe("a client piling up deferred replies #chaos", function()
  local mock_places = require "helpers.places_mock"
  local MOCK = 27090
  local m, h
  lazy_setup(function()
    m = mock_places.start(MOCK)
    local ok, err = pcall(function()
      h = herd.start({
        servers = { D = { port = 27010, peer_port = 28010 } },
        links = {},
        places = { provider = "google", timeout_ms = 3000 },
      }, { env = { HERD_PLACES_PROVIDER = "google", HERD_PLACES_KEY = "k",
        HERD_PLACES_URL = mock_places.url(MOCK, "google") } })
    end)
    if not ok then
      if m then m:stop() end
      error(err)
    end
  end)
  lazy_teardown(function()
    if h then h:stop() end
    if m then m:stop() end
  end)

  it("stops reading at 64 waiting replies and answers every request in order", function()
    m:config({ delay_ms = 300 })
    local c = h:client("D")
    local at = c:request("IAMAT slowplaces +34.068930-118.445127 " .. herd.now())
    local before = h:stats("D")
    local n = 640
    -- All at once; each waits for the provider (300 ms a lookup).
    local reqs = {}
    for i = 1, n do reqs[i] = ("WHATSAT slowplaces %d 5\n"):format(1 + i % 40) end
    c:send(table.concat(reqs))
    herd.sleep(0.15)
    local early = h:stats("D").lines_in - before.lines_in
    local t0 = socket.gettime()
    local answered = 0
    for i = 1, n do
      local reply = c:until_blank()
      assert.truthy(reply, "reply " .. i .. " missing")
      local first, js = reply:match("^([^\n]*)\n([^\n]*)\n\n$")
      assert.equal(at, first)
      assert.matches('"status"', js)
      answered = answered + 1
    end
    c:close()
    print(string.format("\ndeferred: %d WHATSATs sent at once against a 300 ms provider: %d handled "
      .. "before the first answer (bound 64), all %d answered in order in %.1f s",
      n, early, answered, socket.gettime() - t0))
    assert.is_true(early <= 64, early .. " requests handled before any answer")
    assert.equal(n, answered)
  end)
end)
