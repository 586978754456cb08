-- The places filter example (places_filter.lua) on real servers against the
-- mock places server (tests/helpers/places_mock.lua), whose legacy Nearby
-- Search answers alternate opening_hours.open_now (odd places open) and
-- give every place the types restaurant, food, point_of_interest,
-- establishment. Ports 25200-25299.
local herd = require "helpers.herd"
local mock_places = require "helpers.places_mock"
local cjson = require "cjson"

local here = herd.beside

local MOCK = 25201
local LOC = "+34.068930-118.445127"

local function start(port, filter)
  return herd.start({
    servers = { A = { port = port } },
    places = { provider = "google", timeout_ms = 2000, filter = filter },
    scripts = { "protocol", "topology", here("places_filter.lua") },
  }, { env = { HERD_PLACES_KEY = "test-key", HERD_PLACES_URL = mock_places.url(MOCK, "google") } })
end

-- IAMAT then WHATSAT on one connection; returns the decoded JSON.
local function whatsat(h, bound)
  local c = h:client("A")
  assert.matches("^AT ", c:request(("IAMAT kiwi %s %s"):format(LOC, herd.now())))
  c:send("WHATSAT kiwi 10 " .. bound .. "\n")
  local raw = assert(c:until_blank())
  c:close()
  local js = raw:match("^AT [^\n]*\n([^\n]*)\n\n$")
  assert(js, "reply not in the WHATSAT shape: " .. raw)
  return cjson.decode(js)
end

describe("examples/places-filter #integration #http", function()
  local m
  lazy_setup(function() m = mock_places.start(MOCK) end)
  lazy_teardown(function() if m then m:stop() end end)
  before_each(function() m:reset() end)

  it("keeps only places open now, then cuts to the bound", function()
    local h = start(25211, { open_now = true, types = { "cafe", "restaurant" } })
    finally(function() h:stop() end)
    local t = whatsat(h, 5)
    assert.equal("OK", t.status)
    local names = {}
    for i, p in ipairs(t.results) do
      names[i] = p.name
      assert.is_true(p.opening_hours.open_now)
    end
    assert.same({ "Mock Place 1", "Mock Place 3", "Mock Place 5", "Mock Place 7",
      "Mock Place 9" }, names)
    -- The bound still applies after filtering: 20 fetched, 10 open, 3 asked.
    assert.equal(3, #whatsat(h, 3).results)
  end)

  it("answers ZERO_RESULTS with [] when nothing passes, and passes errors on", function()
    local h = start(25212, { types = { "cafe" } })
    finally(function() h:stop() end)
    local c = h:client("A")
    assert.matches("^AT ", c:request(("IAMAT kiwi %s %s"):format(LOC, herd.now())))
    c:send("WHATSAT kiwi 10 5\n")
    local raw = assert(c:until_blank())
    assert.matches('"results":[]', raw, 1, true)
    assert.equal("ZERO_RESULTS", cjson.decode(raw:match("\n([^\n]*)\n\n$")).status)
    m:config({ mode = "500" })
    c:send("WHATSAT kiwi 11 5\n")
    local t = cjson.decode(assert(c:until_blank()):match("\n([^\n]*)\n\n$"))
    assert.equal("UNKNOWN_ERROR", t.status)
    assert.matches("HTTP 500", t.error_message)
    c:close()
  end)

  it("refuses a filter it does not understand at --check, with the reason", function()
    local h = start(25213, { open_now = true })
    finally(function() h:stop() end)
    local f = assert(io.open(h.config, "w"))
    f:write(("return { servers = { A = { port = 25213 } },\n" ..
      "  places = { provider = \"google\", key = \"k\", filter = { open = true } },\n" ..
      "  scripts = { \"protocol\", \"topology\", %q } }\n"):format(here("places_filter.lua")))
    f:close()
    local rc, _, err = herd.run("--config " .. h.config .. " --check")
    assert.equal(1, rc)
    assert.matches("places.filter: unknown key open (keys: open_now, types)", err, 1, true)
  end)
end)
