-- The WHEREIS example (whereis.lua) on a real two-server herd.
-- Ports 25000-25099.
local herd = require "helpers.herd"

local here = herd.beside

local LOC = "+34.068930-118.445127"

describe("examples/whereis #integration", function()
  local h
  lazy_setup(function()
    h = herd.start({
      servers = { A = { port = 25001, peer_port = 25051 },
        B = { port = 25002, peer_port = 25052 } },
      links = { { "A", "B" } },
      scripts = { "protocol", "topology", here("whereis.lua") },
    })
  end)
  lazy_teardown(function() if h then h:stop() end end)

  it("answers WHEREIS with the stored AT line, here and on the other server", function()
    local c = h:client("A")
    local at = c:request(("IAMAT kiwi.cs.ucla.edu %s %s"):format(LOC, herd.now()))
    assert.matches("^AT A ", at)
    assert.equal(at, c:request("WHEREIS kiwi.cs.ucla.edu"))
    c:close()
    -- The record was flooded to B, which names A as the server that took it.
    local b = h:client("B")
    assert.equal(at, herd.eventually(function()
      local r = b:request("WHEREIS kiwi.cs.ucla.edu")
      return r ~= "? WHEREIS kiwi.cs.ucla.edu" and r
    end, 5))
    b:close()
  end)

  it("answers '? ' for a client nobody has heard of and for wrong operands", function()
    local c = h:client("A")
    assert.equal("? WHEREIS nobody.example", c:request("WHEREIS nobody.example"))
    assert.equal("? WHEREIS", c:request("WHEREIS"))
    assert.equal("? WHEREIS  kiwi.cs.ucla.edu extra",
      c:request("WHEREIS  kiwi.cs.ucla.edu extra"))
    c:close()
  end)

  it("passes every other line on to the protocol, in order", function()
    local t = herd.now()
    local out = h:oneshot("A", table.concat({
      "IAMAT order.example +1.5-2.5 " .. t,
      "WHEREIS order.example",
      "HELLO there",
      "",
      "WHATSAT order.example 10 0",
    }, "\n") .. "\n")
    local lines = {}
    for l in out:gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
    assert.matches("^AT A %S+ order%.example %+1%.5%-2%.5 " .. t:gsub("%.", "%%.") .. "$", lines[1])
    assert.equal(lines[1], lines[2])
    assert.equal("? HELLO there", lines[3])
    assert.equal(lines[1], lines[4]) -- WHATSAT's first line: the same AT line
    assert.matches('^{"html_attributions"', lines[5])
  end)

  it("loads with --script too, and --check validates it", function()
    local rc, out, err = herd.run(("--config %s --script %s --check A")
      :format(h.config, here("whereis.lua")))
    assert.equal(0, rc, err)
    assert.matches("ok %(2 servers, 4 scripts%)", out)
  end)
end)
