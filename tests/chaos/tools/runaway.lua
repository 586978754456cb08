-- An extra script for tests/chaos/runaway_spec.lua and guards_spec.lua:
-- commands that misbehave in every way a script can, wrapped around the
-- built-in protocol.
--   LOOP        a loop that never ends
--   LOOPPCALL   a loop that never ends, each turn inside pcall
--   CATCHLOOP   pcall around a loop that never ends, then keep looping
--   HOG         allocates until the memory cap stops it
--   HOGPCALL    allocates inside pcall, swallows the memory error, again
--   DEEP        unbounded recursion
--   RAISE       an error with a table for message
--   COLOOP      a loop that never ends inside coroutine.wrap
--   CORESUME    the same inside coroutine.resume, which returns its error
--   CONEST      the loop three coroutines deep
--   COLATER     a coroutine that yields, then loops when a timer resumes it
--   HOOKLOOP    replaces the budget's hook with its own, then loops
--   CLOSELOOP   coroutine.close runs a __close handler that loops
--   GCLOOP      a finalizer (__gc, run with hooks off) that loops
--   BYTECODE    loads a precompiled chunk (answers what load said)
--   CLOOP       a loop of few instructions, each calling costly C code
--   BREAKCORE   replaces require("core") with a number and the globals'
--               require with a trap
local core = require "core"

local function nest(depth)
  if depth == 0 then
    while true do end
  end
  return coroutine.wrap(function() return nest(depth - 1) end)()
end

local function hog()
  local t = {}
  for i = 1, math.huge do t[i] = string.rep("x", 4096) .. i end
end

return {
  on_line = function(conn, line, prev)
    if line == "LOOP" then
      while true do end -- the LOOP line
    elseif line == "COLOOP" then
      coroutine.wrap(function() while true do end end)()
    elseif line == "CORESUME" then
      local co = coroutine.create(function() while true do end end)
      local ok, err = coroutine.resume(co)
      return "resumed " .. tostring(ok) .. " " .. tostring(err) .. "\n"
    elseif line == "CONEST" then
      nest(3)
    elseif line == "COLATER" then
      local co = coroutine.wrap(function()
        coroutine.yield()
        while true do end
      end)
      co()
      core.after(0, function() co() end)
      return "armed\n"
    elseif line == "CLOSELOOP" then
      local co = coroutine.create(function()
        local guard <close> = setmetatable({}, { __close = function() while true do end end })
        coroutine.yield(guard)
      end)
      coroutine.resume(co)
      coroutine.close(co)
    elseif line == "GCLOOP" then
      setmetatable({}, { __gc = function() while true do end end })
      collectgarbage()
    elseif line == "BYTECODE" then
      local f, err = load(string.dump(function() return 1 end))
      return (f and "loaded" or ("refused: " .. tostring(err))) .. "\n"
    elseif line == "CLOOP" then
      while true do local _ = string.rep("x", 1000000) end
    elseif line == "BREAKCORE" then
      package.loaded.core = 42
      setmetatable(_G, { __index = function() error("trapped") end })
      rawset(_G, "require", nil)
      return "broken\n"
    elseif line == "HOOKLOOP" then
      debug.sethook(function() end, "", 1000000000)
      while true do end
    elseif line == "LOOPPCALL" then
      while true do pcall(function() end) end
    elseif line == "CATCHLOOP" then
      for _ = 1, math.huge do pcall(function() while true do end end) end
    elseif line == "HOG" then
      hog()
    elseif line == "HOGPCALL" then
      local caught = 0
      for _ = 1, 5 do
        if not pcall(hog) then caught = caught + 1 end
      end
      collectgarbage()
      return "caught " .. caught .. "\n"
    elseif line == "DEEP" then
      local function f(n) return 1 + f(n + 1) end
      return f(1)
    elseif line == "RAISE" then
      error({ "a table" })
    end
    return prev(conn, line)
  end,
}
