-- A quiet server writes its log in the loop turn that logged (issue 12's
-- low-rate propagation): a flush timer 2 ms after each line woke every
-- server of the five-server herd once more per record, in the middle of
-- the next record's propagation. strace, attached to an idle server, sees
-- for each of a few IAMATs sent 100 ms apart: the reply's write, then the
-- log's write, with no epoll_wait between them (the old code waited in
-- epoll_wait for its 2 ms timer first). A busy server still batches: at
-- most one write per 2 ms (logs_spec and the bench cover that).
-- Port 29545 (clients), 30545 (peers).
local herd = require "helpers.herd"
local strace = require "helpers.strace"

local N = 5

describe("the log of a quiet server", function()
  local h, c, spid
  local function detach()
    strace.detach(spid)
    spid = nil
  end
  after_each(function()
    detach()
    if c then c:close() end
    if h then h:stop() end
    c, h = nil, nil
  end)

  it("is written in the turn that logged, not by a timer after it", function()
    strace.require()
    h = herd.start({ servers = { A = { port = 29545 } } })
    c = h:client("A")
    assert.matches("^AT ", c:request("IAMAT warm +34.068930-118.445127 " .. herd.now()))
    local trace = herd.tmpdir() .. "/A.trace"
    spid = strace.attach(h:pid("A"), trace, "-qq -s 16 -e trace=write,epoll_wait")
    for i = 1, N do
      assert.matches("^AT ", c:request(("IAMAT quiet%d +34.068930-118.445127 %s"):format(i, herd.now())))
      herd.sleep(0.1)
    end
    detach()
    local calls = {}
    for line in io.lines(trace) do
      local call, text = line:match('^([%w_]+)%(%d*,? ?"?([^"]*)')
      if call then calls[#calls + 1] = { call = call, text = text or "" } end
    end
    local replies, logged_at_once = 0, 0
    for i, k in ipairs(calls) do
      if k.call == "write" and k.text:match("^AT A ") then
        replies = replies + 1
        local nxt = calls[i + 1]
        if nxt and nxt.call == "write" and nxt.text:match("^%d%d%d%d%-") then
          logged_at_once = logged_at_once + 1
        end
      end
    end
    print(("\n%d replies, %d followed at once by the log's write"):format(replies, logged_at_once))
    assert.equal(N, replies)
    assert.equal(N, logged_at_once)
  end)
end)
