-- places: picks the places provider named by core.config.places.provider
-- (HERD_PLACES_PROVIDER overrides the config; default "local").
--   local places = require "places"
--   places.search({ lat=, lon=, radius_km=, radius_m=, limit=,
--                   location="+34.068930-118.445127" }, function(result) end)
-- result is a table in the legacy Nearby Search shape (html_attributions,
-- results, status, error_message); every failure is a non-OK status. It
-- may be a lazy result (places/lazy.lua), decoded on first look inside.
-- An unknown provider, or a Google provider without a key, is an error
-- when this module loads, so a server (or --check) reports it at start-up.
local core = require "core"

local PROVIDERS = {
  ["local"] = "places.local",
  google = "places.google",
  ["google-new"] = "places.google_new",
  overpass = "places.overpass",
}

local M = {}

M.PROVIDERS = PROVIDERS

-- Loads and checks the provider called name; returns it or raises.
function M.load(name)
  local modname = PROVIDERS[name]
  if not modname then
    local names = {}
    for k in pairs(PROVIDERS) do names[#names + 1] = k end
    table.sort(names)
    error(string.format("places: unknown provider %q (from HERD_PLACES_PROVIDER " ..
      "or places.provider in the config); the providers are: %s",
      tostring(name), table.concat(names, ", ")), 0)
  end
  local provider = require(modname)
  if type(provider) ~= "table" or type(provider.search) ~= "function" then
    error("places: " .. modname .. " does not define search(q, cb)", 0)
  end
  if provider.check then
    local settings = require("places.common").settings()
    local ok, err = provider.check(settings)
    if not ok then error("places: " .. tostring(err), 0) end
  end
  return provider
end

local conf = (core.config and core.config.places) or {}
M.name = conf.provider or "local"
M.provider = M.load(M.name)
-- Whether an answer cache is allowed by the provider's terms (Google's
-- limit caching of Places content); the cache is off unless configured.
M.caching_allowed = M.provider.caching_allowed ~= false

function M.search(q, cb)
  return M.provider.search(q, cb)
end

return M
