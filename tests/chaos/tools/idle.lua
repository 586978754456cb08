-- Holds many idle client connections open, in its own process (LuaSocket
-- cannot wait on descriptors past FD_SETSIZE, so nothing here ever waits:
-- every socket has timeout 0).
--   lua5.4 idle.lua HOST PORT COUNT FROM_ADDR OUT_FILE SECONDS [PARTIAL]
-- Opens COUNT connections from FROM_ADDR; with PARTIAL, each sends that
-- text (an unfinished line) once. Every half second writes to OUT_FILE
-- "opened= open= closed=": how many the server has closed so far. Ends
-- after SECONDS or when OUT_FILE.stop exists, writing "end".
local socket = require "socket"

local host, port, count, from, out, seconds, partial = ...
port, count, seconds = tonumber(port), tonumber(count), tonumber(seconds)

local socks, closed, sent = {}, {}, {}
local opened, failed = 0, 0
for i = 1, count do
  local c = socket.tcp()
  c:settimeout(0)
  if from and from ~= "-" then c:bind(from, 0) end
  local ok, err = c:connect(host, port)
  if ok or err == "timeout" or err == "Operation already in progress" then
    socks[#socks + 1] = c
    opened = opened + 1
  else
    failed = failed + 1
    c:close()
  end
  if i % 200 == 0 then socket.sleep(0.01) end -- let the server accept
end

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

local nclosed = 0
local function poll()
  for i, c in ipairs(socks) do
    if not closed[i] then
      if partial and partial ~= "" and not sent[i] then
        sent[i] = c:send(partial) ~= nil -- once, when the connection is up
      end
      local _, err = c:receive(1)
      if err == "closed" or (err and err:find("reset")) then
        closed[i] = true
        nclosed = nclosed + 1
        c:close()
      end
    end
  end
  local f = io.open(out .. ".tmp", "w")
  f:write(string.format("opened=%d failed=%d open=%d closed=%d\n", opened, failed,
    opened - nclosed, nclosed))
  f:close()
  os.rename(out .. ".tmp", out)
end

local start = socket.gettime()
while socket.gettime() - start < seconds and not exists(out .. ".stop") do
  poll()
  socket.sleep(0.25)
end
poll()
local f = io.open(out, "a")
f:write("end\n")
f:close()
for _, c in ipairs(socks) do c:close() end
