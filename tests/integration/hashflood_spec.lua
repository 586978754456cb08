-- Hash flooding (issue 12, item 3): client ids chosen to collide under the
-- store's old unkeyed hash (built by tests/c/collide_ids) are streamed into
-- A, which floods them to B, while a well-behaved client measures its IAMAT
-- round trip at both. With keyed hashes the ids spread like any others, so
-- the round trip stays short; with the old hash every one of them sat in
-- one bucket (and one leaf) and each update walked the whole chain.
-- HERD_FLOOD_IDS sets the number of ids (default 20000).
-- Ports 13500-13501 (clients), 14500-14501 (peers).
local herd = require "helpers.herd"
local socket = require "socket"

local IDS = tonumber(os.getenv("HERD_FLOOD_IDS") or "20000")
local PASSES = 3   -- each id is sent this many times, newer each time
local BATCH = 100  -- attacker lines sent per probe round trip

local sh = herd.command

local function colliding_ids(n)
  local rc, out = sh("make -s -C tests/c")
  assert(rc == 0, "make -C tests/c failed:\n" .. out)
  local ids = {}
  local p = assert(io.popen("build/test/collide_ids " .. n))
  for id in p:lines() do ids[#ids + 1] = id end
  assert(p:close(), "collide_ids failed")
  assert(#ids == n, "collide_ids made " .. #ids .. " ids")
  return ids
end

local function percentile(sorted, q)
  return sorted[math.max(1, math.ceil(#sorted * q))]
end

-- An attacker connection that keeps at most two batches unanswered, driven
-- a step at a time between the probes (no second process, no thread).
local function attacker(port, ids)
  local c = assert(socket.connect("127.0.0.1", port))
  c:settimeout(0)
  local a = { sent = 0, answered = 0, total = #ids * PASSES, out = "" }
  function a.step()
    while a.out == "" and a.sent < a.total and a.sent - a.answered < 2 * BATCH do
      local lines = {}
      for _ = 1, math.min(BATCH, a.total - a.sent) do
        local k = a.sent
        local id = ids[k % #ids + 1]
        local pass = k // #ids
        lines[#lines + 1] = ("IAMAT %s +10.5-20.25 %d.%09d\n"):format(id, 1700000000 + pass, k % #ids)
        a.sent = a.sent + 1
      end
      a.out = table.concat(lines)
    end
    if a.out ~= "" then
      local n, _, partial = c:send(a.out)
      a.out = a.out:sub((n or partial or 0) + 1)
    end
    local data, _, partial = c:receive(1 << 16)
    data = data or partial or ""
    local _, lines = data:gsub("\n", "")
    a.answered = a.answered + lines
    return a.answered < a.total
  end
  function a.close() c:close() end
  return a
end

-- The probe's round trips (A and B) while one attacker streams ids.
local function measure(ids)
  local h = herd.start({
    servers = { A = { port = 13500 }, B = { port = 13501 } },
    links = { { "A", "B" } },
  })
  local ok, res = pcall(function()
    assert.truthy(herd.eventually(function()
      return (h:ctl("A", "links") or ""):match("B up")
    end, 10), "link A-B did not come up")
    local probes = { A = h:client("A", 10), B = h:client("B", 10) }
    local rtt = { A = {}, B = {} }
    local a = attacker(13500, ids)
    local deadline = socket.gettime() + 60
    while a.step() and socket.gettime() < deadline do
      for _, name in ipairs({ "A", "B" }) do
        local line = ("IAMAT probe-%s +1+1 %s"):format(name, herd.now())
        local t0 = socket.gettime()
        local reply = probes[name]:request(line)
        rtt[name][#rtt[name] + 1] = socket.gettime() - t0
        assert.truthy(reply and reply:match("^AT " .. name), tostring(reply))
      end
    end
    a.close()
    probes.A:close()
    probes.B:close()
    assert.equal(#ids * PASSES, a.answered)
    -- Every id reached B through the flood.
    assert.truthy(herd.eventually(function()
      return h:stats("B").records == #ids + 2
    end, 10), "B holds " .. tostring(h:stats("B").records))
    for _, name in ipairs({ "A", "B" }) do
      table.sort(rtt[name])
      assert.truthy(#rtt[name] >= 100, "too few probes: " .. #rtt[name])
    end
    return rtt
  end)
  h:stop()
  assert(ok, res)
  return res
end

-- Ids of the same length and alphabet, drawn at random: the control run.
local function random_ids(like)
  local ids = {}
  for i = 1, #like do
    local t = {}
    for j = 1, #like[i] do t[j] = string.char(math.random(97, 122)) end
    ids[i] = table.concat(t)
  end
  return ids
end

describe("colliding client ids", function()
  it("slow a well-behaved client no more than random ids do (p99 within 3x + 2 ms, at both servers)", function()
    local ids = colliding_ids(IDS)
    -- Side by side in one run, so a slow machine (or a sanitizer build)
    -- slows both alike; the old unkeyed hash gave 30 ms against ~1 ms.
    local control = measure(random_ids(ids))
    local attack = measure(ids)
    for _, name in ipairs({ "A", "B" }) do
      local c, r = control[name], attack[name]
      local p99c, p99 = percentile(c, 0.99), percentile(r, 0.99)
      print(("hashflood: %d ids x %d at A; probe at %s: random ids p50 %.3f ms p99 %.3f ms; "
        .. "colliding ids p50 %.3f ms p99 %.3f ms max %.3f ms"):format(IDS, PASSES, name,
        percentile(c, 0.5) * 1e3, p99c * 1e3, percentile(r, 0.5) * 1e3, p99 * 1e3, r[#r] * 1e3))
      assert.truthy(p99 < 3 * p99c + 0.002,
        ("p99 at %s: %.1f ms with colliding ids, %.1f ms with random ids"):format(name, p99 * 1e3, p99c * 1e3))
    end
  end)
end)
