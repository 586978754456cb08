-- A whole herd killed while IAMATs flow (issue 15, SPEC section 8,
-- state_dir): each setting of state_sync keeps what it promises, and with
-- "always" every reply leaves only after its record is synced to disk,
-- whichever path the reply takes.
-- Ports 29300-29309 (clients), 30300-30309 (peers).
local herd = require "helpers.herd"
local strace = require "helpers.strace"
local socket = require "socket"

local NAMES = { "A", "B", "C" }
local SYNC_MS = 100
local RATE = tonumber(os.getenv("HERD_TEST_KILL_RATE") or "") or 400 -- IAMATs/s
local SECONDS = 1.5

local function conf(dir, sync, extra)
  local c = {
    servers = { A = { port = 29300 }, B = { port = 29301 }, C = { port = 29302 } },
    links = { { "A", "B" }, { "B", "C" }, { "A", "C" } },
    state_dir = dir,
    state_sync = sync,
    state_sync_ms = SYNC_MS,
  }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

-- A non-blocking line reader over one connection.
local function reader(sock)
  local partial = ""
  return function()
    local line, err, part = sock:receive("*l", partial)
    if line then
      partial = ""
      return line
    end
    partial = part or ""
    if err ~= "timeout" then return nil, err end
  end
end

-- IAMATs at RATE per second, round robin over the servers (one connection
-- each), for SECONDS; then stop(): every reply read before it returns is
-- an acknowledgement: acked[client] = { line, at (when read), by (server) }.
local function flow(h, tag)
  local conns = {}
  for i, name in ipairs(NAMES) do
    local c = h:client(name)
    c.sock:settimeout(0)
    conns[i] = { c = c, name = name, read = reader(c.sock) }
  end
  local acked, sent = {}, 0
  local function drain()
    for _, e in ipairs(conns) do
      while true do
        local line = e.read()
        if not line then break end
        local client = line:match("^AT %S+ %S+ (%S+) ")
        if client then acked[client] = { line = line, at = socket.gettime(), by = e.name } end
      end
    end
  end
  local t0 = socket.gettime()
  while socket.gettime() - t0 < SECONDS do
    local due = math.floor((socket.gettime() - t0) * RATE)
    while sent < due do
      sent = sent + 1
      local e = conns[sent % #conns + 1]
      e.c.sock:send(("IAMAT %s%d +34.06-118.44 %d.%09d\n"):format(tag, sent, 1700000000 + sent, sent))
    end
    drain()
    socket.sleep(0.001)
  end
  return {
    acked = acked,
    sent = function() return sent end,
    -- Replies already on their way when the servers died were given
    -- before it: read what the sockets hold, then close.
    finish = function()
      drain()
      for _, e in ipairs(conns) do e.c:close() end
    end,
  }
end

-- Every server at once, by one kill(1): returns when all are gone.
local function kill_all(h, sig)
  local pids = {}
  for _, name in ipairs(NAMES) do pids[#pids + 1] = h:pid(name) end
  local t = socket.gettime()
  os.execute("kill -" .. sig .. " " .. table.concat(pids, " "))
  for _, name in ipairs(NAMES) do assert.truthy(h:signal(name, sig)) end
  return t
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- Every server alone (the others down), from its own disk only: what it
-- acknowledged itself and must keep. Returns the records missing.
local function own_disk(h, acked, must)
  local missing = {}
  for _, name in ipairs(NAMES) do
    assert.truthy(h:restart(name), h:stderr(name))
    for client, a in pairs(acked) do
      if a.by == name and must(a) then
        -- (Herd:ctl asks again after a failed admin exchange.) What the
        -- server holds is in the message.
        local got, err = h:record(name, client)
        if got ~= a.line then
          missing[#missing + 1] = ("%s:%s (%s)"):format(name, client, got or err or "none")
        end
      end
    end
    assert.truthy(h:signal(name, "TERM"))
  end
  return missing
end

-- All up again: every acknowledged record everywhere, equal counts.
local function agree(h, acked)
  for _, name in ipairs(NAMES) do assert.truthy(h:restart(name), h:stderr(name)) end
  local ok = herd.eventually(function()
    local n = h:stats("A").records
    for _, name in ipairs(NAMES) do
      if h:stats(name).records ~= n then return false end
    end
    for client, a in pairs(acked) do
      for _, name in ipairs(NAMES) do
        if h:record(name, client) ~= a.line then return false end
      end
    end
    return true
  end, 15)
  local counts = {}
  for _, name in ipairs(NAMES) do counts[#counts + 1] = name .. "=" .. tostring(h:stats(name).records) end
  return ok, table.concat(counts, " ")
end

describe("a whole herd killed under load #integration", function()
  local h

  after_each(function()
    if h then h:stop() end
    h = nil
  end)

  for _, case in ipairs({ { "always", "KILL" }, { "batch", "KILL" }, { "batch", "TERM" } }) do
    local sync, sig = case[1], case[2]
    it(("state_sync %s, SIG%s of every server at %d IAMATs/s: what was promised is back, stores agree"):format(
      sync, sig, RATE), function()
      local dir = herd.tmpdir()
      h = herd.start(conf(dir .. "/state", sync))
      local f = flow(h, "k" .. sync:sub(1, 1) .. sig:sub(1, 1))
      local killed_at = kill_all(h, sig)
      f.finish()
      local acked = f.acked
      local n = count(acked)
      assert.truthy(n > RATE * SECONDS / 2, ("only %d of %d IAMATs acknowledged"):format(n, f.sent()))
      -- "always" and SIGTERM: every acknowledgement; "batch" killed: those
      -- older than state_sync_ms (a power cut could lose the rest; a kill
      -- leaves them in the page cache, so they are counted, not required).
      local function must(a)
        return sync == "always" or sig == "TERM" or a.at < killed_at - SYNC_MS / 1000
      end
      local required, late = 0, 0
      for _, a in pairs(acked) do
        if must(a) then required = required + 1 else late = late + 1 end
      end
      local missing = own_disk(h, acked, must)
      assert.same({}, missing)
      local ok, counts = agree(h, acked)
      assert.truthy(ok, "stores disagree: " .. counts)
      print(("\nkill %s/%s: %d sent, %d acknowledged (%d required, %d in the last %d ms), all back; %s"):format(
        sync, sig, f.sent(), n, required, late, SYNC_MS, counts))
      os.execute("rm -rf " .. herd.quote(dir))
    end)
  end
end)

-- The order of system calls, from strace attached to a running server:
-- with "always", a reply naming client X is written only after a write of
-- the state file that holds X's record and an fdatasync after that write.
-- (strace shows what is written: the record's AT line is in its page.)
local function attach(pid, path)
  local spid = strace.attach(pid, path,
    "-f -qq -s 65536 -e abbrev=none -e trace=write,writev,pwrite64,pwritev,fdatasync,fsync", 0)
  -- Attached once it has written anything (or after 2 s).
  herd.eventually(function()
    local s = herd.read_file(path)
    return s and #s > 0
  end, 2)
  herd.sleep(0.2)
  return spid
end

-- The trace's lines with each call that another thread's interrupted
-- ("<unfinished ...>", then "<... call resumed>") joined into one line:
-- the log's writer thread writes while the loop syncs.
local function calls_of(path)
  local out, open = {}, {}
  for line in io.lines(path) do
    local tid = line:match("^(%d+)%s") or ""
    local head = line:match("^(.-) <unfinished %.%.%.>$")
    local rest = line:match("^%d*%s*<%.%.%. [%w_]+ resumed>(.*)$")
    if head then
      open[tid] = head
    elseif rest then
      if open[tid] then out[#out + 1] = open[tid] .. rest end
      open[tid] = nil
    else
      out[#out + 1] = line
    end
  end
  return out
end

-- Replies (writes to a client socket) naming an id "dur<letter><n>", and
-- whether each was synced first; and the ids synced at all.
local function check_trace(path)
  local lines = calls_of(path)
  -- First the descriptors: the state file (the one synced) and the log.
  local state_fd, log_fd = {}, {}
  for _, line in ipairs(lines) do
    local call, fd = line:match("^%d*%s*(%w+)%((%d+)")
    if call == "fdatasync" or call == "fsync" then state_fd[fd] = true end
    if (call == "write" or call == "writev") and line:find("Z IN 127.0.0.1:", 1, true) then log_fd[fd] = true end
  end
  local written, synced, replies, unsynced = {}, {}, 0, {}
  for _, line in ipairs(lines) do
    local call, fd = line:match("^%d*%s*(%w+)%((%d+)")
    if state_fd[fd] and (call == "fdatasync" or call == "fsync") then
      if line:match("= 0$") then
        for id in pairs(written) do synced[id] = true end
        written = {}
      end
    elseif state_fd[fd] then
      for id in line:gmatch(" (dur%a%d+)[_ ]") do written[id] = true end
    elseif (call == "write" or call == "writev") and not log_fd[fd] then
      for id in line:gmatch("AT %S+ %S+ (dur%a%d+)[_ ]") do
        replies = replies + 1
        if not synced[id] then unsynced[#unsynced + 1] = id end
      end
    end
  end
  return replies, unsynced, synced
end

describe("state_sync always #integration", function()
  local h, spid

  after_each(function()
    strace.detach(spid)
    spid = nil
    if h then h:stop() end
    h = nil
  end)

  it("replies leave after their record's fdatasync: direct, deferred, resumed after a full socket, and peers' records are synced", function()
    strace.require()
    local dir = herd.tmpdir()
    local c = conf(dir .. "/state", "always", { limits = { out_pause = 32768 } })
    c.servers.C = nil
    c.links = { { "A", "B" } }
    h = herd.start(c, { scripts = { herd.beside("../fixtures/late_iamat.lua") } })
    local trace = dir .. "/A.trace"
    spid = attach(h:pid("A"), trace)

    -- Direct: one at a time, then 200 pipelined.
    local a = h:client("A")
    for i = 1, 20 do
      assert.truthy(a:request(("IAMAT durn%d +1+1 %d.5"):format(i, 1700000000 + i)):match("^AT "))
    end
    a:pipeline(200, function(i) return ("IAMAT durn%d +1+1 %d.5\n"):format(100 + i, 1700000000 + i) end)
    -- Deferred: the record is stored and the reply given from a timer.
    for i = 1, 10 do
      assert.truthy(a:request(("LATER durl%d +1+1 %d.5"):format(i, 1700000000 + i)):match("^AT "))
    end
    a:close()

    -- Held: a client that does not read fills the server's socket; the
    -- lines the server held meanwhile are handled when a write completes.
    local n = 8000
    local pad = ("_"):rep(900) -- long ids: 6 MB of replies, more than socket buffers hold
    local sock = socket.tcp()
    sock:setoption("recv-buffer-size", 4096)
    sock:settimeout(5)
    assert.truthy(sock:connect("127.0.0.1", h:port("A")))
    sock:settimeout(0)
    local lines = {}
    for i = 1, n do lines[i] = ("IAMAT durh%d%s +1+1 %d.5\n"):format(i, pad, 1700000000 + i) end
    local data, pos = table.concat(lines), 1
    local function push()
      if pos > #data then return end
      local i, _, last = sock:send(data, pos)
      pos = (i or last or pos - 1) + 1
    end
    -- Write without reading until the server stops storing: its output
    -- is full and it holds the rest (at most 30 s).
    local t0, last, since = socket.gettime(), -1, socket.gettime()
    while socket.gettime() - t0 < 30 and socket.gettime() - since < 0.5 do
      push()
      socket.sleep(0.02)
      local records = h:stats("A").records
      if records ~= last then last, since = records, socket.gettime() end
    end
    local read, got = reader(sock), 0
    local deadline = socket.gettime() + 30
    while got < n and socket.gettime() < deadline do
      push()
      local line = read()
      if line then got = got + 1 else socket.sleep(0.001) end
    end
    sock:close()
    assert.equal(n, got)
    print(("\nheld: %d"):format(n))

    -- From the peer: acknowledged at B, reaching A by the link.
    local b = h:client("B")
    for i = 1, 20 do
      assert.truthy(b:request(("IAMAT durp%d +1+1 %d.5"):format(i, 1700000000 + i)):match("^AT "))
    end
    b:close()
    assert.truthy(herd.eventually(function() return h:record("A", "durp20") end, 5))
    herd.sleep(0.2)
    strace.detach(spid)
    spid = nil

    local replies, unsynced, synced = check_trace(trace)
    assert.truthy(replies >= 20 + 200 + 10 + n, "only " .. replies .. " replies seen in the trace")
    assert.same({}, { table.unpack(unsynced, 1, math.min(#unsynced, 10)) })
    for i = 1, 20 do assert.truthy(synced["durp" .. i], "durp" .. i .. " never synced at A") end
    local st = h:stats("A")
    assert.truthy(st.state_syncs >= st.state_commits, ("%d syncs, %d commits"):format(st.state_syncs, st.state_commits))
    print(("\nalways: %d replies traced, each after its record's fdatasync; %d commits, longest %d us"):format(
      replies, st.state_commits, st.state_commit_us_max))
    if os.getenv("HERD_TEST_KEEP") == nil then os.execute("rm -rf " .. herd.quote(dir)) end
  end)
end)
