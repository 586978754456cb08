local fake_core = require "helpers.fake_core"
local cjson = require "cjson"

local KEY = "AIza+test/key=1"

local function query(loc, radius_km)
  local lat, lon = require("herdtext").latlon(loc)
  return { lat = lat, lon = lon, location = loc, radius_km = radius_km,
    radius_m = radius_km * 1000, limit = 20 }
end

local function decode_query(url)
  local t = {}
  for k, v in (url:match("%?(.*)$") or ""):gmatch("([^&=]+)=([^&]*)") do
    t[k] = v:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  end
  return t
end

local function result_of(provider, q, resp, err)
  local got
  provider.search(q, function(r) got = r end)
  return got
end

describe("places provider google (legacy Nearby Search)", function()
  local core, google
  before_each(function()
    core = fake_core.install({ config = { places = { provider = "google", key = KEY } } })
    google = require "places.google"
  end)

  it("sends GET with location, radius in metres and the key, all encoded", function()
    google.search(query("+34.068930-118.445127", 10), function() end)
    local req = core.http_calls[1].req
    assert.equal("GET", req.method)
    assert.matches("^https://maps%.googleapis%.com/maps/api/place/nearbysearch/json%?", req.url)
    assert.matches("location=%%2B34%.068930%%2C%-118%.445127&", req.url)
    assert.matches("&radius=10000&", req.url)
    local q = decode_query(req.url)
    assert.equal("+34.068930,-118.445127", q.location)
    assert.equal(KEY, q.key)
    assert.is_nil(req.url:find(KEY, 1, true)) -- the key's + and / are encoded
    assert.equal(10000, req.timeout_ms)
  end)

  it("converts a decimal radius exactly", function()
    google.search(query("-33.8-151.2", 1.5), function() end)
    google.search(query("-33.8-151.2", 0.0005), function() end)
    assert.equal("1500", decode_query(core.http_calls[1].req.url).radius)
    assert.equal("0.5", decode_query(core.http_calls[2].req.url).radius)
  end)

  it("uses HERD_PLACES_URL as the whole endpoint", function()
    core.config.places.url = "http://127.0.0.1:21001/x?a=b"
    google.search(query("+1-2", 1), function() end)
    assert.matches("^http://127%.0%.0%.1:21001/x%?a=b&location=", core.http_calls[1].req.url)
  end)

  it("passes Google's own error statuses through unchanged", function()
    local got
    google.search(query("+1-2", 1), function(r) got = r end)
    core.http_calls[1].cb({ status = 200, headers = {}, body =
      '{"error_message":"The provided API key is invalid.","html_attributions":[],"results":[],"status":"REQUEST_DENIED"}' })
    assert.same({ error_message = "The provided API key is invalid.",
      html_attributions = {}, results = {}, status = "REQUEST_DENIED" }, got)
  end)

  it("turns transport failures, HTTP errors and bad JSON into UNKNOWN_ERROR", function()
    local got = {}
    for i = 1, 4 do google.search(query("+1-2", 1), function(r) got[i] = r end) end
    core.http_calls[1].cb(nil, "timeout")
    core.http_calls[2].cb(nil, "Failed to connect to 127.0.0.1 port 1: Connection refused")
    core.http_calls[3].cb({ status = 500, headers = {}, body = "oops" })
    core.http_calls[4].cb({ status = 200, headers = {}, body = "{not json" })
    for i = 1, 4 do
      assert.equal("UNKNOWN_ERROR", got[i].status)
      assert.is_string(got[i].error_message)
      assert.same({}, got[i].results)
    end
    assert.matches("within 10000 ms", got[1].error_message)
    assert.matches("refused", got[2].error_message)
    assert.matches("HTTP 500", got[3].error_message)
  end)

  it("never shows the key in an error", function()
    local got
    google.search(query("+1-2", 1), function(r) got = r end)
    core.http_calls[1].cb(nil, "bad URL http://x/?key=" .. KEY .. " and " ..
      require("places.common").url_encode(KEY))
    assert.is_nil(got.error_message:find(KEY, 1, true))
    assert.is_nil(got.error_message:find("AIza", 1, true))
  end)

  it("refuses to load without a key", function()
    core.config.places.key = nil
    package.loaded.places = nil
    assert.has_error(function() require "places" end,
      "places: provider 'google' needs an API key: set HERD_PLACES_KEY (or places.key in the config)")
  end)
end)

