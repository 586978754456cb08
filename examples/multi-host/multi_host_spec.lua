-- The multi-host config (herd.lua here), validated with --check: it binds
-- nothing, so it runs on any machine. Uses no ports.
local herd = require "helpers.herd"

local here = herd.beside

local CONFIG = here("herd.lua")
local NAMES = { "Bernard", "Campbell", "Jaquez", "Juzang", "Riley" }

describe("examples/multi-host #integration", function()
  it("passes --check for the whole herd and for each server, given HERD_SECRET", function()
    local env = { HERD_SECRET = "a-secret-from-the-environment" }
    local rc, out, err = herd.run("--config " .. CONFIG .. " --check", env)
    assert.equal(0, rc, err)
    assert.matches("ok (5 servers, 2 scripts)", out, 1, true)
    for _, name in ipairs(NAMES) do
      rc, out, err = herd.run("--config " .. CONFIG .. " --check " .. name, env)
      assert.equal(0, rc, err)
    end
  end)

  it("keeps the secret out of the file: --check fails without HERD_SECRET", function()
    local rc, _, err = herd.run("--config " .. CONFIG .. " --check Riley", { HERD_SECRET = "" })
    assert.equal(1, rc)
    assert.matches("server Riley has links but no secret: set HERD_SECRET", err, 1, true)
    assert.is_nil(dofile(CONFIG).secret)
  end)

  it("gives every server an IP address and separate client and peer ports", function()
    local conf = dofile(CONFIG)
    local n = 0
    for name, s in pairs(conf.servers) do
      n = n + 1
      assert.truthy(s.host:match("^%d+%.%d+%.%d+%.%d+$") or s.host:match(":"),
        name .. ": host must be an IP address")
      assert.is_number(s.port)
      assert.is_number(s.peer_port)
      assert.not_equal(s.port, s.peer_port, name)
    end
    assert.equal(#NAMES, n)
    assert.equal("json", conf.log_format)
  end)

  it("puts the admin socket where herd ctl looks for it", function()
    local rc, _, err = herd.run("ctl --config " .. CONFIG .. " Riley stats")
    -- Nothing serves it here (unless this machine runs that herd).
    if rc ~= 0 then assert.matches("cannot reach /run/herd/herd.sock", err, 1, true) end
  end)
end)
