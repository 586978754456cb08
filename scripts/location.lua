-- location: ISO 6709 decimal degrees as the classic protocol writes them,
-- "+34.068930-118.445127": signed latitude then signed longitude, no
-- separator.
local M = {}

local function number(text)
  if text:match("^%d+$") or text:match("^%d+%.%d+$") then
    return tonumber(text)
  end
end

-- Returns lat, lon as numbers, or nil, err.
function M.parse(text)
  local s1, lat, s2, lon = text:match("^([+-])([%d.]+)([+-])([%d.]+)$")
  if not s1 then return nil, "location must be [+-]lat[+-]lon" end
  lat, lon = number(lat), number(lon)
  if not lat or not lon then return nil, "bad number in location" end
  if s1 == "-" then lat = -lat end
  if s2 == "-" then lon = -lon end
  if lat < -90 or lat > 90 then return nil, "latitude out of range" end
  if lon < -180 or lon > 180 then return nil, "longitude out of range" end
  return lat, lon
end

return M
