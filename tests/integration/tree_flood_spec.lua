-- The tree rule's fallback flood ends (issue 17): while a tree link is
-- down, the origin sends its records as FLOODREC frames, and every server
-- floods each one on once. The old code remembered the versions it had
-- flooded in a table of 16,384 slots: a burst of more distinct records
-- evicted them before their copies came back around the herd's cycles, so
-- they were flooded again, and again: after a 40,000-IAMAT burst the five
-- servers kept one core busy with records circling for seconds after the
-- load had stopped. Now a server floods each record version once (a mark
-- on the stored record). The test: the five-server herd with Riley-Juzang
-- cut, a pipelined burst at Riley, then (once every server holds every
-- record) no peer record moves any more, and no server flooded more than
-- one FLOODREC per record.
-- Ports 17100-17104 (clients), 17200-17204 (peers), below the kernel's
-- ephemeral range (32768-60999), where a connection's own port may sit.
local herd = require "helpers.herd"

local NAMES = { "Riley", "Jaquez", "Juzang", "Campbell", "Bernard" }
local N = 40000

local function conf()
  local servers = {}
  for i, name in ipairs(NAMES) do
    servers[name] = { port = 17099 + i, peer_port = 17199 + i }
  end
  return {
    servers = servers, dissemination = "tree",
    links = { { "Riley", "Jaquez" }, { "Riley", "Juzang" }, { "Bernard", "Jaquez" },
      { "Bernard", "Juzang" }, { "Bernard", "Campbell" }, { "Juzang", "Campbell" } },
    -- No periodic reconciliation during the test: only floods move records.
    limits = { peer_sync_ms = 600000 },
  }
end

local function total(h, stat)
  local sum = 0
  for _, n in ipairs(NAMES) do sum = sum + (h:stats(n)[stat] or 0) end
  return sum
end

describe("the tree rule's fallback flood", function()
  local h
  after_each(function()
    if h then h:stop() end
    h = nil
  end)

  it("ends once every server has flooded each record on once, however many cycles the links make", function()
    local rc, out = herd.command("make -s -C tests/bench loadgen")
    assert(rc == 0, "make -C tests/bench loadgen failed:\n" .. out)
    h = herd.start(conf())
    assert.truthy(h:links_up(NAMES), "the links did not come up")
    assert.equal("ok\n", h:ctl("Riley", "cut Juzang 600000"))
    rc, out = herd.command(("tests/bench/loadgen iamat --port %d --count %d --conns 8 --inflight 64 --duration 60")
      :format(h:port("Riley"), N))
    assert(rc == 0, "loadgen failed:\n" .. out)
    assert.truthy(herd.eventually(function()
      for _, n in ipairs(NAMES) do
        if (h:stats(n).records or 0) < N then return false end
      end
      return true
    end, 20), "not every server got every record")
    herd.sleep(1)
    local before = total(h, "peer_records_in")
    herd.sleep(1)
    local after = total(h, "peer_records_in")
    local floods = {}
    for _, n in ipairs(NAMES) do floods[#floods + 1] = n .. " " .. h:stats(n).forward_fallback_floods end
    print(("\n%d IAMATs; peer records received in the second after: %d; fallback floods: %s")
      :format(N, after - before, table.concat(floods, ", ")))
    assert.equal(0, after - before)
    for _, n in ipairs(NAMES) do
      assert.is_true(h:stats(n).forward_fallback_floods <= N,
        n .. " flooded more FLOODRECs than there were records")
    end
  end)
end)
