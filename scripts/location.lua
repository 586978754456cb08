-- location: ISO 6709 decimal degrees as the classic protocol writes them,
-- "+34.068930-118.445127": signed latitude then signed longitude, no
-- separator, each digits with an optional fraction; latitude within +-90,
-- longitude within +-180.
local latlon = require("herdtext").latlon

local M = {}

-- True when lat, lon are within range; else false, err.
function M.in_range(lat, lon)
  if lat < -90 or lat > 90 then return false, "latitude out of range" end
  if lon < -180 or lon > 180 then return false, "longitude out of range" end
  return true
end

-- Returns lat, lon as numbers, or nil, err.
function M.parse(text)
  local lat, lon = latlon(text)
  if not lat then return nil, lon end
  local ok, err = M.in_range(lat, lon)
  if not ok then return nil, err end
  return lat, lon
end

return M
