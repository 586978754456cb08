-- extra_fields: a record format with two more fields, heading and speed,
-- set up by a script alone (no C):
--
--   IAMAT <client> <location> <time> <heading> <speed>
--   AT <server> <diff> <client> <location> <time> <heading> <speed>
--
-- heading in degrees (0 <= h < 360), speed in metres per second (>= 0),
-- each a decimal number ("90", "12.5"), echoed byte for byte. The format is
-- given to records.lua (records.use), so every part of the herd that deals
-- with records uses it: IAMAT's reply, the repeat test, WHATSAT's location,
-- and the check a peer's record must pass (flooded or reconciled). Every
-- server of the herd must run this script: a server without it drops
-- these records (and logs why).
local records = require "records"
local text = require "herdtext"

local fields, timestamp, latlon, timediff =
  text.fields, text.timestamp, text.latlon, text.timediff

local M = {}

-- A decimal number "digits[.digits]" (at most 16 bytes), or nil.
local function decimal(s)
  if #s > 16 or not s:match("^%d+%.?%d*$") then return nil end
  return tonumber(s)
end

-- The report's location, time, heading and speed checked; sec, nsec or
-- nil, err.
local function report(loc, time, heading, speed)
  local lat, err = latlon(loc)
  if not lat then return nil, err end
  local sec, nsec = timestamp(time)
  if not sec then return nil, nsec end
  local h = decimal(heading)
  if not h or h >= 360 then return nil, "heading must be 0 <= h < 360" end
  if not decimal(speed) then return nil, "speed must be a decimal >= 0" end
  return sec, nsec
end

-- IAMAT <client> <location> <time> <heading> <speed>: client, sec, nsec,
-- the AT line with its newline; else nil, err.
function M.iamat(line, server, now_ns)
  local _, client, loc, time, heading, speed, extra = fields(line, 7)
  if not speed or extra then
    return nil, "IAMAT takes a client, a location, a time, a heading and a speed"
  end
  local sec, nsec = report(loc, time, heading, speed)
  if not sec then return nil, nsec end
  return client, sec, nsec, ("AT %s %s %s %s %s %s %s\n"):format(server,
    timediff(now_ns, sec, nsec), client, loc, time, heading, speed)
end

-- A peer's line: client, sec, nsec it reports; else nil, err.
function M.read(line)
  local verb, _, diff, client, loc, time, heading, speed, extra = fields(line, 9)
  if verb ~= "AT" or not speed or extra then return nil, "not an AT line" end
  if not diff:match("^[+-]%d+%.%d%d%d%d%d%d%d%d%d$") then
    return nil, "not an AT line: bad time difference"
  end
  local sec, nsec = report(loc, time, heading, speed)
  if not sec then return nil, nsec end
  return client, sec, nsec
end

function M.location(line)
  local _, _, _, _, loc = fields(line, 5)
  return loc
end

-- The same report: location, time, heading and speed, byte for byte.
function M.same(a, b)
  local _, _, _, _, la, ta, ha, sa = fields(a, 8)
  local _, _, _, _, lb, tb, hb, sb = fields(b, 8)
  return la == lb and ta == tb and ha == hb and sa == sb
end

return records.use(M)
