-- places_filter: keep only some places in WHATSAT answers, e.g. places open
-- now, or places of a type. Whatever the provider, answers have the shape
-- of Google's legacy Nearby Search, so one filter serves them all.
--
--   places = {
--     provider = "google",
--     filter = {
--       open_now = true,                    -- only results whose
--                                           -- opening_hours.open_now is true
--       types = { "cafe", "restaurant" },   -- only results with one of these
--                                           -- in their `types`
--     },
--   },
--   scripts = { "protocol", "topology", "places_filter.lua" },
--
-- Both conditions are optional; a result must pass every condition given.
-- An answer whose results are all filtered out says ZERO_RESULTS, like the
-- provider would; error answers pass through unchanged. The filter runs
-- before WHATSAT cuts the results to the client's bound, so the client gets
-- up to that many places that pass; the provider is asked for 20, so a
-- strict filter may leave fewer. The built-in `local` provider only knows
-- populated places (types "locality", "political", no opening hours): use
-- this with google, google-new or overpass.
--
-- How it hooks in: whatsat.lua asks `require("places").search(q, cb)` for
-- every lookup, reading the field at each call, so a script that replaces
-- places.search with a wrapper sees every answer before it is encoded (and
-- before identical queries share it or the answer cache keeps it). Scripts
-- share one module table per Lua state, and a reload builds a fresh state,
-- so the wrapper is installed exactly once per state.
local core = require "core"
local places = require "places"

local M = {}

-- The filter from the config, checked: raises at load time (so --check and
-- a reload report it) for a setting it does not understand.
function M.settings(conf)
  local f = conf or {}
  if type(f) ~= "table" then error("places.filter must be a table", 0) end
  for k in pairs(f) do
    if k ~= "open_now" and k ~= "types" then
      error(("places.filter: unknown key %s (keys: open_now, types)"):format(tostring(k)), 0)
    end
  end
  if f.open_now ~= nil and type(f.open_now) ~= "boolean" then
    error("places.filter.open_now must be true or false", 0)
  end
  local types
  if f.types ~= nil then
    if type(f.types) ~= "table" or #f.types == 0 then
      error("places.filter.types must be a list of place types", 0)
    end
    types = {}
    for i, t in ipairs(f.types) do
      if type(t) ~= "string" then
        error(("places.filter.types[%d] must be a string"):format(i), 0)
      end
      types[t] = true
    end
  end
  return { open_now = f.open_now, types = types }
end

function M.keep(place, s)
  if type(place) ~= "table" then return false end
  if s.open_now ~= nil then
    local hours = place.opening_hours
    local open = type(hours) == "table" and hours.open_now
    if (open == true) ~= s.open_now then return false end
  end
  if s.types then
    local ok = false
    for _, t in ipairs(type(place.types) == "table" and place.types or {}) do
      if s.types[t] then ok = true break end
    end
    if not ok then return false end
  end
  return true
end

-- A copy of result with only the places that pass; the result itself is
-- left alone (other code may hold it).
function M.apply(result, s)
  if type(result) ~= "table" or type(result.results) ~= "table"
      or (result.status ~= "OK" and result.status ~= "ZERO_RESULTS") then
    return result
  end
  local out = {}
  for k, v in pairs(result) do out[k] = v end
  local kept = setmetatable({}, getmetatable(result.results))
  for _, place in ipairs(result.results) do
    if M.keep(place, s) then kept[#kept + 1] = place end
  end
  out.results = kept
  -- A next page of the provider's would not be filtered.
  if #kept < #result.results then out.next_page_token = nil end
  if #kept == 0 then out.status = "ZERO_RESULTS" end
  return out
end

-- places.filter is this script's key: --check accepts it once declared.
core.config_key("places.filter")
local settings = M.settings((core.config and core.config.places or {}).filter)
local search = places.search
places.search = function(q, cb)
  return search(q, function(result) return cb(M.apply(result, settings)) end)
end

return {} -- no hooks: the work happens inside places.search
