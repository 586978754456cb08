local location = require "location"

describe("location.parse", function()
  it("reads signed decimal degrees without a separator", function()
    local lat, lon = location.parse("+34.068930-118.445127")
    assert.near(34.06893, lat, 1e-9)
    assert.near(-118.445127, lon, 1e-9)
  end)
  it("accepts the range limits and integers", function()
    assert.same({ 90, 180 }, { location.parse("+90+180") })
    assert.same({ -90, -180 }, { location.parse("-90-180") })
    assert.same({ 0, 0 }, { location.parse("+0.0-0.0") })
    assert.same({ 90, -180 }, { location.parse("+90.000000-180.000") })
  end)
  for _, bad in ipairs({ "", "34.068930-118.445127", "+34.068930118.445127",
      "+90.000001+0", "-90.1+0", "+0+180.0000001", "+0-181", "+34.-118",
      "+.5-118", "+34.5-118.", "++34-118", "+34,5-118", "+34.5 -118",
      "+34.5-118.4x", "+1e1+1", "+inf-nan", "+34.5-118.5+1" }) do
    it("rejects " .. string.format("%q", bad), function()
      assert.is_nil(location.parse(bad))
    end)
  end
end)
