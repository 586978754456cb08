-- herdtext: the protocol's timestamps and locations, and the one-call
-- scanners of the hot paths (IAMAT lines from clients, AT lines from peers).
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
  it("returns the client, the exact timestamp and the reply", function()
    local client, sec, nsec, at, extra = text.iamat(
      "IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503", "Riley", NOW)
    assert.equal("kiwi.cs.ucla.edu", client)
    assert.equal(1621464827, sec)
    assert.equal(959498503, nsec)
    assert.equal("AT Riley +0.263873386 kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503\n", at)
    assert.is_nil(extra)
  end)
  it("echoes the operands byte for byte across any white space", function()
    local _, _, _, at = text.iamat(" \tIAMAT\v c \f+00034.50-000.0\t000000001.5 \r", "B", NOW)
    assert.equal("AT B +1621464826.723371889 c +00034.50-000.0 000000001.5\n", at)
  end)
  it("writes a negative difference for a time in the future", function()
    local _, _, _, at = text.iamat("IAMAT c +1+1 1621464829.223371889", "B", NOW)
    assert.equal("AT B -1.000000000 c +1+1 1621464829.223371889\n", at)
  end)
  it("rejects a location out of range, saying which coordinate", function()
    assert.same({ nil, "latitude out of range" }, { text.iamat("IAMAT c +91-1 1", "B", NOW) })
    assert.same({ nil, "longitude out of range" }, { text.iamat("IAMAT c +1-181 1", "B", NOW) })
    assert.equal("c", (text.iamat("IAMAT c -90+180 1", "B", NOW)))
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
  it("accepts an AT line that reports the client at the timestamp", function()
    assert.is_true(text.at(LINE, "kiwi", 1621464827, 959498503))
    assert.is_true(text.at("AT\tB -12.000000000  c +1-1 1.5", "c", 1, 500000000))
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
      "AT Riley +0.263873386 kiwi +91-118 1",
      "AT Riley +0.263873386 kiwi +34-181 1",
      "IAMAT Riley +0.263873386 kiwi +34-118 1",
      "at Riley +0.263873386 kiwi +34-118 1" }) do
    it("rejects " .. string.format("%q", bad) .. " with a reason", function()
      local ok, err = text.at(bad, "kiwi", 1, 0)
      assert.is_nil(ok)
      assert.is_string(err)
    end)
  end
end)

describe("herdtext.timestamp", function()
  it("reads seconds and nine decimals exactly", function()
    assert.same({ 1621464827, 959498503 }, { text.timestamp("1621464827.959498503") })
  end)
  it("pads shorter fractions to nanoseconds", function()
    assert.same({ 1621464827, 500000000 }, { text.timestamp("1621464827.5") })
    assert.same({ 1, 1000 }, { text.timestamp("1.000001") })
  end)
  it("accepts whole seconds without a fraction", function()
    assert.same({ 1621464827, 0 }, { text.timestamp("1621464827") })
  end)
  it("accepts timestamps far in the past and the future", function()
    assert.same({ 0, 0 }, { text.timestamp("0") })
    assert.same({ 0, 1 }, { text.timestamp("0.000000001") })
    assert.same({ 999999999999999999, 999999999 },
      { text.timestamp("999999999999999999.999999999") })
    assert.same({ 5, 0 }, { text.timestamp("0000000000000000000000005") })
  end)
  for _, bad in ipairs({ "", ".5", "5.", "1.2.3", "+1621464827.5", "-1.5",
      "1621464827.9594985031", "1e9", "0x10", "12a", "1 2", "1,5",
      "9999999999999999999", "١٢٣" }) do
    it("rejects " .. string.format("%q", bad), function()
      assert.is_nil(text.timestamp(bad))
    end)
  end
end)

