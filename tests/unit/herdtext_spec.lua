-- herdtext's one-call scanners of the hot paths: IAMAT lines from clients
-- and AT lines from peers.
local text = require "herdtext"

local NOW = 1621464828 * 1000000000 + 223371889

describe("herdtext.fields with a limit", function()
  it("returns at most that many fields", function()
    assert.same({ "IAMAT" }, { text.fields("  IAMAT kiwi +1+1 5", 1) })
    assert.same({ "a", "b", "c" }, { text.fields("a b c d e", 3) })
    assert.same({ "a", "b" }, { text.fields("a b", 5) })
  end)
  it("returns nothing for a blank line", function()
    assert.equal(0, select("#", text.fields(" \t ", 1)))
  end)
end)

describe("herdtext.iamat", function()
  it("returns the client, the exact timestamp, the reply and the position", function()
    local client, sec, nsec, at, lat, lon = text.iamat(
      "IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503", "Riley", NOW)
    assert.equal("kiwi.cs.ucla.edu", client)
    assert.equal(1621464827, sec)
    assert.equal(959498503, nsec)
    assert.equal("AT Riley +0.263873386 kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503\n", at)
    assert.near(34.06893, lat, 1e-9)
    assert.near(-118.445127, lon, 1e-9)
  end)
  it("echoes the operands byte for byte across any white space", function()
    local _, _, _, at = text.iamat(" \tIAMAT\v c \f+00034.50-000.0\t000000001.5 \r", "B", NOW)
    assert.equal("AT B +1621464826.723371889 c +00034.50-000.0 000000001.5\n", at)
  end)
  it("writes a negative difference for a time in the future", function()
    local _, _, _, at = text.iamat("IAMAT c +1+1 1621464829.223371889", "B", NOW)
    assert.equal("AT B -1.000000000 c +1+1 1621464829.223371889\n", at)
  end)
  it("leaves the ranges to the caller", function()
    local client, _, _, _, lat, lon = text.iamat("IAMAT c +91-181 1", "B", NOW)
    assert.equal("c", client)
    assert.same({ 91, -181 }, { lat, lon })
  end)
  it("takes a long server name and long operands", function()
    local long = string.rep("x", 5000)
    local client, _, _, at = text.iamat("IAMAT " .. long .. " +1+1 1", long, NOW)
    assert.equal(long, client)
    assert.equal(("AT %s +1621464827.223371889 %s +1+1 1\n"):format(long, long), at)
  end)
  it("splits on any run of white space wherever the fields fall", function()
    -- Fields of every length around the 16-byte blocks the scanner reads.
    local ws = { " ", "\t", "\v", "\f", "\r", "  ", " \t " }
    local rng = 12345
    local function rand(n)
      rng = (rng * 1103515245 + 12345) % 2147483648
      return rng % n + 1
    end
    local function gap() return ws[rand(#ws)] end
    for _ = 1, 500 do
      local client = string.rep("c", rand(40))
      local loc = "+" .. string.rep("1", rand(2)) .. "." .. string.rep("5", rand(20)) .. "-1"
      local time = string.rep("7", rand(12)) .. "." .. string.rep("3", rand(9))
      local lead = rand(3) == 1 and gap() or ""
      local trail = rand(3) == 1 and gap() or ""
      local line = lead .. "IAMAT" .. gap() .. client .. gap() .. loc .. gap() .. time .. trail
      local got, _, _, at = text.iamat(line, "S", NOW)
      assert.equal(client, got, ("%q"):format(line))
      assert.equal(client .. " " .. loc .. " " .. time .. "\n", at:match("^AT S %S+ (.*)$"))
      assert.is_nil(text.iamat(line .. gap() .. "x", "S", NOW))
      assert.is_nil(text.iamat(lead .. "IAMAT" .. gap() .. client .. gap() .. loc, "S", NOW))
    end
  end)
  for _, bad in ipairs({ "", "IAMAT", "IAMAT kiwi", "IAMAT kiwi +34-118",
      "IAMAT kiwi +34-118 1.5 extra", "IAMAT kiwi 34-118 1.5",
      "IAMAT kiwi +34-118 1.1234567890", "IAMAT kiwi +34-118 -5",
      "IAMAT kiwi +34-118 1.5.5", "IAMAT kiwi +34.-118 1" }) do
    it("rejects " .. string.format("%q", bad) .. " with a reason", function()
      local client, err = text.iamat(bad, "Riley", NOW)
      assert.is_nil(client)
      assert.is_string(err)
    end)
  end
end)

describe("herdtext.at", function()
  local LINE = "AT Riley +0.263873386 kiwi +34.068930-118.445127 1621464827.959498503"
  it("returns the position of an AT line that reports the client at the timestamp", function()
    assert.same({ 34.06893, -118.445127 }, { text.at(LINE, "kiwi", 1621464827, 959498503) })
    assert.same({ 1, -1 }, { text.at("AT\tB -12.000000000  c +1-1 1.5", "c", 1, 500000000) })
  end)
  it("says when the line reports another client or timestamp", function()
    assert.same({ nil, "client does not match" }, { text.at(LINE, "kiw", 1621464827, 959498503) })
    assert.same({ nil, "client does not match" }, { text.at(LINE, "kiwis", 1621464827, 959498503) })
    assert.same({ nil, "timestamp does not match" }, { text.at(LINE, "kiwi", 1621464828, 959498503) })
    assert.same({ nil, "timestamp does not match" }, { text.at(LINE, "kiwi", 1621464827, 959498502) })
  end)
  for _, bad in ipairs({ "", "AT", "garbage",
      "AT Riley +0.1 kiwi +34-118 1",
      "AT Riley 0.263873386 kiwi +34-118 1",
      "AT Riley +0.26387338x kiwi +34-118 1",
      "AT Riley +.263873386 kiwi +34-118 1",
      "AT Riley +0.263873386 kiwi 34-118 1",
      "AT Riley +0.263873386 kiwi +34-118 soon",
      "AT Riley +0.263873386 kiwi +34-118 1 extra",
      "IAMAT Riley +0.263873386 kiwi +34-118 1",
      "at Riley +0.263873386 kiwi +34-118 1" }) do
    it("rejects " .. string.format("%q", bad) .. " with a reason", function()
      local lat, err = text.at(bad, "kiwi", 1, 0)
      assert.is_nil(lat)
      assert.is_string(err)
    end)
  end
end)
