-- Crash and restart under load: the five servers of the example herd, two
-- writer processes sending IAMATs to random servers, and SIGKILLs of random
-- servers, restarted after a random pause. At the end every server holds
-- the same records and every IAMAT that got an AT reply is there or
-- superseded by a newer one. The herd keeps records in memory only, so a
-- kill may never take the last copy: at most two servers are down at once,
-- the survivors stay connected, and a server is killed only once every
-- live link is up (a restarted server has caught up). Within those rules
-- the goal is zero lost. Ports: clients 27101-27105, peers 28101-28105.
local herd = require "helpers.herd"
local chaos = require "helpers.chaos"
local socket = require "socket"

local NAMES = { "Bernard", "Campbell", "Jaquez", "Juzang", "Riley" }
local LINKS = {
  { "Riley", "Jaquez" }, { "Riley", "Juzang" }, { "Bernard", "Jaquez" },
  { "Bernard", "Juzang" }, { "Bernard", "Campbell" }, { "Juzang", "Campbell" },
}
local SECONDS = tonumber(os.getenv("HERD_CHAOS_SECONDS") or "") or 12

local function connected(live)
  local start
  for n in pairs(live) do start = n break end
  if not start then return true end
  local seen, todo, count = { [start] = true }, { start }, 1
  while #todo > 0 do
    local n = table.remove(todo)
    for _, l in ipairs(LINKS) do
      for i = 1, 2 do
        local a, b = l[i], l[3 - i]
        if a == n and live[b] and not seen[b] then
          seen[b] = true
          count = count + 1
          todo[#todo + 1] = b
        end
      end
    end
  end
  local total = 0
  for _ in pairs(live) do total = total + 1 end
  return count == total
end

-- Every link between two live servers is up, seen from both ends.
local function live_links_up(h, live)
  for n in pairs(live) do
    local out = h:ctl(n, "links")
    if not out then return false end
    for peer, state in out:gmatch("(%S+) (%S+) %-?%d+ %d+ %d+") do
      if live[peer] and state ~= "up" then return false end
    end
  end
  return true
end

describe("crash and restart under load #chaos", function()
  local h
  lazy_setup(function()
    local servers = {}
    for i, name in ipairs({ "Riley", "Jaquez", "Juzang", "Campbell", "Bernard" }) do
      servers[name] = { port = 27100 + i }
    end
    h = herd.start({ servers = servers, links = LINKS, links_redial = { min_ms = 50, max_ms = 500 } })
    local all = {}
    for _, n in ipairs(NAMES) do all[n] = true end
    assert.truthy(herd.eventually(function() return live_links_up(h, all) end, 10), "links did not come up")
  end)
  lazy_teardown(function() if h then h:stop() end end)

  it("SIGKILLs random servers while clients write; no acknowledged IAMAT is lost", function()
    local seed = tonumber(os.getenv("HERD_CHAOS_SEED") or "") or os.time()
    math.randomseed(seed)
    local targets = {}
    for _, n in ipairs(NAMES) do targets[#targets + 1] = { name = n, port = h:port(n) } end
    local writers = { chaos.writer(targets, SECONDS, 1, { clients = 2000 }),
      chaos.writer(targets, SECONDS, 2, { clients = 2000 }) }
    local results
    finally(function()
      if not results then for _, w in ipairs(writers) do w:finish(1, true) end end
    end)
    local live, down_since = {}, {}
    for _, n in ipairs(NAMES) do live[n] = true end
    local killed, restarted, refused_kills = 0, 0, 0
    local t0 = socket.gettime()
    local next_kill = t0 + 0.5
    while socket.gettime() - t0 < SECONDS - 0.5 do
      local now = socket.gettime()
      -- Restart whatever has been down long enough (0.3 to 1.5 s).
      for n, since in pairs(down_since) do
        if now - since.at >= since.pause then
          assert.is_true(h:restart(n), n .. " did not restart: " .. (h:stderr(n) or ""))
          live[n] = true
          down_since[n] = nil
          restarted = restarted + 1
        end
      end
      if now >= next_kill then
        local victim = NAMES[math.random(#NAMES)]
        local ndown = 0
        for _ in pairs(down_since) do ndown = ndown + 1 end
        local rest = {}
        for n in pairs(live) do if n ~= victim then rest[n] = true end end
        if live[victim] and ndown < 2 and connected(rest) and live_links_up(h, live) then
          assert.is_true(h:kill(victim), "could not kill " .. victim)
          live[victim] = nil
          down_since[victim] = { at = socket.gettime(), pause = 0.3 + math.random() * 1.2 }
          killed = killed + 1
        else
          refused_kills = refused_kills + 1
        end
        next_kill = socket.gettime() + 0.2 + math.random() * 0.6
      end
      socket.sleep(0.02)
    end
    results = {}
    for i, w in ipairs(writers) do results[i] = w:finish(SECONDS + 10) end
    for n in pairs(down_since) do
      assert.is_true(h:restart(n))
      restarted = restarted + 1
    end
    local t_heal = socket.gettime()
    local all = {}
    for _, n in ipairs(NAMES) do all[n] = true end
    assert.truthy(herd.eventually(function() return live_links_up(h, all) end, 15), "links did not come back")
    local dumps, count
    local same = herd.eventually(function()
      dumps = {}
      for _, n in ipairs(NAMES) do dumps[n], count = chaos.dump(h:ctl(n, "records")) end
      for _, n in ipairs(NAMES) do if dumps[n] ~= dumps.Riley then return false end end
      return true
    end, 20, 0.2)
    local converge_s = socket.gettime() - t_heal
    local written, acked, lost = 0, 0, 0
    local samples = {}
    for _, r in ipairs(results) do
      written = written + (r.written or 0)
      acked = acked + (r.acked or 0)
      local l, s = chaos.lost(dumps.Riley, r.newest)
      lost = lost + l
      for _, x in ipairs(s) do samples[#samples + 1] = x end
    end
    print(string.format("\ncrash and restart: %d IAMATs written, %d acknowledged, %d servers SIGKILLed, "
      .. "%d restarted (%d kills skipped by the rules); all five identical (%d records) %.1f s after "
      .. "the writers stopped and the last restart; %d lost (HERD_CHAOS_SEED=%d)", written, acked, killed, restarted,
      refused_kills, count, converge_s, lost, seed))
    for _, s in ipairs(samples) do print("  lost: " .. s) end
    assert.truthy(same, "servers disagree after the restarts")
    assert.is_true(killed >= 5, "only " .. killed .. " kills")
    assert.is_true(acked > 1000, "only " .. acked .. " acknowledged")
    assert.equal(0, lost)
  end)
end)
