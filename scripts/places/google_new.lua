-- places.google_new: Google Places API (New), Nearby Search.
--   POST <url>  (default https://places.googleapis.com/v1/places:searchNearby)
--   X-Goog-Api-Key: KEY, X-Goog-FieldMask: places.id,...
--   {"locationRestriction":{"circle":{"center":{"latitude":..,
--     "longitude":..},"radius":METRES}},"maxResultCount":1..20}
-- The answer ({"places":[...]}, or {} when there are none) is mapped to
-- the legacy Nearby Search shape: name, place_id, geometry (location,
-- viewport), vicinity, types, rating, user_ratings_total, price_level,
-- business_status, opening_hours.open_now, plus_code, icon colours.
-- Errors come as HTTP 4xx/5xx with {"error":{"code","message","status"}};
-- they map to the legacy statuses (PERMISSION_DENIED -> REQUEST_DENIED,
-- RESOURCE_EXHAUSTED -> OVER_QUERY_LIMIT, INVALID_ARGUMENT ->
-- INVALID_REQUEST, anything else UNKNOWN_ERROR) with Google's message.
local common = require "places.common"
local json = require "places.json"

local M = {
  name = "google-new",
  DEFAULT_URL = "https://places.googleapis.com/v1/places:searchNearby",
  DEFAULT_FIELD_MASK = table.concat({
    "places.id", "places.displayName", "places.formattedAddress",
    "places.shortFormattedAddress", "places.location", "places.viewport",
    "places.types", "places.rating", "places.userRatingCount",
    "places.priceLevel", "places.businessStatus", "places.iconMaskBaseUri",
    "places.iconBackgroundColor", "places.plusCode",
    "places.currentOpeningHours.openNow",
  }, ","),
  caching_allowed = false, -- Google's terms limit caching
}

local PRICE = {
  PRICE_LEVEL_FREE = 0, PRICE_LEVEL_INEXPENSIVE = 1,
  PRICE_LEVEL_MODERATE = 2, PRICE_LEVEL_EXPENSIVE = 3,
  PRICE_LEVEL_VERY_EXPENSIVE = 4,
}

local STATUS = {
  PERMISSION_DENIED = "REQUEST_DENIED", UNAUTHENTICATED = "REQUEST_DENIED",
  RESOURCE_EXHAUSTED = "OVER_QUERY_LIMIT", INVALID_ARGUMENT = "INVALID_REQUEST",
  FAILED_PRECONDITION = "REQUEST_DENIED",
}

function M.check(settings)
  if not settings.key then
    return nil, "provider 'google-new' needs an API key: set HERD_PLACES_KEY " ..
      "(or places.key in the config)"
  end
  return true
end

function M.request(q, s)
  local limit = math.max(1, math.min(common.MAX_RESULTS, q.limit or common.MAX_RESULTS))
  local body = {
    locationRestriction = { circle = {
      center = { latitude = q.lat, longitude = q.lon },
      radius = q.radius_m + 0.0,
    } },
    maxResultCount = math.tointeger(limit),
    languageCode = s.language,
  }
  return {
    method = "POST",
    url = s.url or M.DEFAULT_URL,
    headers = {
      ["Content-Type"] = "application/json",
      ["X-Goog-Api-Key"] = s.key or "",
      ["X-Goog-FieldMask"] = s.field_mask or M.DEFAULT_FIELD_MASK,
    },
    body = json.encode(body),
  }
end

local function latlng(p)
  if type(p) == "table" and tonumber(p.latitude) and tonumber(p.longitude) then
    return { lat = p.latitude, lng = p.longitude }
  end
end

-- One Places (New) place in the legacy shape.
function M.map_place(p)
  local r = {
    place_id = p.id,
    name = type(p.displayName) == "table" and p.displayName.text or nil,
    vicinity = p.shortFormattedAddress or p.formattedAddress,
    rating = tonumber(p.rating),
    user_ratings_total = tonumber(p.userRatingCount),
    price_level = PRICE[p.priceLevel],
    business_status = type(p.businessStatus) == "string" and p.businessStatus or nil,
    icon_mask_base_uri = p.iconMaskBaseUri,
    icon_background_color = p.iconBackgroundColor,
  }
  if type(p.types) == "table" and #p.types > 0 then r.types = p.types end
  local loc = latlng(p.location)
  if loc then
    r.geometry = { location = loc }
    if type(p.viewport) == "table" then
      local ne, sw = latlng(p.viewport.high), latlng(p.viewport.low)
      if ne and sw then r.geometry.viewport = { northeast = ne, southwest = sw } end
    end
  end
  local hours = p.currentOpeningHours or p.regularOpeningHours
  if type(hours) == "table" and type(hours.openNow) == "boolean" then
    r.opening_hours = { open_now = hours.openNow }
  end
  if type(p.plusCode) == "table" and p.plusCode.globalCode then
    r.plus_code = { global_code = p.plusCode.globalCode,
      compound_code = p.plusCode.compoundCode }
  end
  return r
end

function M.parse(resp)
  local t = json.decode(resp.body)
  if resp.status ~= 200 then
    local e = type(t) == "table" and type(t.error) == "table" and t.error or nil
    local status = e and STATUS[e.status] or "UNKNOWN_ERROR"
    local msg = e and type(e.message) == "string" and e.message
      or ("the provider answered HTTP " .. tostring(resp.status))
    return common.error_result(status, "google-new: " .. msg)
  end
  if type(t) ~= "table" then
    return common.error_result("UNKNOWN_ERROR",
      "google-new: the provider's answer is not a JSON object")
  end
  local results = {}
  if type(t.places) == "table" then
    for _, p in ipairs(t.places) do
      if type(p) == "table" then results[#results + 1] = M.map_place(p) end
    end
  end
  return {
    html_attributions = {},
    results = results,
    status = #results > 0 and "OK" or "ZERO_RESULTS",
  }
end

function M.search(q, cb)
  local s = common.settings()
  common.request("google-new", s, M.request(q, s), function(resp, failure)
    cb(resp and M.parse(resp) or failure)
  end)
end

return M