describe("places provider google-new (Places API New)", function()
  local core, gnew
  before_each(function()
    core = fake_core.install({ config = { places = { provider = "google-new", key = KEY } } })
    gnew = require "places.google_new"
  end)

  it("POSTs JSON with the key and field mask headers", function()
    gnew.search(query("+34.068930-118.445127", 2.5), function() end)
    local req = core.http_calls[1].req
    assert.equal("POST", req.method)
    assert.equal("https://places.googleapis.com/v1/places:searchNearby", req.url)
    assert.equal(KEY, req.headers["X-Goog-Api-Key"])
    assert.equal("application/json", req.headers["Content-Type"])
    assert.matches("places%.displayName", req.headers["X-Goog-FieldMask"])
    local body = cjson.decode(req.body)
    assert.same({ circle = { center = { latitude = 34.06893, longitude = -118.445127 },
      radius = 2500 } }, body.locationRestriction)
    assert.equal(20, body.maxResultCount)
  end)

  it("maps places to the legacy shape", function()
    local got
    gnew.search(query("+1-2", 1), function(r) got = r end)
    core.http_calls[1].cb({ status = 200, headers = {}, body = cjson.encode({ places = { {
      id = "ChIJ1", displayName = { text = "Cafe", languageCode = "en" },
      shortFormattedAddress = "1 Main St", formattedAddress = "1 Main St, Town",
      location = { latitude = 1.5, longitude = -2.5 },
      viewport = { low = { latitude = 1, longitude = -3 }, high = { latitude = 2, longitude = -2 } },
      types = { "cafe", "food" }, rating = 4.2, userRatingCount = 17,
      priceLevel = "PRICE_LEVEL_INEXPENSIVE", businessStatus = "OPERATIONAL",
      currentOpeningHours = { openNow = false },
      plusCode = { globalCode = "G", compoundCode = "C" },
    } } }) })
    assert.equal("OK", got.status)
    assert.same({
      place_id = "ChIJ1", name = "Cafe", vicinity = "1 Main St",
      geometry = { location = { lat = 1.5, lng = -2.5 },
        viewport = { northeast = { lat = 2, lng = -2 }, southwest = { lat = 1, lng = -3 } } },
      types = { "cafe", "food" }, rating = 4.2, user_ratings_total = 17,
      price_level = 1, business_status = "OPERATIONAL",
      opening_hours = { open_now = false },
      plus_code = { global_code = "G", compound_code = "C" },
    }, got.results[1])
  end)

  it("answers ZERO_RESULTS for {} and maps Google's errors", function()
    local got = {}
    for i = 1, 4 do gnew.search(query("+1-2", 1), function(r) got[i] = r end) end
    core.http_calls[1].cb({ status = 200, headers = {}, body = "{}" })
    core.http_calls[2].cb({ status = 403, headers = {}, body =
      '{"error":{"code":403,"message":"API key not valid.","status":"PERMISSION_DENIED"}}' })
    core.http_calls[3].cb({ status = 429, headers = {}, body =
      '{"error":{"code":429,"message":"Quota exceeded.","status":"RESOURCE_EXHAUSTED"}}' })
    core.http_calls[4].cb({ status = 502, headers = {}, body = "<html>" })
    assert.equal("ZERO_RESULTS", got[1].status)
    assert.same({}, got[1].results)
    assert.equal("REQUEST_DENIED", got[2].status)
    assert.equal("google-new: API key not valid.", got[2].error_message)
    assert.equal("OVER_QUERY_LIMIT", got[3].status)
    assert.equal("UNKNOWN_ERROR", got[4].status)
  end)
end)

