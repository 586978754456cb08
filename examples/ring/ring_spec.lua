-- The ring example (ring.lua): a topology computed from the server list.
-- Ports 25100-25199.
local herd = require "helpers.herd"

local here = herd.beside

-- The names of the links a server keeps, sorted, and whether all are up.
local function links(h, name)
  local out, up = {}, true
  for peer, state in (h:ctl(name, "links") or ""):gmatch("(%S+) (%S+)[^\n]*\n") do
    out[#out + 1] = peer
    up = up and state == "up"
  end
  table.sort(out)
  return out, up
end

local function all_up(h, names)
  return herd.eventually(function()
    for _, n in ipairs(names) do
      local _, up = links(h, n)
      if not up then return false end
    end
    return true
  end, 5)
end

describe("examples/ring #integration", function()
  local ring = dofile(here("ring.lua"))
  local servers4 = { A = {}, B = {}, C = {}, D = {} }

  it("computes a ring from the sorted names, or in a given order", function()
    assert.same({ "B", "D" }, ring.neighbours("A", { servers = servers4, links = "ring" }))
    assert.same({ "B", "D" }, ring.neighbours("C", { servers = servers4, links = "ring" }))
    local conf = { servers = servers4, links = { rule = "ring", order = { "A", "C", "B", "D" } } }
    assert.same({ "C", "D" }, ring.neighbours("A", conf))
    assert.same({ "A", "B" }, ring.neighbours("C", conf))
    -- Two servers: one link; one server: none.
    assert.same({ "B" }, ring.neighbours("A", { servers = { A = {}, B = {} }, links = "ring" }))
    assert.same({}, ring.neighbours("A", { servers = { A = {} }, links = "ring" }))
    assert.same({ "A", "B", "C" }, ring.neighbours("D", { servers = servers4, links = "mesh" }))
  end)

  it("hands a list of pairs on to the built-in topology when chained after it", function()
    require("helpers.fake_core").install()
    local topology = dofile("scripts/topology.lua").neighbours
    local conf = { servers = servers4, links = { { "A", "C" } } }
    assert.same({ "C" }, ring.neighbours("A", conf, topology))
    assert.same({ "B", "D" }, ring.neighbours("A", { servers = servers4, links = "ring" }, topology))
  end)

  it("rejects an unknown rule and a bad order, naming the key", function()
    assert.has_error(function() ring.neighbours("A", { servers = servers4, links = "star" }) end,
      'links: unknown rule "star" (rules: "ring", "mesh", or { rule = "ring", order = { names... } })')
    assert.has_error(function()
      ring.neighbours("A", { servers = servers4, links = { rule = "ring", order = { "A", "B", "C" } } })
    end, "links.order leaves out D")
    assert.has_error(function()
      ring.neighbours("A", { servers = servers4, links = { rule = "ring", order = { "A", "B", "C", "D", "E" } } })
    end, "links.order[5] names E, which is not in servers")
  end)

  it("runs a four-server ring: each server links to two, updates go round", function()
    local h = herd.start({
      servers = { A = { port = 25101, peer_port = 25151 }, B = { port = 25102, peer_port = 25152 },
        C = { port = 25103, peer_port = 25153 }, D = { port = 25104, peer_port = 25154 } },
      links = "ring",
      scripts = { "protocol", here("ring.lua") },
    })
    finally(function() h:stop() end)
    assert.same({ "B", "D" }, (links(h, "A")))
    assert.same({ "A", "C" }, (links(h, "B")))
    assert.same({ "B", "D" }, (links(h, "C")))
    assert.same({ "A", "C" }, (links(h, "D")))
    assert.truthy(all_up(h, { "A", "B", "C", "D" }), "the ring's links did not come up")
    -- A and C are not neighbours: the record reaches C through B or D.
    local at = h:client("A"):request("IAMAT ring.example +10-20 " .. herd.now())
    assert.matches("^AT A ", at)
    assert.equal(at, herd.eventually(function() return h:record("C", "ring.example") end, 5))
  end)

  it("runs a full mesh with links = \"mesh\"", function()
    local h = herd.start({
      servers = { A = { port = 25111, peer_port = 25161 }, B = { port = 25112, peer_port = 25162 },
        C = { port = 25113, peer_port = 25163 } },
      links = "mesh",
      scripts = { "protocol", here("ring.lua") },
    })
    finally(function() h:stop() end)
    assert.same({ "B", "C" }, (links(h, "A")))
    assert.same({ "A", "B" }, (links(h, "C")))
    assert.truthy(all_up(h, { "A", "B", "C" }), "the mesh's links did not come up")
  end)

  it("fails --check on an unknown rule, with the reason", function()
    local dir = os.tmpname()
    os.remove(dir)
    local config = dir .. ".lua"
    local f = assert(io.open(config, "w"))
    f:write(('return { servers = { A = { port = 25121 }, B = { port = 25122 } },\n' ..
      '  links = "star", scripts = { "protocol", %q }, secret = "x" }\n'):format(here("ring.lua")))
    f:close()
    finally(function() os.remove(config) end)
    local rc, _, err = herd.run("--config " .. config .. " --check")
    assert.equal(1, rc)
    assert.matches('links: unknown rule "star"', err, 1, true)
    assert.matches("the topology script failed", err, 1, true)
  end)
end)
