-- Scripts cannot take the server down: a hook stuck in a loop (with or
-- without pcall) is stopped by the instruction budget, a hook that
-- allocates without end by the Lua memory cap, unbounded recursion and odd
-- error values by the error path; each failing line is answered "? ", the
-- server keeps serving a well-behaved client (checker) meanwhile, and no
-- Lua reference or connection is left behind. Ports: client 27020.
local herd = require "helpers.herd"
local chaos = require "helpers.chaos"
local socket = require "socket"

local LIMITS = { lua_memory_mb = 32, lua_budget = 5000000 }

describe("runaway scripts #chaos", function()
  local h, chk
  lazy_setup(function()
    h = herd.start({ servers = { S = { port = 27020, peer_port = 28020 } }, links = {},
      limits = LIMITS }, { scripts = { chaos.ROOT .. "/tests/chaos/tools/runaway.lua" } })
    chk = chaos.checker({ port = 27020, name = "S", seconds = 120 })
  end)
  lazy_teardown(function()
    if chk and chk.pid then chaos.stop_pid(chk.pid) end
    if h then h:stop() end
  end)

  it("stops every kind of runaway hook with '? ' and keeps serving", function()
    local before = h:stats("S")
    local rows = {}
    for _, cmd in ipairs({ "LOOP", "LOOPPCALL", "CATCHLOOP", "HOG", "DEEP", "RAISE", "HOGPCALL" }) do
      local c = h:client("S", 30)
      local t0 = socket.gettime()
      local reply = c:request(cmd)
      local ms = (socket.gettime() - t0) * 1000
      -- The connection still works after its failed line.
      local after = c:request("IAMAT runaway +1+1 1.5")
      c:close()
      rows[#rows + 1] = ("%s -> %q in %.0f ms"):format(cmd, reply, ms)
      if cmd == "HOGPCALL" then
        assert.equal("caught 5", reply)
      else
        assert.equal("? " .. cmd, reply)
      end
      assert.matches("^AT S ", after)
    end
    local st = h:stats("S")
    local r = chk:stop()
    chk = nil
    print("\nrunaway hooks (lua_budget " .. LIMITS.lua_budget .. ", lua_memory_mb "
      .. LIMITS.lua_memory_mb .. "): " .. table.concat(rows, "; "))
    print(("  Lua memory after: %.1f MiB (cap %d MiB); Lua references %d before, %d after; "
      .. "script errors %d; checker: %d answers, %d wrong, %d errors, worst %.0f ms"):format(
      st.lua_memory / 1048576, LIMITS.lua_memory_mb, before.lua_refs, st.lua_refs,
      st.script_errors - before.script_errors, r.ok, r.wrong, r.errors, r.max_ms or -1))
    assert.is_true(st.lua_memory < LIMITS.lua_memory_mb * 1048576)
    assert.equal(before.lua_refs, st.lua_refs)
    assert.equal(0, r.wrong)
    assert.equal(0, r.errors)
    assert.truthy(h:log("S"):find("budget", 1, true), "no budget error logged")
    assert.truthy(h:log("S"):find("not enough memory", 1, true), "no memory error logged")
  end)
end)
