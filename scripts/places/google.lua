-- places.google: Google's legacy Nearby Search.
--   GET <url>?location=LAT,LNG&radius=METRES&key=KEY
-- Its answer already has the shape herd replies with; Google reports its
-- own errors (REQUEST_DENIED, OVER_QUERY_LIMIT, INVALID_REQUEST...) inside a
-- 200 answer, and those are passed on unchanged. Anything else that goes
-- wrong (no connection, timeout, HTTP error, JSON that does not parse)
-- becomes status UNKNOWN_ERROR with an error_message. The key is sent only
-- in the query string and never logged.
--
-- A good answer (OK or ZERO_RESULTS, with html_attributions and results
-- arrays, strictly valid JSON) is checked and compacted in C and returned
-- as a lazy result (places/lazy.lua): WHATSAT cuts the text without ever
-- decoding it, unless a script looks inside. Everything else (errors, odd
-- shapes, JSON the C checker refuses but lua-cjson accepts) is decoded
-- into tables as before.
local common = require "places.common"
local json = require "places.json"
local lazy = require "places.lazy"
local json_cut = require("herdtext").json_cut

local M = {
  name = "google",
  DEFAULT_URL = "https://maps.googleapis.com/maps/api/place/nearbysearch/json",
  -- Google's terms limit caching of Places content.
  caching_allowed = false,
}

function M.check(settings)
  if not settings.key then
    return nil, "provider 'google' needs an API key: set HERD_PLACES_KEY " ..
      "(or places.key in the config)"
  end
  return true
end

-- The parts of the URL that depend only on the settings s (the endpoint,
-- the encoded key and language), made once per settings table: the
-- settings are shared for a state's life (places/common.lua).
local url_for, url_head, url_tail

local function url_parts(s)
  if url_for ~= s then
    url_head = common.with_query(s.url or M.DEFAULT_URL, "location=")
    url_tail = "&key=" .. common.url_encode(s.key or "")
    if s.language then url_tail = url_tail .. "&language=" .. common.url_encode(s.language) end
    url_for = s
  end
  return url_head, url_tail
end

local HEADERS = { Accept = "application/json" } -- read, never changed

-- The request for query q (exposed for the tests).
function M.request(q, s)
  local lat, lon = common.lat_lon_text(q)
  local head, tail = url_parts(s)
  return {
    method = "GET",
    url = head .. common.url_encode(lat .. "," .. lon) .. "&radius=" ..
      common.metres_text(q.radius_m) .. tail,
    headers = HEADERS,
    timeout_ms = s.timeout_ms,
    max_bytes = s.max_bytes,
  }
end

-- Turns an HTTP answer into a legacy-shaped result.
function M.parse(resp)
  if resp.status ~= 200 then
    return common.error_result("UNKNOWN_ERROR",
      "google: the provider answered HTTP " .. tostring(resp.status))
  end
  if type(resp.body) == "string" then
    local compact, status, attrs, results, parts =
      json_cut(resp.body, nil, json.TOP_ORDER)
    if compact and attrs and results and common.GOOD[status] then
      return lazy.new(compact, status, parts)
    end
  end
  local t = json.decode(resp.body)
  if type(t) ~= "table" or type(t.status) ~= "string" then
    return common.error_result("UNKNOWN_ERROR",
      "google: the provider's answer is not a Nearby Search JSON object")
  end
  if type(t.html_attributions) ~= "table" then t.html_attributions = {} end
  if type(t.results) ~= "table" then t.results = {} end
  return t
end

function M.search(q, cb)
  local s = common.settings()
  common.request("google", s, M.request(q, s), function(resp, failure)
    cb(resp and M.parse(resp) or failure)
  end)
end

return M
