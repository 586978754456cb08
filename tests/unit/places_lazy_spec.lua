-- Lazy results (scripts/places/lazy.lua): the google provider's good
-- answers stay checked JSON text, WHATSAT cuts them in C, and any script
-- that looks inside gets the full decoded table.
local fake_core = require "helpers.fake_core"
local cjson = require "cjson"

local AT = "AT Riley +0.263873386 kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503"

-- A legacy answer with n results in Google's layout (pretty, "\/" in URLs,
-- a next_page_token), numbers short enough for lua-cjson to keep exact.
local function body(n, status)
  local results = {}
  for i = 1, n do
    results[i] = ('      {\n         "geometry" : { "location" : { "lat" : 34.%04d, "lng" : -118.4451 },' ..
      ' "viewport" : {} },\n         "icon" : "https:\\/\\/maps.gstatic.com\\/i%d.png",\n' ..
      '         "name" : "Place %d \\u00e9 [a, b] \\"q\\"",\n         "opening_hours" : { "open_now" : %s },\n' ..
      '         "photos" : [],\n         "rating" : %d.5,\n         "types" : [ "cafe", "food" ],\n' ..
      '         "results" : [ 1, 2, 3 ]\n      }'):format(i, i, i, i % 2 == 1 and "true" or "false", i % 5)
  end
  return '{\n   "html_attributions" : [ "by <a href=\\"x\\/y\\">X<\\/a>" ],\n' ..
    '   "next_page_token" : "tok",\n   "results" : [\n' .. table.concat(results, ",\n") ..
    '\n   ],\n   "status" : "' .. (status or (n > 0 and "OK" or "ZERO_RESULTS")) .. '"\n}\n'
end

local function setup(places)
  local core = fake_core.install({ name = "Riley",
    config = { places = places or { provider = "google", key = "K" } } })
  core.store.put("kiwi.cs.ucla.edu", 1621464827, 959498503, AT)
  return core, require "whatsat", require "places.lazy", require "places.google"
end

local function parse(google, b)
  return google.parse({ status = 200, headers = {}, body = b })
end

local function ask(whatsat, radius, bound)
  local line = ("WHATSAT kiwi.cs.ucla.edu %s %s"):format(radius, bound)
  return whatsat.command(1, { "WHATSAT", "kiwi.cs.ucla.edu", tostring(radius), tostring(bound) }, line)
end

local function reply_json(text)
  local at, js = text:match("^([^\n]*)\n(.*)\n\n$")
  assert.equal(AT, at)
  assert.is_nil(js:find("\n", 1, true))
  return js
end

