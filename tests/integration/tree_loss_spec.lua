-- dissemination = "tree" when a link is dropped with records queued on it
-- (issue 17): the records it had not sent reach every server at once, not
-- at the periodic reconciliation or when the link comes back. Under the
-- tree, a record queued on a lost link is needed by the whole subtree below
-- it, whose own links did not change; the server that lost the link has
-- the whole herd pull from every live link at once (a PULLALL frame,
-- counted in peer_pull_alls).
-- Ports 17301-17304 (clients), 17401-17404 (peers), below the kernel's
-- ephemeral range (32768-60999), where a connection's own port may sit.
local herd = require "helpers.herd"
local socket = require "socket"

-- A ring of four. A's tree: A-B, A-D, and B-C below B (C's parent is the
-- smaller-named of B and D), so what A queued for B is needed by B and C,
-- whose link B-C stays up.
local NAMES = { "A", "B", "C", "D" }
local LINKS = { { "A", "B" }, { "B", "C" }, { "C", "D" }, { "D", "A" } }

local function conf()
  local servers = {}
  for i, name in ipairs(NAMES) do
    servers[name] = { port = 17300 + i, peer_port = 17400 + i }
  end
  return {
    servers = servers, links = LINKS, dissemination = "tree",
    links_redial = { min_ms = 50, max_ms = 500 },
    -- The periodic reconciliation out of the picture (10 min), a stopped
    -- neighbour never timed out, and a small bound on a link's unsent
    -- output so a burst overflows it.
    limits = { peer_sync_ms = 600000, peer_timeout_ms = 60000, peer_out_max = 64 * 1024 },
  }
end

-- Sends IAMATs for new clients at c, `batch` at a time, until done()
-- says so or `max` were sent; returns { client = reply } of the
-- acknowledged ones and their number.
local function burst(c, batch, max, done)
  local acked, n, i = {}, 0, 0
  local pad = string.rep("p", 300)
  while i < max and not done() do
    local lines, ids = {}, {}
    for k = 1, batch do
      ids[k] = ("%s-%06d"):format(pad, i + k)
      lines[k] = ("IAMAT %s +1+1 %d.5\n"):format(ids[k], 1000 + i + k)
    end
    i = i + batch
    assert(c:send(table.concat(lines)))
    for k = 1, batch do
      local reply = c:line()
      if reply and reply:match("^AT A ") then
        acked[ids[k]] = reply
        n = n + 1
      end
    end
  end
  return acked, n
end

describe("a tree link dropped with records queued on it #integration", function()
  it("loses none of them: every acknowledged record is everywhere within 3 s, with no reconciliation", function()
    local h = herd.start(conf())
    local stopped = false
    finally(function()
      if stopped then os.execute("kill -CONT " .. h:pid("B")) end
      h:stop()
    end)
    assert.truthy(h:links_up(NAMES), "links did not come up")
    local c = h:client("A")
    -- B stops reading: A's output to it fills the kernel's buffers, then
    -- passes peer_out_max, and A drops the link with records queued.
    assert.truthy(os.execute("kill -STOP " .. h:pid("B")))
    stopped = true
    local acked, n = burst(c, 100, 60000, function()
      return (h:stats("A").peer_out_drops or 0) > 0
    end)
    c:close()
    assert.is_true(h:stats("A").peer_out_drops > 0, "A never dropped its link to B")
    -- Keep the link from coming back (its reconciliation would bring the
    -- records too): cut for a minute.
    assert.equal("ok\n", h:ctl("A", "cut B 60000"))
    assert.truthy(os.execute("kill -CONT " .. h:pid("B")))
    stopped = false
    local t0 = socket.gettime()
    -- Each client was written once: a server holds them all when it holds
    -- n records (their values are checked below).
    local held
    local all = herd.eventually(function()
      held = {}
      local ok = true
      for _, s in ipairs(NAMES) do
        held[s] = h:stats(s).records or 0
        ok = ok and held[s] == n
      end
      return ok
    end, 10, 0.02)
    local waited = socket.gettime() - t0
    local parts = {}
    for _, s in ipairs(NAMES) do parts[#parts + 1] = ("%s holds %d"):format(s, held[s]) end
    print(("\ntree link dropped over peer_out_max: %d IAMATs acknowledged, %d herd-wide pulls at A, "
      .. "%.0f ms after B resumed: %s"):format(n, h:stats("A").peer_pull_alls or 0,
      waited * 1000, table.concat(parts, ", ")))
    assert.truthy(all, table.concat(parts, ", "))
    local k = 0
    for client, reply in pairs(acked) do
      k = k + 1
      if k % 97 == 0 then
        for _, s in ipairs(NAMES) do assert.equal(reply, h:record(s, client)) end
      end
    end
    assert.is_true(waited < 3, "waited " .. waited .. " s")
    assert.matches("cut", h:ctl("A", "links"))
    assert.is_true(h:stats("A").peer_pull_alls > 0)
  end)
end)
