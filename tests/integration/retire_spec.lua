-- A Lua state replaced by a reload closes even if its script keeps re-arming
-- core.after, the usual recurring-timer idiom (issue 13, item 3): at the
-- reload each pending timer of the old state runs once with premature =
-- true, the old state may start no timer or request from then on, and the
-- state is closed once its requests in flight are done (stat lua_states).
-- Ports: clients 11520-11521, peers 12520-12521.
local herd = require "helpers.herd"

-- A script that logs "tick <generation>" every 20 ms by re-arming a
-- one-shot timer, and tries to re-arm even when told it is premature.
local SCRIPT = [[
local core = require "core"
local gen = tostring(core.now())
local function tick(premature)
  if premature then
    local id, err = core.after(20, tick)
    core.log(("premature %s, re-arm: %s %s"):format(gen, tostring(id), tostring(err)))
    return
  end
  core.log("tick " .. gen)
  core.after(20, tick)
end
return { on_start = function() core.log("gen " .. gen) core.after(20, tick) end }
]]

local function count(text, plain)
  local n, at = 0, 1
  while true do
    local s, e = text:find(plain, at, true)
    if not s then return n end
    n, at = n + 1, e + 1
  end
end

describe("a reload and the old scripts' timers #integration", function()
  local h, dir
  lazy_setup(function()
    dir = herd.tmpdir()
    herd.write_file(dir .. "/ticker.lua", SCRIPT)
    h = herd.start({ servers = { S = { port = 11520, peer_port = 12520 } }, links = {},
      scripts = { "protocol", "topology", dir .. "/ticker.lua" } })
  end)
  lazy_teardown(function()
    if h then h:stop() end
    if dir then os.execute("rm -rf '" .. dir .. "'") end
  end)

  it("tells them they are premature, refuses their re-arms, and closes the old state", function()
    local old = herd.eventually(function() return h:log("S"):match("gen (%d+)") end, 5)
    assert.truthy(old, "the ticker did not start")
    assert.truthy(herd.eventually(function() return count(h:log("S"), "tick " .. old) >= 3 end, 5))

    assert.matches("^ok: ", h:ctl("S", "reload"))
    local t0 = herd.now()
    -- The old script's ticks stop: no new one in 0.3 s, within 3 s.
    local ticks, stopped = count(h:log("S"), "tick " .. old), false
    for _ = 1, 10 do
      herd.sleep(0.3)
      local n = count(h:log("S"), "tick " .. old)
      if n == ticks then stopped = true break end
      ticks = n
    end
    assert.is_true(stopped, "the old script still ticks 3 s after the reload")
    local log = h:log("S")
    assert.truthy(log:find("premature " .. old .. ", re-arm: nil these scripts were replaced by a reload", 1, true),
      "the old timer was not told, or its re-arm was not refused")
    -- The old state goes within the reaper's period (1 s) plus slack.
    local states = herd.eventually(function()
      local n = h:stats("S").lua_states
      return n == 1 and n
    end, 3)
    assert.equal(1, states, "the old Lua state is still open 3 s after the reload")
    -- The new state's timer runs.
    local new = log:match(".*gen (%d+)")
    assert.are_not.equal(old, new)
    assert.truthy(herd.eventually(function() return count(h:log("S"), "tick " .. new) >= 3 end, 5),
      "the new state's timer does not run")
    print(("\nreload at %s: old state closed, %d ticks of the old script in all, premature call refused its re-arm")
      :format(t0, ticks))
  end)
end)
