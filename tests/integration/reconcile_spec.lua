-- Reconciliation traffic grows with the difference, not with the store.
-- Ports 23500-23599 (clients), 24500-24599 (peers).
local herd = require "helpers.herd"

local STORE = 100000

describe("reconciliation #integration", function()
  local h
  lazy_setup(function()
    h = herd.start({
      servers = { A = { port = 23501 }, B = { port = 23502 } },
      links = { { "A", "B" } },
      links_redial = { min_ms = 50, max_ms = 200 },
    }, { only = { "A" } })
  end)
  lazy_teardown(function() h:stop() end)

  local function synced(name) return h:stats(name).sync_bytes_out end

  it("fills an empty server, then moves little for one differing record", function()
    -- 100,000 clients at A, pipelined, before B exists.
    local c = h:client("A", 60)
    c:pipeline(STORE, function(i)
      return string.format("IAMAT client%d +%d.5-%d.25 %d.%09d\n",
        i, i % 90, i % 180, 1600000000 + i, i)
    end)
    c:close()
    assert.equal(STORE, h:stats("A").records)

    -- B starts empty and gets everything over reconciliation.
    h:start_one("B")
    assert.truthy(h:wait("B"))
    assert.truthy(herd.eventually(function() return h:stats("B").records == STORE end, 30, 0.1),
      "B has " .. tostring(h:stats("B").records))
    local full = synced("A") + synced("B")

    -- Cut the link, change one record at A, heal, and count what crossed.
    herd.sleep(0.3)
    assert.equal("ok\n", h:ctl("A", "cut B 500"))
    local reply = h:client("A"):request("IAMAT client77 +1+1 1700000000.5")
    local a0, b0 = synced("A"), synced("B")
    assert.truthy(herd.eventually(function() return h:record("B", "client77") == reply end, 10))
    herd.sleep(0.2)
    local moved = synced("A") - a0 + synced("B") - b0
    print(string.format(
      "\nreconciliation: %d records (%d bytes) to fill an empty server; %d bytes for 1 differing record of %d",
      STORE, full, moved, STORE))
    assert.is_true(moved < 8192, "moved " .. moved .. " bytes")
    assert.is_true(moved * 100 < full)
  end)
end)
