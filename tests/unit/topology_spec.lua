local fake_core = require "helpers.fake_core"
fake_core.install()
local topology = dofile("scripts/topology.lua")

local servers = { Riley = {}, Jaquez = {}, Juzang = {}, Campbell = {}, Bernard = {} }
local links = {
  { "Riley", "Jaquez" }, { "Riley", "Juzang" }, { "Bernard", "Jaquez" },
  { "Bernard", "Juzang" }, { "Bernard", "Campbell" }, { "Juzang", "Campbell" },
}

describe("topology.neighbours", function()
  local conf = { servers = servers, links = links }
  it("turns the classic links into each server's neighbours", function()
    assert.same({ "Jaquez", "Juzang" }, topology.neighbours("Riley", conf))
    assert.same({ "Campbell", "Jaquez", "Juzang" }, topology.neighbours("Bernard", conf))
    assert.same({ "Bernard", "Campbell", "Riley" }, topology.neighbours("Juzang", conf))
    assert.same({ "Bernard", "Juzang" }, topology.neighbours("Campbell", conf))
    assert.same({ "Bernard", "Riley" }, topology.neighbours("Jaquez", conf))
  end)
  it("gives a server without links no neighbours", function()
    assert.same({}, topology.neighbours("Riley", { servers = servers }))
  end)
  it("ignores duplicate and self links", function()
    local c = { servers = servers, links = { { "Riley", "Jaquez" }, { "Jaquez", "Riley" }, { "Riley", "Riley" } } }
    assert.same({ "Jaquez" }, topology.neighbours("Riley", c))
  end)
  it("names an unknown server in a link", function()
    local c = { servers = servers, links = { { "Riley", "Nobody" } } }
    assert.has_error(function() topology.neighbours("Riley", c) end,
      "links[1] names Nobody, which is not in servers")
  end)
  it("rejects a link that is not a pair of names", function()
    assert.has_error(function()
      topology.neighbours("Riley", { servers = servers, links = { "Riley-Jaquez" } })
    end, "links[1] must be a pair of server names")
  end)
end)

describe("topology.neighbours with links that are not a list", function()
  it("says what links must be", function()
    assert.has_error(function()
      topology.neighbours("Riley", { servers = servers, links = "ring" })
    end, 'links must be a list of pairs { "A", "B" }, got a string')
  end)
end)
