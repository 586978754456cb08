-- The `local` places provider (scripts/places/local.lua) against a fake core
-- whose places_near returns canned places (the table path, taken when the
-- core has no places_json): the legacy answer shape, the statuses, and what
-- the provider asks the core for; and that it hands core.places_json's text
-- on as a lazy result. The real index and its JSON writer are covered by
-- places_index_spec.lua.
local fake_core = require "helpers.fake_core"
local cjson = require "cjson"

local UCLA = { lat = 34.068930, lon = -118.445127 }

local function canned()
  return {
    { name = "Westwood", lat = 34.05612, lon = -118.43063, country = "US",
      admin1 = "California", admin2 = "Los Angeles County",
      id = "054bbde79e08158b", distance_m = 1952.5 },
    { name = "Santa Monica", lat = 34.01949, lon = -118.49138, country = "US",
      admin1 = "California", admin2 = "Los Angeles County",
      id = "7d7f57ae5d120b77", distance_m = 6955.8 },
    { name = "Nowhere", lat = 1, lon = 2, country = "", id = "0000000000000001",
      distance_m = 7000 },
  }
end

describe("places.local provider", function()
  local core, provider, calls

  before_each(function()
    core = fake_core.install()
    calls = {}
    core.places_near = function(lat, lon, radius_m, limit)
      calls[#calls + 1] = { lat = lat, lon = lon, radius_m = radius_m,
        limit = limit }
      local out = {}
      for i, p in ipairs(canned()) do
        if i <= limit then out[i] = p end
      end
      return out
    end
    provider = require "places.local"
  end)

  local function search(q)
    local got, n = nil, 0
    provider.search(q, function(r)
      got, n = r, n + 1
    end)
    assert.equal(1, n) -- called once, and before search returned
    return got
  end

  it("answers in the legacy Nearby Search shape, nearest first", function()
    local r = search({ lat = UCLA.lat, lon = UCLA.lon, radius_km = 10,
      limit = 20 })
    assert.equal("OK", r.status)
    assert.is_nil(r.error_message)
    assert.equal(3, #r.results)
    local w = r.results[1]
    assert.same({ location = { lat = 34.05612, lng = -118.43063 } },
      w.geometry)
    assert.equal("Westwood", w.name)
    assert.equal("local:054bbde79e08158b", w.place_id)
    assert.equal(w.place_id, w.reference)
    assert.same({ "locality", "political" }, w.types)
    assert.equal("Los Angeles County, California, US", w.vicinity)
    assert.equal("Santa Monica", r.results[2].name)
    assert.equal("", r.results[3].vicinity)
    -- Encodes as JSON as it is.
    local back = cjson.decode(cjson.encode(r))
    assert.equal("Westwood", back.results[1].name)
  end)

  it("credits GeoNames under CC BY 4.0 in every answer", function()
    for _, q in ipairs({
      { lat = 0, lon = 0, radius_km = 1 },       -- OK
      { lat = 91, lon = 0, radius_km = 1 },      -- INVALID_REQUEST
    }) do
      local r = search(q)
      assert.equal(1, #r.html_attributions)
      assert.matches("GeoNames", r.html_attributions[1])
      assert.matches("CC BY 4.0", r.html_attributions[1])
      assert.matches("creativecommons.org/licenses/by/4.0", r.html_attributions[1])
    end
    core.places_near = function() return {} end
    assert.matches("GeoNames", search({ lat = 0, lon = 0, radius_km = 1 })
      .html_attributions[1])
  end)

  it("passes the radius in metres and the bound to the core", function()
    search({ lat = UCLA.lat, lon = UCLA.lon, radius_km = 10.5, limit = 5 })
    assert.same({ lat = UCLA.lat, lon = UCLA.lon, radius_m = 10500,
      limit = 5 }, calls[1])
    search({ lat = 1, lon = 2, radius_m = 250 })
    assert.same({ lat = 1, lon = 2, radius_m = 250,
      limit = provider.DEFAULT_LIMIT }, calls[2])
    search({ lat = 1, lon = 2, radius_m = 250, limit = 5000 })
    assert.equal(provider.MAX_LIMIT, calls[3].limit)
  end)

  it("cuts results to the bound", function()
    local r = search({ lat = 0, lon = 0, radius_km = 50, limit = 2 })
    assert.equal(2, #r.results)
    assert.equal("Santa Monica", r.results[2].name)
  end)

  it("reports OK but no results for a bound of 0 when places are in range",
    function()
      local r = search({ lat = 0, lon = 0, radius_km = 50, limit = 0 })
      assert.equal("OK", r.status)
      assert.same({}, r.results)
      assert.equal(1, calls[1].limit)
    end)

  it("says ZERO_RESULTS when nothing is in range", function()
    core.places_near = function() return {} end
    local r = search({ lat = 0, lon = -140, radius_km = 50, limit = 20 })
    assert.equal("ZERO_RESULTS", r.status)
    assert.same({}, r.results)
    assert.equal(provider.array_mt, getmetatable(r.results))
    assert.is_nil(r.error_message)
  end)

  it("reads the ISO 6709 location when lat/lon are not given", function()
    search({ location = "+34.068930-118.445127", radius_km = 10 })
    assert.equal(34.06893, calls[1].lat)
    assert.equal(-118.445127, calls[1].lon)
    search({ location = "-90+180", radius_km = 10 })
    assert.equal(-90, calls[2].lat)
    assert.equal(180, calls[2].lon)
  end)

  it("rejects a bad location or radius without asking the core", function()
    for _, q in ipairs({
      {}, { lat = 0, radius_km = 1 }, { lat = 90.5, lon = 0, radius_km = 1 },
      { lat = 0, lon = -180.1, radius_km = 1 },
      { location = "34.0-118.4", radius_km = 1 },
      { lat = 0, lon = 0 }, { lat = 0, lon = 0, radius_km = 0 },
      { lat = 0, lon = 0, radius_m = -5 }, { lat = 0, lon = 0, radius_m = 0 / 0 },
    }) do
      local r = search(q)
      assert.equal("INVALID_REQUEST", r.status)
      assert.is_string(r.error_message)
      assert.same({}, r.results)
    end
    assert.equal(0, #calls)
  end)

  it("returns the core's JSON as a lazy result when the core writes it",
    function()
      local lazy = require "places.lazy"
      local asked
      core.places_json = function(lat, lon, radius_m, limit, attribution)
        asked = { lat, lon, radius_m, limit, attribution }
        local text = '{"html_attributions":[],"results":[{"name":"From C"},' ..
          '{"name":"Second"}],"status":"OK"}'
        local _, _, _, _, parts = require("herdtext").json_cut(text)
        return text, "OK", parts
      end
      local r = search({ lat = 1, lon = 2, radius_km = 3, limit = 1 })
      assert.same({ 1, 2, 3000, 1, provider.ATTRIBUTION }, asked)
      assert.equal(0, #calls) -- places_near unused
      assert.is_true(lazy.untouched(r))
      assert.equal("OK", r.status)
      assert.equal('{"html_attributions":[],"results":[{"name":"From C"}],' ..
        '"status":"OK"}', lazy.cut(r, 1))
      assert.equal("From C", r.results[1].name) -- decoded on first look
      assert.is_false(lazy.untouched(r))
      -- Limits are clamped before the core sees them; 0 goes to the core.
      search({ lat = 1, lon = 2, radius_km = 3, limit = 5000 })
      assert.equal(provider.MAX_LIMIT, asked[4])
      search({ lat = 1, lon = 2, radius_km = 3, limit = 0 })
      assert.equal(0, asked[4])
      -- Bad requests never reach it; its failures are table answers.
      r = search({ lat = 91, lon = 2, radius_km = 3 })
      assert.equal("INVALID_REQUEST", r.status)
      assert.is_nil(getmetatable(r) and getmetatable(r).text)
      core.places_json = function() return nil, "boom" end
      r = search({ lat = 1, lon = 2, radius_km = 3 })
      assert.equal("UNKNOWN_ERROR", r.status)
      assert.equal("boom", r.error_message)
      assert.matches("GeoNames", r.html_attributions[1])
    end)

  it("turns a core failure into UNKNOWN_ERROR with the core's message",
    function()
      core.places_near = function() return nil, "no places data loaded" end
      local r = search({ lat = 0, lon = 0, radius_km = 1 })
      assert.equal("UNKNOWN_ERROR", r.status)
      assert.equal("no places data loaded", r.error_message)
      assert.same({}, r.results)
    end)
end)
