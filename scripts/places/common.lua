-- places.common: what the HTTP providers share: their settings (from
-- core.config.places, where HERD_PLACES_URL/KEY/PROVIDER are already
-- applied), URL encoding, the legacy-shaped error answer, and turning a
-- failed request into one without ever showing the API key.
local core = require "core"

local M = {}

M.DEFAULT_TIMEOUT_MS = 10000
M.DEFAULT_MAX_BYTES = 2 * 1024 * 1024
M.MAX_RESULTS = 20

local function int_setting(v, dflt, lo, hi)
  v = tonumber(v)
  if not v or v ~= math.floor(v) or v < lo or v > hi then return dflt end
  return math.tointeger(v)
end

-- The places settings with defaults filled in. Built once per Lua state
-- and shared (callers must not change it): the config never changes under
-- a state (a reload builds a new one), and a WHATSAT storm would otherwise
-- build a table per query. A different core.config.places table (the unit
-- tests install fresh ones) builds it anew.
local cached, cached_for

function M.settings()
  local c = (core.config and core.config.places) or false
  if cached and cached_for == c then return cached end
  cached = M.build_settings(c or {})
  cached_for = c
  return cached
end

-- The settings for the places config table c, freshly built.
function M.build_settings(c)
  local key = c.key
  if key == "" then key = nil end
  local url = c.url
  if url == "" then url = nil end
  return {
    provider = c.provider or "local",
    url = url,
    key = key,
    timeout_ms = int_setting(c.timeout_ms, M.DEFAULT_TIMEOUT_MS, 1, 300000),
    max_bytes = int_setting(c.max_bytes, M.DEFAULT_MAX_BYTES, 1024,
      64 * 1024 * 1024),
    cache_ms = int_setting(c.cache_ms, 0, 0, 24 * 3600 * 1000),
    language = c.language,
    field_mask = c.field_mask,
    overpass_fetch = int_setting(c.overpass_fetch, 100, 1, 1000),
  }
end

-- RFC 3986 percent-encoding of everything but the unreserved characters,
-- so "+34.06-118.44" keeps its "+" (a bare "+" in a query means a space).
-- (A table of replacements: gsub calls no function per character.)
local PERCENT = {}
for b = 0, 255 do PERCENT[string.char(b)] = string.format("%%%02X", b) end

function M.url_encode(s)
  return (tostring(s):gsub("[^%w%-%._~]", PERCENT))
end

-- Appends an encoded query string to url, which may already have one.
function M.with_query(url, query)
  return url .. (url:find("?", 1, true) and "&" or "?") .. query
end

-- "+34.068930-118.445127" -> "+34.068930", "-118.445127" (the client's
-- own digits, so nothing is lost to floating point).
function M.split_location(loc)
  if type(loc) ~= "string" then return nil end
  return loc:match("^([+-][%d.]+)([+-][%d.]+)$")
end

-- The latitude and longitude texts of a query, falling back to numbers.
function M.lat_lon_text(q)
  local lat, lon = M.split_location(q.location)
  if not lat then
    lat, lon = string.format("%.6f", q.lat), string.format("%.6f", q.lon)
  end
  return lat, lon
end

-- Metres as a short decimal text: 10000, 1500, 0.5.
function M.metres_text(m)
  local i = math.tointeger(m) -- the usual case: whole metres
  if i then return tostring(i) end
  local s = string.format("%.3f", m):gsub("0+$", ""):gsub("%.$", "")
  return s
end

-- An answer in the legacy shape with a non-OK status.
function M.error_result(status, message)
  return {
    html_attributions = {},
    results = {},
    status = status or "UNKNOWN_ERROR",
    error_message = message,
  }
end

-- Removes the key from a message (curl errors could echo a URL).
function M.scrub(msg, key)
  msg = tostring(msg)
  if key and key ~= "" then
    local plain = key:gsub("%W", "%%%0")
    local encoded = M.url_encode(key):gsub("%W", "%%%0")
    msg = msg:gsub(plain, "<key>"):gsub(encoded, "<key>")
  end
  return msg
end

-- The answer for a request that got no HTTP response at all.
function M.transport_error(provider, err, settings)
  local msg
  if err == "timeout" then
    msg = string.format("%s: no answer from the provider within %d ms",
      provider, settings.timeout_ms)
  else
    msg = provider .. ": request failed: " .. M.scrub(err, settings.key)
  end
  return M.error_result("UNKNOWN_ERROR", msg)
end

-- Statuses that mean "the provider answered"; worth caching.
M.GOOD = { OK = true, ZERO_RESULTS = true }

-- Sends the request; cb(resp) on an HTTP answer of any status, or cb(nil,
-- error_result) when there was none. Never raises for runtime failures:
-- if cb(resp) raises (an answer too big for the Lua heap to parse), cb gets
-- (nil, error_result) at once, so the client is not left to the watchdog.
function M.request(provider, settings, req, cb)
  req.timeout_ms = req.timeout_ms or settings.timeout_ms
  req.max_bytes = req.max_bytes or settings.max_bytes
  local id, err = core.http(req, function(resp, herr)
    if not resp then return cb(nil, M.transport_error(provider, herr, settings)) end
    local size = type(resp.body) == "string" and #resp.body or 0
    local ok, perr = pcall(cb, resp)
    if ok then return end
    resp = nil -- the body may be what filled the heap
    if core.warn then
      core.warn(("%s: an answer of %d bytes could not be handled: %s")
        :format(provider, size, M.scrub(perr, settings.key)))
    end
    return cb(nil, M.error_result("UNKNOWN_ERROR", ("%s: the answer (%d bytes) " ..
      "could not be handled: %s"):format(provider, size, M.scrub(perr, settings.key))))
  end)
  if not id then cb(nil, M.transport_error(provider, err, settings)) end
  return id
end

-- Great-circle distance in metres.
function M.distance_m(lat1, lon1, lat2, lon2)
  local r = math.pi / 180
  local dlat, dlon = (lat2 - lat1) * r, (lon2 - lon1) * r
  local a = math.sin(dlat / 2) ^ 2
    + math.cos(lat1 * r) * math.cos(lat2 * r) * math.sin(dlon / 2) ^ 2
  return 2 * 6371008.8 * math.asin(math.min(1, math.sqrt(a)))
end

return M
