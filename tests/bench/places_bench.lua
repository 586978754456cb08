#!/usr/bin/env lua5.4
-- places_bench: time per `local` places query on the full data, for the
-- benchmark table (not part of `make test`). From the repository root:
--
--   make places-data                      # data/places.bin (else the sample)
--   lua5.4 tests/bench/places_bench.lua [FILE] [QUERIES]
--
-- Prints the time to map and validate the file, then the time per query of
-- core.places_near (the C index plus building the Lua result tables), of
-- core.places_json (the C index plus writing the legacy answer as JSON
-- text), of the provider's whole answer (places.local.search: a lazy result
-- over that text), of that answer cut to a bound of 5 as WHATSAT cuts it
-- (places.lazy.cut), and of the table path it replaced (places_near mapped
-- to legacy tables in Lua, encoded by places.json as WHATSAT did), at radii
-- 1, 10 and 50 km with limit 20, for query points near real places (the
-- dense, expensive case) and anywhere on the globe (mostly ocean).
-- Single-threaded, in this process: pin it with taskset to keep other work
-- off its core.
package.path = "scripts/?.lua;tests/?.lua;" .. package.path
package.cpath = "build/test/?.so;build/?.so;" .. package.cpath

assert(os.execute("make -s -C tests/c"), "make -C tests/c failed")
local pc = require "places_core"
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

-- The provider as the server runs it, and as it was before places_json:
-- its table path, taken when the core lacks places_json.
package.loaded.core = setmetatable({ places_json = false }, { __index = pc })
local json = require "places.json"
local tables_provider = require "places.local"
package.loaded["places.local"] = nil
package.loaded.core = pc -- places_near, places_json, places_info
local provider = require "places.local"
local lazy = require "places.lazy"

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
  print(string.format("  %-9s %2d km  %-28s %7.2f us/query  (%.1f results)",
    label, radius_m // 1000, fn_name[fn], dt / #lats * 1e6,
    found / #lats))
end

local function near_only(lat, lon, r)
  return #pc.places_near(lat, lon, r, 20)
end
local function json_only(lat, lon, r)
  local _, _, parts = pc.places_json(lat, lon, r, 20, provider.ATTRIBUTION)
  return #parts - 2
end
local function provider_only(lat, lon, r)
  local n
  provider.search({ lat = lat, lon = lon, radius_m = r, limit = 20 },
    function(res) n = #getmetatable(res).parts - 2 end)
  return n
end
local function provider_cut(lat, lon, r)
  local n
  provider.search({ lat = lat, lon = lon, radius_m = r, limit = 20 },
    function(res)
      n = #getmetatable(res).parts - 2
      local _ = lazy.cut(res, 5)
    end)
  return n
end
local function tables_encode(lat, lon, r)
  local n
  tables_provider.search({ lat = lat, lon = lon, radius_m = r, limit = 20 },
    function(res)
      n = #res.results
      local cut = {}
      for k, v in pairs(res) do cut[k] = v end
      cut.results = { table.unpack(res.results, 1, math.min(5, n)) }
      local _ = json.encode(cut, json.TOP_ORDER)
    end)
  return n
end
fn_name[near_only] = "core.places_near"
fn_name[json_only] = "core.places_json"
fn_name[provider_only] = "places.local search (lazy)"
fn_name[provider_cut] = "search + lazy.cut to 5"
fn_name[tables_encode] = "old: tables + json.encode 5"

print(string.format("  %d queries each, limit 20, CPU time per query:", N))
for _, set in ipairs({ "near", "anywhere" }) do
  for _, r in ipairs({ 1000, 10000, 50000 }) do
    for _, fn in ipairs({ near_only, json_only, provider_only, provider_cut,
      tables_encode }) do
      run(set, sets[set], r, fn)
    end
  end
end
pc.close()
