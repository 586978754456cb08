-- The HTTP core (core/http.c) through core.http in the real binary, with
-- the test-only script tests/fixtures/http_probe.lua and the mock places
-- server. Ports 21100-21199 and 21600-21699.
local herd = require "helpers.herd"
local mock_places = require "helpers.places_mock"
local socket = require "socket"

local MOCK = 21101

describe("core.http #integration #http", function()
  local m, h, c
  local base = "http://127.0.0.1:" .. MOCK
  lazy_setup(function()
    m, h = mock_places.start_with(MOCK, function()
      return herd.start({ servers = { H = { port = 21111, peer_port = 21611 } }, links = {} },
        { scripts = { "tests/fixtures/http_probe.lua" } })
    end)
    c = h:client("H")
  end)
  lazy_teardown(function()
    if c then c:close() end
    if h then h:stop() end
    if m then m:stop() end
  end)
  before_each(function() m:reset() end)

  it("returns status, body and lowercased headers, HTTP errors included", function()
    assert.matches("^STATUS 404 %d+ application/json; charset=UTF%-8$",
      c:request("HTTP GET " .. base .. "/nowhere"))
    m:config({ mode = "500" })
    assert.equal("STATUS 500 47 text/html", c:request("HTTP GET " .. base .. "/x"))
  end)

  it("sends the method, headers and body it was given", function()
    c:request("HTTP PUT " .. base .. "/echo 5000 100000 hello=world")
    local r = m:requests()[1]
    assert.equal("PUT", r.method)
    assert.equal("hello=world", r.body)
    assert.equal("yes", r.headers["x-probe"])
    assert.matches("^herd/", r.headers["user-agent"])
    assert.is_nil(r.headers.expect)
  end)

  it("times out a request that gets no answer", function()
    m:config({ mode = "hang" })
    local t0 = socket.gettime()
    assert.equal("ERR timeout", c:request("HTTP GET " .. base .. "/x 300"))
    local took = socket.gettime() - t0
    assert.is_true(took >= 0.29 and took < 1.5, "took " .. took)
  end)

  it("caps the response size", function()
    m:config({ mode = "big" })
    assert.equal("ERR response too large (over 100000 bytes)",
      c:request("HTTP GET " .. base .. "/x 5000 100000"))
  end)

  it("reports refused connections and unsupported schemes as errors", function()
    assert.matches("^ERR .*[Cc]ouldn't connect", c:request("HTTP GET http://127.0.0.1:21102/"))
    assert.matches("^ERR .*not supported", c:request("HTTP GET file:///etc/passwd"))
  end)

  it("cancels without calling back", function()
    m:config({ delay_ms = 100 })
    assert.equal("CANCELLED true false false", c:request("HTTPCANCEL " .. base .. "/x"))
  end)

  it("runs hundreds of requests at once", function()
    m:config({ delay_ms = 200 })
    local t0 = socket.gettime()
    assert.equal("MANY 300 0", c:request("HTTPMANY 300 " .. base .. "/maps/api/place/nearbysearch/json?location=1,2&radius=5&key=k"))
    local took = socket.gettime() - t0
    assert.is_true(took < 1.5, "took " .. took)
  end)

  it("holds no request and no Lua reference once everything is done", function()
    local before = c:request("HTTPSTATS")
    c:request("HTTP GET " .. base .. "/x")
    m:config({ mode = "hang" })
    c:request("HTTP GET " .. base .. "/x 100")
    assert.equal(before, c:request("HTTPSTATS"))
    assert.matches("^STATS 0 ", before)
  end)

  it("stops cleanly with requests in flight", function()
    m:config({ mode = "hang" })
    c:send("HTTP GET " .. base .. "/x 10000\n")
    assert.truthy(herd.eventually(function() return #m:requests() == 1 end, 2))
    assert.is_true(h:signal("H", "TERM", 5))
    assert.equal(0, h:exit_code("H"))
    assert.matches("0 left", h:log("H"))
  end)
end)
