-- The fake core (tests/helpers/fake_core.lua) against the real one: one
-- table of cases, run step by step against
--   fake    the fake's model of the record rule and the store
--   binding the real rule and store, core/records.c and core/store.c, in a
--           test module (tests/c/records_lua.c, helpers.real_core), the
--           transport stubbed
--   live    a running server H with neighbours P and Q played by this spec
--           over the peer wire format, and a neighbour R that is down
-- and after each step the same observations must come out of each: what
-- accept_record returned, the stored line and the store's count, which
-- live neighbours the record was flooded to, and the warning logged.
-- Steps:
--   own   core.accept_record(nil, ...): a record of H's own (an IAMAT's)
--   hook  core.accept_record(from, ...): what a script's on_record passes on
--   peer  a record neighbour `from` floods to H (live: a RECORD frame)
--   sync  one that came by a reconciliation pull (fake and binding only:
--         the live server pulls only from real neighbours; the pull's
--         no-flood on a live herd is catchup_spec's and reconcile_spec's)
-- The live server takes own and hook steps through a test script's
-- ACCEPT and GET verbs, and learns a step's floods by a barrier record
-- flooded after it (frames on a link arrive in order).
-- Ports 29401-29404 (clients), 30401-30404 (peers).
local herd = require "helpers.herd"
local chaos = require "helpers.chaos"
local fake_core = require "helpers.fake_core"
local real_core = require "helpers.real_core"

local F = chaos.F
local LIVE = { "P", "Q" } -- the neighbours that are up; R is down
local NONE = {} -- "no stored record", "returned nil"

local function at(server, client, t, loc)
  return ("AT %s +0.000000001 %s %s %s"):format(server, client, loc or "+1+1", t)
end

