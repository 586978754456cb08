local clock = require "clock"

describe("clock.parse", function()
  it("reads seconds and nine decimals exactly", function()
    assert.same({ 1621464827, 959498503 }, { clock.parse("1621464827.959498503") })
  end)
  it("pads shorter fractions to nanoseconds", function()
    assert.same({ 1621464827, 500000000 }, { clock.parse("1621464827.5") })
    assert.same({ 1, 1000 }, { clock.parse("1.000001") })
  end)
  it("accepts whole seconds without a fraction", function()
    assert.same({ 1621464827, 0 }, { clock.parse("1621464827") })
  end)
  it("accepts timestamps far in the past and the future", function()
    assert.same({ 0, 0 }, { clock.parse("0") })
    assert.same({ 0, 1 }, { clock.parse("0.000000001") })
    assert.same({ 999999999999999999, 999999999 },
      { clock.parse("999999999999999999.999999999") })
    assert.same({ 5, 0 }, { clock.parse("0000000000000000000000005") })
  end)
  for _, bad in ipairs({ "", ".5", "5.", "1.2.3", "+1621464827.5", "-1.5",
      "1621464827.9594985031", "1e9", "0x10", "12a", "1 2", "1,5",
      "9999999999999999999", "١٢٣" }) do
    it("rejects " .. string.format("%q", bad), function()
      assert.is_nil(clock.parse(bad))
    end)
  end
end)

describe("clock.diff", function()
  local S = 1000000000
  it("is exact to the nanosecond with nine decimals", function()
    local now = 1621464828 * S + 223371889
    assert.equal("+0.263873386", clock.diff(now, 1621464827, 959498503))
  end)
  it("signs negative differences (client clock ahead)", function()
    assert.equal("-0.263873386", clock.diff(1621464827 * S + 959498503, 1621464828, 223371889))
    assert.equal("-1.000000000", clock.diff(5 * S, 6, 0))
    assert.equal("-0.000000001", clock.diff(5 * S, 5, 1))
  end)
  it("writes zero as +0.000000000", function()
    assert.equal("+0.000000000", clock.diff(7 * S + 5, 7, 5))
  end)
  it("never uses exponent notation, even far from now", function()
    local d = clock.diff(1621464827 * S, 999999999999999999, 999999999)
    assert.equal("-999999998378535172.999999999", d)
    assert.equal("+1621464827.000000000", clock.diff(1621464827 * S, 0, 0))
  end)
  it("borrows across the second", function()
    assert.equal("+0.999999999", clock.diff(10 * S, 9, 1))
    assert.equal("+1.000000001", clock.diff(10 * S + 1, 9, 0))
  end)
end)
