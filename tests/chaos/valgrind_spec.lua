-- A normal session under valgrind (memcheck, --leak-check=full): two
-- linked servers, IAMATs valid and invalid, an over-long line, WHATSATs
-- with the local provider on one and an HTTP provider that cannot connect
-- on the other (libcurl's paths), a link cut and healed, a script reload,
-- one server stopped and started again, then SIGTERM. Every server exits 0
-- with no invalid access and nothing definitely, indirectly or possibly
-- lost (valgrind's --error-exitcode=1 covers the same).
-- Run alone: tests/chaos/valgrind.sh. Needs a build without ASan: with
-- HERD_BIN pointing at one, build/herd is used (or HERD_VALGRIND_BIN).
-- Ports: clients 27301-27302, peers 28301-28302; 27399 stays closed.
local herd = require "helpers.herd"
local chaos = require "helpers.chaos"

local function pick_binary()
  local bin = os.getenv("HERD_VALGRIND_BIN")
  if not bin then
    bin = herd.bin
    if chaos.sanitized(bin) then bin = chaos.ROOT .. "/build/herd" end
  end
  if not herd.read_file(bin) then return nil, bin .. " does not exist (run make)" end
  if chaos.sanitized(bin) then return nil, bin .. " is an ASan build" end
  return bin
end

local have_valgrind = chaos.sh("command -v valgrind"):find("%S") ~= nil
local bin, why = pick_binary()

describe("a normal session under valgrind #chaos #valgrind", function()
  if not have_valgrind or not bin then
    it("skipped", function()
      print("\nvalgrind SKIPPED: " .. (have_valgrind and why or "valgrind is not installed"))
    end)
    return
  end

  local h, saved, wrapper, vgdir
  lazy_setup(function()
    vgdir = herd.tmpdir()
    wrapper = vgdir .. "/valgrind-herd"
    local f = assert(io.open(wrapper, "w"))
    f:write(("#!/bin/sh\nfor last; do :; done\n"
      .. "exec valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect,possible "
      .. "--errors-for-leak-kinds=definite,indirect,possible --error-exitcode=1 "
      .. "--log-file=%s/\"$last\".%%p.vg %s \"$@\"\n"):format(vgdir, chaos.quote(bin)))
    f:close()
    os.execute("chmod +x " .. wrapper)
    saved = herd.bin
    herd.bin = wrapper
    local places = { provider = "local" }
    local sample = chaos.ROOT .. "/data/places-sample.bin"
    if herd.read_file(sample) then places.data = sample end
    h = herd.start({
      servers = { A = { port = 27301, peer_port = 28301 }, B = { port = 27302, peer_port = 28302 } },
      links = { { "A", "B" } },
      places = places,
      links_redial = { min_ms = 100, max_ms = 1000 },
      limits = { peer_handshake_ms = 30000 }, -- a TLS handshake under valgrind
    }, { wait = false, only = { "A" }, env = { HERD_PLACES_PROVIDER = "local" } })
    h:start_one("B", { HERD_PLACES_PROVIDER = "google", HERD_PLACES_KEY = "k",
      HERD_PLACES_URL = "http://127.0.0.1:27399/maps/api/place/nearbysearch/json" })
    assert(h:wait("A", 60), "A did not start under valgrind: " .. (h:stderr("A") or ""))
    assert(h:wait("B", 60), "B did not start under valgrind: " .. (h:stderr("B") or ""))
  end)

  lazy_teardown(function()
    if saved then herd.bin = saved end
    if h then h:stop() end
  end)

  local function links_up()
    return herd.eventually(function()
      return (h:ctl("A", "links") or ""):match("B up") and (h:ctl("B", "links") or ""):match("A up")
    end, 30, 0.1)
  end

  it("serves, links, reloads and stops with no errors and no leaks", function()
    assert.truthy(links_up(), "the link did not come up")
    local a, b = h:client("A", 30), h:client("B", 30)
    local r1 = a:request("IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 " .. herd.now())
    assert.matches("^AT A ", r1)
    assert.matches("^%? IAMAT bad", a:request("IAMAT bad +91+0 1"))
    assert.matches("^%? ", a:request(string.rep("x", 10000)))
    a:send("WHATSAT kiwi.cs.ucla.edu 10 5\n")
    local w = a:until_blank()
    assert.truthy(w and w:find(r1, 1, true), "WHATSAT at A")
    assert.truthy(herd.eventually(function() return h:record("B", "kiwi.cs.ucla.edu") == r1 end, 20))
    b:send("WHATSAT kiwi.cs.ucla.edu 10 5\n")
    local wb = b:until_blank()
    assert.truthy(wb and wb:find('"status"', 1, true), "WHATSAT at B (provider down)")
    for i = 1, 50 do
      assert.matches("^AT B ", b:request(("IAMAT c%d +1+1 %d.5"):format(i, 1000 + i)))
    end
    -- A link cut and healed, a reload, a restart.
    assert.equal("ok\n", h:ctl("A", "cut B 300"))
    assert.truthy(links_up(), "the link did not come back after the cut")
    assert.matches("^ok", h:ctl("A", "reload") or "")
    a:close()
    b:close()
    assert.is_true(h:signal("B", "TERM", 60))
    assert.equal(0, h:exit_code("B", 30))
    assert.truthy(h:restart("B") or h:wait("B", 60))
    assert.truthy(links_up(), "the link did not come back after B's restart")
    assert.truthy(herd.eventually(function() return h:record("B", "c50") ~= nil end, 20),
      "B did not catch up after its restart")
    assert.is_true(h:signal("A", "TERM", 60))
    assert.is_true(h:signal("B", "TERM", 60))
    local codes = { h:exit_code("A", 30), h:exit_code("B", 30) }
    -- Every valgrind log: errors and leak summaries.
    local logs = chaos.sh("ls " .. vgdir .. "/*.vg 2>/dev/null")
    local nlogs, bad = 0, {}
    for path in logs:gmatch("[^\n]+") do
      nlogs = nlogs + 1
      local text = herd.read_file(path) or ""
      if text:find("Invalid %a+") or text:find("definitely lost") or text:find("indirectly lost")
        or text:find("possibly lost")
        or text:find("uninitialised") or text:find("Mismatched") then
        bad[#bad + 1] = path .. ":\n" .. text:sub(1, 3000)
      end
    end
    print(("\nvalgrind: %d server runs (A, B, B restarted) under memcheck: exit codes A=%s B=%s, "
      .. "%d with errors or leaks"):format(nlogs, tostring(codes[1]), tostring(codes[2]), #bad))
    for _, b_ in ipairs(bad) do print(b_) end
    assert.equal(3, nlogs)
    assert.equal(0, #bad)
    assert.equal(0, codes[1])
    assert.equal(0, codes[2])
  end)
end)
