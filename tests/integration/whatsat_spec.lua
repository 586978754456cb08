-- WHATSAT against real build/herd processes and the mock places server
-- (tests/helpers/places_mock.lua). Ports 21000-21099 and 21500-21599.
local herd = require "helpers.herd"
local mock_places = require "helpers.places_mock"
local socket = require "socket"
local cjson = require "cjson"

local MOCK = 21001
local DEAD = 21002 -- nothing listens here
local KEY = "test-key+/=secret"
local LOC = "+34.068930-118.445127"

local function url_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- Sends WHATSAT on c and reads the reply; returns at_line, decoded JSON,
-- the raw reply text and the seconds it took.
local function whatsat(c, client, radius, bound)
  local t0 = socket.gettime()
  assert(c:send(("WHATSAT %s %s %s\n"):format(client, radius, bound)))
  local raw, err, partial = c:until_blank()
  assert(raw, "no full reply: " .. tostring(err) .. " after " .. tostring(partial))
  local at, js = raw:match("^([^\n]*)\n([^\n]*)\n\n$")
  assert(at, "reply not in the shape 'AT line, JSON line, blank line': " .. raw)
  return at, cjson.decode(js), raw, socket.gettime() - t0
end

local function iamat(c, client, loc)
  local reply = c:request(("IAMAT %s %s %s"):format(client, loc or LOC, herd.now()))
  assert.matches("^AT ", reply)
  return reply
end

