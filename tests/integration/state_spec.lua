-- State on disk (state_dir, SPEC section 8): a whole herd stopped at once,
-- by SIGTERM or SIGKILL, gets its records back at restart; a damaged state
-- file is a clear start-up error naming the file, and --check reports it.
-- Ports 13600-13602 (clients), 14600-14602 (peers).
local herd = require "helpers.herd"

local NAMES = { "A", "B", "C" }

local function conf(dir, sync)
  return {
    servers = { A = { port = 13600 }, B = { port = 13601 }, C = { port = 13602 } },
    links = { { "A", "B" }, { "B", "C" } },
    state_dir = dir,
    state_sync = sync,
  }
end

-- n IAMATs spread over the three servers; the acknowledged lines by client.
local function write(h, n, tag)
  local acked = {}
  for i = 1, n do
    local name = NAMES[i % 3 + 1]
    local c = h:client(name)
    local client = ("%s-%d"):format(tag, i)
    local reply = c:request(("IAMAT %s +1+1 %d.5"):format(client, 1700000000 + i))
    c:close()
    if reply and reply:match("^AT ") then acked[client] = reply end
  end
  return acked
end

local function all_back(h, acked)
  for _, name in ipairs(NAMES) do
    for client, line in pairs(acked) do
      if h:record(name, client) ~= line then return false, name .. " lacks " .. client end
    end
  end
  return true
end

describe("state on disk", function()
  local h

  after_each(function()
    if h then h:stop() end
    h = nil
  end)

  for _, case in ipairs({ { "always", "KILL" }, { "batch", "KILL" }, { "batch", "TERM" } }) do
    local sync, sig = case[1], case[2]
    it(("state_sync %s: SIGKILL/SIGTERM of the whole herd (%s), restart: every record is back"):format(sync, sig), function()
      local dir = herd.tmpdir()
      h = herd.start(conf(dir .. "/state", sync))
      local acked = write(h, 60, "c")
      assert.truthy(herd.eventually(function() return all_back(h, acked) end, 10))
      if sync == "batch" then herd.sleep(0.25) end -- more than state_sync_ms
      for _, name in ipairs(NAMES) do assert.truthy(h:signal(name, sig)) end
      -- Only A comes back at first: what it has came from its own disk.
      assert.truthy(h:restart("A"))
      for client, line in pairs(acked) do assert.equal(line, h:record("A", client)) end
      assert.truthy(h:restart("B"))
      assert.truthy(h:restart("C"))
      local ok, why = all_back(h, acked)
      assert.truthy(ok, why)
      assert.equal(60, h:stats("C").records)
      os.execute("rm -rf " .. herd.quote(dir))
    end)
  end

  it("a truncated, garbage or foreign state is a start-up error naming the file; --check says so", function()
    local dir = herd.tmpdir()
    h = herd.start(conf(dir .. "/state", "batch"), { only = { "A" } })
    local c = h:client("A")
    for i = 1, 3 do assert.truthy(c:request(("IAMAT x%d +1+1 1700000000.5"):format(i)):match("^AT")) end
    c:close()
    h:stop()
    local file = dir .. "/state/A/data.mdb"
    local good = herd.read_file(file)
    local damaged = {
      truncated = good:sub(1, #good - 4096),
      garbage = string.rep("\x5a", #good),
      empty = "",
    }
    for what, bytes in pairs(damaged) do
      herd.write_file(file, bytes)
      h:start_one("A")
      assert.equal(1, h:exit_code("A", 5), what)
      local err = h:stderr("A")
      assert.truthy(err:find(file, 1, true), what .. ": " .. err)
      local rc, _, cerr = herd.run("--check --config " .. herd.quote(h.config) .. " A")
      assert.equal(1, rc, what)
      assert.truthy(cerr:find(file, 1, true), what .. ": " .. cerr)
      h.procs.A = nil
    end
    herd.write_file(file, good)
    local rc = herd.run("--check --config " .. herd.quote(h.config) .. " A")
    assert.equal(0, rc)
    os.execute("rm -rf " .. herd.quote(dir))
  end)
end)
