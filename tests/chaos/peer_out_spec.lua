-- A neighbour that holds the secret, completes TLS and then never reads
-- (here: a real server stopped with SIGSTOP). The sender's unsent output
-- is bounded by limits.peer_out_max: past it the link is dropped (logged,
-- counted) and redialled, and the neighbour converges by reconciliation
-- once it reads again. Ports: clients 11101-11102, peers 12101-12102.
local herd = require "helpers.herd"
local chaos = require "helpers.chaos"

describe("a neighbour that never reads #chaos", function()
  local h
  local OUT_MAX = 256 * 1024
  lazy_setup(function()
    h = herd.start({
      servers = { Alpha = { port = 11101 }, Bravo = { port = 11102 } },
      links = { { "Alpha", "Bravo" } },
      limits = { peer_out_max = OUT_MAX, peer_timeout_ms = 60000 },
    })
    assert.truthy(herd.eventually(function()
      return (h:ctl("Alpha", "links") or ""):match("Bravo%s+up")
    end, 10))
  end)
  lazy_teardown(function()
    if h then
      h:signal("Bravo", "CONT")
      h:stop()
    end
  end)

  it("costs the sender at most peer_out_max, drops the link, and catches the neighbour up", function()
    local c = h:client("Alpha")
    -- Warm up the sender (allocator, buffers) before measuring.
    local id = function(k) return ("%s-%03d"):format(string.rep("n", 900), k % 100) end
    c:pipeline(2000, function(i) return ("IAMAT %s +1+1 %d.5\n"):format(id(i), 100000 + i) end)
    local pid = h:pid("Alpha")
    local base = chaos.rss_kb(pid)
    os.execute("kill -STOP " .. h:pid("Bravo"))
    local watch = chaos.rss_watch(pid)
    -- 40,000 updates of 100 clients, each record about 2 KB on the link:
    -- some 80 MB for a neighbour that reads nothing.
    local t = 200000
    c:pipeline(40000, function(i) return ("IAMAT %s +2+2 %d.5\n"):format(id(i), t + i) end)
    herd.sleep(0.3)
    local peak = watch:stop()
    local st = h:stats("Alpha")
    os.execute("kill -CONT " .. h:pid("Bravo"))
    local grew = (peak - base) / 1024
    print(("\nnever-reading neighbour: 40,000 updates (~80 MB of frames) for a stopped neighbour; "
      .. "the sender grew %.1f MiB (peer_out_max %d KiB), %d drop(s)"):format(grew, OUT_MAX // 1024,
      st.peer_out_drops))
    assert.is_true(st.peer_out_drops >= 1, "the link was never dropped")
    assert.truthy(h:log("Alpha"):find("over limits.peer_out_max", 1, true))
    assert.is_true(grew < OUT_MAX / 1048576 + 12, ("the sender grew %.1f MiB"):format(grew))
    -- Bravo reads again: the redialled link reconciles it.
    for k = 0, 99 do
      local want = h:record("Alpha", id(k))
      assert.truthy(herd.eventually(function() return h:record("Bravo", id(k)) == want end, 20),
        "Bravo did not converge on " .. k)
    end
  end)
end)
