-- The places index itself (core/places.c) through its Lua binding, built as
-- a plain Lua module by tests/c/Makefile (build/test/places_core.so), on the
-- committed sample of real GeoNames places and on synthetic places at the
-- awkward spots (poles, the 180th meridian, cell corners, ties). Also runs
-- the C cross-check against a brute-force scan and the damaged-file test
-- (build/test/places_test). No server, no download.
local cjson = require "cjson"
local fake_core = require "helpers.fake_core"

local SAMPLE = "data/places-sample.bin"
local SYNTHETIC_JSON = "tests/fixtures/places-synthetic.json"
local LUA = "lua5.4"
-- `make test SANITIZE=1` exports SANITIZE: the C test then runs under
-- ASan/UBSan (the Lua module never is: lua5.4 itself is not).
local PLACES_TEST = os.getenv("SANITIZE") == "1"
  and "build/san/test/places_test" or "build/test/places_test"

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok and 0 or code, out
end

local function tmpname()
  return os.tmpname()
end

-- Builds the test module and program once per run.
local built
local function build()
  if built then return built end
  local rc, out = sh("make -s -C tests/c")
  assert(rc == 0, "make -C tests/c failed:\n" .. out)
  package.cpath = "build/test/?.so;" .. package.cpath
  built = require "places_core"
  return built
end

local function names(list)
  local out = {}
  for i, p in ipairs(list) do out[i] = p.name end
  return out
end

local function set_of(list)
  local s = {}
  for _, p in ipairs(list) do s[p.name] = p end
  return s
end

local function assert_sorted_within(list, radius_m)
  for i, p in ipairs(list) do
    assert.is_true(p.distance_m <= radius_m, p.name .. " beyond the radius")
    if i > 1 then
      assert.is_true(p.distance_m >= list[i - 1].distance_m,
        "not sorted at " .. i)
    end
  end
end

