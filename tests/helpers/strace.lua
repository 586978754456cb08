-- strace attached to a running server, for the specs that check which
-- system calls it makes, in what order, and from which thread.
local herd = require "helpers.herd"
local socket = require "socket"

local M = {}

-- Fails the calling test when strace is missing: `make deps` installs it,
-- and a check that is skipped proves nothing.
function M.require()
  if not os.execute("command -v strace >/dev/null 2>&1") then
    error("strace is not installed (make deps installs it)", 2)
  end
end

-- Starts `strace <options> -o path -p pid` in the background and gives it
-- `settle` seconds (default 0.5) to attach. Returns strace's pid.
function M.attach(pid, path, options, settle)
  local p = io.popen(("strace %s -o %s -p %d >/dev/null 2>&1 & echo $!")
    :format(options, herd.quote(path), pid))
  local spid = tonumber(p:read("a"))
  p:close()
  herd.sleep(settle or 0.5)
  return spid
end

-- Stops strace (its output is complete once it has gone), waiting at most
-- 5 s. A nil pid is nothing to stop.
function M.detach(spid)
  if not spid then return end
  os.execute("kill -TERM " .. spid .. " 2>/dev/null")
  local deadline = socket.gettime() + 5
  while socket.gettime() < deadline and os.execute("kill -0 " .. spid .. " 2>/dev/null") do
    herd.sleep(0.02)
  end
end

return M
