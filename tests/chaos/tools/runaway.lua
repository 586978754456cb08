-- An extra script for tests/chaos/runaway_spec.lua: commands that misbehave
-- in every way a script can, wrapped around the built-in protocol.
--   LOOP        a loop that never ends
--   LOOPPCALL   a loop that never ends, each turn inside pcall
--   CATCHLOOP   pcall around a loop that never ends, then keep looping
--   HOG         allocates until the memory cap stops it
--   HOGPCALL    allocates inside pcall, swallows the memory error, again
--   DEEP        unbounded recursion
--   RAISE       an error with a table for message
local core = require "core"

local function hog()
  local t = {}
  for i = 1, math.huge do t[i] = string.rep("x", 4096) .. i end
end

return {
  on_line = function(conn, line, prev)
    if line == "LOOP" then
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