-- Each step: { kind, from, client, sec, nsec, line, expected... }:
--   result  what accept_record returned (own, hook) or the pull stored
--           (sync); NONE for nil
--   err     its second value
--   stored  the stored line for client afterwards (NONE: none)
--   count   records in the store, counted from the case's start
--   floods  { "client>neighbour", ... } among LIVE
--   warn    a piece of the one warning logged, if any
--   seen    calls of a script's on_record hook during the step, for a case
--           with on_record = true (fake and binding: H runs the built-in
--           rule, whose skip of stale records records_spec counts in
--           peer_records_stale)
local CASES = {
  {
    name = "newer, older and equal timestamps",
    { "own", nil, "kiwi", 100, 0, at("H", "kiwi", "100.0"), result = true,
      stored = at("H", "kiwi", "100.0"), count = 1, floods = { "kiwi>P", "kiwi>Q" } },
    { "peer", "P", "kiwi", 101, 500000000, at("P", "kiwi", "101.5"),
      stored = at("P", "kiwi", "101.5"), count = 1, floods = { "kiwi>Q" } },
    { "peer", "Q", "kiwi", 101, 400000000, at("Q", "kiwi", "101.4"),
      stored = at("P", "kiwi", "101.5"), count = 1, floods = {} },
    { "peer", "Q", "kiwi", 99, 900000000, at("Q", "kiwi", "99.9"),
      stored = at("P", "kiwi", "101.5"), count = 1, floods = {} },
    { "peer", "Q", "kiwi", 101, 500000000, at("P", "kiwi", "101.5"),
      stored = at("P", "kiwi", "101.5"), count = 1, floods = {} },
    { "hook", "Q", "kiwi", 101, 500000000, at("P", "kiwi", "101.5"), result = false,
      stored = at("P", "kiwi", "101.5"), count = 1, floods = {} },
    { "own", nil, "kiwi", 100, 0, at("H", "kiwi", "100.0"), result = false,
      stored = at("P", "kiwi", "101.5"), count = 1, floods = {} },
    { "hook", "Q", "kiwi", 102, 0, at("Q", "kiwi", "102.0"), result = true,
      stored = at("Q", "kiwi", "102.0"), count = 1, floods = { "kiwi>P" } },
    { "own", nil, "lime", 1, 0, at("H", "lime", "1.0"), result = true,
      stored = at("H", "lime", "1.0"), count = 2, floods = { "lime>P", "lime>Q" } },
  },
  {
    name = "equal timestamps: the greater line wins, byte by byte",
    { "peer", "P", "fig", 200, 500000000, at("P", "fig", "200.5", "+10-10"),
      stored = at("P", "fig", "200.5", "+10-10"), count = 1, floods = { "fig>Q" } },
    { "peer", "Q", "fig", 200, 500000000, at("Q", "fig", "200.5", "+10-10"),
      stored = at("Q", "fig", "200.5", "+10-10"), count = 1, floods = { "fig>P" } },
    { "peer", "P", "fig", 200, 500000000, at("P", "fig", "200.5", "+20-20"),
      stored = at("Q", "fig", "200.5", "+10-10"), count = 1, floods = {} },
    { "own", nil, "fig", 200, 500000000, at("Q", "fig", "200.5", "+20-20"), result = true,
      stored = at("Q", "fig", "200.5", "+20-20"), count = 1, floods = { "fig>P", "fig>Q" } },
    { "own", nil, "fig", 200, 500000000, at("Q", "fig", "200.5", "+15-15"), result = false,
      stored = at("Q", "fig", "200.5", "+20-20"), count = 1, floods = {} },
    -- The same line with its newline is the same record.
    { "own", nil, "fig", 200, 500000000, at("Q", "fig", "200.5", "+20-20") .. "\n", result = false,
      stored = at("Q", "fig", "200.5", "+20-20"), count = 1, floods = {} },
    -- A longer line that the stored one begins is the greater.
    { "own", nil, "fig", 200, 500000000, at("Q", "fig", "200.5", "+20-20") .. " ", result = true,
      stored = at("Q", "fig", "200.5", "+20-20") .. " ", count = 1, floods = { "fig>P", "fig>Q" } },
    -- Bytes compare unsigned: 0xC3 is greater than "Q".
    { "own", nil, "fig", 200, 500000000, at("\xC3\xA9", "fig", "200.5"), result = true,
      stored = at("\xC3\xA9", "fig", "200.5"), count = 1, floods = { "fig>P", "fig>Q" } },
    -- A later nanosecond beats any line.
    { "peer", "P", "fig", 200, 500000001, at("A", "fig", "200.500000001"),
      stored = at("A", "fig", "200.500000001"), count = 1, floods = { "fig>Q" } },
  },
  {
    name = "malformed lines and client or time mismatches from peers",
    { "peer", "P", "bad1", 700, 0, "HELLO there", stored = NONE, count = 0, floods = {},
      warn = "record from P dropped: not an AT line" },
    { "peer", "P", "bad2", 700, 0, at("P", "other", "700.0"), stored = NONE, count = 0,
      floods = {}, warn = "record from P dropped: client does not match" },
    { "peer", "P", "bad3", 700, 0, at("P", "bad3", "701.0"), stored = NONE, count = 0,
      floods = {}, warn = "record from P dropped: timestamp does not match" },
    { "peer", "Q", "bad4", 700, 0, at("Q", "bad4", "700.0", "+91+1"), stored = NONE,
      count = 0, floods = {}, warn = "record from Q dropped: latitude out of range" },
    { "peer", "P", "bad5", 700, 0, "AT P 0.5 bad5 +1+1 700.0", stored = NONE, count = 0,
      floods = {}, warn = "record from P dropped: not an AT line: bad time difference" },
    { "hook", "Q", "bad6", 700, 0, at("Q", "bad6", "700.0") .. " extra", result = NONE,
      err = "not an AT line", stored = NONE, count = 0, floods = {},
      warn = "record from Q dropped: not an AT line" },
    { "hook", "Q", "bad7", 700, 0, at("Q", "bad7", "700.0"), result = true,
      stored = at("Q", "bad7", "700.0"), count = 1, floods = { "bad7>P" } },
    -- H's own records are H's lines: not checked.
    { "own", nil, "bad8", 700, 0, "not checked at all", result = true,
      stored = "not checked at all", count = 2, floods = { "bad8>P", "bad8>Q" } },
  },
  {
    name = "what the store refuses",
    { "own", nil, ("x"):rep(1025), 5, 0, at("H", ("x"):rep(1025), "5.0"), result = NONE,
      err = "record too long or empty", stored = NONE, count = 0, floods = {},
      warn = "refused: record too long or empty" },
    { "own", nil, "void", 5, 0, "\n", result = NONE, err = "record too long or empty",
      stored = NONE, count = 0, floods = {}, warn = "record for void refused: record too long or empty" },
    { "own", nil, ("y"):rep(1024), 5, 0, at("H", ("y"):rep(1024), "5.0"), result = true,
      stored = at("H", ("y"):rep(1024), "5.0"), count = 1, floods = { ("y"):rep(1024) .. ">P", ("y"):rep(1024) .. ">Q" } },
  },
  {
    name = "records by reconciliation are stored, not flooded",
    { "sync", "P", "pear", 300, 0, at("P", "pear", "300.0"), result = 1,
      stored = at("P", "pear", "300.0"), count = 1, floods = {} },
    { "sync", "P", "pear", 299, 0, at("P", "pear", "299.0"), result = 0,
      stored = at("P", "pear", "300.0"), count = 1, floods = {} },
    { "sync", "Q", "pear", 300, 0, at("P", "pear", "300.0"), result = 0,
      stored = at("P", "pear", "300.0"), count = 1, floods = {} },
    { "sync", "Q", "plum", 300, 0, at("Q", "plum", "301.0"), result = 0, stored = NONE,
      count = 1, floods = {}, warn = "record from Q dropped: timestamp does not match" },
    { "peer", "Q", "pear", 301, 0, at("Q", "pear", "301.0"),
      stored = at("Q", "pear", "301.0"), count = 1, floods = { "pear>P" } },
    { "sync", "Q", "pear", 302, 0, at("Q", "pear", "302.0"), result = 1,
      stored = at("Q", "pear", "302.0"), count = 1, floods = {} },
  },
  {
    name = "a script's on_record gets only records newer than the stored one",
    on_record = true, -- a hook that counts its calls and passes each on
    { "peer", "P", "date", 400, 0, at("P", "date", "400.0"), seen = 1,
      stored = at("P", "date", "400.0"), count = 1, floods = { "date>Q" } },
    { "peer", "Q", "date", 400, 0, at("P", "date", "400.0"), seen = 0,
      stored = at("P", "date", "400.0"), count = 1, floods = {} },
    { "peer", "Q", "date", 399, 0, at("Q", "date", "399.0"), seen = 0,
      stored = at("P", "date", "400.0"), count = 1, floods = {} },
    { "sync", "Q", "date", 400, 0, at("A", "date", "400.0"), seen = 0, result = 0,
      stored = at("P", "date", "400.0"), count = 1, floods = {} },
    { "sync", "Q", "date", 400, 0, at("Q", "date", "400.0"), seen = 1, result = 1,
      stored = at("Q", "date", "400.0"), count = 1, floods = {} },
    { "peer", "P", "date", 401, 0, at("P", "date", "401.0") .. " extra", seen = 1,
      stored = at("Q", "date", "400.0"), count = 1, floods = {},
      warn = "record from P dropped: not an AT line" },
  },
}

