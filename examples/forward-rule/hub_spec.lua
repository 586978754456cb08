-- The forward-rule example (hub.lua): a forwarding rule of an operator's
-- own, on a real four-server herd, A the hub. The receptions per IAMAT
-- come from `herd ctl stats` (peer_records_in over every server).
-- Ports 29710-29714 (clients), 30710-30714 (peers).
local herd = require "helpers.herd"

local here = herd.beside
local NAMES = { "A", "B", "C", "D" }
local LINKS = { { "A", "B" }, { "A", "C" }, { "A", "D" }, { "B", "C" }, { "C", "D" } }

local function config(hub)
  local servers = {}
  for i, n in ipairs(NAMES) do servers[n] = { port = 29710 + i, peer_port = 30710 + i } end
  return { servers = servers, links = LINKS, hub = hub,
    scripts = { "protocol", "topology", here("hub.lua") },
    links_redial = { min_ms = 50, max_ms = 500 } }
end

local function received(h)
  local total = 0
  for _, n in ipairs(NAMES) do total = total + h:stats(n).peer_records_in end
  return total
end

local function everywhere(h, client, reply)
  return herd.eventually(function()
    for _, n in ipairs(NAMES) do
      if h:record(n, client) ~= reply then return false end
    end
    return true
  end, 5)
end

describe("examples/forward-rule #integration", function()
  local h
  lazy_setup(function()
    h = herd.start(config("A"))
    assert.truthy(h:links_up(NAMES, 10), "links did not come up")
  end)
  lazy_teardown(function() if h then h:stop() end end)

  it("sends every record through the hub: one reception per server", function()
    for _, n in ipairs(NAMES) do
      assert.matches("\ndissemination hub\n", "\n" .. h:ctl(n, "stats"))
    end
    herd.sleep(0.2)
    local before = received(h)
    for _, n in ipairs(NAMES) do
      local reply = h:client(n):request("IAMAT via" .. n .. " +1+1 " .. herd.now())
      assert.truthy(everywhere(h, "via" .. n, reply), "via" .. n .. " not everywhere")
    end
    herd.sleep(0.3)
    -- Flooding over these five links would make 7 per IAMAT.
    assert.equal(3 * #NAMES, received(h) - before)
  end)

  it("floods over the other links while a link of the hub is down", function()
    assert.equal("ok\n", h:ctl("A", "cut B 20000"))
    assert.truthy(herd.eventually(function()
      return (h:ctl("B", "links") or ""):find("A down") ~= nil
    end, 5))
    -- B's own record reaches A through C; D's reaches B through A's flood.
    for _, n in ipairs({ "B", "D" }) do
      local reply = h:client(n):request("IAMAT cut" .. n .. " +1+1 " .. herd.now())
      assert.truthy(everywhere(h, "cut" .. n, reply), "cut" .. n .. " not everywhere")
    end
    assert.is_true(h:stats("A").forward_fallback_floods > 0)
  end)

  it("ships a config that passes --check, and --check refuses a hub that is no server", function()
    local rc, out, err = herd.run("--config " .. here("herd.lua") .. " --check A")
    assert.equal(0, rc, err)
    assert.matches("ok %(4 servers, 3 scripts%)", out)
    local dir = herd.tmpdir()
    local conf = config("Nobody")
    herd.write_file(dir .. "/herd.lua", "return " .. herd.serialize(conf) .. "\n")
    rc, out, err = herd.run("--config " .. dir .. "/herd.lua --check A")
    os.execute("rm -rf " .. dir)
    assert.equal(1, rc)
    assert.matches("hub must name a server of the config, got Nobody", err)
  end)
end)
