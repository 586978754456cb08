-- Storing, ordering, tie-breaks and floods are the real core's
-- (helpers.real_core: core/records.c and core/store.c), not the fake's.
local fake_core = require "helpers.fake_core"
local real_core = require "helpers.real_core"

local S = 1000000000

describe("protocol on_line", function()
  local core, protocol
  before_each(function()
    core = real_core.attach(fake_core.install({ name = "Riley" }))
    core.clock = 1621464828 * S + 223371889
    protocol = dofile("scripts/protocol.lua")
  end)

  local function line(text) return protocol.on_line(1, text) end

  it("answers IAMAT with an AT line and an exact time difference", function()
    assert.equal("AT Riley +0.263873386 kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503\n",
      line("IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503"))
  end)
  it("echoes the operands byte for byte", function()
    assert.equal("AT Riley +1621464827.223371889 c +00034.50-000.0 000000001.000000000\n",
      line("IAMAT c +00034.50-000.0 000000001.000000000"))
  end)
  it("splits on runs of any white space, tabs and CR included", function()
    assert.equal("AT Riley +0.263873386 kiwi +34.068930-118.445127 1621464827.959498503\n",
      line(" \t IAMAT\t\tkiwi \f +34.068930-118.445127\v1621464827.959498503 \r"))
  end)
  it("stores the record and floods it", function()
    line("IAMAT kiwi +34.068930-118.445127 1621464827.959498503")
    assert.equal("AT Riley +0.263873386 kiwi +34.068930-118.445127 1621464827.959498503",
      (core.store.get("kiwi")))
    assert.same({ { client = "kiwi" } }, core.floods)
  end)
  it("answers an older IAMAT but keeps and floods nothing new", function()
    line("IAMAT kiwi +34.068930-118.445127 1621464827.959498503")
    local reply = line("IAMAT kiwi +10-10 1621464800.5")
    assert.equal("AT Riley +27.723371889 kiwi +10-10 1621464800.5\n", reply)
    assert.matches("%+34%.068930", (core.store.get("kiwi")))
    assert.equal(1, #core.floods)
  end)
  it("floods an identical IAMAT only once", function()
    line("IAMAT kiwi +34.068930-118.445127 1621464827.959498503")
    line("IAMAT kiwi +34.068930-118.445127 1621464827.959498503")
    assert.equal(1, #core.floods)
  end)
  it("does not store or flood a repeat of the stored report taken elsewhere", function()
    core.store.put("kiwi", 1621464827, 500000000, "AT Bernard +0.1 kiwi +1+1 1621464827.5")
    assert.equal("AT Riley +0.723371889 kiwi +1+1 1621464827.5\n",
      line("IAMAT kiwi +1+1 1621464827.5"))
    assert.equal("AT Bernard +0.1 kiwi +1+1 1621464827.5", (core.store.get("kiwi")))
    assert.equal(0, #core.floods)
  end)
  it("breaks timestamp ties by the greater AT line", function()
    line("IAMAT kiwi +10-10 1621464827.5")
    line("IAMAT kiwi +20-20 1621464827.5")
    assert.matches("%+20%-20", (core.store.get("kiwi")))
    line("IAMAT kiwi +15-15 1621464827.5")
    assert.matches("%+20%-20", (core.store.get("kiwi")))
  end)
  it("dispatches verbs other scripts add to the commands table", function()
    local commands = require "commands"
    finally(function() commands.PING, commands.LATER = nil, nil end)
    commands.PING = function(conn, l) return "PONG " .. conn .. " " .. l .. "\n" end
    commands.LATER = function() return false end
    assert.equal("PONG 1 PING x\n", line("PING x"))
    assert.is_nil(line("LATER")) -- deferred: no reply now
    commands.PING = function() return nil end
    assert.equal("? PING x\n", line("PING x"))
  end)
  it("ignores blank lines", function()
    assert.is_nil(line(""))
    assert.is_nil(line(" \t\r\f\v "))
  end)
  for _, bad in ipairs({
    "IAMAT", "IAMAT kiwi", "IAMAT kiwi +34-118",
    "IAMAT kiwi +34-118 1621464827.5 extra",
    "IAMAT kiwi +91-118 1621464827.5", "IAMAT kiwi +34-181 1621464827.5",
    "IAMAT kiwi 34-118 1621464827.5", "IAMAT kiwi +34-118 1621464827.1234567890",
    "IAMAT kiwi +34-118 -5", "IAMAT kiwi +34-118 soon",
    "iamat kiwi +34-118 1621464827.5", "HELLO", "AT Riley +0.1 kiwi +34-118 1.5",
    "WHEREIS kiwi", "  IAMAT kiwi +34-118 1.5.5  ",
  }) do
    it("answers ? to " .. string.format("%q", bad), function()
      assert.equal("? " .. bad .. "\n", line(bad))
      assert.is_nil(core.store.get("kiwi"))
    end)
  end
end)

describe("protocol on_record", function()
  it("is the core's built-in record rule (tests/integration/records_spec.lua)", function()
    local core = fake_core.install({ name = "Jaquez" })
    local protocol = dofile("scripts/protocol.lua")
    assert.equal(core.accept_record, protocol.on_record)
  end)
end)
