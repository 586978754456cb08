-- Records from peers against the real core: the built-in rule
-- (core.accept_record, core/peer.c) checks, stores and floods them with no
-- Lua on the way, and a script that chains on_record still sees each one;
-- and the store's bound on clients (limits.max_records).
-- The test plays both neighbours of H, P and Q, over the peer wire format
-- (helpers.chaos). Ports 26101-26103 (clients), 26151-26153 (peers).
local herd = require "helpers.herd"
local chaos = require "helpers.chaos"
local socket = require "socket"

local F = chaos.F
local H_PEER = 26151

local function conf(limits)
  return {
    limits = limits,
    servers = {
      H = { port = 26101, peer_port = H_PEER },
      P = { port = 26102, peer_port = 26152 },
      Q = { port = 26103, peer_port = 26153 },
    },
    links = { { "H", "P" }, { "H", "Q" } },
    links_redial = { min_ms = 5000, max_ms = 10000 },
  }
end

local function at_line(server, client, t, loc)
  return ("AT %s +0.000000001 %s %s %s"):format(server, client, loc or "+1+1", t)
end

-- The RECORD frames c receives within seconds, as { client = line }.
local function records_seen(c, seconds)
  local seen = {}
  c:settimeout(0.05)
  local deadline = socket.gettime() + seconds
  repeat
    local ftype, payload = chaos.read_frame(c)
    if ftype == F.RECORD then
      local _, _, client, line = string.unpack(">i8i4s2s2", payload)
      seen[client] = line
    end
  until socket.gettime() > deadline
  return seen
end

local function send_record(c, client, sec, line)
  c:send(chaos.frame(F.RECORD, chaos.record_payload(client, sec, 0, line)))
end

describe("records from peers", function()
  local h, p, q

  after_each(function()
    if p then p:close() end
    if q then q:close() end
    p, q = nil, nil
    if h then h:stop() end
    h = nil
  end)

  local function start(opts, limits)
    h = herd.start(conf(limits), opts or { only = { "H" } })
    p = assert(chaos.peer_login("127.0.0.1", H_PEER, "P", "H", herd.secret))
    q = assert(chaos.peer_login("127.0.0.1", H_PEER, "Q", "H", herd.secret))
    assert.truthy(herd.eventually(function()
      local links = h:ctl("H", "links") or ""
      return select(2, links:gsub(" up", "")) >= 2
    end, 5), "the links to P and Q did not come up")
  end

  it("stores a newer record and floods it to the other neighbours, not back", function()
    start()
    local line = at_line("P", "kiwi", "1700000000.0")
    send_record(p, "kiwi", 1700000000, line)
    assert.equal(line, records_seen(q, 0.5).kiwi)
    assert.is_nil(records_seen(p, 0.2).kiwi)
    assert.equal(line, h:record("H", "kiwi"))
    -- A final newline is not kept (as core.store.put).
    local lime = at_line("P", "lime", "1700000000.0")
    send_record(p, "lime", 1700000000, lime .. "\n")
    assert.equal(lime, records_seen(q, 0.5).lime)
    -- The same record again is no newer: neither stored again nor flooded.
    local before = h:stats("H")
    send_record(q, "kiwi", 1700000000, line)
    assert.is_nil(records_seen(p, 0.3).kiwi)
    local after = h:stats("H")
    assert.equal(before.peer_records_stale + 1, after.peer_records_stale)
    assert.equal(before.peer_records_forwarded, after.peer_records_forwarded)
  end)

  it("drops a record that disagrees with its fields or is out of range, naming the sender", function()
    start()
    local cases = {
      { "bad1", 700, "HELLO there", "not an AT line" },
      { "bad2", 700, at_line("P", "other", "700.0"), "client does not match" },
      { "bad3", 700, at_line("P", "bad3", "701.0"), "timestamp does not match" },
      { "bad4", 700, at_line("P", "bad4", "700.0", "+91+1"), "latitude out of range" },
      { "bad5", 700, at_line("P", "bad5", "700.0", "+1-180.5"), "longitude out of range" },
    }
    for _, c in ipairs(cases) do send_record(p, c[1], c[2], c[3]) end
    assert.same({}, records_seen(q, 0.3))
    local log = h:log("H")
    for _, c in ipairs(cases) do
      assert.is_nil(h:record("H", c[1]), c[1] .. " was stored")
      assert.truthy(log:find("record from P dropped: " .. c[4], 1, true),
        "no warning for " .. c[1] .. " in:\n" .. log)
    end
    -- The link stays up and later records still count.
    send_record(p, "kiwi", 800, at_line("P", "kiwi", "800.0"))
    assert.equal(at_line("P", "kiwi", "800.0"), records_seen(q, 0.5).kiwi)
  end)

  it("hands each new record to a script that chains on_record, which may pass it on", function()
    local dir = herd.tmpdir()
    local script = dir .. "/only_k.lua"
    herd.write_file(script, [[
local core = require "core"
-- Keeps only clients whose id starts with "k"; logs what it sees.
return {
  on_record = function(from, client, sec, nsec, line, next)
    core.log("saw " .. client .. " from " .. from)
    if client:sub(1, 1) ~= "k" then return end
    return next(from, client, sec, nsec, line)
  end,
}
]])
    start({ only = { "H" }, scripts = { script } })
    send_record(p, "kiwi", 900, at_line("P", "kiwi", "900.0"))
    send_record(p, "lime", 900, at_line("P", "lime", "900.0"))
    local seen = records_seen(q, 0.5)
    assert.equal(at_line("P", "kiwi", "900.0"), seen.kiwi)
    assert.is_nil(seen.lime)
    assert.equal(at_line("P", "kiwi", "900.0"), h:record("H", "kiwi"))
    assert.is_nil(h:record("H", "lime"))
    local log = h:log("H")
    assert.truthy(log:find("saw kiwi from P", 1, true))
    assert.truthy(log:find("saw lime from P", 1, true))
  end)

  it("keeps at most max_records clients, and still updates the ones it has", function()
    start(nil, { max_records = 2 })
    local c = h:client("H")
    local function iamat(client, t)
      return c:request(("IAMAT %s +1+1 %s"):format(client, t))
    end
    assert.matches("^AT H ", iamat("a", "1000.5"))
    assert.matches("^AT H ", iamat("b", "1000.5"))
    assert.equal("? IAMAT c +1+1 1000.5", iamat("c", "1000.5"))
    assert.matches("^AT H .* a %+1%+1 1001%.5$", iamat("a", "1001.5"))
    c:close()
    assert.is_nil(h:record("H", "c"))
    -- A peer's record for a new client is refused too, and not flooded on.
    send_record(p, "d", 1000, at_line("P", "d", "1000.0"))
    send_record(p, "b", 1001, at_line("P", "b", "1001.0"))
    local seen = records_seen(q, 0.5)
    assert.is_nil(seen.d)
    assert.equal(at_line("P", "b", "1001.0"), seen.b)
    local stats = h:stats("H")
    assert.equal(2, stats.records)
    assert.equal(2, stats.records_refused) -- c from a client, d from a peer
    -- One log line a second for refusals, however many there are.
    local log = h:log("H")
    assert.truthy(log:find("record for c refused: store full", 1, true), log)
    assert.equal(1, select(2, log:gsub("refused: store full", "")))
  end)
end)
