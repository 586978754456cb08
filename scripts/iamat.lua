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

-- Every IAMAT goes through these: keep them in locals.
local now, name = core.now, core.name
local parse_location, parse_time, diff = location.parse, clock.parse, clock.diff
local repeats, accept = records.repeats, records.accept

-- Takes the line and its fields; returns the reply, or nil when invalid.
function M.command(conn, line, verb, client, loc, time, extra)
  if not time or extra or not parse_location(loc) then return nil end
  local sec, nsec = parse_time(time)
  if not sec then return nil end
  local at = "AT " .. name .. " " .. diff(now(), sec, nsec) .. " "
    .. client .. " " .. loc .. " " .. time
  -- A record the store cannot keep (a client id over 1024 bytes, an AT
  -- line over 8192) is not acknowledged: "? ", not an AT line for a
  -- location no server will know.
  if not repeats(client, sec, nsec, loc, time) and
      accept(client, sec, nsec, at) == nil then
    return nil
  end
  return at .. "\n"
end

return M
