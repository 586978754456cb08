-- whatsat: the WHATSAT command (SPEC section 4).
--   WHATSAT <client> <radius km: decimal, 0 < r <= 50> <bound: 0..20>
-- Reply: the stored AT line for the client, unchanged; a newline; the
-- places JSON in the legacy Nearby Search shape with `results` cut to the
-- bound, runs of newlines collapsed and no trailing newline; then "\n\n".
-- Invalid operands or a client nobody has heard of: "? <line>".
--
-- The provider (places/init.lua) answers later; the reply is deferred with
-- core.defer and given with one core.answer, so it still leaves in request
-- order. Identical queries (same location and radius) in flight at the
-- same time share one upstream request; each caller gets its own bound.
-- The upstream query always asks for the most results (20). An optional
-- answer cache (places.cache_ms, default 0 = off) keeps good answers for
-- that long; leave it off for the Google providers, whose terms limit
-- caching. A watchdog answers every waiter with an error if a provider
-- never calls back, so a client never waits forever. An answer still
-- lazy (places/lazy.lua: the google and local providers', untouched by
-- scripts) is cut as text; decoding or building tables and encoding them
-- cost more than the rest.
local core = require "core"
local places = require "places"
local json = require "places.json"
local lazy = require "places.lazy"
local common = require "places.common"
local health = require "places.health"
local records = require "records"
local latlon = require("herdtext").latlon

local M = {}

M.MAX_RADIUS_KM = 50
M.MAX_BOUND = 20
M.CACHE_MAX = 1000 -- entries
M.WATCHDOG_SLACK_MS = 2000

local pending = {} -- query key -> { waiters = {fn...}, done = bool }
-- query key -> { expires = ns, result = t, memo = {} }
local cache, cache_n = {}, 0

local settings = common.settings()
if settings.cache_ms > 0 and not places.caching_allowed and core.log then
  core.log(("whatsat: places.cache_ms = %d with provider %s, whose terms " ..
    "limit caching; consider turning the cache off"):format(settings.cache_ms,
    places.name))
end

-- A decimal number: digits with at most one point ("10", "2.5", ".5").
function M.parse_radius(text)
  if #text > 32 or not (text:match("^%+?%d+%.?%d*$") or text:match("^%+?%.%d+$")) then
    return nil
  end
  local r = tonumber((text:gsub("^%+", "")))
  if not r or r <= 0 or r > M.MAX_RADIUS_KM then return nil end
  return r
end

function M.parse_bound(text)
  if #text > 8 or not text:match("^%+?%d+$") then return nil end
  local n = math.tointeger(tonumber((text:gsub("^%+", ""))))
  if not n or n < 0 or n > M.MAX_BOUND then return nil end
  return n
end