describe("lazy results from the google provider", function()
  local core, whatsat, lazy, google
  before_each(function() core, whatsat, lazy, google = setup() end)

  it("keep only status until something looks inside", function()
    local r = parse(google, body(3))
    assert.equal("OK", r.status)
    assert.is_true(lazy.untouched(r))
    assert.equal("status", next(r))
    assert.is_nil(next(r, "status"))
    assert.is_nil(rawget(r, "results"))
  end)

  for _, touch in ipairs({
    { "reading a key", function(r) return r.results end },
    { "pairs", function(r) for _ in pairs(r) do end end },
    { "the length operator", function(r) return #r end },
    { "assigning a new key", function(r) r.extra = 1 end },
    { "ipairs", function(r) for _ in ipairs(r) do end end },
  }) do
    it("become the full decoded table on " .. touch[1], function()
      local b = body(3)
      local r = parse(google, b)
      touch[2](r)
      assert.is_nil(getmetatable(r))
      assert.is_false(lazy.untouched(r))
      local want = cjson.decode(b)
      for k, v in pairs(want) do assert.same(v, rawget(r, k), k) end
      assert.equal(3, #r.results)
      assert.equal("Place 2 é [a, b] \"q\"", r.results[2].name)
      assert.equal("https://maps.gstatic.com/i1.png", r.results[1].icon)
    end)
  end

  it("give the same JSON on the fast path and on the table path", function()
    for _, n in ipairs({ 0, 1, 5, 20 }) do
      local b = body(n)
      for _, bound in ipairs({ 0, 1, 5, 20 }) do
        local fast = whatsat.encode(parse(google, b), bound)
        local r = parse(google, b)
        lazy.materialise(r)
        local slow = whatsat.encode(r, bound)
        assert.is_nil(fast:find("\n", 1, true))
        assert.same(cjson.decode(slow), cjson.decode(fast), n .. "/" .. bound)
        -- the top level in the same (Google's) order on both paths
        local function keys(js)
          local out = {}
          for _, k in ipairs({ "html_attributions", "next_page_token", "results", "status" }) do
            out[#out + 1] = js:find('"' .. k .. '":', 1, true) and k or nil
          end
          return table.concat(out, " ")
        end
        assert.equal(keys(slow), keys(fast))
        assert.matches('^{"html_attributions":%["by <a href=\\"x/y\\">X</a>"%],' ..
          '"next_page_token":"tok","results":%[', fast)
        assert.equal(math.min(n, bound), #cjson.decode(fast).results)
      end
    end
  end)

  it("answer WHATSAT on the fast path, shared between bounds", function()
    ask(whatsat, 10, 2)
    ask(whatsat, 10, 0)
    ask(whatsat, 10, 20)
    ask(whatsat, 10, 2)
    assert.equal(1, #core.http_calls)
    core.http_calls[1].cb({ status = 200, headers = {}, body = body(20) })
    local js = {}
    for i = 1, 4 do js[i] = reply_json(core.answers[i]) end
    assert.equal(2, #cjson.decode(js[1]).results)
    assert.matches('"results":%[%],"status":"OK"}$', js[2])
    assert.equal(20, #cjson.decode(js[3]).results)
    assert.equal(js[1], js[4])
    assert.same(cjson.decode(body(20)).results[2], cjson.decode(js[1]).results[2])
    -- nested "results" inside a place is not cut
    assert.same({ 1, 2, 3 }, cjson.decode(js[1]).results[1].results)
  end)

  it("serve the cache on the fast path too", function()
    core, whatsat = setup({ provider = "google", key = "K", cache_ms = 1000 })
    assert.is_nil(ask(whatsat, 10, 3))
    core.http_calls[1].cb({ status = 200, headers = {}, body = body(5) })
    local first = core.answers[1]
    local again = ask(whatsat, 10, 3)
    assert.equal(first, again)
    assert.equal(2, #cjson.decode(reply_json(ask(whatsat, 10, 2))).results)
    assert.equal(1, #core.http_calls)
  end)

  it("show a filter's changes in the reply", function()
    local places = require "places"
    local search = places.search
    places.search = function(q, cb)
      return search(q, function(r)
        -- touches the shared answer itself: keeps odd places, renames one
        local kept = {}
        for _, p in ipairs(r.results) do
          if p.opening_hours.open_now then kept[#kept + 1] = p end
        end
        r.results = kept
        kept[1].name = "Renamed"
        r.next_page_token = nil
        cb(r)
      end)
    end
    ask(whatsat, 10, 3)
    core.http_calls[1].cb({ status = 200, headers = {}, body = body(20) })
    local t = cjson.decode(reply_json(core.answers[1]))
    assert.equal(3, #t.results)
    assert.same({ "Renamed", "Place 3 é [a, b] \"q\"", "Place 5 é [a, b] \"q\"" },
      { t.results[1].name, t.results[2].name, t.results[3].name })
    assert.is_nil(t.next_page_token)
    assert.equal("OK", t.status)
  end)

  it("take the table path when a script changed status or rawset a key", function()
    local r = parse(google, body(3))
    r.status = "ZERO_RESULTS" -- a plain field: no metamethod sees this
    assert.is_nil(lazy.cut(r, 2))
    local t = cjson.decode(whatsat.encode(r, 2))
    assert.equal("ZERO_RESULTS", t.status)
    assert.equal(2, #t.results)
    r = parse(google, body(3))
    rawset(r, "extra", "x")
    t = cjson.decode(whatsat.encode(r, 1))
    assert.equal("x", t.extra)
    assert.equal(1, #t.results)
    r = parse(google, body(3))
    r.status = nil
    assert.equal("UNKNOWN_ERROR", cjson.decode(whatsat.encode(r, 1)).status)
  end)

  it("leave error and odd answers on the table path, as before", function()
    local denied = '{\n   "error_message" : "The provided API key is invalid.",\n' ..
      '   "html_attributions" : [],\n   "results" : [],\n   "status" : "REQUEST_DENIED"\n}\n'
    local r = parse(google, denied)
    assert.is_nil(getmetatable(r))
    assert.equal('{"html_attributions":[],"results":[],"status":"REQUEST_DENIED",' ..
      '"error_message":"The provided API key is invalid."}', whatsat.encode(r, 5))
    -- no arrays: filled in by the provider, as before
    r = parse(google, '{"status":"OK"}')
    assert.is_nil(getmetatable(r))
    assert.equal('{"html_attributions":[],"results":[],"status":"OK"}', whatsat.encode(r, 5))
    r = parse(google, '{"status":"OK","results":{},"html_attributions":[]}')
    assert.is_nil(getmetatable(r))
    -- status not a string, not an object, not JSON
    for _, b in ipairs({ '{"status":1,"results":[],"html_attributions":[]}', "[1]", "{oops" }) do
      r = parse(google, b)
      assert.is_nil(getmetatable(r))
      assert.equal("UNKNOWN_ERROR", r.status)
      assert.matches("not a Nearby Search JSON object", r.error_message)
    end
    -- JSON lua-cjson takes but the strict checker does not: decoded as before
    r = parse(google, '{"status":"OK","results":[{"name":"a\tb"}],"html_attributions":[]}')
    assert.is_nil(getmetatable(r))
    assert.equal("a\tb", r.results[1].name)
    assert.equal("a\tb", cjson.decode(whatsat.encode(r, 1)).results[1].name)
  end)
end)
