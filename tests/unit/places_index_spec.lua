-- The places index itself (core/places.c) through its Lua binding, built as
-- a plain Lua module by tests/c/Makefile (build/test/places_core.so), on the
-- committed sample of real GeoNames places and on synthetic places at the
-- awkward spots (poles, the 180th meridian, cell corners, ties); the JSON
-- answers core.places_json writes against the provider's Lua tables (bytes,
-- cuts, decoding, WHATSAT replies), with names full of escapes. Also runs
-- the C cross-check against a brute-force scan, the JSON writer's number
-- and escape check, and the damaged-file test (build/test/places_test). No
-- server, no download.
local cjson = require "cjson"
local fake_core = require "helpers.fake_core"

local SAMPLE = "data/places-sample.bin"
local SYNTHETIC_JSON = "tests/fixtures/places-synthetic.json"
local LUA = "lua5.4"
-- `make test SANITIZE=1` exports SANITIZE: the C test then runs under
-- ASan/UBSan (the Lua module never is: lua5.4 itself is not).
local PLACES_TEST = os.getenv("SANITIZE") == "1"
  and "build/san/test/places_test" or "build/test/places_test"

local sh = require("helpers.herd").command

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

    it("writes in C (places_json) the JSON of the Lua tables, byte for byte",
      function()
        -- Each provider_with loads the modules anew: lazy must be fast's.
        local slow = provider_with({ places_near = pc.places_near })
        local fast = provider_with({ places_near = pc.places_near,
          places_json = pc.places_json })
        local json = require "places.json"
        local lazy = require "places.lazy"
        local n = 0
        local function check(q)
          local want, got = slow.query(q), fast.query(q)
          assert.is_nil(getmetatable(want) and getmetatable(want).text)
          assert.is_true(lazy.untouched(got), "not a lazy result")
          assert.equal(want.status, got.status)
          local text = getmetatable(got).text
          -- The same bytes as the Lua writer (sorted keys), the same
          -- decoded value as the reply writer (cjson, keys in hash order).
          assert.equal(json.encode_lua(want, json.TOP_ORDER), text)
          assert.same(json.decode(json.encode(want, json.TOP_ORDER)),
            json.decode(text))
          -- Cut at every bound as WHATSAT cuts it, and as json_cut would.
          for _, bound in ipairs({ 0, 1, 5, 20 }) do
            local cut = {}
            for k, v in pairs(want) do cut[k] = v end
            cut.results = setmetatable({ table.unpack(want.results, 1,
              math.min(bound, #want.results)) }, json.array_mt)
            assert.equal(json.encode_lua(cut, json.TOP_ORDER),
              lazy.cut(got, bound))
            assert.equal((require("herdtext").json_cut(text, bound)),
              lazy.cut(got, bound))
          end
          -- Looking inside decodes it into the very same table.
          assert.same(want, lazy.materialise(got))
          assert.is_nil(getmetatable(got))
          n = n + 1
        end
        math.randomseed(7)
        for _, file in ipairs({ SAMPLE, synthetic }) do
          assert(pc.open(file))
          -- Dense (around UCLA), the open ocean, a pole, the 180th meridian.
          for _, pt in ipairs({ { 34.068930, -118.445127 }, { 0, -140 },
            { 78.2, 15.6 }, { -16.5, 179.9 }, { 90, 0 }, { 0, 0 } }) do
            for _, r in ipairs({ 1, 10, 50 }) do
              for _, limit in ipairs({ 0, 1, 5, 20 }) do
                check({ lat = pt[1], lon = pt[2], radius_km = r, limit = limit })
              end
            end
          end
          -- The whole sphere, more results than fit the C stack.
          check({ lat = 12, lon = 34, radius_m = 2.1e7, limit = 1000 })
          local everything = assert(pc.places_near(0, 0, 2.1e7, 1000))
          for i = 1, 300 do
            local p = everything[math.random(#everything)]
            local q = { lat = math.max(-90, math.min(90, p.lat + math.random() - 0.5)),
              lon = math.max(-180, math.min(180, p.lon + math.random() - 0.5)),
              radius_km = math.random(1, 200), limit = math.random(0, 25) }
            if i % 50 == 0 then q.radius_km = 20000 end
            check(q)
          end
        end
        assert.is_true(n > 600)
      end)

    it("escapes names and prints numbers as the Lua writers do", function()
      -- Names with every kind of byte a JSON string must escape, and
      -- UTF-8; coordinates that %.14g prints in exponent form (5e-05).
      local odd = {
        { name = 'Quote "Q"', lat = "0.00005", lng = "0.00001",
          country = "US", admin1 = "A1", admin2 = "A2" },
        { name = "Back\\slash\\", lat = "-0.00009", lng = "-0.00003",
          country = "US", admin1 = "A1", admin2 = "" },
        { name = "Ctl \1\2\31 del \127 end", lat = "0.0001", lng = "-0.0001",
          country = "", admin1 = "", admin2 = "" },
        { name = "Tab\tNL\nCR\rFF\fBS\b", lat = "0.1", lng = "0.12",
          country = "FR", admin1 = "A1", admin2 = "A2" },
        { name = "Ünïcödé 日本 € 🙂", lat = "-0.2", lng = "0.25",
          country = "JP", admin1 = "A1", admin2 = "" },
        { name = "Slash /a/b/ <html>", lat = "0", lng = "0",
          country = '"\\', admin1 = "X", admin2 = "Y" },
        { name = "Whole", lat = "1", lng = "-1", country = "", admin1 = "",
          admin2 = "" },
      }
      local bundle = cjson.encode({
        source = "names test places",
        cities = odd,
        admin1 = {
          { code = "US.A1", name = 'State "of" \\ mind' },
          { code = "FR.A1", name = "Région\tÎle" },
          { code = "JP.A1", name = "東京都" },
          { code = '"\\.X', name = "Odd\1country" },
        },
        admin2 = {
          { code = "US.A1.A2", name = "County\nLine" },
          { code = "FR.A1.A2", name = "Paris" },
          { code = '"\\.X.Y', name = "Odd\127two" },
        },
      })
      local src, bin = tmpname(), tmpname()
      local f = assert(io.open(src, "wb"))
      f:write(bundle)
      f:close()
      local rc, out = sh(string.format(
        "%s tools/places-convert.lua --bundle %s --out %s", LUA, src, bin))
      assert.equal(0, rc, out)
      assert(pc.open(bin))
      local slow = provider_with({ places_near = pc.places_near })
      local fast = provider_with({ places_near = pc.places_near,
        places_json = pc.places_json })
      local json = require "places.json"
      local lazy = require "places.lazy"
      local q = { lat = 0, lon = 0, radius_km = 200, limit = 20 }
      local want, got = slow.query(q), fast.query(q)
      local text = getmetatable(got).text
      assert.equal(json.encode_lua(want, json.TOP_ORDER), text)
      assert.same(json.decode(json.encode(want, json.TOP_ORDER)),
        json.decode(text))
      assert.equal(#odd, #want.results)
      assert.matches('"name":"Quote \\"Q\\""', text, 1, true)
      assert.matches('"name":"Back\\\\slash\\\\"', text, 1, true)
      assert.matches('"name":"Ctl \\u0001\\u0002\\u001f del \\u007f end"',
        text, 1, true)
      assert.matches('"name":"Tab\\tNL\\nCR\\rFF\\fBS\\b"', text, 1, true)
      assert.matches('"name":"Ünïcödé 日本 € 🙂"', text, 1, true)
      assert.matches('"name":"Slash /a/b/ <html>"', text, 1, true)
      assert.matches('"vicinity":"County\\nLine, State \\"of\\" \\\\ mind, US"',
        text, 1, true)
      assert.matches('"vicinity":"Odd\\u007ftwo, Odd\\u0001country, \\"\\\\"',
        text, 1, true)
      assert.matches('"location":{"lat":5e-05,"lng":1e-05}', text, 1, true)
      assert.matches('"location":{"lat":-9e-05,"lng":-3e-05}', text, 1, true)
      assert.matches('"location":{"lat":0.0001,"lng":-0.0001}', text, 1, true)
      assert.matches('"location":{"lat":0,"lng":0}', text, 1, true)
      assert.matches('"location":{"lat":1,"lng":-1}', text, 1, true)
      assert.is_nil(text:find("[%z\1-\31\127]")) -- one line, no raw controls
      assert.same(want, lazy.materialise(got))
      local found = {}
      for _, r in ipairs(got.results) do found[r.name] = true end
      assert.is_true(found["Tab\tNL\nCR\rFF\fBS\b"])
      pc.close()
      os.remove(src)
      os.remove(bin)
    end)

    it("answers places_json's errors with nil, err", function()
      assert(pc.open(SAMPLE))
      for _, a in ipairs({
        { 91, 0, 1000, 1 }, { 0, 180.5, 1000, 1 }, { 0 / 0, 0, 1000, 1 },
        { 0, 0, 0, 1 }, { 0, 0, 1000, -1 }, { 0, 0, 1000, 1001 },
      }) do
        local r, err = pc.places_json(a[1], a[2], a[3], a[4], "x")
        assert.is_nil(r)
        assert.is_string(err)
      end
      assert.has_error(function() pc.places_json(0, 0, 1) end) -- no limit
      -- No attribution: an empty html_attributions.
      local text, status, parts = pc.places_json(0, -140, 1000, 20)
      assert.equal('{"html_attributions":[],"results":[],"status":"ZERO_RESULTS"}',
        text)
      assert.equal("ZERO_RESULTS", status)
      assert.same({ 35, 36 }, parts)
      pc.close()
      local r, err = pc.places_json(0, 0, 1000, 1)
      assert.is_nil(r)
      assert.equal("no places data loaded", err)
    end)

    it("gives WHATSAT the same replies as the table path", function()
      assert(pc.open(SAMPLE))
      local AT = "AT Riley +0.263873386 kiwi.cs.ucla.edu %s 16214648%02d.959498503"
      local function replies(with_json)
        local core = fake_core.install({ name = "Riley",
          config = { places = { provider = "local" } } })
        core.places_near = pc.places_near
        core.places_json = with_json and pc.places_json or nil
        local whatsat = require "whatsat"
        local out = {}
        for i, loc in ipairs({ "+34.068930-118.445127", "+00.000000-140.000000",
          "+78.200000+015.600000", "-18.100000+179.990000" }) do
          local at_line = AT:format(loc, i)
          assert.is_true(core.store.put("kiwi.cs.ucla.edu", 1621464800 + i,
            959498503, at_line))
          for _, r in ipairs({ "1", "10", "50" }) do
            for _, bound in ipairs({ "0", "1", "5", "20" }) do
              local line = "WHATSAT kiwi.cs.ucla.edu " .. r .. " " .. bound
              local reply = whatsat.command(1, { "WHATSAT",
                "kiwi.cs.ucla.edu", r, bound }, line)
              local at, js = reply:match("^([^\n]*)\n([^\n]*)\n\n$")
              assert.equal(at_line, at)
              out[#out + 1] = { line = loc .. " " .. line, js = js }
            end
          end
        end
        assert.equal(0, #core.deferred) -- answered at once
        return out
      end
      local fast, slow = replies(true), replies(false)
      assert.equal(#slow, #fast)
      local ok = 0
      for i = 1, #slow do
        assert.same(cjson.decode(slow[i].js), cjson.decode(fast[i].js),
          slow[i].line)
        local t = cjson.decode(fast[i].js)
        if t.status == "OK" then ok = ok + 1 end
        if #t.results > 0 then -- written by places_json (keys sorted)
          assert.truthy(fast[i].js:find('"results":[{"geometry":{"location":{"lat":',
            1, true))
        end
      end
      assert.is_true(ok >= 12, ok .. " OK replies")
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

    it("writes JSON numbers and escapes as printf and the Lua writer do",
      function()
        local rc, out = sh(PLACES_TEST .. " --json")
        assert.equal(0, rc, out)
        assert.matches(" 0 failures", out)
      end)

    it("survives damaged files", function()
      local rc, out = sh(PLACES_TEST .. " --fuzz " .. SAMPLE .. " 1500")
      assert.equal(0, rc, out)
      assert.matches(" 0 failures", out)
    end)
  end)
end)
