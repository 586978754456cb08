-- A WHATSAT over a kept provider connection costs no epoll_ctl (issue 16):
-- libuv's uv_poll_start removes a descriptor from epoll before it adds it
-- again, and uv_poll_stop removes it, so watching curl's socket anew for
-- every request cost three epoll_ctl calls a query, about a fifth of
-- herd's own time on a WHATSAT against a provider that answers at once.
-- The connection now stays in epoll, parked, between requests. strace
-- counts the calls over 40 queries; then the provider goes away and comes
-- back, which closes the parked connection under the server: it must not
-- spin on that socket (CPU time while idle), and the next query opens a
-- fresh connection and is answered.
-- Ports 29540 (clients), 30540 (peers), 29541 (mock provider).
local herd = require "helpers.herd"
local strace = require "helpers.strace"
local mock_places = require "helpers.places_mock"

local MOCK = 29541
local N = 40

local function cpu_ticks(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local stat = f:read("a")
  f:close()
  -- utime and stime: fields 14 and 15, counted after the ")" that ends
  -- the command name
  local rest = stat:match("%) (.*)$")
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  return tonumber(fields[12]) + tonumber(fields[13])
end

local function whatsat(c, client)
  assert(c:send(("WHATSAT %s 10 3\n"):format(client)))
  local raw, err = c:until_blank()
  assert(raw, "no full WHATSAT reply: " .. tostring(err))
  assert.matches('^AT [^\n]*\n{.*"status":"OK"', raw)
end

describe("a kept provider connection #integration #http", function()
  local m, h, c, spid
  local function detach()
    strace.detach(spid)
    spid = nil
  end
  after_each(function()
    detach()
    if c then c:close() end
    if h then h:stop() end
    if m then m:stop() end
    c, h, m = nil, nil, nil
  end)

  it("costs no epoll_ctl per WHATSAT, and its close by the provider is noticed", function()
    strace.require()
    m = mock_places.start(MOCK)
    -- a provider a little slower than the send: curl must wait for the answer
    m:config({ delay_ms = 5 })
    h = herd.start({ servers = { A = { port = 29540 } }, places = { provider = "google" } },
      { env = { HERD_PLACES_PROVIDER = "google", HERD_PLACES_KEY = "k",
        HERD_PLACES_URL = mock_places.url(MOCK, "google") } })
    c = h:client("A")
    for i = 1, N do
      assert.matches("^AT ", c:request(("IAMAT kept%d +34.%06d-118.445127 %s")
        :format(i, i, herd.now())))
    end
    whatsat(c, "kept1") -- opens the connection
    local pid = h:pid("A")
    local trace = herd.tmpdir() .. "/A.trace"
    spid = strace.attach(pid, trace, "-qq -e trace=epoll_ctl")
    for i = 2, N do whatsat(c, "kept" .. i) end -- each one a different query
    herd.sleep(0.2)
    detach()
    local calls = 0
    for line in io.lines(trace) do
      if line:match("^epoll_ctl%(") then calls = calls + 1 end
    end
    print(("\n%d WHATSATs over a kept connection: %d epoll_ctl calls"):format(N - 1, calls))
    assert.truthy(#m:requests() >= N - 1, "the provider was not asked")
    assert.truthy(calls <= 4, ("%d epoll_ctl calls for %d queries"):format(calls, N - 1))

    -- The provider restarts: the parked connection is closed under herd.
    m:stop()
    m = mock_places.start(MOCK)
    herd.sleep(0.3)
    local t0 = cpu_ticks(pid)
    herd.sleep(1)
    local spent = cpu_ticks(pid) - t0
    assert.truthy(spent <= 20, ("an idle server used %d ticks in 1 s"):format(spent))
    whatsat(c, "kept1")
  end)
end)
