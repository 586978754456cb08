-- Escapes from the instruction budget (issue 13, items 1, 4 and 14): a loop
-- inside a coroutine (wrapped, resumed, nested, or resumed later from a
-- timer) and a script that replaces the budget's hook are stopped like any
-- loop; the error names the looping script's line and its traceback is
-- logged one line per line; the DEFAULT budget stops `while true do end`
-- within the bound the docs state. The tool script is
-- tests/chaos/tools/runaway.lua. Ports: clients 11530-11531, peers
-- 12530-12531.
local herd = require "helpers.herd"
local chaos = require "helpers.chaos"
local socket = require "socket"

local TOOL = chaos.ROOT .. "/tests/chaos/tools/runaway.lua"

local function start(port, limits)
  return herd.start({ servers = { S = { port = port, peer_port = port + 1000 } }, links = {},
    limits = limits }, { scripts = { TOOL } })
end

-- Sends cmd on a new connection; its reply (or nil, err) and milliseconds.
local function timed(h, cmd)
  local c = h:client("S", 20)
  local t0 = socket.gettime()
  local reply, err = c:request(cmd)
  local ms = (socket.gettime() - t0) * 1000
  c:close()
  return reply, err, ms
end

-- The line of the tool script that holds marker.
local function line_of(marker)
  local n = 0
  for l in io.lines(TOOL) do
    n = n + 1
    if l:find(marker, 1, true) then return n end
  end
  error("no line with " .. marker)
end

describe("the instruction budget inside coroutines #chaos", function()
  local h
  lazy_setup(function() h = start(11530, { lua_budget = 5000000 }) end)
  lazy_teardown(function() if h then h:stop() end end)

  it("stops loops in wrapped, resumed and nested coroutines, __close and __gc handlers, and a script's own hook", function()
    local rows = {}
    for _, cmd in ipairs({ "COLOOP", "CORESUME", "CONEST", "CLOSELOOP", "GCLOOP", "HOOKLOOP" }) do
      local reply, err, ms = timed(h, cmd)
      rows[#rows + 1] = ("%s -> %s in %.0f ms"):format(cmd, tostring(reply or err), ms)
      assert.equal("? " .. cmd, reply)
      assert.is_true(ms < 2000, rows[#rows])
    end
    print("\ncoroutine escapes (lua_budget 5000000): " .. table.concat(rows, "; "))
    assert.matches("^AT S ", (timed(h, "IAMAT co +1+1 1.5")))
  end)

  it("refuses precompiled chunks, which the VM does not verify", function()
    assert.equal("refused: attempt to load a binary chunk (mode is 't')", (timed(h, "BYTECODE")))
  end)

  it("stops a coroutine resumed later from a timer", function()
    assert.equal("armed", (timed(h, "COLATER")))
    -- The timer runs the loop on the next loop turn; the server must come
    -- back and answer.
    local reply, err, ms = timed(h, "IAMAT later +1+1 1.5")
    print(("\na coroutine resumed from a timer, looping: the next request answered in %.0f ms"):format(ms))
    assert.matches("^AT S ", reply or err)
    assert.is_true(ms < 2000)
    assert.truthy(herd.eventually(function()
      return h:log("S"):find("ERROR timer: [^\n]*script exceeded its budget")
    end, 5), "no budget error for the timer")
  end)

  it("answers `herd ctl stats` and `links` after a script replaced what they used to look up", function()
    assert.equal("broken", (timed(h, "BREAKCORE")))
    local stats = h:ctl("S", "stats")
    assert.truthy(stats and stats:match("lua_states 1\n"), "no stats: " .. tostring(stats))
    assert.truthy(h:ctl("S", "links"), "no answer to links")
    assert.matches("^AT S ", (timed(h, "IAMAT broken +1+1 1.5")))
  end)

  it("names the looping line, and logs the traceback one line per line", function()
    assert.equal("? LOOP", (timed(h, "LOOP")))
    local log = h:log("S")
    local where = "runaway.lua:" .. line_of("-- the LOOP line") .. ": script exceeded its budget"
    assert.truthy(log:find("on_line: [^\n]*" .. where:gsub("%p", "%%%0")),
      "the error does not name " .. where)
    assert.falsy(log:find("protocol.lua:%d+: script exceeded"), "the error names the dispatcher")
    assert.truthy(log:find("ERROR on_line: | stack traceback:", 1, true), "no traceback line")
    assert.truthy(log:find("ERROR on_line: |   [^\n]*runaway.lua:"), "no traceback line naming the script")
    for l in log:gmatch("[^\n]*ERROR[^\n]*") do
      assert.falsy(l:find("\\n", 1, true), "a log line with a literal \\n: " .. l)
    end
  end)
end)

describe("the default instruction budget #chaos", function()
  local h
  lazy_setup(function() h = start(11531, nil) end)
  lazy_teardown(function() if h then h:stop() end end)

  -- CPU seconds (user + system) the server has used, from /proc.
  local CLK_TCK = tonumber(herd.sh("getconf CLK_TCK")) or 100
  local function cpu_s(pid)
    local stat = herd.read_file("/proc/" .. pid .. "/stat")
    local rest = stat:match("%) (.*)$") -- fields after the command name
    local f = {}
    for w in rest:gmatch("%S+") do f[#f + 1] = w end
    return (tonumber(f[12]) + tonumber(f[13])) / CLK_TCK -- utime, stime
  end

  -- docs/core-api.md and docs/reliability.md state these bounds for the
  -- default budget (10,000,000 instructions, or 1 s of CPU for a call whose
  -- few instructions each run costly C code): `while true do end` costs the
  -- server about 0.04 s of CPU, a loop of string.rep about 1 s. CPU time
  -- does not stretch when other processes share the machine, so its bound
  -- can be honest (the wall-clock bound allows for a loaded machine).
  local BOUNDS = { LOOP = { cpu = 100, wall = 500 }, CLOOP = { cpu = 1500, wall = 4000 } }
  if herd.bin:find("/san/", 1, true) then -- ASan: 5 s of CPU (core/script.c)
    BOUNDS.LOOP = { cpu = 300, wall = 1500 }
    BOUNDS.CLOOP = { cpu = 6000, wall = 15000 }
  end

  for _, cmd in ipairs({ "LOOP", "CLOOP" }) do
    it("stops " .. cmd .. " within the documented bound", function()
      local times, n = {}, cmd == "LOOP" and 5 or 3
      local cpu0 = cpu_s(h:pid("S"))
      for i = 1, n do
        local reply, err, ms = timed(h, cmd)
        assert.equal("? " .. cmd, reply or err)
        times[i] = ms
      end
      local cpu_ms = (cpu_s(h:pid("S")) - cpu0) * 1000 / n
      table.sort(times)
      local median = times[(n + 1) // 2]
      print(("\ndefault lua_budget, %s: %.0f ms of server CPU per call; wall median %.0f ms, worst %.0f ms of %d")
        :format(cmd, cpu_ms, median, times[n], n))
      assert.is_true(cpu_ms < BOUNDS[cmd].cpu, ("%.0f ms of CPU per call"):format(cpu_ms))
      assert.is_true(median < BOUNDS[cmd].wall, ("median %.0f ms"):format(median))
    end)
  end
end)
