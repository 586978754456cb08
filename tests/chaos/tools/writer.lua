-- A client writing IAMATs to random servers of a herd, in its own process,
-- for the crash and network-fault tests:
--   lua5.4 writer.lua SERVERS SECONDS OUT_FILE SEED [CLIENTS]
-- SERVERS is "Name=host:port,Name=host:port,...". Each IAMAT goes to a
-- random server over a kept connection (redialled when the server is gone)
-- and names one of CLIENTS (default 150) clients "w<SEED>-<k>", with
-- timestamps that only grow. A reply "AT ..." that echoes the IAMAT counts
-- as acknowledged. Runs for SECONDS or until OUT_FILE.stop exists, then
-- writes to OUT_FILE "written= acked= failed=", one line
-- "acked <client> <timestamp>" per client (its newest acknowledged
-- timestamp) and "end".
local socket = require "socket"

local spec, seconds, out, seed, nclients = ...
seconds, seed, nclients = tonumber(seconds), tonumber(seed), tonumber(nclients or 150)
math.randomseed(seed)

local servers = {}
for name, host, port in spec:gmatch("(%w+)=([^:,]+):(%d+)") do
  servers[#servers + 1] = { name = name, host = host, port = tonumber(port), down_until = 0 }
end

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

local acked, written, nacked, failed = {}, 0, 0, 0
local base = 1700000000 + seed * 10000000
local seq = 0
local start = socket.gettime()
while socket.gettime() - start < seconds do
  if seq % 100 == 0 and exists(out .. ".stop") then break end
  local s = servers[math.random(#servers)]
  local now = socket.gettime()
  if not s.c and now >= s.down_until then
    local c = socket.tcp()
    c:settimeout(1)
    if c:connect(s.host, s.port) then
      s.c = c
    else
      c:close()
      s.down_until = now + 0.1
    end
  end
  if s.c then
    seq = seq + 1
    local client = ("w%d-%d"):format(seed, math.random(nclients))
    local t = ("%d.%09d"):format(base + seq, math.random(0, 999999999))
    local loc = ("%+.4f%+.4f"):format(math.random() * 170 - 85, math.random() * 350 - 175)
    local line = "IAMAT " .. client .. " " .. loc .. " " .. t
    written = written + 1
    local ok = s.c:send(line .. "\n")
    local reply = ok and s.c:receive("*l")
    if reply and reply:match("^AT " .. s.name .. " [+-]%d+%.%d+ (.*)$") == client .. " " .. loc .. " " .. t then
      nacked = nacked + 1
      acked[client] = t -- timestamps only grow
    else
      failed = failed + 1
      s.c:close()
      s.c = nil
      s.down_until = socket.gettime() + 0.05
    end
  else
    socket.sleep(0.005)
  end
end
for _, s in ipairs(servers) do if s.c then s.c:close() end end
local f = io.open(out .. ".tmp", "w")
f:write(("written=%d acked=%d failed=%d\n"):format(written, nacked, failed))
for client, t in pairs(acked) do f:write("acked ", client, " ", t, "\n") end
f:write("end\n")
f:close()
os.rename(out .. ".tmp", out)
