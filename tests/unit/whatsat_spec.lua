local fake_core = require "helpers.fake_core"
local cjson = require "cjson"

local AT = "AT Riley +0.263873386 kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503"

-- A legacy answer with n results, spread over lines the way Google's is.
local function legacy_body(n, status)
  local results = {}
  for i = 1, n do
    results[i] = { name = "Place " .. i, place_id = "id" .. i, types = { "cafe" },
      geometry = { location = { lat = 34 + i / 1000, lng = -118 } } }
  end
  local body = cjson.encode({ html_attributions = {}, results = results,
    status = status or (n > 0 and "OK" or "ZERO_RESULTS") })
  return "{\n\n\n" .. body:sub(2, -2):gsub(',"', ',\n\n  "') .. "\n}\n\n\n"
end

local function setup(places, extra)
  local conf = { places = places or { provider = "google", key = "K" } }
  local core = fake_core.install({ name = "Riley", config = conf })
  if extra then extra(core) end
  core.store.put("kiwi.cs.ucla.edu", 1621464827, 959498503, AT)
  local answered = {}
  local answer = core.answer
  core.answer = function(token, text)
    answered[#answered + 1] = token
    return answer(token, text)
  end
  core.answered = answered
  return core, require "whatsat"
end

local function split_reply(text)
  local at, js = text:match("^([^\n]*)\n(.*)\n\n$")
  return at, js
end

describe("whatsat validation", function()
  local core, whatsat
  before_each(function() core, whatsat = setup() end)

  local function cmd(line)
    local fields = {}
    for f in line:gmatch("%S+") do fields[#fields + 1] = f end
    return whatsat.command(1, fields, line)
  end

  it("rejects wrong operand counts", function()
    assert.equal("? WHATSAT kiwi.cs.ucla.edu 10\n", cmd("WHATSAT kiwi.cs.ucla.edu 10"))
    assert.equal("? WHATSAT kiwi.cs.ucla.edu 10 5 1\n", cmd("WHATSAT kiwi.cs.ucla.edu 10 5 1"))
  end)

  it("accepts only a decimal radius with 0 < r <= 50", function()
    for _, r in ipairs({ "0", "0.0", "-1", "50.001", "51", "1e1", "0x10", "inf", "nan",
        "1.2.3", "abc", "", "10km", "1,5" }) do
      local line = "WHATSAT kiwi.cs.ucla.edu " .. r .. " 5"
      if r ~= "" then assert.equal("? " .. line .. "\n", cmd(line), r) end
    end
    for _, r in ipairs({ "50", "50.0", "0.001", ".5", "10.", "007" }) do
      assert.is_nil(cmd("WHATSAT kiwi.cs.ucla.edu " .. r .. " 5"), r)
    end
    assert.equal(0.5, whatsat.parse_radius(".5"))
  end)

  it("accepts only an integer bound from 0 to 20", function()
    for _, b in ipairs({ "21", "-1", "1.5", "x", "1e1", "100000000000000000000" }) do
      local line = "WHATSAT kiwi.cs.ucla.edu 10 " .. b
      assert.equal("? " .. line .. "\n", cmd(line), b)
    end
    assert.equal(0, whatsat.parse_bound("0"))
    assert.equal(20, whatsat.parse_bound("20"))
  end)

  it("answers ? for a client nobody has heard of, keeping the raw line", function()
    assert.equal("? WHATSAT  nobody\t10 5 \n", cmd("WHATSAT  nobody\t10 5 "))
    assert.equal(0, #core.http_calls)
  end)
end)

describe("whatsat replies", function()
  local core, whatsat
  before_each(function() core, whatsat = setup() end)

  local function ask(client, radius, bound)
    local line = ("WHATSAT %s %s %s"):format(client, radius, bound)
    return whatsat.command(1, { "WHATSAT", client, tostring(radius), tostring(bound) }, line)
  end

  it("defers, queries the provider and answers the AT line plus the JSON", function()
    assert.is_nil(ask("kiwi.cs.ucla.edu", 10, 5))
    assert.equal(1, #core.deferred)
    assert.equal(1, #core.http_calls)
    assert.matches("radius=10000", core.http_calls[1].req.url)
    core.http_calls[1].cb({ status = 200, headers = {}, body = legacy_body(20) })
    local text = core.answers[core.deferred[1]]
    local at, js = split_reply(text)
    assert.equal(AT, at)
    assert.is_nil(js:find("\n", 1, true))
    local t = cjson.decode(js)
    assert.equal("OK", t.status)
    assert.equal(5, #t.results)
    assert.equal("Place 1", t.results[1].name)
    assert.matches('^{"html_attributions":%[%],"results":%[', js)
  end)

  it("cuts to 0 and 20", function()
    ask("kiwi.cs.ucla.edu", 10, 0)
    ask("kiwi.cs.ucla.edu", 10, 20)
    core.http_calls[1].cb({ status = 200, headers = {}, body = legacy_body(20) })
    local _, js0 = split_reply(core.answers[core.deferred[1]])
    local _, js20 = split_reply(core.answers[core.deferred[2]])
    assert.matches('"results":%[%]', js0)
    assert.equal(20, #cjson.decode(js20).results)
  end)

  it("shares one upstream request between identical queries in flight", function()
    ask("kiwi.cs.ucla.edu", 10, 1)
    ask("kiwi.cs.ucla.edu", "10.0", 3)
    ask("kiwi.cs.ucla.edu", 10, 1)
    assert.equal(1, #core.http_calls)
    ask("kiwi.cs.ucla.edu", 11, 1)
    assert.equal(2, #core.http_calls)
    core.http_calls[1].cb({ status = 200, headers = {}, body = legacy_body(5) })
    assert.equal(1, #cjson.decode(select(2, split_reply(core.answers[1]))).results)
    assert.equal(3, #cjson.decode(select(2, split_reply(core.answers[2]))).results)
    assert.equal(core.answers[1], core.answers[3])
    assert.is_nil(core.answers[4])
    -- once answered, the same query asks again
    ask("kiwi.cs.ucla.edu", 10, 1)
    assert.equal(3, #core.http_calls)
  end)

  it("passes REQUEST_DENIED through with its message", function()
    ask("kiwi.cs.ucla.edu", 10, 5)
    core.http_calls[1].cb({ status = 200, headers = {}, body =
      '{\n   "error_message" : "The provided API key is invalid.",\n   "html_attributions" : [],\n   "results" : [],\n   "status" : "REQUEST_DENIED"\n}\n' })
    local _, js = split_reply(core.answers[1])
    assert.equal('{"html_attributions":[],"results":[],"status":"REQUEST_DENIED",' ..
      '"error_message":"The provided API key is invalid."}', js)
  end)

  it("answers a provider failure in the same shape", function()
    ask("kiwi.cs.ucla.edu", 10, 5)
    core.http_calls[1].cb(nil, "timeout")
    local at, js = split_reply(core.answers[1])
    assert.equal(AT, at)
    local t = cjson.decode(js)
    assert.equal("UNKNOWN_ERROR", t.status)
    assert.matches("within 10000 ms", t.error_message)
    assert.same({}, t.results)
    for _, msg in ipairs(core.logs) do assert.is_nil(msg:find("K", 1, true)) end
  end)

  it("answers once from the watchdog if the provider never calls back", function()
    ask("kiwi.cs.ucla.edu", 10, 5)
    local timer = next(core.timers)
    assert.equal(12000, core.timers[timer].ms)
    core.fire_timers()
    assert.equal(1, #core.answered)
    local t = cjson.decode(select(2, split_reply(core.answers[1])))
    assert.equal("UNKNOWN_ERROR", t.status)
    core.http_calls[1].cb({ status = 200, headers = {}, body = legacy_body(5) })
    assert.equal(1, #core.answered)
  end)

  it("leaves the answer to the request in flight when a reload fires the watchdog early", function()
    ask("kiwi.cs.ucla.edu", 10, 5)
    core.fire_timers(true) -- premature: these scripts were replaced
    assert.equal(0, #core.answered)
    core.http_calls[1].cb({ status = 200, headers = {}, body = legacy_body(5) })
    assert.equal(1, #core.answered)
    assert.equal("OK", cjson.decode(select(2, split_reply(core.answers[1]))).status)
  end)

  it("cancels the watchdog when the provider answers", function()
    ask("kiwi.cs.ucla.edu", 10, 5)
    core.http_calls[1].cb({ status = 200, headers = {}, body = legacy_body(5) })
    assert.is_nil(next(core.timers))
  end)

  it("answers an error if the provider raises", function()
    package.loaded.places.provider = { search = function() error("boom") end }
    package.loaded.places.search = function(q, cb) return package.loaded.places.provider.search(q, cb) end
    local text = ask("kiwi.cs.ucla.edu", 10, 5) -- answered at once
    local t = cjson.decode(select(2, split_reply(text)))
    assert.equal("UNKNOWN_ERROR", t.status)
    assert.equal(0, #core.deferred)
  end)
end)

describe("whatsat with a synchronous provider and the cache", function()
  it("replies at once without deferring when the answer is ready", function()
    local core, whatsat = setup({ provider = "local" }, function()
      package.loaded["places.local"] = { synchronous = true, search = function(q, cb)
        cb({ html_attributions = { "GeoNames" }, status = "OK",
          results = { { name = "Los Angeles", types = { "locality" } }, { name = "B" } } })
      end }
    end)
    local text = whatsat.command(1, { "WHATSAT", "kiwi.cs.ucla.edu", "10", "1" },
      "WHATSAT kiwi.cs.ucla.edu 10 1")
    local at, js = split_reply(text)
    assert.equal(AT, at)
    assert.matches('^{"html_attributions":%["GeoNames"%],"results":%[{.*}%],"status":"OK"}$', js)
    assert.same({ { name = "Los Angeles", types = { "locality" } } }, cjson.decode(js).results)
    assert.equal(0, #core.deferred)
  end)

  it("serves repeated queries from the cache while it is fresh", function()
    local core, whatsat = setup({ provider = "overpass", cache_ms = 1000 })
    local function ask()
      return whatsat.command(1, { "WHATSAT", "kiwi.cs.ucla.edu", "1", "5" }, "WHATSAT kiwi.cs.ucla.edu 1 5")
    end
    assert.is_nil(ask())
    core.http_calls[1].cb({ status = 200, headers = {}, body = '{"elements":[{"type":"node","id":1,"lat":34.07,"lon":-118.44,"tags":{"name":"X"}}]}' })
    local first = core.answers[1]
    assert.equal(first, ask())
    assert.equal(1, #core.http_calls)
    core.clock = core.clock + 1001 * 1000000
    assert.is_nil(ask())
    assert.equal(2, #core.http_calls)
  end)

  it("does not cache by default", function()
    local core, whatsat = setup({ provider = "overpass" })
    local function ask()
      return whatsat.command(1, { "WHATSAT", "kiwi.cs.ucla.edu", "1", "5" }, "WHATSAT kiwi.cs.ucla.edu 1 5")
    end
    ask()
    core.http_calls[1].cb({ status = 200, headers = {}, body = '{"elements":[]}' })
    assert.is_nil(ask())
    assert.equal(2, #core.http_calls)
  end)
end)
