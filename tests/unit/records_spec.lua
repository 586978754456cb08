-- records.lua, the Lua face of core/records.c: the classic format by
-- default (C throughout), and a format a script gives (records.use), which
-- then builds replies, finds locations and checks peers' records.
local fake_core = require "helpers.fake_core"

local S = 1000000000
local LOC = "+34.068930-118.445127"

-- A format with one more field, a tag: "IAMAT <c> <loc> <time> <tag>".
local function tagged()
  local fields, timestamp = require("herdtext").fields, require("herdtext").timestamp
  return {
    iamat = function(line, server, now)
      local _, c, loc, time, tag, extra = fields(line, 6)
      if not tag or extra then return nil, "bad" end
      local sec, nsec = timestamp(time)
      if not sec then return nil, nsec end
      return c, sec, nsec, ("AT %s +0.000000000 %s %s %s %s\n"):format(server, c, loc, time, tag)
    end,
    read = function(line)
      local verb, _, _, c, _, time, tag, extra = fields(line, 8)
      if verb ~= "AT" or not tag or extra then return nil, "not tagged" end
      local sec, nsec = timestamp(time)
      return c, sec, nsec
    end,
    location = function(line) return (select(5, fields(line, 5))) end,
    same = function(a, b) return a:match("%S+ %S+ %S+$") == b:match("%S+ %S+ %S+$") end,
  }
end

describe("records", function()
  local core, records, protocol
  before_each(function()
    core = fake_core.install({ name = "Riley" })
    core.clock = 1621464828 * S
    package.loaded.records = nil
    package.loaded.iamat = nil
    package.loaded.whatsat = nil
    records = require "records"
    protocol = dofile("scripts/protocol.lua")
  end)
  after_each(function()
    package.loaded.records = nil
    package.loaded.iamat = nil
    package.loaded.whatsat = nil
  end)

  it("is the C rule as the on_record hook when no script changes the format", function()
    assert.equal(core.accept_record, records.on_record)
    assert.equal(require("herdtext").iamat, records.iamat)
    assert.equal(LOC, records.location("AT B +1.000000000 kiwi " .. LOC .. " 5"))
  end)

  it("checks a peer's line with the format a script gives, and stores and floods it", function()
    local hooks = records.use(tagged())
    local line = "AT B +1.000000000 kiwi " .. LOC .. " 5.5 red"
    assert.equal(true, hooks.on_record("B", "kiwi", 5, 500000000, line))
    assert.equal(line, (core.store.get("kiwi")))
    assert.same({ client = "kiwi", except = "B" }, core.floods[#core.floods])
    -- The classic check would have dropped it: one field too many.
    assert.is_nil((require("herdtext").at(line, "kiwi", 5, 500000000)))
  end)

  it("drops a peer's line the format refuses, or one reporting another client or time", function()
    local hooks = records.use(tagged())
    assert.is_nil(hooks.on_record("B", "kiwi", 5, 0, "AT B +1.000000000 kiwi " .. LOC .. " 5"))
    assert.is_nil(hooks.on_record("B", "kiwi", 5, 0, "AT B +1.000000000 kiwo " .. LOC .. " 5 red"))
    assert.is_nil(hooks.on_record("B", "kiwi", 6, 0, "AT B +1.000000000 kiwi " .. LOC .. " 5 red"))
    assert.is_nil(core.store.get("kiwi"))
  end)

  it("makes IAMAT speak the new format, and the old one invalid", function()
    records.use(tagged())
    assert.equal("AT Riley +0.000000000 kiwi " .. LOC .. " 7 blue\n",
      protocol.on_line(1, "IAMAT kiwi " .. LOC .. " 7 blue"))
    assert.equal("? IAMAT kiwi " .. LOC .. " 7\n", protocol.on_line(1, "IAMAT kiwi " .. LOC .. " 7"))
    -- A repeat of the stored report changes nothing and floods nothing.
    local floods = #core.floods
    protocol.on_line(1, "IAMAT kiwi " .. LOC .. " 7 blue")
    assert.equal(floods, #core.floods)
  end)

  it("refuses a format that lacks a function", function()
    local f = tagged()
    f.read = nil
    assert.has_error(function() records.use(f) end, "records.use: format.read must be a function")
  end)
end)