local function only_requests(m, path)
  local out = {}
  for _, r in ipairs(m:requests()) do
    if not path or r.path == path then out[#out + 1] = r end
  end
  return out
end

describe("WHATSAT with the legacy Nearby Search #integration #http", function()
  local m, h, c, at_a
  lazy_setup(function()
    m = mock_places.start(MOCK)
    local ok, err = pcall(function()
      h = herd.start({
        servers = { A = { port = 21011, peer_port = 21511 }, B = { port = 21012, peer_port = 21512 },
          C = { port = 21013, peer_port = 21513 } },
        links = { { "A", "B" } },
        places = { provider = "google", timeout_ms = 1000 },
      }, {
        only = { "A", "B" },
        env = { HERD_PLACES_PROVIDER = "google", HERD_PLACES_KEY = KEY,
          HERD_PLACES_URL = mock_places.url(MOCK, "google") },
      })
      -- C points at a port where nothing listens.
      h:start_one("C", { HERD_PLACES_URL = "http://127.0.0.1:" .. DEAD .. "/nearbysearch/json" })
      assert(h:wait("C"), "C did not start")
    end)
    if not ok then
      if h then h:stop() end
      m:stop()
      error(err)
    end
    c = h:client("A")
    at_a = iamat(c, "kiwi.cs.ucla.edu")
  end)
  lazy_teardown(function()
    if c then c:close() end
    if h then h:stop() end
    if m then m:stop() end
  end)
  before_each(function() m:reset() end)

  it("sends the radius in metres, the key and the location with + encoded", function()
    local at, t = whatsat(c, "kiwi.cs.ucla.edu", 10, 5)
    assert.equal(at_a, at)
    assert.equal("OK", t.status)
    local reqs = only_requests(m)
    assert.equal(1, #reqs)
    local r = reqs[1]
    assert.equal("GET", r.method)
    assert.equal("/maps/api/place/nearbysearch/json", r.path)
    assert.equal("10000", r.query.radius)
    assert.equal(KEY, r.query.key)
    assert.equal("+34.068930,-118.445127", r.query.location)
    assert.matches("location=%%2B34%.068930%%2C%-118%.445127", r.raw_query)
  end)

  it("converts a decimal radius", function()
    whatsat(c, "kiwi.cs.ucla.edu", 1.5, 1)
    whatsat(c, "kiwi.cs.ucla.edu", "0.25", 1)
    local reqs = only_requests(m)
    assert.equal("1500", reqs[1].query.radius)
    assert.equal("250", reqs[2].query.radius)
  end)

  it("cuts the results to the bound: 0, 5 and 20", function()
    local _, t0, raw0 = whatsat(c, "kiwi.cs.ucla.edu", 10, 0)
    assert.matches('"results":%[%]', raw0)
    assert.equal(0, #t0.results)
    assert.equal("OK", t0.status)
    local _, t5 = whatsat(c, "kiwi.cs.ucla.edu", 10, 5)
    assert.equal(5, #t5.results)
    assert.equal("Mock Place 5", t5.results[5].name)
    local _, t20 = whatsat(c, "kiwi.cs.ucla.edu", 10, 20)
    assert.equal(20, #t20.results)
  end)

  it("collapses newlines: one JSON line, no trailing newline, then two newlines", function()
    -- The mock spreads its JSON over lines with blank lines between, and
    -- one place's vicinity has newlines in it.
    local _, t, raw = whatsat(c, "kiwi.cs.ucla.edu", 10, 20)
    local n = select(2, raw:gsub("\n", ""))
    assert.equal(3, n)
    assert.equal("\n\n", raw:sub(-2))
    assert.is_nil(raw:sub(1, -3):find("\n\n", 1, true))
    assert.equal("Line one\n\n\nline two", t.results[3].vicinity)
    assert.same({}, t.results[2].photos[1].html_attributions)
    assert.same({}, t.html_attributions)
  end)

  it("answers with the stored AT line when asked at another server", function()
    local cb = h:client("B")
    local ok = herd.eventually(function()
      cb:send("WHATSAT kiwi.cs.ucla.edu 10 1\n")
      local first = cb:line()
      if first:sub(1, 1) == "?" then return false end
      assert(cb:line() and cb:line() == "")
      return first
    end, 5)
    assert.equal(at_a, ok)
    assert.matches("^AT A ", ok)
    cb:close()
  end)

  it("answers ? for a client nobody has heard of and for bad operands", function()
    assert.equal("? WHATSAT nobody 10 5", c:request("WHATSAT nobody 10 5"))
    assert.equal("? WHATSAT kiwi.cs.ucla.edu 51 5", c:request("WHATSAT kiwi.cs.ucla.edu 51 5"))
    assert.equal("? WHATSAT kiwi.cs.ucla.edu 10 21", c:request("WHATSAT kiwi.cs.ucla.edu 10 21"))
    assert.equal("? WHATSAT kiwi.cs.ucla.edu 0 5", c:request("WHATSAT kiwi.cs.ucla.edu 0 5"))
    assert.equal(0, #only_requests(m))
  end)

  it("passes REQUEST_DENIED through unchanged", function()
    m:config({ mode = "denied" })
    local at, t = whatsat(c, "kiwi.cs.ucla.edu", 10, 5)
    assert.equal(at_a, at)
    assert.equal("REQUEST_DENIED", t.status)
    assert.equal("The provided API key is invalid.", t.error_message)
    m:config({ mode = "overlimit" })
    local _, t2 = whatsat(c, "kiwi.cs.ucla.edu", 10, 5)
    assert.equal("OVER_QUERY_LIMIT", t2.status)
  end)

  for _, case in ipairs({
    { mode = "500", msg = "HTTP 500" },
    { mode = "badjson", msg = "JSON" },
    { mode = "close", msg = "request failed" },
    { mode = "hang", msg = "within 1000 ms" },
  }) do
    it("answers UNKNOWN_ERROR in the same shape when the provider fails: " .. case.mode, function()
      m:config({ mode = case.mode })
      local at, t, _, took = whatsat(c, "kiwi.cs.ucla.edu", 10, 5)
      assert.equal(at_a, at)
      assert.equal("UNKNOWN_ERROR", t.status)
      assert.matches(case.msg, t.error_message)
      assert.same({}, t.results)
      assert.is_true(took < 2.5, "took " .. took .. " s")
    end)
  end

  it("answers UNKNOWN_ERROR when the provider refuses connections", function()
    local cc = h:client("C")
    iamat(cc, "refused")
    local _, t, _, took = whatsat(cc, "refused", 10, 5)
    assert.equal("UNKNOWN_ERROR", t.status)
    assert.matches("request failed", t.error_message)
    assert.is_true(took < 1, "took " .. took .. " s")
    cc:close()
  end)

  it("keeps the reply order behind a slow WHATSAT", function()
    m:config({ delay_ms = 300 })
    local t0 = socket.gettime()
    c:send("WHATSAT kiwi.cs.ucla.edu 10 2\nIAMAT order.test +1+1 " .. herd.now() .. "\n")
    local first = c:line()
    local took = socket.gettime() - t0
    assert.equal(at_a, first)
    assert.is_true(took >= 0.29, "the WHATSAT reply came after only " .. took .. " s")
    assert.matches('"status":"OK"', c:line())
    assert.equal("", c:line())
    assert.matches("^AT A %S+ order%.test ", c:line())
  end)

  it("answers 200 concurrent WHATSATs against a 200 ms provider well under a second", function()
    m:config({ delay_ms = 200 })
    local conns = {}
    for i = 1, 10 do conns[i] = h:client("A") end
    local t0 = socket.gettime()
    for i, cc in ipairs(conns) do
      local lines = {}
      for j = 1, 20 do
        local radius = ((i - 1) * 20 + j) / 10 -- 0.1 .. 20.0 km, all distinct
        lines[j] = ("WHATSAT kiwi.cs.ucla.edu %s %d\n"):format(radius, (i + j) % 21)
      end
      assert(cc:send(table.concat(lines)))
    end
    local answered = 0
    for _, cc in ipairs(conns) do
      for _ = 1, 20 do
        local raw = assert(cc:until_blank())
        assert.matches('^AT [^\n]+\n{[^\n]*"status":"OK"}\n\n$', raw)
        assert.is_nil(raw:find('"results":{}', 1, true))
        answered = answered + 1
      end
    end
    local took = socket.gettime() - t0
    for _, cc in ipairs(conns) do cc:close() end
    print(("\n  200 concurrent WHATSATs, 200 ms provider: %.0f ms"):format(took * 1000))
    assert.equal(200, answered)
    assert.equal(200, #only_requests(m))
    assert.is_true(took < 1.0, "took " .. took .. " s")
  end)

  it("sends identical concurrent queries upstream once", function()
    m:config({ delay_ms = 200 })
    local conns = {}
    for i = 1, 5 do conns[i] = h:client("A") end
    for i, cc in ipairs(conns) do
      local lines = {}
      for j = 1, 10 do lines[j] = ("WHATSAT kiwi.cs.ucla.edu 7 %d\n"):format((i + j) % 21) end
      assert(cc:send(table.concat(lines)))
    end
    for i, cc in ipairs(conns) do
      for j = 1, 10 do
        local raw = assert(cc:until_blank())
        local t = cjson.decode(raw:match("\n([^\n]*)\n\n$"))
        assert.equal(math.min(20, (i + j) % 21), #t.results)
      end
      cc:close()
    end
    assert.equal(1, #only_requests(m))
  end)

  it("reuses its connection to the provider", function()
    for _ = 1, 5 do whatsat(c, "kiwi.cs.ucla.edu", 3, 1) end
    local conns = {}
    for _, r in ipairs(only_requests(m)) do conns[r.conn] = true end
    local n = 0
    for _ in pairs(conns) do n = n + 1 end
    assert.equal(1, n)
  end)

  it("never writes the key to the log", function()
    whatsat(c, "kiwi.cs.ucla.edu", 10, 1)
    for _, name in ipairs({ "A", "B", "C" }) do
      local log = h:log(name)
      assert.is_nil(log:find("test-key", 1, true), name .. "'s log holds the key")
      assert.is_nil(log:find("test%2Dkey", 1, true))
      assert.is_nil((h:stderr(name) or ""):find("test-key", 1, true))
    end
  end)
end)

describe("WHATSAT with Places API (New) #integration #http", function()
  local m, h, c
  lazy_setup(function()
    m, h = mock_places.start_with(MOCK + 20, function()
      return herd.start({ servers = { N = { port = 21031, peer_port = 21531 } }, links = {} }, {
        env = { HERD_PLACES_PROVIDER = "google-new", HERD_PLACES_KEY = KEY,
          HERD_PLACES_URL = mock_places.url(MOCK + 20, "google-new") } })
    end)
    c = h:client("N")
    iamat(c, "kiwi")
  end)
  lazy_teardown(function()
    if c then c:close() end
    if h then h:stop() end
    if m then m:stop() end
  end)
  before_each(function() m:reset() end)

  it("POSTs the JSON body with the key and field mask headers", function()
    local _, t = whatsat(c, "kiwi", 2.5, 4)
    assert.equal("OK", t.status)
    local r = only_requests(m)[1]
    assert.equal("POST", r.method)
    assert.equal("/v1/places:searchNearby", r.path)
    assert.equal(KEY, r.headers["x-goog-api-key"])
    assert.matches("places%.displayName", r.headers["x-goog-fieldmask"])
    assert.matches("places%.location", r.headers["x-goog-fieldmask"])
    assert.matches("^application/json", r.headers["content-type"])
    local body = cjson.decode(r.body)
    assert.same({ circle = { center = { latitude = 34.06893, longitude = -118.445127 },
      radius = 2500 } }, body.locationRestriction)
    assert.equal(20, body.maxResultCount)
  end)

  it("maps the answer to the legacy shape", function()
    local _, t = whatsat(c, "kiwi", 10, 4)
    assert.equal(4, #t.results)
    local p = t.results[1]
    assert.equal("Mock Place 1", p.name)
    assert.equal("ChIJmock1", p.place_id)
    assert.equal("1 Mock Street, Los Angeles", p.vicinity)
    assert.is_number(p.geometry.location.lat)
    assert.is_number(p.geometry.viewport.northeast.lng)
    assert.equal(2, p.price_level)
    assert.equal(101, p.user_ratings_total)
    assert.same({ open_now = true }, p.opening_hours)
    assert.same({ "restaurant", "food", "point_of_interest", "establishment" }, p.types)
    assert.same({}, t.html_attributions)
  end)

  it("maps zero results and Google's errors", function()
    m:config({ mode = "zero" })
    local _, t = whatsat(c, "kiwi", 10, 4)
    assert.equal("ZERO_RESULTS", t.status)
    m:config({ mode = "denied" })
    local _, t2 = whatsat(c, "kiwi", 10, 4)
    assert.equal("REQUEST_DENIED", t2.status)
    assert.matches("API key not valid", t2.error_message)
  end)
end)

describe("WHATSAT with Overpass #integration #http", function()
  local m, h, c
  lazy_setup(function()
    m, h = mock_places.start_with(MOCK + 40, function()
      return herd.start({ servers = { O = { port = 21051, peer_port = 21551 } }, links = {} }, {
        env = { HERD_PLACES_PROVIDER = "overpass",
          HERD_PLACES_URL = mock_places.url(MOCK + 40, "overpass") } })
    end)
    c = h:client("O")
    iamat(c, "kiwi")
  end)
  lazy_teardown(function()
    if c then c:close() end
    if h then h:stop() end
    if m then m:stop() end
  end)
  before_each(function() m:reset() end)

  it("POSTs a form-encoded [out:json] around query", function()
    local _, t = whatsat(c, "kiwi", 1.5, 3)
    assert.equal("OK", t.status)
    local r = only_requests(m)[1]
    assert.equal("POST", r.method)
    assert.equal("/api/interpreter", r.path)
    assert.equal("application/x-www-form-urlencoded", r.headers["content-type"])
    local ql = url_decode(r.body:match("^data=(.*)$"))
    assert.matches("^%[out:json%]%[timeout:10%];", ql)
    assert.matches('nwr%(around:1500,34%.068930,%-118%.445127%)%["amenity"%]%["name"%];', ql)
    assert.matches("out center %d+;", ql)
  end)

  it("maps elements to the legacy shape, nearest first, with the OSM credit", function()
    local _, t = whatsat(c, "kiwi", 5, 3)
    assert.equal(3, #t.results)
    assert.equal("Mock Amenity 1", t.results[1].name)
    assert.equal("osm:node/1001", t.results[1].place_id)
    assert.equal("1 Mock Street, Los Angeles", t.results[1].vicinity)
    assert.equal("osm:way/1003", t.results[3].place_id)
    assert.same({ "restaurant", "point_of_interest", "establishment" }, t.results[1].types)
    assert.matches("OpenStreetMap", t.html_attributions[1])
  end)

  it("maps a rate limit to OVER_QUERY_LIMIT", function()
    m:config({ mode = "denied" })
    local _, t = whatsat(c, "kiwi", 5, 3)
    assert.equal("OVER_QUERY_LIMIT", t.status)
  end)
end)
