-- iamat: "IAMAT <client> <location> <time>" -> "AT <server> <diff> <client>
-- <location> <time>". The reply echoes the operands byte for byte; an IAMAT
-- older than the stored record is answered but changes nothing, and so is
-- one that repeats the stored report (same time and location), whichever
-- server took it first: resending a report never starts a flood.
local core = require "core"
local clock = require "clock"
local location = require "location"
local records = require "records"

local M = {}

local now = core.now

-- Takes the line and its fields; returns the reply, or nil when invalid.
function M.command(conn, line, verb, client, loc, time, extra)
  if not time or extra or not location.parse(loc) then return nil end
  local sec, nsec = clock.parse(time)
  if not sec then return nil end
  local at = "AT " .. core.name .. " " .. clock.diff(now(), sec, nsec) .. " "
    .. client .. " " .. loc .. " " .. time
  if not records.repeats(client, sec, nsec, loc, time) then
    records.accept(client, sec, nsec, at)
  end
  return at .. "\n"
end

return M
