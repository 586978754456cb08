-- The log's chunks leave the page cache off the loop (issue 15): every
-- 8 MiB written, the server starts the writeback of the chunk just written
-- (sync_file_range) and drops the one before it (posix_fadvise). In the
-- loop that took up to 14 ms under load (ext4 allocates the chunk's blocks
-- then), a pause for every client. strace -f, attached while 200,000
-- IAMATs are logged (about 40 MB), shows both calls made, and none by the
-- loop's thread (the process's first thread: its id is the process id).
-- The writes themselves run on that thread too (the log's writer): the
-- same strace sees no write to the log file by the loop's thread. And a
-- log that cannot be written (a FIFO whose reader never reads: a disk that
-- stalls) does not stop the server answering its clients; the old code
-- blocked in write(2) once the pipe's 64 KiB were full.
-- Ports 29525 and 29526 (clients), 30525 and 30526 (peers).
local herd = require "helpers.herd"
local strace = require "helpers.strace"

local N = 200000

local sh = herd.command

describe("the log under load", function()
  local h, spid, reader
  local function detach()
    strace.detach(spid)
    spid = nil
  end
  after_each(function()
    detach()
    if reader then os.execute("kill -KILL " .. reader .. " 2>/dev/null") end
    if h then h:stop() end
    h, reader = nil, nil
  end)

  it("releases written chunks from the page cache on a thread other than the loop's", function()
    strace.require()
    local rc, out = sh("make -s -C tests/bench loadgen")
    assert(rc == 0, "make -C tests/bench loadgen failed:\n" .. out)
    local dir = herd.tmpdir()
    h = herd.start({ servers = { A = { port = 29525 } } })
    local pid = h:pid("A")
    local trace = dir .. "/A.trace"
    spid = strace.attach(pid, trace, "-f -qq -y -s 0 -e trace=sync_file_range,fadvise64,write")
    rc, out = sh(("tests/bench/loadgen iamat --port %d --count %d --conns 8 --inflight 16 --duration 120")
      :format(h:port("A"), N))
    assert(rc == 0, "loadgen failed:\n" .. out)
    assert.truthy(out:match(" bad=0 errors=0 "), out)
    herd.sleep(0.3)
    detach()

    local calls, by_loop, log_writes, log_writes_by_loop = {}, 0, 0, 0
    for line in io.lines(trace) do
      local tid, call, fd = line:match("^(%d+)%s+([%w_]+)%(%d+(%b<>)")
      if not tid then call, fd = line:match("^([%w_]+)%(%d+(%b<>)") end
      -- Without -f's thread id the call is the traced (loop's) thread's.
      local loop = not tid or tonumber(tid) == pid
      if call == "sync_file_range" or call == "fadvise64" then
        calls[call] = (calls[call] or 0) + 1
        if loop then by_loop = by_loop + 1 end
      elseif call == "write" and fd:match("/A%.log>$") then
        log_writes = log_writes + 1
        if loop then log_writes_by_loop = log_writes_by_loop + 1 end
      end
    end
    print(("\nlog release: %d sync_file_range, %d fadvise64, %d of them by the loop's thread;"
      .. " %d writes to the log, %d of them by the loop's thread")
      :format(calls.sync_file_range or 0, calls.fadvise64 or 0, by_loop, log_writes,
        log_writes_by_loop))
    assert.truthy((calls.sync_file_range or 0) > 0 and (calls.fadvise64 or 0) > 0,
      "no chunk of the log was released")
    assert.equal(0, by_loop)
    assert.truthy(log_writes > 0, "no write to the log was seen")
    assert.equal(0, log_writes_by_loop)
  end)

  it("answers its clients while its log cannot be written", function()
    local logs = herd.tmpdir() .. "/logs"
    local rc, out = sh("mkdir -p " .. herd.quote(logs) .. " && mkfifo " .. herd.quote(logs .. "/A.log"))
    assert(rc == 0, "mkfifo failed:\n" .. out)
    -- A reader that opens the FIFO (so the server's open succeeds) and
    -- never reads: the pipe's buffer fills, and every write blocks.
    local p = io.popen(("sh -c 'exec sleep 120 < %s' >/dev/null 2>&1 & echo $!")
      :format(herd.quote(logs .. "/A.log")))
    reader = tonumber(p:read("a"))
    p:close()
    -- Not herd.start's wait: it reads the log, and a FIFO's read never ends.
    h = herd.start({ servers = { A = { port = 29526 } }, log_dir = logs }, { wait = false })
    assert.truthy(herd.wait_port(29526, 5), "the server did not start listening")
    local c = h:client("A")
    c.sock:settimeout(3)
    local n, answered = 3000, 0 -- about 700 KB of log lines
    for i = 1, n, 100 do
      local batch = {}
      for k = i, i + 99 do
        batch[#batch + 1] = ("IAMAT stall%d +34.068930-118.445127 %s\n"):format(k, herd.now())
      end
      c:send(table.concat(batch))
      for _ = 1, 100 do
        local reply = c:line()
        if not reply then break end
        if reply:match("^AT A ") then answered = answered + 1 end
      end
      if answered < i + 99 then break end
    end
    c:close()
    print(("\n%d of %d IAMATs answered while the log could not be written"):format(answered, n))
    assert.equal(n, answered)
  end)
end)