-- The JSON for result cut to bound, one line, no trailing newline. memo
-- (optional, one per answer) keeps the text per bound, so that many
-- callers sharing an answer cost one encoding per distinct bound. (Not a
-- weak table keyed by answer: ephemeron tables make every GC cycle pay.)
-- A lazy result nobody has looked inside (places/lazy.lua) is cut as
-- text, in C; any other result is copied, cut and encoded as tables.
function M.encode(result, bound, memo)
  local text = memo and memo[bound]
  if text then return text end
  text = lazy.cut(result, bound)
  if text then
    if memo then memo[bound] = text end
    return text
  end
  local cut = {}
  for k, v in pairs(result) do cut[k] = v end
  if type(cut.html_attributions) ~= "table" then cut.html_attributions = {} end
  if type(cut.status) ~= "string" then cut.status = "UNKNOWN_ERROR" end
  local results, src = {}, type(result.results) == "table" and result.results or {}
  for i = 1, math.min(bound, #src) do results[i] = src[i] end
  cut.results = results
  text = json.encode(cut, json.TOP_ORDER)
  -- The writer escapes newlines inside strings, so this is a guard that
  -- costs one memchr; the gsubs run only if a newline ever gets through.
  if text:find("\n", 1, true) then
    text = text:gsub("\n+", "\n"):gsub("^\n", ""):gsub("\n$", "")
  end
  if memo then memo[bound] = text end
  return text
end

function M.reply(at_line, result, bound, memo)
  return at_line .. "\n" .. M.encode(result, bound, memo) .. "\n\n"
end

local function cache_get(key, now)
  local c = cache[key]
  if c and c.expires > now then return c end
  if c then
    cache[key] = nil
    cache_n = cache_n - 1
  end
end

local function cache_put(key, result, memo, now, ms)
  if cache_n >= M.CACHE_MAX then
    for k, c in pairs(cache) do
      if c.expires <= now then
        cache[k] = nil
        cache_n = cache_n - 1
      end
    end
    if cache_n >= M.CACHE_MAX then cache, cache_n = {}, 0 end
  end
  if not cache[key] then cache_n = cache_n + 1 end
  cache[key] = { expires = now + ms * 1000000, result = result, memo = memo }
end

-- Calls waiter(result, memo) once for query q: from the cache, by joining
-- an identical request in flight, or by asking the provider. memo is the
-- answer's encoding memo (see M.encode).
local function lookup(q, key, waiter)
  local s = settings
  if s.cache_ms > 0 then
    local hit = cache_get(key, core.now())
    if hit then return waiter(hit.result, hit.memo) end
  end
  local entry = pending[key]
  if entry then
    entry.waiters[#entry.waiters + 1] = waiter
    return
  end
  entry = { waiters = { waiter }, done = false }
  pending[key] = entry

  local function finish(result)
    if entry.done then return end -- a late callback after the watchdog
    entry.done = true
    if pending[key] == entry then pending[key] = nil end
    if entry.timer and core.cancel then core.cancel(entry.timer) end
    if type(result) ~= "table" then
      result = common.error_result("UNKNOWN_ERROR",
        "places: the provider gave no answer table")
    end
    health.note(places.name, result)
    local memo = {}
    if s.cache_ms > 0 and common.GOOD[result.status] then
      cache_put(key, result, memo, core.now(), s.cache_ms)
    end
    for _, w in ipairs(entry.waiters) do
      local ok, err = pcall(w, result, memo)
      if not ok then core.log("whatsat: answering failed: " .. tostring(err)) end
    end
  end

  if core.after and not places.provider.synchronous then
    entry.timer = core.after(s.timeout_ms + M.WATCHDOG_SLACK_MS, function(premature)
      -- premature: a reload replaced these scripts; the request in flight
      -- still calls back here (it has its own timeout).
      if premature then return end
      finish(common.error_result("UNKNOWN_ERROR", string.format(
        "places: no answer from provider %s within %d ms", places.name,
        s.timeout_ms + M.WATCHDOG_SLACK_MS)))
    end)
  end
  local ok, err = pcall(places.search, q, finish)
  if not ok then
    core.log("whatsat: provider " .. places.name .. " failed: " .. tostring(err))
    finish(common.error_result("UNKNOWN_ERROR",
      "places: provider " .. places.name .. " failed"))
  end
end

-- Queries waiting for their provider (for stats and tests).
function M.pending()
  local n = 0
  for _ in pairs(pending) do n = n + 1 end
  return n
end

-- The answer to a WHATSAT this server does not accept.
local function invalid(line) return "? " .. line .. "\n" end

function M.command(conn, fields, line)
  if #fields ~= 4 then return invalid(line) end
  local radius = M.parse_radius(fields[3])
  local bound = M.parse_bound(fields[4])
  if not radius or not bound then return invalid(line) end
  local at_line = core.store.get(fields[2])
  if not at_line then return invalid(line) end
  local loc = records.location(at_line)
  local lat, lon = latlon(loc or "")
  if not lat then return invalid(line) end

  local radius_m = radius * 1000
  local q = {
    lat = lat, lon = lon, location = loc,
    radius_km = radius, radius_m = radius_m,
    limit = M.MAX_BOUND,
  }
  local key = loc .. " " .. common.metres_text(radius_m)

  -- A provider or cache that answers at once gets a direct reply; anything
  -- else a deferred one.
  local token, now_reply
  lookup(q, key, function(result, memo)
    local text = M.reply(at_line, result, bound, memo)
    if token then core.answer(token, text) else now_reply = text end
  end)
  if now_reply then return now_reply end
  token = core.defer()
  if not token then
    error("whatsat: core.defer() refused (not inside on_line?)")
  end
  return nil
end

return M
