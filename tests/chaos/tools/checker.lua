-- The well-behaved client of the chaos tests, in its own process so that it
-- runs while the test attacks the server:
--   lua5.4 checker.lua HOST PORT SERVER_NAME OUT_FILE SECONDS PREFIX
-- Sends IAMATs (and every fifth request a WHATSAT) on one connection and
-- checks every answer byte for byte: the AT line echoes the operands and
-- names SERVER_NAME; a WHATSAT answer starts with the AT line stored last
-- for that client, then one JSON line, then a blank line. Runs until
-- SECONDS pass or OUT_FILE.stop exists; keeps OUT_FILE up to date with
-- "ok= wrong= errors= max_ms= p99_ms=" and ends it with "end".
local socket = require "socket"

local host, port, name, out, seconds, prefix = ...
port, seconds = tonumber(port), tonumber(seconds or 600)
prefix = prefix or "chk"

local ok, wrong, errors = 0, 0, 0
local lat = {}
local samples = {}
local last_at = {}
local c

local function connect()
  if c then c:close() end
  c = socket.tcp()
  c:settimeout(3)
  if not c:connect(host, port) then
    c:close()
    c = nil
    return false
  end
  return true
end

local function bad(what)
  wrong = wrong + 1
  if #samples < 5 then samples[#samples + 1] = what:sub(1, 300):gsub("[%c]", ".") end
end

local function write_summary(final)
  local max, p99 = 0, 0
  for _, v in ipairs(lat) do if v > max then max = v end end
  if final then
    table.sort(lat)
    p99 = lat[math.max(1, math.ceil(#lat * 0.99))] or 0
  end
  local f = io.open(out .. ".tmp", "w")
  f:write(string.format("ok=%d wrong=%d errors=%d max_ms=%.1f p99_ms=%.1f\n", ok, wrong,
    errors, max, p99))
  for _, s in ipairs(samples) do f:write("wrong: ", s, "\n") end
  if final then f:write("end\n") end
  f:close()
  os.rename(out .. ".tmp", out)
end

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

local start = socket.gettime()
local last_write = start
local i = 0
while socket.gettime() - start < seconds and not exists(out .. ".stop") do
  if not c and not connect() then
    errors = errors + 1
    socket.sleep(0.1)
  else
    i = i + 1
    local client = prefix .. "-" .. (i % 20)
    local t0 = socket.gettime()
    if i % 5 == 0 and last_at[client] then
      c:send("WHATSAT " .. client .. " 10 2\n")
      local l1, err = c:receive("*l")
      local l2 = l1 and c:receive("*l")
      local l3 = l2 and c:receive("*l")
      if not l3 then
        errors = errors + 1
        connect()
      elseif l1 ~= last_at[client] or not l2:match("^{.*}$") or l3 ~= "" then
        bad("WHATSAT " .. client .. " -> " .. l1 .. " | " .. l2 .. " | " .. l3)
      else
        ok = ok + 1
      end
    else
      local loc = string.format("%+.6f%+.6f", 34 + (i % 100) / 1000, -118 - (i % 77) / 1000)
      local time = string.format("%d.%09d", 1700000000 + i, (i * 7919) % 1000000000)
      local line = "IAMAT " .. client .. " " .. loc .. " " .. time
      c:send(line .. "\n")
      local reply, err = c:receive("*l")
      if not reply then
        errors = errors + 1
        connect()
      else
        local want = " " .. client .. " " .. loc .. " " .. time
        local head = reply:match("^AT " .. name:gsub("%p", "%%%0") .. " [+-]%d+%.%d%d%d%d%d%d%d%d%d")
        if head and reply:sub(#head + 1) == want then
          ok = ok + 1
          last_at[client] = reply
        else
          bad(line .. " -> " .. reply)
        end
      end
    end
    lat[#lat + 1] = (socket.gettime() - t0) * 1000
    socket.sleep(0.002)
  end
  if socket.gettime() - last_write > 0.5 then
    write_summary(false)
    last_write = socket.gettime()
  end
end
write_summary(true)
