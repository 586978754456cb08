-- places.overpass: OpenStreetMap through the Overpass API, keyless.
--   POST <url>  (default https://overpass-api.de/api/interpreter)
--   Content-Type: application/x-www-form-urlencoded, body data=<query>:
--     [out:json][timeout:T];
--     nwr(around:METRES,LAT,LON)["amenity"]["name"];
--     out center N;
-- Named amenities (nodes, and ways/relations by their centre) within the
-- radius. Overpass returns them in id order, not by distance, so herd asks
-- for places.overpass_fetch of them (default 100), sorts those by distance
-- and keeps the nearest: near the point, but in a dense city not
-- necessarily the nearest of all. Mapped to the legacy shape (name,
-- place_id "osm:node/123", geometry.location, vicinity from addr:* tags,
-- types {amenity, "point_of_interest", "establishment"}), with the
-- OpenStreetMap attribution the ODbL requires in html_attributions.
-- Overpass errors: HTTP 429 -> OVER_QUERY_LIMIT, 400 -> INVALID_REQUEST,
-- other HTTP errors, runtime-error remarks and bad JSON -> UNKNOWN_ERROR.
local common = require "places.common"
local json = require "places.json"

local M = {
  name = "overpass",
  DEFAULT_URL = "https://overpass-api.de/api/interpreter",
  ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">' ..
    'OpenStreetMap contributors</a> (ODbL)',
  caching_allowed = true,
}

function M.check()
  return true
end

-- The Overpass QL query for q (exposed for the tests).
function M.query(q, s)
  local lat, lon = common.lat_lon_text(q)
  lat, lon = lat:gsub("^%+", ""), lon:gsub("^%+", "")
  return string.format(
    '[out:json][timeout:%d];\nnwr(around:%s,%s,%s)["amenity"]["name"];\nout center %d;\n',
    math.max(1, math.ceil(s.timeout_ms / 1000)), common.metres_text(q.radius_m),
    lat, lon, s.overpass_fetch)
end

function M.request(q, s)
  return {
    method = "POST",
    url = s.url or M.DEFAULT_URL,
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded",
      Accept = "application/json" },
    body = "data=" .. common.url_encode(M.query(q, s)),
  }
end

local function vicinity(tags)
  local street = tags["addr:street"]
  if street and tags["addr:housenumber"] then
    street = tags["addr:housenumber"] .. " " .. street
  end
  local city = tags["addr:city"] or tags["addr:place"]
  if street and city then return street .. ", " .. city end
  return street or tags["addr:full"] or city
end

function M.map_element(e)
  local tags = type(e.tags) == "table" and e.tags or {}
  local lat, lon = e.lat, e.lon
  if (not lat) and type(e.center) == "table" then lat, lon = e.center.lat, e.center.lon end
  if not (tonumber(lat) and tonumber(lon)) or type(tags.name) ~= "string" then
    return nil
  end
  local types = {}
  if type(tags.amenity) == "string" then types[1] = tags.amenity end
  types[#types + 1] = "point_of_interest"
  types[#types + 1] = "establishment"
  return {
    name = tags.name,
    place_id = "osm:" .. tostring(e.type) .. "/" .. tostring(math.tointeger(e.id) or e.id),
    geometry = { location = { lat = lat, lng = lon } },
    vicinity = vicinity(tags),
    types = types,
  }
end

function M.parse(resp, q)
  if resp.status ~= 200 then
    local status = resp.status == 429 and "OVER_QUERY_LIMIT"
      or resp.status == 400 and "INVALID_REQUEST" or "UNKNOWN_ERROR"
    return common.error_result(status,
      "overpass: the provider answered HTTP " .. tostring(resp.status))
  end
  local t = json.decode(resp.body)
  if type(t) ~= "table" or type(t.elements) ~= "table" then
    return common.error_result("UNKNOWN_ERROR",
      "overpass: the provider's answer is not Overpass JSON")
  end
  if type(t.remark) == "string" and t.remark:find("error") then
    return common.error_result("UNKNOWN_ERROR", "overpass: " .. t.remark)
  end
  local results = {}
  for _, e in ipairs(t.elements) do
    local r = type(e) == "table" and M.map_element(e)
    if r then
      r._d = common.distance_m(q.lat, q.lon, r.geometry.location.lat,
        r.geometry.location.lng)
      results[#results + 1] = r
    end
  end
  table.sort(results, function(a, b)
    if a._d ~= b._d then return a._d < b._d end
    return a.place_id < b.place_id
  end)
  local limit = q.limit or common.MAX_RESULTS
  for i = #results, 1, -1 do
    if i > limit then results[i] = nil else results[i]._d = nil end
  end
  return {
    html_attributions = { M.ATTRIBUTION },
    results = results,
    status = #results > 0 and "OK" or "ZERO_RESULTS",
  }
end

function M.search(q, cb)
  local s = common.settings()
  common.request("overpass", s, M.request(q, s), function(resp, failure)
    cb(resp and M.parse(resp, q) or failure)
  end)
end

return M