describe("places provider overpass", function()
  local core, overpass
  before_each(function()
    core = fake_core.install({ config = { places = { provider = "overpass" } } })
    overpass = require "places.overpass"
  end)

  local function form_data(body)
    local v = body:match("^data=(.*)$")
    return (v:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
  end

  it("POSTs a form-encoded [out:json] around query", function()
    overpass.search(query("+34.068930-118.445127", 1.25), function() end)
    local req = core.http_calls[1].req
    assert.equal("POST", req.method)
    assert.equal("https://overpass-api.de/api/interpreter", req.url)
    assert.equal("application/x-www-form-urlencoded", req.headers["Content-Type"])
    local ql = form_data(req.body)
    assert.matches("^%[out:json%]%[timeout:10%];", ql)
    assert.matches('nwr%(around:1250,34%.068930,%-118%.445127%)%["amenity"%]%["name"%];', ql)
    assert.matches("out center 100;", ql)
  end)

  it("maps elements, nearest first, with the OSM attribution", function()
    local got
    local q = query("+10.0-20.0", 5)
    q.limit = 2
    overpass.search(q, function(r) got = r end)
    core.http_calls[1].cb({ status = 200, headers = {}, body = cjson.encode({ elements = {
      { type = "node", id = 1, lat = 10.02, lon = -20.0, tags = { name = "Far", amenity = "bar" } },
      { type = "way", id = 2, center = { lat = 10.001, lon = -20.0 },
        tags = { name = "Near", amenity = "cafe", ["addr:housenumber"] = "5",
          ["addr:street"] = "High St", ["addr:city"] = "Town" } },
      { type = "node", id = 3, lat = 10.01, lon = -20.0, tags = { name = "Mid" } },
      { type = "node", id = 4, lat = 10.0, lon = -20.0, tags = { amenity = "bench" } },
    } }) })
    assert.equal("OK", got.status)
    assert.matches("OpenStreetMap", got.html_attributions[1])
    assert.equal(2, #got.results)
    assert.same({ name = "Near", place_id = "osm:way/2",
      geometry = { location = { lat = 10.001, lng = -20.0 } },
      vicinity = "5 High St, Town", types = { "cafe", "point_of_interest", "establishment" } },
      got.results[1])
    assert.equal("Mid", got.results[2].name)
  end)

  it("maps 429, runtime errors and empty answers", function()
    local got = {}
    for i = 1, 3 do overpass.search(query("+1-2", 1), function(r) got[i] = r end) end
    core.http_calls[1].cb({ status = 429, headers = {}, body = "busy" })
    core.http_calls[2].cb({ status = 200, headers = {}, body =
      '{"elements":[],"remark":"runtime error: Query timed out"}' })
    core.http_calls[3].cb({ status = 200, headers = {}, body = '{"elements":[]}' })
    assert.equal("OVER_QUERY_LIMIT", got[1].status)
    assert.equal("UNKNOWN_ERROR", got[2].status)
    assert.matches("timed out", got[2].error_message)
    assert.equal("ZERO_RESULTS", got[3].status)
  end)
end)

describe("places provider selection", function()
  it("names the providers when the configured one is unknown", function()
    fake_core.install({ config = { places = { provider = "bing" } } })
    assert.has_error(function() require "places" end,
      'places: unknown provider "bing" (from HERD_PLACES_PROVIDER or places.provider ' ..
      'in the config); the providers are: google, google-new, local, overpass')
  end)
  it("picks each provider by its name", function()
    for name, mod in pairs({ google = "google", ["google-new"] = "google_new", overpass = "overpass" }) do
      fake_core.install({ config = { places = { provider = name, key = "k" } } })
      local places = require "places"
      assert.equal(name, places.name)
      assert.equal(require("places." .. mod), places.provider)
    end
  end)
  it("defaults to local", function()
    local core = fake_core.install({ config = {} })
    package.loaded["places.local"] = { search = function() end, synchronous = true }
    assert.equal("local", require("places").name)
  end)
end)

describe("places.common settings and encoding", function()
  it("builds the settings once per config and shares them", function()
    local core = fake_core.install({ config = { places = { provider = "google", key = "k1",
      url = "http://h/x", timeout_ms = 1234, language = "fr" } } })
    local common = require "places.common"
    local s = common.settings()
    assert.equal(s, common.settings())
    assert.same({ "google", "http://h/x", "k1", 1234, "fr" },
      { s.provider, s.url, s.key, s.timeout_ms, s.language })
    -- another config table (a reload's new state has its own) is read anew
    core.config.places = { provider = "google", key = "k2" }
    local s2 = common.settings()
    assert.are_not.equal(s, s2)
    assert.equal("k2", s2.key)
    assert.is_nil(s2.url)
    assert.equal(common.DEFAULT_TIMEOUT_MS, s2.timeout_ms)
  end)

  it("google's cached URL parts follow the settings table", function()
    local core = fake_core.install({ config = { places = { provider = "google", key = "a b",
      url = "http://h/x" } } })
    local google = require "places.google"
    local common = require "places.common"
    local q = query("+34.068930-118.445127", 2.5)
    local u1 = google.request(q, common.settings()).url
    assert.equal("http://h/x?location=%2B34.068930%2C-118.445127&radius=2500&key=a%20b", u1)
    assert.equal(u1, google.request(q, common.settings()).url)
    core.config.places = { provider = "google", key = "c", url = "http://h/y?z=1", language = "de" }
    assert.equal("http://h/y?z=1&location=%2B34.068930%2C-118.445127&radius=2500&key=c&language=de",
      google.request(q, common.settings()).url)
  end)

  it("url_encode matches percent-encoding byte by byte", function()
    local common = require "places.common"
    local all = {}
    for b = 0, 255 do all[#all + 1] = string.char(b) end
    local s = table.concat(all)
    local want = s:gsub("[^%w%-%._~]", function(ch) return string.format("%%%02X", ch:byte()) end)
    assert.equal(want, common.url_encode(s))
    assert.equal("12", common.url_encode(12))
  end)

  it("metres_text writes whole and fractional metres shortly", function()
    local common = require "places.common"
    assert.equal("10000", common.metres_text(10000))
    assert.equal("10000", common.metres_text(10 * 1000.0))
    assert.equal("1500", common.metres_text(1.5 * 1000))
    assert.equal("0.5", common.metres_text(0.0005 * 1000))
    assert.equal("2.125", common.metres_text(2.125))
  end)
end)
