-- WHATSAT with the `local` provider against real build/herd processes: the
-- committed sample of GeoNames places (near UCLA, mid-Pacific, near the
-- pole), synthetic places across the 180th meridian and at the pole, and a
-- damaged data file; a script that looks inside the answers (the
-- places-filter example), which the server otherwise only cuts as text.
-- Offline: no download, no mock. Ports 22001-22099.
local herd = require "helpers.herd"
local cjson = require "cjson"

local ROOT = os.getenv("PWD") or "."
local SAMPLE = ROOT .. "/data/places-sample.bin"

local function whatsat(c, client, radius, bound)
  assert(c:send(("WHATSAT %s %s %s\n"):format(client, radius, bound)))
  local raw, err, partial = c:until_blank()
  assert(raw, "no full reply: " .. tostring(err) .. " after " .. tostring(partial))
  local at, js = raw:match("^([^\n]*)\n([^\n]*)\n\n$")
  assert(at, "reply not 'AT line, JSON line, blank line': " .. raw)
  return at, cjson.decode(js), js
end

local function iamat(c, client, loc)
  local reply = c:request(("IAMAT %s %s %s"):format(client, loc, herd.now()))
  assert.matches("^AT ", reply)
  return reply
end

local function names(answer)
  local out = {}
  for i, r in ipairs(answer.results) do out[i] = r.name end
  return out
end

local function one_server(port, data, opts)
  opts = opts or {}
  return herd.start({
    servers = { P = { port = port, peer_port = port + 500 } },
    links = {},
    places = { provider = "local", data = data, filter = opts.filter },
    scripts = opts.scripts,
  }, { env = { HERD_PLACES_PROVIDER = "local" }, wait = opts.wait })
end

describe("WHATSAT with the local provider #integration #places", function()
  local synthetic = os.tmpname()
  local damaged = os.tmpname()
  local sample, syn, bad

  lazy_setup(function()
    local ok = os.execute(("lua5.4 tools/places-convert.lua --bundle "
      .. "tests/fixtures/places-synthetic.json --out %s 2>/dev/null"):format(synthetic))
    assert(ok, "places-convert failed")
    local f = assert(io.open(SAMPLE, "rb"))
    local bytes = f:read("a")
    f:close()
    f = assert(io.open(damaged, "wb"))
    f:write(bytes:sub(1, #bytes // 2)) -- truncated
    f:close()
    sample = one_server(22001, SAMPLE)
    syn = one_server(22002, synthetic)
  end)

  lazy_teardown(function()
    for _, h in ipairs({ sample, syn, bad }) do
      if h then h:stop() end
    end
    os.remove(synthetic)
    os.remove(damaged)
  end)

  it("answers real places near UCLA, nearest first, credited", function()
    local c = sample:client("P")
    local at_line = iamat(c, "kiwi.cs.ucla.edu", "+34.068930-118.445127")
    local at, ans, js = whatsat(c, "kiwi.cs.ucla.edu", 10, 20)
    assert.equal(at_line, at)
    assert.equal("OK", ans.status)
    local got = {}
    for _, n in ipairs(names(ans)) do got[n] = true end
    for _, n in ipairs({ "Westwood", "Beverly Hills", "Santa Monica" }) do
      assert.is_true(got[n], n .. " missing: " .. js)
    end
    assert.equal("Bel Air", ans.results[1].name)
    local r = ans.results[1]
    assert.same({ "locality", "political" }, r.types)
    assert.equal("Los Angeles County, California, US", r.vicinity)
    assert.matches("^local:%x+$", r.place_id)
    assert.same({ lat = 34.08334, lng = -118.44869 }, r.geometry.location)
    assert.matches("GeoNames", ans.html_attributions[1])
    assert.matches("CC BY 4.0", ans.html_attributions[1])
    -- Written in C (core.places_json), keys in order, compact.
    assert.truthy(js:find('{"html_attributions":["Places from <a href=\\"https://www.geonames.org/\\">', 1, true), js)
    assert.truthy(js:find('"results":[{"geometry":{"location":{"lat":34.08334,'
      .. '"lng":-118.44869}},"name":"Bel Air","place_id":"local:', 1, true), js)
    assert.truthy(js:find('"types":["locality","political"],'
      .. '"vicinity":"Los Angeles County, California, US"}', 1, true), js)
    assert.truthy(js:find('}],"status":"OK"}$'), js)
    -- Cut to the bound; 0 still says OK, with an empty array.
    _, ans = whatsat(c, "kiwi.cs.ucla.edu", 10, 3)
    assert.same({ "Bel Air", "Westwood", "Century City" }, names(ans))
    _, ans, js = whatsat(c, "kiwi.cs.ucla.edu", 10, 0)
    assert.equal("OK", ans.status)
    assert.matches('"results":%[%]', js)
    c:close()
  end)

  it("says ZERO_RESULTS in the middle of the Pacific", function()
    local c = sample:client("P")
    iamat(c, "raft", "+00.000000-140.000000")
    local _, ans, js = whatsat(c, "raft", 50, 20)
    assert.equal("ZERO_RESULTS", ans.status)
    assert.matches('"results":%[%]', js)
    assert.matches("GeoNames", ans.html_attributions[1])
    c:close()
  end)

  it("works near the pole and across the 180th meridian", function()
    local c = sample:client("P")
    iamat(c, "svalbard", "+78.200000+015.600000")
    local _, ans = whatsat(c, "svalbard", 10, 5)
    assert.same({ "Longyearbyen" }, names(ans))
    c:close()

    c = syn:client("P")
    iamat(c, "dateline", "-16.500000+179.900000")
    _, ans = whatsat(c, "dateline", 25, 20)
    assert.same({ "West of 180", "East of 180" }, names(ans))
    iamat(c, "santa", "+90.000000+000.000000")
    _, ans = whatsat(c, "santa", 12, 20)
    assert.equal(5, #ans.results)
    assert.equal("North Pole", ans.results[1].name)
    c:close()
  end)

  it("lets a script look inside the answer (places_filter)", function()
    local script = ROOT .. "/examples/places-filter/places_filter.lua"
    local keep = one_server(22004, SAMPLE, { filter = { types = { "political" } },
      scripts = { "protocol", "topology", script } })
    local drop = one_server(22005, SAMPLE, { filter = { types = { "cafe" } },
      scripts = { "protocol", "topology", script } })
    finally(function()
      keep:stop()
      drop:stop()
    end)
    local c = keep:client("P")
    iamat(c, "kiwi", "+34.068930-118.445127")
    local _, ans = whatsat(c, "kiwi", 10, 3)
    assert.equal("OK", ans.status)
    assert.same({ "Bel Air", "Westwood", "Century City" }, names(ans))
    c:close()
    c = drop:client("P")
    iamat(c, "kiwi", "+34.068930-118.445127")
    local js
    _, ans, js = whatsat(c, "kiwi", 10, 3)
    assert.equal("ZERO_RESULTS", ans.status)
    assert.matches('"results":%[%]', js)
    assert.matches("GeoNames", ans.html_attributions[1])
    c:close()
  end)

  it("refuses to start, and fails --check, on a damaged data file it was given",
    function()
      bad = one_server(22003, damaged, { wait = false })
      assert.equal(1, bad:exit_code("P"))
      assert.matches("places data .*truncated", bad:stderr("P"))
      local rc, _, err = herd.run("--config " .. bad.config .. " --check")
      assert.equal(1, rc)
      assert.matches("truncated", err)
    end)
end)
