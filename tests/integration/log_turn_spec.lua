-- A quiet server hands its log over in the loop turn that logged (issue
-- 12's low-rate propagation): a flush timer 2 ms after each line woke
-- every server of the five-server herd once more per record, in the middle
-- of the next record's propagation. The log's writes run on the log's
-- writer thread (log_release_spec), so strace -f -tt, attached to an idle
-- server, sees for each of a few IAMATs sent 100 ms apart the reply's
-- write, then the log's write well within the 2 ms the timer waited (the
-- old code's delays were 2 ms or more). A busy server still batches: at
-- most one hand-over per 2 ms (logs_spec and the bench cover that).
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
    spid = strace.attach(h:pid("A"), trace, "-f -tt -qq -s 16 -e trace=write")
    for i = 1, N do
      assert.matches("^AT ", c:request(("IAMAT quiet%d +34.068930-118.445127 %s"):format(i, herd.now())))
      herd.sleep(0.1)
    end
    detach()
    -- "<tid> HH:MM:SS.uuuuuu write(fd, "text"..., n) = n"
    local function seconds(hms)
      local hh, mm, ss = hms:match("^(%d+):(%d+):([%d.]+)$")
      return tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
    end
    local delays, reply_at = {}, nil
    for line in io.lines(trace) do
      local hms, text = line:match('^%d+%s+([%d:.]+) write%(%d+, "([^"]*)')
      if hms and text:match("^AT A ") then
        reply_at = seconds(hms)
      elseif hms and reply_at and text:match("^%d%d%d%d%-") then
        delays[#delays + 1] = (seconds(hms) - reply_at) * 1000
        reply_at = nil
      end
    end
    table.sort(delays)
    print(("\n%d replies logged; delay from reply to log write (ms): %s")
      :format(#delays, table.concat(delays, ", ")))
    assert.equal(N, #delays)
    assert.is_true(delays[(N + 1) // 2] < 1.5,
      "the median delay from a reply to its log write is 1.5 ms or more")
  end)
end)