-- ---- the fake and the binding: one driver over a core table -------------

local function receivers(floods)
  local out = {}
  for _, f in ipairs(floods) do
    for _, n in ipairs(LIVE) do
      if n ~= f.except then out[#out + 1] = f.client .. ">" .. n end
    end
  end
  table.sort(out)
  return out
end

local function table_driver(name, make)
  local core, base_floods, base_warn
  local d = { name = name }
  local calls
  function d.begin(case)
    core = make()
    base_floods, base_warn, calls = 0, 0, 0
    if case.on_record then
      function core.on_record(...)
        calls = calls + 1
        return core.accept_record(...)
      end
    end
  end
  function d.step(s)
    local kind, from, client, sec, nsec, line = table.unpack(s, 1, 6)
    local o = {}
    if kind == "own" or kind == "hook" then
      o.result, o.err = core.accept_record(from, client, sec, nsec, line)
    elseif kind == "peer" then
      core.receive(from, client, sec, nsec, line)
    else
      o.result = core.receive(from, client, sec, nsec, line, true)
    end
    o.seen, calls = calls, 0
    o.stored = core.store.get(client)
    o.count = core.store.count()
    o.floods = receivers({ table.unpack(core.floods, base_floods + 1) })
    o.warnings = { table.unpack(core.warnings, base_warn + 1) }
    base_floods, base_warn = #core.floods, #core.warnings
    return o
  end
  return d
end

-- ---- the live server -------------------------------------------------

-- ACCEPT <from|-> <client> <sec> <nsec> <line>, GET <client>: ids and
-- lines in hex, so any byte crosses the client protocol.
local VERBS = [[
local core = require "core"
local commands = require "commands"
local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end
local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end
commands.ACCEPT = function(conn, line)
  local from, client, sec, nsec, l = line:match("^ACCEPT (%S+) (%x+) (%d+) (%d+) (%S+)$")
  if not from then return nil end
  local ok, err = core.accept_record(from ~= "-" and from or nil, unhex(client),
    math.tointeger(tonumber(sec)), math.tointeger(tonumber(nsec)), l == "-" and "" or unhex(l))
  return ("R %s %s\n"):format(tostring(ok), err or "")
end
commands.GET = function(conn, line)
  local rec = core.store.get(unhex(line:match("^GET (%x+)$")))
  return ("G %d %s\n"):format(core.store.count(), rec and hex(rec) or "-")
end
return {}
]]

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end
local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local function live_driver()
  local d = { name = "live", skips = { sync = true } }
  local h, c, peers, barrier, base, log_at = nil, nil, {}, 0, 0, 0

  local function request(line)
    local reply = assert(c:request(line))
    return reply
  end
  local function accept(from, client, sec, nsec, line)
    local reply = request(("ACCEPT %s %s %d %d %s"):format(from or "-", hex(client), sec, nsec,
      line == "" and "-" or hex(line)))
    local r, err = reply:match("^R (%S+) ?(.*)$")
    assert(r, "bad ACCEPT reply: " .. reply)
    local result = ({ ["true"] = true, ["false"] = false })[r]
    return result, err ~= "" and err or nil
  end

  -- Reads n's frames up to the record of id at sec, answering pings; the
  -- records before it go into out as "client>n".
  local function read_until(n, id, sec, out)
    local s = peers[n]
    s:settimeout(5)
    while true do
      local ftype, payload = chaos.read_frame(s)
      assert(ftype, n .. ": no " .. id .. " record within 5 s: " .. tostring(payload))
      if ftype == F.PING then
        s:send(chaos.frame(F.PONG))
      elseif ftype == F.RECORD then
        local t, _, client = string.unpack(">i8i4s2s2", payload)
        if client == id and t == sec then return end
        out[#out + 1] = client .. ">" .. n
      end
    end
  end

  -- What a step flooded: a barrier record is flooded after it, and each
  -- neighbour's frames are read up to it (a link's frames keep their
  -- order). A step that came over a link (from) is followed by a barrier
  -- on that link first, so that H has read it before the last barrier.
  local function step_floods(from)
    barrier = barrier + 1
    local out = {}
    if from then
      local id = "~barrier-" .. from
      peers[from]:send(chaos.frame(F.RECORD,
        chaos.record_payload(id, barrier, 0, at(from, id, barrier .. ".0"))))
      for _, n in ipairs(LIVE) do
        if n ~= from then read_until(n, id, barrier, out) end
      end
    end
    local id = "~barrier"
    assert(accept(nil, id, barrier, 0, at("H", id, barrier .. ".0")) == true)
    for _, n in ipairs(LIVE) do read_until(n, id, barrier, out) end
    table.sort(out)
    return out
  end

  local function new_warnings()
    local text = h:log("H")
    local out = {}
    for line in text:sub(log_at + 1):gmatch("[^\n]+") do
      local msg = line:match('"kind":"WARN".-"msg":"(.*)"}$') or line:match(" WARN (.*)$")
      if msg then out[#out + 1] = msg end
    end
    log_at = #text
    return out
  end

  local function count()
    return tonumber(request("GET " .. hex("~barrier")):match("^G (%d+)"))
  end

  function d.start()
    local dir = herd.tmpdir()
    herd.write_file(dir .. "/verbs.lua", VERBS)
    local servers, links = {}, {}
    for i, n in ipairs({ "H", "P", "Q", "R" }) do
      servers[n] = { port = 29400 + i, peer_port = 30400 + i }
      if n ~= "H" then links[#links + 1] = { "H", n } end
    end
    h = herd.start({ servers = servers, links = links,
      links_redial = { min_ms = 5000, max_ms = 10000 } },
      { only = { "H" }, scripts = { dir .. "/verbs.lua" } })
    for _, n in ipairs(LIVE) do
      peers[n] = assert(chaos.peer_login("127.0.0.1", 30401, n, "H", herd.secret))
    end
    assert(herd.eventually(function()
      return select(2, (h:ctl("H", "links") or ""):gsub(" up", "")) >= #LIVE
    end, 5), "the links to P and Q did not come up")
    c = h:client("H")
    -- The barriers' records are in the store from now on.
    for _, n in ipairs(LIVE) do step_floods(n) end
    new_warnings()
  end
  function d.stop()
    if c then c:close() end
    for _, s in pairs(peers) do s:close() end
    if h then h:stop() end
  end
  function d.begin() base = count() end
  function d.step(s)
    local kind, from, client, sec, nsec, line = table.unpack(s, 1, 6)
    local o = {}
    if kind == "own" or kind == "hook" then
      o.result, o.err = accept(from, client, sec, nsec, line)
    else
      peers[from]:send(chaos.frame(F.RECORD, chaos.record_payload(client, sec, nsec, line)))
    end
    o.floods = step_floods(kind == "peer" and from or nil)
    local reply = request("GET " .. hex(client))
    local n, rec = reply:match("^G (%d+) (%S+)$")
    o.count = tonumber(n) - base
    o.stored = rec ~= "-" and unhex(rec) or nil
    o.warnings = new_warnings()
    return o
  end
  return d
end

-- ---- the comparison ------------------------------------------------------

local function check(driver, case)
  driver.begin(case)
  for i, s in ipairs(case) do
    local where = ("%s, step %d (%s %s %s)"):format(driver.name, i, s[1], s[2] or "-", s[3]:sub(1, 20))
    local o = driver.step(s)
    if s[1] ~= "peer" then
      local want = s.result
      if want == NONE then want = nil end
      assert.are.equal(want, o.result, where .. ": result")
      assert.are.equal(s.err, o.err, where .. ": error")
    end
    if s.seen then assert.are.equal(s.seen, o.seen, where .. ": calls of on_record") end
    local stored = s.stored ~= NONE and s.stored or nil
    assert.are.equal(stored, o.stored, where .. ": stored line")
    assert.are.equal(s.count, o.count, where .. ": count")
    assert.are.same(s.floods, o.floods, where .. ": floods")
    if s.warn then
      assert.are.equal(1, #o.warnings, where .. ": one warning, got:\n" .. table.concat(o.warnings, "\n"))
      assert.truthy(o.warnings[1]:find(s.warn, 1, true), where .. ": warning " .. o.warnings[1])
    else
      assert.are.same({}, o.warnings, where .. ": no warning")
    end
  end
end

describe("the fake core and the real one", function()
  it("the cases use distinct clients (the live server keeps one store)", function()
    local seen = {}
    for _, case in ipairs(CASES) do
      local mine = {}
      for _, s in ipairs(case) do
        assert.is_nil(seen[s[3]], s[3] .. " is in two cases")
        mine[s[3]] = true
      end
      for k in pairs(mine) do seen[k] = true end
    end
  end)

  local drivers = {
    table_driver("fake", function() return fake_core.new({ name = "H" }) end),
    table_driver("binding", function() return real_core.attach(fake_core.new({ name = "H" })) end),
  }
  for _, driver in ipairs(drivers) do
    for _, case in ipairs(CASES) do
      it(driver.name .. ": " .. case.name, function() check(driver, case) end)
    end
  end

  describe("live", function()
    local live = live_driver()
    lazy_setup(function() live.start() end)
    lazy_teardown(function() live.stop() end)
    for _, case in ipairs(CASES) do
      local runs = not case.on_record -- the live H runs no such hook
      for _, s in ipairs(case) do runs = runs and not live.skips[s[1]] end
      if runs then it("live: " .. case.name, function() check(live, case) end) end
    end
  end)
end)
