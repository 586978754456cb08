-- places.health: a failing provider is a WARN at once, then at most one
-- line a minute with the count (issue 13 item 12), on the fake core.
local fake_core = require "helpers.fake_core"

describe("places.health", function()
  local fake, health
  local MIN = 60 * 10^9
  before_each(function()
    fake = fake_core.install({ name = "A" })
    fake.clock = 1000 * 10^9
    health = require "places.health"
  end)

  local function fail(msg)
    health.note("google", { status = "REQUEST_DENIED", error_message = msg or "expired key" })
  end

  it("warns at the first failure and counts the rest, one line a minute", function()
    fail()
    assert.equal(1, #fake.warnings)
    assert.matches("provider google failed: REQUEST_DENIED: expired key", fake.warnings[1], 1, true)
    for _ = 1, 99 do fake.clock = fake.clock + 10^8; fail() end
    assert.equal(1, #fake.warnings)
    fake.clock = fake.clock + MIN
    fake.fire_timers()
    assert.equal(2, #fake.warnings)
    assert.matches("failed 99 more times since the last report", fake.warnings[2], 1, true)
    -- Nothing held: the next timer (if any) says nothing.
    fake.fire_timers()
    assert.equal(2, #fake.warnings)
  end)

  it("says when the provider answers again, and a flapping one stays at a line a minute", function()
    fail()
    fake.clock = fake.clock + MIN
    health.note("google", { status = "OK" })
    assert.matches("answers again after 1 failures", fake.logs[#fake.logs], 1, true)
    for _ = 1, 50 do
      fake.clock = fake.clock + 10^8
      fail()
      health.note("google", { status = "ZERO_RESULTS" })
    end
    assert.equal(1, #fake.warnings)
  end)

  it("does not count refused queries or answers as failures", function()
    health.note("google", { status = "INVALID_REQUEST" })
    health.note("google", { status = "OK" })
    assert.equal(0, #fake.warnings)
  end)
end)
