#!/usr/bin/env lua5.4
-- places_bench: time per `local` places query on the full data, for the
-- benchmark table (not part of `make test`). From the repository root:
--
--   make places-data                      # data/places.bin (else the sample)
--   lua5.4 tests/bench/places_bench.lua [FILE] [QUERIES]
--
-- Prints the time to map and validate the file, then the time per query of
-- core.places_near (the C index plus building the Lua result tables), of
-- core.places_legacy (the same, as legacy-shaped results), of the
-- provider's whole answer (places.local.search), and of that answer encoded
-- as JSON with lua-cjson, at radii 1, 10 and 50 km with limit 20, for
-- query points near real places (the dense, expensive case) and anywhere
-- on the globe (mostly ocean). Single-threaded, in this process: pin it
-- with taskset to keep other work off its core.
package.path = "scripts/?.lua;tests/?.lua;" .. package.path
package.cpath = "build/test/?.so;" .. package.cpath

assert(os.execute("make -s -C tests/c"), "make -C tests/c failed")
local pc = require "places_core"
local cjson = require "cjson"
local clock = os.clock

local file = arg[1] or pc.default_path()
local N = tonumber(arg[2]) or 20000

local t0 = clock()
local ok, err = pc.open(file)
local t_open = clock() - t0
if not ok then
  io.stderr:write(err, "\n")
  os.exit(1)
end
local info = pc.places_info()
print(string.format("places_bench: %s: %d places (%s)", info.path,
  info.count, info.source))
print(string.format("  open + validate: %.2f ms (CPU)", t_open * 1e3))

-- Query points: real places (found by whole-sphere queries around random
-- points) with up to 0.05 degrees of jitter, and uniform points. Kept in
-- flat arrays: the collector's work grows with the live heap, and a
-- server's Lua heap is small.
math.randomseed(131)
local function clamp(v, lo, hi) return math.max(lo, math.min(hi, v)) end
local sets = { near = { lat = {}, lon = {} }, anywhere = { lat = {}, lon = {} } }
do
  local near = {}
  for _ = 1, 20 do
    local lat, lon = math.random() * 140 - 60, math.random() * 360 - 180
    for _, p in ipairs(pc.places_near(lat, lon, 2.1e7, 1000)) do
      near[#near + 1] = p
    end
  end
  for i = 1, N do
    local p = near[math.random(#near)]
    sets.near.lat[i] = clamp(p.lat + (math.random() - 0.5) * 0.1, -90, 90)
    sets.near.lon[i] = clamp(p.lon + (math.random() - 0.5) * 0.1, -180, 180)
    sets.anywhere.lat[i] = math.asin(math.random() * 2 - 1) * 180 / math.pi
    sets.anywhere.lon[i] = math.random() * 360 - 180
  end
end

package.loaded.core = pc -- places_near, places_legacy, places_info
local provider = require "places.local"

local fn_name = {}
local function run(label, pts, radius_m, fn)
  local found = 0
  collectgarbage("collect")
  local start = clock()
  local lats, lons = pts.lat, pts.lon
  for i = 1, #lats do
    found = found + fn(lats[i], lons[i], radius_m)
  end
  local dt = clock() - start
  print(string.format("  %-9s %2d km  %-26s %7.2f us/query  (%.1f results)",
    label, radius_m // 1000, fn_name[fn], dt / #lats * 1e6,
    found / #lats))
end

local function near_only(lat, lon, r)
  return #pc.places_near(lat, lon, r, 20)
end
local function provider_only(lat, lon, r)
  local n
  provider.search({ lat = lat, lon = lon, radius_m = r, limit = 20 },
    function(res) n = #res.results end)
  return n
end
local function provider_json(lat, lon, r)
  local n
  provider.search({ lat = lat, lon = lon, radius_m = r, limit = 20 },
    function(res)
      n = #res.results
      local _ = cjson.encode(res)
    end)
  return n
end
local function legacy_only(lat, lon, r)
  return #pc.places_legacy(lat, lon, r, 20)
end
fn_name[near_only] = "core.places_near"
fn_name[legacy_only] = "core.places_legacy"
fn_name[provider_only] = "places.local search"
fn_name[provider_json] = "search + cjson.encode"

print(string.format("  %d queries each, limit 20, CPU time per query:", N))
for _, set in ipairs({ "near", "anywhere" }) do
  for _, r in ipairs({ 1000, 10000, 50000 }) do
    for _, fn in ipairs({ near_only, legacy_only, provider_only,
      provider_json }) do
      run(set, sets[set], r, fn)
    end
  end
end
pc.close()
