-- The herd: flooding, floods that end, failures, restarts, partitions and
-- flapping links. Ports 23000-23999 (clients), 24000-24999 (peers).
local herd = require "helpers.herd"
local socket = require "socket"

local NAMES = { "Bernard", "Campbell", "Jaquez", "Juzang", "Riley" }
local LINKS = {
  { "Riley", "Jaquez" }, { "Riley", "Juzang" }, { "Bernard", "Jaquez" },
  { "Bernard", "Juzang" }, { "Bernard", "Campbell" }, { "Juzang", "Campbell" },
}

local function classic(base)
  local servers = {}
  for i, name in ipairs({ "Riley", "Jaquez", "Juzang", "Campbell", "Bernard" }) do
    servers[name] = { port = base + i }
  end
  return { servers = servers, links = LINKS,
    links_redial = { min_ms = 50, max_ms = 500 } }
end

-- Names reachable from start without passing through a dead server.
local function reachable(start, dead)
  local seen, todo = { [start] = true }, { start }
  while #todo > 0 do
    local n = table.remove(todo)
    for _, l in ipairs(LINKS) do
      for i = 1, 2 do
        local a, b = l[i], l[3 - i]
        if a == n and not dead[b] and not seen[b] then
          seen[b] = true
          todo[#todo + 1] = b
        end
      end
    end
  end
  return seen
end

local function all_have(h, names, client, line)
  return herd.eventually(function()
    for _, n in ipairs(names) do
      if h:record(n, client) ~= line then return false end
    end
    return true
  end, 5, 0.005)
end

local function links_up(h, names)
  return herd.eventually(function()
    for _, n in ipairs(names) do
      local out = h:ctl(n, "links") or ""
      if out:find(" down ") or out:find(" cut ") then return false end
    end
    return true
  end, 10)
end

describe("a herd of five #integration", function()
  local h
  lazy_setup(function()
    h = herd.start(classic(23000))
    assert.truthy(links_up(h, NAMES), "links did not come up")
  end)
  lazy_teardown(function() h:stop() end)

  it("spreads an IAMAT at any server to every other, quickly", function()
    local times = {}
    for round = 1, 20 do
      local at = NAMES[(round % 5) + 1]
      local client = "conv" .. round
      local t0 = socket.gettime()
      local reply = h:client(at):request("IAMAT " .. client .. " +1+1 " .. herd.now())
      assert.truthy(all_have(h, NAMES, client, reply), "not everywhere: " .. reply)
      times[#times + 1] = (socket.gettime() - t0) * 1000
    end
    table.sort(times)
    print(string.format("\nconvergence over the example herd (20 runs, polled): median %.1f ms, worst %.1f ms",
      times[10], times[20]))
  end)

  it("ends floods: an identical or older IAMAT crosses no link", function()
    local reply = h:client("Riley"):request("IAMAT ends +1+1 5000.5")
    assert.truthy(all_have(h, NAMES, "ends", reply))
    herd.sleep(0.2)
    local before = 0
    for _, n in ipairs(NAMES) do before = before + h:stats(n).peer_records_forwarded end
    for _, n in ipairs(NAMES) do
      local c = h:client(n)
      c:request("IAMAT ends +1+1 5000.5")
      c:request("IAMAT ends +2+2 4000.5")
      c:close()
    end
    herd.sleep(0.3)
    local after = 0
    for _, n in ipairs(NAMES) do after = after + h:stats(n).peer_records_forwarded end
    assert.equal(before, after)
    assert.equal(reply, h:record("Campbell", "ends"))
  end)

  it("floods a new record once over each link, never back", function()
    local before, stale_before = {}, {}
    for _, n in ipairs(NAMES) do
      local st = h:stats(n)
      before[n], stale_before[n] = st.peer_records_in, st.peer_records_stale
    end
    local reply = h:client("Bernard"):request("IAMAT once +3+3 " .. herd.now())
    assert.truthy(all_have(h, NAMES, "once", reply))
    herd.sleep(0.2)
    local total, stale = 0, 0
    for _, n in ipairs(NAMES) do
      local st = h:stats(n)
      total = total + st.peer_records_in - before[n]
      stale = stale + st.peer_records_stale - stale_before[n]
    end
    -- Each server forwards only to links other than the sender: with six
    -- links the flood can use each at most once per direction, and at
    -- least reaches the four others.
    assert.is_true(total >= 4 and total <= 8, "records received: " .. total)
    -- Each of the four others takes the record once; every other copy is
    -- an echo the core drops before Lua.
    assert.equal(total - 4, stale)
  end)
end)

describe("the classic graders' failures #integration", function()
  local h
  lazy_setup(function()
    h = herd.start(classic(23100))
    assert.truthy(links_up(h, NAMES))
  end)
  lazy_teardown(function() h:stop() end)

  local pairs_ = {}
  for i = 1, 5 do
    for j = i + 1, 5 do pairs_[#pairs_ + 1] = { NAMES[i], NAMES[j] } end
  end
  for k, pair in ipairs(pairs_) do
    it("with " .. pair[1] .. " and " .. pair[2] .. " killed, only connected survivors learn", function()
      local dead = { [pair[1]] = true, [pair[2]] = true }
      local live = {}
      for _, n in ipairs(NAMES) do if not dead[n] then live[#live + 1] = n end end
      local client = "pair" .. k
      -- An older record everywhere first.
      local old = h:client(live[1]):request("IAMAT " .. client .. " +1+1 1000.5")
      assert.truthy(all_have(h, NAMES, client, old))
      for n in pairs(dead) do assert.is_true(h:kill(n)) end
      local writer = live[1]
      local new = h:client(writer):request("IAMAT " .. client .. " +2+2 2000.5")
      local near = reachable(writer, dead)
      local want_new, want_old = {}, {}
      for _, n in ipairs(live) do
        if near[n] then want_new[#want_new + 1] = n else want_old[#want_old + 1] = n end
      end
      assert.truthy(all_have(h, want_new, client, new))
      herd.sleep(0.2)
      for _, n in ipairs(want_old) do
        -- Cut off: still answers with its own older record.
        assert.equal(old, h:record(n, client))
      end
      for n in pairs(dead) do assert.is_true(h:restart(n)) end
      assert.truthy(all_have(h, NAMES, client, new), "restart did not catch up")
      assert.truthy(links_up(h, NAMES))
    end)
  end
end)

describe("restarts and partitions #integration", function()
  local h
  lazy_setup(function()
    h = herd.start(classic(23200))
    assert.truthy(links_up(h, NAMES))
  end)
  lazy_teardown(function() h:stop() end)

  it("a restarted server catches up without any new IAMAT", function()
    assert.is_true(h:kill("Campbell"))
    local lines = {}
    for i = 1, 30 do
      local at = ({ "Riley", "Jaquez", "Bernard" })[i % 3 + 1]
      lines[i] = h:client(at):request("IAMAT restart" .. i .. " +1+1 " .. herd.now())
    end
    local t0 = socket.gettime()
    assert.is_true(h:restart("Campbell"))
    for i = 1, 30 do
      assert.truthy(all_have(h, { "Campbell" }, "restart" .. i, lines[i]))
    end
    print(string.format("\nrestart catch-up of 30 records: %.0f ms", (socket.gettime() - t0) * 1000))
  end)

  it("a healed partition ends on the newest record everywhere", function()
    -- Bernard and Juzang split {Riley, Jaquez} from {Campbell}.
    assert.is_true(h:kill("Bernard"))
    assert.is_true(h:kill("Juzang"))
    local west = h:client("Riley"):request("IAMAT split +1+1 3000.5")
    local east = h:client("Campbell"):request("IAMAT split +2+2 3001.5")
    local west_only = h:client("Jaquez"):request("IAMAT westonly +3+3 10.5")
    local east_only = h:client("Campbell"):request("IAMAT eastonly +4+4 10.5")
    -- Older on the east side for a client the west wrote newer.
    local west_new = h:client("Riley"):request("IAMAT both +5+5 20.5")
    h:client("Campbell"):request("IAMAT both +6+6 19.5")
    assert.truthy(all_have(h, { "Jaquez" }, "split", west))
    assert.equal(east, h:record("Campbell", "split"))
    assert.is_true(h:restart("Bernard"))
    assert.is_true(h:restart("Juzang"))
    assert.truthy(all_have(h, NAMES, "split", east))
    assert.truthy(all_have(h, NAMES, "westonly", west_only))
    assert.truthy(all_have(h, NAMES, "eastonly", east_only))
    assert.truthy(all_have(h, NAMES, "both", west_new))
  end)
end)

describe("authentication #integration", function()
  local h
  lazy_setup(function()
    local conf = classic(23300)
    h = herd.start(conf, { only = { "Riley", "Jaquez" } })
  end)
  lazy_teardown(function() h:stop() end)

  it("gives a server with another secret no link and no updates", function()
    h:start_one("Juzang", { HERD_SECRET = "some-other-secret" })
    assert.truthy(h:wait("Juzang"))
    local r = h:client("Riley"):request("IAMAT secret1 +1+1 " .. herd.now())
    local j = h:client("Juzang"):request("IAMAT secret2 +1+1 " .. herd.now())
    assert.truthy(all_have(h, { "Jaquez" }, "secret1", r))
    herd.sleep(0.5)
    assert.is_nil(h:record("Juzang", "secret1"))
    assert.is_nil(h:record("Riley", "secret2"))
    assert.truthy(herd.eventually(function()
      return h:log("Riley"):find("link Juzang %(.-%): authentication failed")
    end))
    for _, n in ipairs({ "Riley", "Jaquez", "Juzang" }) do
      assert.is_nil(h:log(n):find("some-other-secret", 1, true))
      assert.is_nil(h:log(n):find(herd.secret, 1, true))
    end
    h:signal("Juzang", "TERM")
  end)
end)

describe("links flapping under load #integration", function()
  local h
  lazy_setup(function()
    h = herd.start(classic(23400))
    assert.truthy(links_up(h, NAMES))
  end)
  lazy_teardown(function() h:stop() end)

  it("ends with identical state everywhere and no acknowledged IAMAT lost", function()
    math.randomseed(os.time())
    local acked = {} -- client -> newest acknowledged timestamp
    local clients = {}
    for _, n in ipairs(NAMES) do clients[n] = h:client(n) end
    local deadline = socket.gettime() + 4
    local writes, cuts, seq = 0, 0, 0
    while socket.gettime() < deadline do
      for _ = 1, 20 do
        seq = seq + 1
        local n = NAMES[math.random(5)]
        local client = "flap" .. math.random(200)
        local t = string.format("%d.%09d", 1000 + seq, math.random(0, 999999999))
        local reply = clients[n]:request("IAMAT " .. client .. " +1+1 " .. t)
        if reply and reply:match("^AT ") then
          writes = writes + 1
          acked[client] = t
        end
      end
      local l = LINKS[math.random(#LINKS)]
      h:ctl(l[1], "cut " .. l[2] .. " " .. math.random(50, 400))
      cuts = cuts + 1
    end
    for _, c in pairs(clients) do c:close() end
    assert.truthy(links_up(h, NAMES), "links did not come back")
    local dumps
    local same = herd.eventually(function()
      dumps = {}
      for _, n in ipairs(NAMES) do
        local lines = {}
        for l in (h:ctl(n, "records") or ""):gmatch("[^\n]+") do lines[#lines + 1] = l end
        table.sort(lines)
        dumps[n] = table.concat(lines, "\n")
      end
      for _, n in ipairs(NAMES) do if dumps[n] ~= dumps.Riley then return false end end
      return true
    end, 15, 0.2)
    assert.truthy(same, "servers disagree after healing")
    local lost = 0
    for client, t in pairs(acked) do
      local line = h:record("Riley", client)
      local stored = line and line:match("(%S+)$")
      local function ns(x) local s, f = x:match("(%d+)%.(%d+)") return tonumber(s) * 1e9 + tonumber(f) end
      if not stored or ns(stored) < ns(t) then lost = lost + 1 end
    end
    print(string.format("\nflapping: %d IAMATs acknowledged, %d links cut, %d lost", writes, cuts, lost))
    assert.equal(0, lost)
  end)
end)
