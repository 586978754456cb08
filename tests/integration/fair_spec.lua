-- One client pipelining many requests cannot make another client's single
-- request wait behind them all: a connection handles at most
-- LINES_PER_TURN (16) lines per loop turn, and the rest of what it sent
-- waits for the next turn, after the poll has picked up everyone else's
-- lines (core/conn.c). The server is stopped while the heavy client's
-- 1,000 lines and then the light client's one arrive, so both are waiting
-- in its sockets when it resumes; the log's IN lines give the order the
-- lines were handled in. Before, the light line came after all 1,000
-- (a loop turn handled everything a connection had sent, up to 2 MiB).
-- Port 16301 (clients).
local herd = require "helpers.herd"

local N = 1000

describe("a client pipelining a thousand requests", function()
  local h
  after_each(function()
    if h then
      os.execute("kill -CONT " .. (h:pid("A") or 0) .. " 2>/dev/null")
      h:stop()
    end
    h = nil
  end)

  it("does not hold up another client's request, and gets all its replies in order", function()
    h = herd.start({ servers = { A = { port = 16301 } } })
    local heavy, light = h:client("A"), h:client("A")
    local now = herd.now()
    assert.matches("^AT ", heavy:request("IAMAT warm +34.068930-118.445127 " .. now))
    assert.matches("^AT ", light:request("IAMAT warm2 +34.068930-118.445127 " .. now))
    local lines = {}
    for i = 1, N do
      lines[i] = ("IAMAT heavy%d +34.068930-118.445127 %s\n"):format(i, now)
    end

    assert.truthy(os.execute("kill -STOP " .. h:pid("A")))
    -- 43 KB: the kernel takes it all while the server is stopped.
    assert(heavy:send(table.concat(lines)))
    herd.sleep(0.05)
    assert(light:send(("IAMAT light +34.068930-118.445127 %s\n"):format(now)))
    herd.sleep(0.05)
    assert.truthy(os.execute("kill -CONT " .. h:pid("A")))

    assert.matches("^AT A %S+ light ", light:line())
    local last
    for _ = 1, N do last = assert(heavy:line()) end
    assert.matches("^AT A %S+ heavy" .. N .. " ", last)

    local order, before = {}, nil
    for who in h:log("A"):gmatch("IN [^\n]- IAMAT (%a+)%d* ") do
      order[#order + 1] = who
      if who == "light" then before = #order - 1 end
    end
    assert.is_not_nil(before, "no IN line for light's IAMAT in the log")
    local heavy_before = 0
    for i = 1, before do
      if order[i] == "heavy" then heavy_before = heavy_before + 1 end
    end
    print(("\nheavy's lines handled before light's: %d of %d"):format(heavy_before, N))
    assert.is_true(heavy_before <= 32,
      ("light's line was handled after %d of heavy's"):format(heavy_before))
  end)
end)