describe("places index #places", function()
  local pc, synthetic

  lazy_setup(function()
    pc = build()
    synthetic = tmpname()
    local rc, out = sh(string.format(
      "%s tools/places-convert.lua --bundle %s --out %s", LUA, SYNTHETIC_JSON,
      synthetic))
    assert(rc == 0, out)
  end)

  lazy_teardown(function()
    if pc then pc.close() end
    if synthetic then os.remove(synthetic) end
  end)

  describe("on the sample of real places", function()
    before_each(function()
      assert(pc.open(SAMPLE))
    end)

    it("describes what it loaded, with the licence", function()
      local info = pc.places_info()
      assert.equal(SAMPLE, info.path)
      assert.is_true(info.count >= 150 and info.count < 1000)
      assert.matches("GeoNames, CC BY 4.0", info.source)
    end)

    it("finds Westwood, Beverly Hills and Santa Monica near UCLA", function()
      local r = assert(pc.places_near(34.068930, -118.445127, 10000, 20))
      local s = set_of(r)
      for _, n in ipairs({ "Westwood", "Beverly Hills", "Santa Monica" }) do
        assert.is_table(s[n], n .. " missing from " .. table.concat(names(r), ", "))
      end
      assert_sorted_within(r, 10000)
      local w = s["Westwood"]
      assert.equal("US", w.country)
      assert.equal("California", w.admin1)
      assert.equal("Los Angeles County", w.admin2)
      assert.equal(34.05612, w.lat)
      assert.equal(-118.43063, w.lon)
      assert.matches("^%x+$", w.id)
      assert.equal(16, #w.id)
      assert.near(1952.5, w.distance_m, 1)
      -- Los Angeles' own point (downtown) is 18.6 km away.
      assert.is_nil(s["Los Angeles"])
      local wide = set_of(assert(pc.places_near(34.068930, -118.445127, 20000,
        200)))
      assert.near(18600, wide["Los Angeles"].distance_m, 200)
    end)

    it("answers nearest first and cuts to the limit", function()
      local all = assert(pc.places_near(34.068930, -118.445127, 30000, 1000))
      assert.is_true(#all > 20)
      assert_sorted_within(all, 30000)
      local three = assert(pc.places_near(34.068930, -118.445127, 30000, 3))
      assert.same({ all[1].name, all[2].name, all[3].name }, names(three))
      assert.same({}, assert(pc.places_near(34.068930, -118.445127, 30000, 0)))
      -- The default limit is 20.
      assert.equal(20, #assert(pc.places_near(34.068930, -118.445127, 30000)))
    end)

    it("cuts at the radius", function()
      local all = assert(pc.places_near(34.068930, -118.445127, 30000, 1000))
      local cut = (all[5].distance_m + all[6].distance_m) / 2
      local r = assert(pc.places_near(34.068930, -118.445127, cut, 1000))
      assert.same({ all[1].name, all[2].name, all[3].name, all[4].name,
        all[5].name }, names(r))
    end)

    it("finds nothing in the middle of the Pacific", function()
      assert.same({}, assert(pc.places_near(0, -140, 50000, 20)))
      assert.same({}, assert(pc.places_near(-48.8767, -123.3933, 50000, 20)))
    end)

    it("works near the poles", function()
      local r = assert(pc.places_near(78.2, 15.6, 10000, 20))
      assert.equal("Longyearbyen", r[1].name)
      assert.same({}, assert(pc.places_near(90, 0, 50000, 20)))
      assert.same({}, assert(pc.places_near(-90, 0, 50000, 20)))
      -- From the North Pole, every longitude: Longyearbyen is 1310 km away.
      r = assert(pc.places_near(90, 123, 1400000, 20))
      assert.equal("Longyearbyen", r[1].name)
      assert.near(1309507, r[1].distance_m, 1)
      -- From the South Pole, the southernmost places first.
      r = assert(pc.places_near(-90, -45, 4000000, 3))
      assert.equal("Puerto Williams", r[1].name)
      assert_sorted_within(r, 4000000)
    end)

    it("looks across the 180th meridian, from either side", function()
      for _, lon in ipairs({ 179.99, 180, -180, -179.99 }) do
        local s = set_of(assert(pc.places_near(-18.1, lon, 200000, 50)))
        assert.is_table(s["Levuka"], "Levuka (179.3E) from " .. lon)
        assert.is_table(s["Tubou"], "Tubou (178.8W) from " .. lon)
      end
      -- Chukotka: Beringovskiy (179.35E) and Egvekinot (179.12W).
      local s = set_of(assert(pc.places_near(64.5, -179.9, 250000, 50)))
      assert.is_table(s["Egvekinot"])
      assert.is_table(s["Beringovskiy"])
    end)

    it("rejects bad arguments with nil, err", function()
      for _, a in ipairs({
        { 91, 0, 1000, 1 }, { -90.5, 0, 1000, 1 }, { 0, 180.5, 1000, 1 },
        { 0 / 0, 0, 1000, 1 }, { 0, 0, 0, 1 }, { 0, 0, -1, 1 },
        { 0, 0, 1000, -1 }, { 0, 0, 1000, 1001 },
      }) do
        local r, err = pc.places_near(a[1], a[2], a[3], a[4])
        assert.is_nil(r)
        assert.is_string(err)
      end
      assert.has_error(function() pc.places_near("x", 0, 1, 1) end)
    end)
  end)

  describe("on synthetic places", function()
    before_each(function()
      assert(pc.open(synthetic))
    end)

    it("a point at lon 179.9 finds a place at -179.9", function()
      local r = assert(pc.places_near(-16.5, 179.9, 25000, 20))
      assert.same({ "West of 180", "East of 180" }, names(r))
      assert.near(5330.8, r[1].distance_m, 0.5)
      assert.near(21323.2, r[2].distance_m, 0.5)
      r = assert(pc.places_near(-16.5, -179.95, 25000, 20))
      assert.same({ "East of 180", "West of 180" }, names(r))
    end)

    it("treats longitudes 180 and -180 as the same meridian", function()
      local r = assert(pc.places_near(10, 180, 1000, 20))
      assert.same({ "On 180", "On -180" }, names(r))
      r = assert(pc.places_near(10, -180, 1000, 20))
      assert.same({ "On 180", "On -180" }, names(r))
      assert.near(111, r[2].distance_m, 1)
    end)

    it("covers every longitude around a pole", function()
      local r = assert(pc.places_near(90, 0, 12000, 20))
      assert.same({ "North Pole", "North -90", "North 0", "North 180",
        "North 90" }, { r[1].name, table.unpack(
          (function()
            local rest = {}
            for i = 2, #r do rest[#rest + 1] = r[i].name end
            table.sort(rest)
            return rest
          end)()) })
      -- From just off the pole, the far side is 22 km away, past it.
      r = assert(pc.places_near(89.99, 45, 25000, 20))
      assert.equal(5, #r)
      assert.equal("North Pole", r[1].name)
      assert_sorted_within(r, 25000)
      r = assert(pc.places_near(-89.99, 123.4, 15000, 20))
      assert.same({ "South Pole", "South 123", "South -57" }, names(r))
    end)

    it("sorts by distance, cuts at the radius and the limit", function()
      local r = assert(pc.places_near(0, 0, 5000, 20))
      assert.same({ "Line 1", "Line 2", "Across corner", "Line 3", "Line 4" },
        names(r))
      assert_sorted_within(r, 5000)
      r = assert(pc.places_near(0, 0, 5000, 2))
      assert.same({ "Line 1", "Line 2" }, names(r))
      r = assert(pc.places_near(0, 0, 1000, 20))
      assert.same({}, r)
    end)

    it("returns every place at the same spot, in a stable order", function()
      local r = assert(pc.places_near(20, 20, 10, 20))
      assert.equal(2, #r) -- the exact duplicate was dropped by the converter
      assert.equal(0, r[1].distance_m)
      local again = assert(pc.places_near(20, 20, 10, 20))
      assert.same(names(r), names(again))
      assert.not_equal(r[1].id, r[2].id)
    end)

    it("keeps admin names and leaves unknown fields out", function()
      local w = assert(pc.places_near(34.05612, -118.43063, 10, 1))[1]
      assert.equal("Westwood", w.name)
      assert.equal("California", w.admin1)
      assert.equal("Los Angeles County", w.admin2)
      local p = assert(pc.places_near(10, 180, 10, 1))[1]
      assert.equal("", p.country)
      assert.is_nil(p.admin1)
      assert.is_nil(p.admin2)
    end)
  end)

  describe("through the provider", function()
    local function provider_with(fns)
      local core = fake_core.install()
      for k, v in pairs(fns) do core[k] = v end
      return require "places.local"
    end

    it("answers legacy JSON for UCLA, ZERO_RESULTS mid-Pacific", function()
      assert(pc.open(SAMPLE))
      local provider = provider_with({ places_near = pc.places_near,
        places_legacy = pc.places_legacy })
      local got
      provider.search({ location = "+34.068930-118.445127", radius_km = 10,
        limit = 5 }, function(r) got = r end)
      assert.equal("OK", got.status)
      assert.equal(5, #got.results)
      local bel = got.results[1]
      assert.equal("Bel Air", bel.name)
      assert.equal("Los Angeles County, California, US", bel.vicinity)
      assert.matches("^local:%x+$", bel.place_id)
      assert.equal(bel.place_id, bel.reference)
      assert.same({ "locality", "political" }, bel.types)
      local back = cjson.decode(cjson.encode(got))
      assert.same({ lat = 34.08334, lng = -118.44869 },
        back.results[1].geometry.location)
      provider.search({ lat = 0, lon = -140, radius_km = 50, limit = 20 },
        function(r) got = r end)
      assert.equal("ZERO_RESULTS", got.status)
      assert.matches("GeoNames", got.html_attributions[1])
    end)

    it("builds the same answers in C (places_legacy) as in Lua", function()
      local fast = provider_with({ places_near = pc.places_near,
        places_legacy = pc.places_legacy })
      local slow = provider_with({ places_near = pc.places_near })
      math.randomseed(7)
      for _, file in ipairs({ SAMPLE, synthetic }) do
        assert(pc.open(file))
        local everything = assert(pc.places_near(0, 0, 2.1e7, 1000))
        for i = 1, 300 do
          local p = everything[math.random(#everything)]
          local q = { lat = math.max(-90, math.min(90, p.lat + math.random() - 0.5)),
            lon = math.max(-180, math.min(180, p.lon + math.random() - 0.5)),
            radius_km = math.random(1, 200), limit = math.random(0, 25) }
          if i % 50 == 0 then q.radius_km = 20000 end
          assert.same(slow.query(q), fast.query(q))
        end
      end
    end)
  end)

  describe("with bad files", function()
    local function write(path, data)
      local f = assert(io.open(path, "wb"))
      f:write(data)
      f:close()
    end

    local function sample_bytes()
      local f = assert(io.open(SAMPLE, "rb"))
      local s = f:read("a")
      f:close()
      return s
    end

    it("refuses truncated, foreign and corrupt files with a message",
      function()
        local good = sample_bytes()
        local path = tmpname()
        local cases = {
          truncated = good:sub(1, #good - 1),
          ["header only"] = good:sub(1, 96),
          empty = "",
          foreign = ("x"):rep(4096),
          ["bad cell table"] = good:sub(1, 96) .. ("\255"):rep(16)
            .. good:sub(113),
        }
        for what, data in pairs(cases) do
          write(path, data)
          local ok, err = pc.open(path)
          assert.is_nil(ok, what)
          assert.matches("places data " .. path:gsub("%p", "%%%0") .. ": ",
            err, 1, false, what)
        end
        -- The file that was open before stays open.
        assert(pc.open(SAMPLE))
        write(path, good:sub(1, 200))
        assert.is_nil(pc.open(path))
        assert.equal(SAMPLE, pc.places_info().path)
        assert.is_table(pc.places_near(34.07, -118.44, 10000, 1)[1])
        os.remove(path)
        local ok, err = pc.open("/nonexistent/places.bin")
        assert.is_nil(ok)
        assert.matches("No such file", err)
      end)

    it("answers nil, err when nothing is loaded", function()
      pc.close()
      local r, err = pc.places_near(0, 0, 1000, 1)
      assert.is_nil(r)
      assert.equal("no places data loaded", err)
      assert.is_nil(pc.places_info())
    end)
  end)

  describe("default file", function()
    -- A fresh interpreter, so that the lazy first-query open is its own.
    local function run(dir, code)
      return sh(string.format(
        "HERD_DATA_DIR=%s %s -e 'package.cpath=\"build/test/?.so;\"..package.cpath' -e %q",
        dir, LUA, code))
    end

    it("is places.bin when present, else the sample, opened lazily",
      function()
        local dir = tmpname()
        os.remove(dir)
        assert(os.execute("mkdir -p " .. dir))
        assert(os.execute(string.format("cp %s %s/places-sample.bin", SAMPLE,
          dir)))
        local code = [[
          local pc = require "places_core"
          local r, err = pc.places_near(34.07, -118.44, 10000, 1)
          print(pc.default_path(), r and #r or err, (pc.places_info() or {}).count)
        ]]
        local rc, out = run(dir, code)
        assert.equal(0, rc, out)
        assert.matches(dir .. "/places%-sample%.bin\t1\t%d+", out)
        assert(os.execute(string.format("cp %s %s/places.bin", synthetic, dir)))
        rc, out = run(dir, code)
        assert.equal(0, rc, out)
        assert.matches(dir .. "/places%.bin\t1\t22", out) -- the synthetic file
        assert(os.execute("rm -rf " .. dir .. "/*"))
        rc, out = run(dir, code)
        assert.equal(0, rc, out)
        assert.matches("no places data loaded", out)
        assert.matches("places%-sample%.bin: No such file", out) -- the warning
        os.execute("rm -rf " .. dir)
      end)
  end)

  describe("C cross-check", function()
    it("matches a brute-force scan on the sample and the synthetic file",
      function()
        for _, f in ipairs({ SAMPLE, synthetic }) do
          local rc, out = sh(PLACES_TEST .. " " .. f .. " 1500")
          assert.equal(0, rc, out)
          assert.matches(" 0 failures", out)
        end
      end)

    it("survives damaged files", function()
      local rc, out = sh(PLACES_TEST .. " --fuzz " .. SAMPLE .. " 1500")
      assert.equal(0, rc, out)
      assert.matches(" 0 failures", out)
    end)
  end)
end)