describe("herdtext.timediff", function()
  local S = 1000000000
  it("is exact to the nanosecond with nine decimals", function()
    local now = 1621464828 * S + 223371889
    assert.equal("+0.263873386", text.timediff(now, 1621464827, 959498503))
  end)
  it("signs negative differences (client clock ahead)", function()
    assert.equal("-0.263873386", text.timediff(1621464827 * S + 959498503, 1621464828, 223371889))
    assert.equal("-1.000000000", text.timediff(5 * S, 6, 0))
    assert.equal("-0.000000001", text.timediff(5 * S, 5, 1))
  end)
  it("writes zero as +0.000000000", function()
    assert.equal("+0.000000000", text.timediff(7 * S + 5, 7, 5))
  end)
  it("never uses exponent notation, even far from now", function()
    local d = text.timediff(1621464827 * S, 999999999999999999, 999999999)
    assert.equal("-999999998378535172.999999999", d)
    assert.equal("+1621464827.000000000", text.timediff(1621464827 * S, 0, 0))
  end)
  it("borrows across the second", function()
    assert.equal("+0.999999999", text.timediff(10 * S, 9, 1))
    assert.equal("+1.000000001", text.timediff(10 * S + 1, 9, 0))
  end)
end)

describe("herdtext.latlon", function()
  it("reads signed decimal degrees without a separator", function()
    local lat, lon = text.latlon("+34.068930-118.445127")
    assert.near(34.06893, lat, 1e-9)
    assert.near(-118.445127, lon, 1e-9)
  end)
  it("says which coordinate is out of range", function()
    assert.same({ nil, "latitude out of range" }, { text.latlon("+90.000001+0") })
    assert.same({ nil, "longitude out of range" }, { text.latlon("+0-180.5") })
  end)
  it("accepts the range limits and integers", function()
    assert.same({ 90, 180 }, { text.latlon("+90+180") })
    assert.same({ -90, -180 }, { text.latlon("-90-180") })
    assert.same({ 0, 0 }, { text.latlon("+0.0-0.0") })
    assert.same({ 90, -180 }, { text.latlon("+90.000000-180.000") })
  end)
  for _, bad in ipairs({ "", "34.068930-118.445127", "+34.068930118.445127",
      "+90.000001+0", "-90.1+0", "+0+180.0000001", "+0-181", "+34.-118",
      "+.5-118", "+34.5-118.", "++34-118", "+34,5-118", "+34.5 -118",
      "+34.5-118.4x", "+1e1+1", "+inf-nan", "+34.5-118.5+1" }) do
    it("rejects " .. string.format("%q", bad), function()
      local lat, err = text.latlon(bad)
      assert.is_nil(lat)
      assert.is_string(err)
    end)
  end
end)

describe("herdtext.at_fields and same_report (the AT line's layout, core/records.c)", function()
  local LINE = "AT Riley +0.263873386 kiwi +34.068930-118.445127 1621464827.959498503"
  it("returns an AT line's fields after the verb", function()
    assert.same({ "Riley", "+0.263873386", "kiwi", "+34.068930-118.445127", "1621464827.959498503" },
      { text.at_fields(LINE .. "\n") })
  end)
  it("refuses a line that is not shaped as an AT line", function()
    assert.same({ nil, "not an AT line" }, { text.at_fields("IAMAT kiwi +1+1 1") })
    assert.same({ nil, "not an AT line" }, { text.at_fields(LINE .. " 90 1") })
    assert.same({ nil, "not an AT line" }, { text.at_fields("AT Riley +0.1 kiwi +1+1") })
  end)
  it("tells the same report whichever server took it", function()
    assert.is_true(text.same_report(LINE, "AT Bernard -2.000000000 kiwi +34.068930-118.445127 1621464827.959498503\n"))
    assert.is_false(text.same_report(LINE, "AT Riley +0.263873386 kiwi +34.068930-118.445128 1621464827.959498503"))
    assert.is_false(text.same_report(LINE, "AT Riley +0.263873386 kiwi +34.068930-118.445127 1621464827.95949850"))
    assert.is_false(text.same_report(LINE, "not a record"))
  end)
end)
