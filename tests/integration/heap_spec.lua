-- A Lua heap with no room for what C hands it (issue 13, item 2): every
-- value C pushes into Lua (a client's line, an HTTP answer's body) is pushed
-- inside the protected call (script_run), so a full heap is an error for
-- that one event, answered at once, never a SIGABRT. The places provider is
-- the mock on loopback (tests/helpers/places_mock.lua).
-- Ports: clients 11500-11509, peers 12500-12509, mock 11510.
local herd = require "helpers.herd"
local mock_places = require "helpers.places_mock"
local socket = require "socket"
local cjson = require "cjson"

local MOCK = 11510
local LOC = "+34.068930-118.445127"

-- A one-server herd with the google provider pointed at the mock.
local function start(port, limits, places)
  places = places or {}
  places.provider = "google"
  places.timeout_ms = places.timeout_ms or 10000
  return herd.start({ servers = { S = { port = port, peer_port = port + 1000 } },
    links = {}, limits = limits, places = places }, {
    env = { HERD_PLACES_PROVIDER = "google", HERD_PLACES_KEY = "test-key",
      HERD_PLACES_URL = mock_places.url(MOCK, "google") } })
end

-- IAMAT then WHATSAT on one connection; the WHATSAT's raw reply (or nil and
-- the error) and the seconds it took.
local function whatsat(h)
  local c = h:client("S", 30)
  assert.matches("^AT S ", c:request(("IAMAT heap %s %s"):format(LOC, herd.now())))
  local t0 = socket.gettime()
  c:send("WHATSAT heap 10 5\n")
  local raw, err = c:until_blank()
  c:close()
  return raw, err, socket.gettime() - t0
end

-- The server is still up and serving.
local function assert_serving(h)
  assert.truthy(herd.sh("kill -0 " .. h:pid("S") .. " 2>&1; echo $?"):match("0%s*$"),
    "the server died: " .. (h:stderr("S") or ""))
  local c = h:client("S", 5)
  assert.matches("^AT S ", c:request(("IAMAT alive %s %s"):format(LOC, herd.now())))
  c:close()
end

-- The places JSON of a WHATSAT reply.
local function places_json(raw)
  local js = raw:match("^[^\n]*\n([^\n]*)\n\n$")
  assert(js, "reply not in the WHATSAT shape: " .. raw:sub(1, 200))
  return cjson.decode(js)
end

describe("a full Lua heap #integration #http", function()
  local m
  lazy_setup(function() m = mock_places.start(MOCK) end)
  lazy_teardown(function() if m then m:stop() end end)

  it("answers a 50 MB provider answer into a 16 MiB heap with an error, at once", function()
    m:config({ mode = "big", big_bytes = 50 * 1000 * 1000 })
    local h = start(11500, { lua_memory_mb = 16 }, { max_bytes = 64 * 1024 * 1024 })
    finally(function() h:stop() end)
    local raw, err, s = whatsat(h)
    assert(raw, "no reply: " .. tostring(err) .. "; stderr: " .. (h:stderr("S") or ""))
    local js = places_json(raw)
    print(("\n50 MB answer, 16 MiB heap: %s in %.2f s: %s"):format(js.status, s,
      tostring(js.error_message)))
    assert.equal("UNKNOWN_ERROR", js.status)
    assert.matches("does not fit in the Lua heap", js.error_message)
    assert.is_true(s < 5, ("took %.1f s"):format(s))
    assert_serving(h)
    assert.truthy(h:log("S"):find("http callback: not enough memory", 1, true))
  end)

  it("answers a 1.9 MB provider answer into a 1 MiB heap with an error", function()
    m:config({ mode = "big", big_bytes = 1900 * 1000 })
    local h = start(11501, { lua_memory_mb = 1 })
    finally(function() h:stop() end)
    local raw, err = whatsat(h)
    assert(raw, "no reply: " .. tostring(err) .. "; stderr: " .. (h:stderr("S") or ""))
    assert.equal("UNKNOWN_ERROR", places_json(raw).status)
    assert_serving(h)
  end)

  it("answers a 1.9 MB provider answer into a 2 MiB heap with an error at once, not after the watchdog", function()
    m:config({ mode = "big", big_bytes = 1900 * 1000 })
    local h = start(11502, { lua_memory_mb = 2 })
    finally(function() h:stop() end)
    local raw, err, s = whatsat(h)
    assert(raw, "no reply: " .. tostring(err) .. "; stderr: " .. (h:stderr("S") or ""))
    local js = places_json(raw)
    print(("\n1.9 MB answer, 2 MiB heap: %s in %.2f s: %s"):format(js.status, s,
      tostring(js.error_message)))
    assert.equal("UNKNOWN_ERROR", js.status)
    -- The provider's own timeout is 10 s and whatsat's watchdog 12 s: an
    -- answer within 3 s came from the failure itself.
    assert.is_true(s < 3, ("took %.1f s"):format(s))
    assert_serving(h)
  end)

  it("answers a 1.5 MB client line into a 1 MiB heap with '? '", function()
    local h = start(11503, { lua_memory_mb = 1, max_line = 4 * 1024 * 1024 })
    finally(function() h:stop() end)
    local c = h:client("S", 30)
    local line = "IAMAT " .. string.rep("x", 1500 * 1000) .. " " .. LOC .. " 1.5"
    local t0 = socket.gettime()
    c:send(line .. "\n")
    local reply, err = c:line()
    local s = socket.gettime() - t0
    c:close()
    assert(reply, "no reply: " .. tostring(err) .. "; stderr: " .. (h:stderr("S") or ""))
    assert.equal("? " .. line, reply)
    assert.is_true(s < 5, ("took %.1f s"):format(s))
    assert_serving(h)
    assert.truthy(h:log("S"):find("on_line: not enough memory", 1, true))
  end)
end)
