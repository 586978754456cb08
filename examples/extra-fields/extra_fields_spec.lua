-- The extra-fields example (extra_fields.lua): a record format with heading
-- and speed, set up by a script, on a real three-server herd A - B - C.
-- Ports 28600-28699.
local herd = require "helpers.herd"

local here = herd.beside

local LOC = "+34.068930-118.445127"

local function config(scripts)
  return {
    servers = { A = { port = 28601, peer_port = 28651 },
      B = { port = 28602, peer_port = 28652 },
      C = { port = 28603, peer_port = 28653 } },
    links = { { "A", "B" }, { "B", "C" } },
    scripts = scripts,
  }
end

-- The WHATSAT answer's first line (the stored AT line) at a server, once it
-- is there, or nil after 10 s.
local function whatsat_line(h, name, client)
  return herd.eventually(function()
    local out = h:oneshot(name, ("WHATSAT %s 10 1\n"):format(client))
    return out:match("^(AT [^\n]*)\n{")
  end, 10)
end

describe("examples/extra-fields #integration", function()
  local h
  lazy_setup(function()
    h = herd.start(config({ "protocol", "topology", here("extra_fields.lua") }))
  end)
  lazy_teardown(function() if h then h:stop() end end)

  it("answers IAMAT with heading and speed, floods it, and WHATSAT answers with it everywhere", function()
    local t = herd.now()
    local c = h:client("A")
    local at = c:request(("IAMAT kiwi %s %s 271.5 12"):format(LOC, t))
    c:close()
    assert.matches("^AT A [+-]%d+%.%d+ kiwi " .. LOC:gsub("[%+%-%.]", "%%%0") ..
      " " .. t:gsub("%.", "%%.") .. " 271%.5 12$", at)
    -- Two hops away, through B: stored and answered with the new fields.
    assert.equal(at, whatsat_line(h, "C", "kiwi"))
    assert.equal(at, whatsat_line(h, "B", "kiwi"))
  end)

  it("refuses an IAMAT without the new fields, or with bad ones", function()
    local c = h:client("B")
    local t = herd.now()
    for _, line in ipairs({
      ("IAMAT kiwi2 %s %s"):format(LOC, t),
      ("IAMAT kiwi2 %s %s 360 1"):format(LOC, t),
      ("IAMAT kiwi2 %s %s 90 -1"):format(LOC, t),
      ("IAMAT kiwi2 %s %s 90 1 extra"):format(LOC, t),
    }) do
      assert.equal("? " .. line, c:request(line))
    end
    c:close()
  end)

  it("a restarted server catches up with records in the new format by reconciliation", function()
    assert.is_true(h:kill("C"))
    local t = herd.now()
    local c = h:client("A")
    local at = c:request(("IAMAT while-down %s %s 45 3.25"):format(LOC, t))
    c:close()
    assert.matches(" 45 3%.25$", at)
    assert.truthy(whatsat_line(h, "B", "while-down"))
    h:restart("C") -- empty (no state_dir): what it learns comes by pulls
    assert.equal(at, whatsat_line(h, "C", "while-down"))
    assert.truthy(whatsat_line(h, "C", "kiwi"):match(" 271%.5 12$"))
    assert.is_true(h:stats("C").reconciles > 0)
  end)

  it("ships a config that loads the script and passes --check", function()
    local rc, out, err = herd.run("--config " .. here("herd.lua") .. " --check A")
    assert.equal(0, rc, err)
    assert.matches("ok %(3 servers, 3 scripts%)", out)
  end)
end)
