-- Writing the state on disk does not pause the loop (issue 15): the pages
-- of LMDB's map that write transactions read are let go (MADV_DONTNEED)
-- every second so the state file does not count in the server's memory,
-- and one madvise over the whole file held the loop 4 ms at 1,000,000
-- records (272 MB), growing with the file. They now go a slice of at most
-- 8 MiB per commit. strace, attached while 300,000 records are written,
-- shows every madvise of the map: none longer than 8 MiB, and one pass
-- reaching the end of a file over 16 MiB.
-- Port 29520 (clients), 30520 (peers).
local herd = require "helpers.herd"
local strace = require "helpers.strace"

local N = 300000
local SLICE = 8 << 20

local sh = herd.command

describe("state on disk under load", function()
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

  it("lets go of the state map's pages a slice of at most 8 MiB at a time", function()
    strace.require()
    local rc, out = sh("make -s -C tests/bench loadgen")
    assert(rc == 0, "make -C tests/bench loadgen failed:\n" .. out)
    local dir = herd.tmpdir()
    h = herd.start({ servers = { A = { port = 29520 } }, state_dir = dir .. "/state" })
    local trace = dir .. "/A.trace"
    spid = strace.attach(h:pid("A"), trace, "-qq -e trace=madvise")
    rc, out = sh(("tests/bench/loadgen iamat --port %d --count %d --conns 8 --inflight 8 --duration 120")
      :format(h:port("A"), N))
    assert(rc == 0, "loadgen failed:\n" .. out)
    assert.truthy(out:match(" bad=0 errors=0 "), out)
    -- A pass starts at most a second after the last one and goes on with
    -- each commit: a few more writes let one run to the end.
    local c = h:client("A")
    for i = 1, 30 do
      c:request(("IAMAT late%d +1+1 %d.5"):format(i, 1700000000 + i))
      herd.sleep(0.05)
    end
    c:close()
    local bytes = h:stats("A").state_bytes
    detach()
    assert.truthy(bytes > 2 * SLICE, ("the state file holds only %d bytes"):format(bytes))

    -- madvise(ADDR, LENGTH, MADV_DONTNEED) of the map: the longest, and the
    -- furthest any reached from the lowest address (the map's start).
    local longest, base, reach, calls = 0, nil, 0, 0
    for line in io.lines(trace) do
      local addr, len = line:match("madvise%((0x%x+), (%d+), MADV_DONTNEED%)")
      if addr then
        addr, len = tonumber(addr), tonumber(len)
        calls = calls + 1
        longest = math.max(longest, len)
        if not base or addr < base then base = addr end
      end
    end
    for line in io.lines(trace) do
      local addr, len = line:match("madvise%((0x%x+), (%d+), MADV_DONTNEED%)")
      if addr and base then
        reach = math.max(reach, tonumber(addr) + tonumber(len) - base)
      end
    end
    print(("\nstate map: %d bytes; %d madvise calls, the longest %d bytes, reaching %d bytes")
      :format(bytes, calls, longest, reach))
    assert.truthy(calls > 0, "no page of the map was let go")
    assert.truthy(longest <= SLICE, ("one madvise let go of %d bytes at once"):format(longest))
    assert.truthy(reach >= bytes - SLICE, ("the passes reached %d of %d bytes"):format(reach, bytes))
  end)
end)
