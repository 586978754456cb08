-- The log's chunks leave the page cache off the loop (issue 15): every
-- 8 MiB written, the server starts the writeback of the chunk just written
-- (sync_file_range) and drops the one before it (posix_fadvise). In the
-- loop that took up to 14 ms under load (ext4 allocates the chunk's blocks
-- then), a pause for every client. strace -f, attached while 200,000
-- IAMATs are logged (about 40 MB), shows both calls made, and none by the
-- loop's thread (the process's first thread: its id is the process id).
-- Port 29525 (clients), 30525 (peers).
local herd = require "helpers.herd"
local strace = require "helpers.strace"

local N = 200000

local sh = herd.command

describe("the log under load", function()
  local h, spid
  local function detach()
    strace.detach(spid)
    spid = nil
  end
  after_each(function()
    detach()
    if h then h:stop() end
    h = nil
  end)

  it("releases written chunks from the page cache on a thread other than the loop's", function()
    strace.require()
    local rc, out = sh("make -s -C tests/bench loadgen")
    assert(rc == 0, "make -C tests/bench loadgen failed:\n" .. out)
    local dir = herd.tmpdir()
    h = herd.start({ servers = { A = { port = 29525 } } })
    local pid = h:pid("A")
    local trace = dir .. "/A.trace"
    spid = strace.attach(pid, trace, "-f -qq -e trace=sync_file_range,fadvise64")
    rc, out = sh(("tests/bench/loadgen iamat --port %d --count %d --conns 8 --inflight 16 --duration 120")
      :format(h:port("A"), N))
    assert(rc == 0, "loadgen failed:\n" .. out)
    assert.truthy(out:match(" bad=0 errors=0 "), out)
    herd.sleep(0.3)
    detach()

    local calls, by_loop = {}, 0
    for line in io.lines(trace) do
      local tid, call = line:match("^(%d+)%s+([%w_]+)%(")
      if not tid then call = line:match("^([%w_]+)%(") end
      if call == "sync_file_range" or call == "fadvise64" then
        calls[call] = (calls[call] or 0) + 1
        -- Without -f's thread id the call is the traced (loop's) thread's.
        if not tid or tonumber(tid) == pid then by_loop = by_loop + 1 end
      end
    end
    print(("\nlog release: %d sync_file_range, %d fadvise64, %d of them by the loop's thread")
      :format(calls.sync_file_range or 0, calls.fadvise64 or 0, by_loop))
    assert.truthy((calls.sync_file_range or 0) > 0 and (calls.fadvise64 or 0) > 0,
      "no chunk of the log was released")
    assert.equal(0, by_loop)
  end)
end)
