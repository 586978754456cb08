-- tools/run-herd.sh (make run) stops its servers however it is told to
-- stop (issue 13 item 15). Ports 13480-13489 (peers 14480-14489).
local herd = require "helpers.herd"

local repo = herd.sh("pwd"):gsub("%s+$", "")

-- Starts cmd in dir's herd (SIGINT not ignored, as from a terminal) in the
-- background; returns its pid once both servers listen.
local function start(dir, cmd)
  herd.write_file(dir .. "/run.lua", ("return { servers = { A = { port = 13480 }, " ..
    "B = { port = 13481 } }, links = { { 'A', 'B' } }, secret = 's', log_dir = %q }")
    :format(dir .. "/logs"))
  herd.write_file(dir .. "/Makefile", ("run:\n\t@tools/run-herd.sh %s/run.lua\n"):format(dir))
  os.execute(("cd %s && HERD_BIN=%s env --default-signal=INT %s >%s/out 2>&1 & echo $! >%s/pid")
    :format(herd.quote(repo), herd.quote(herd.bin), cmd, dir, dir))
  local pid = herd.eventually(function() return tonumber(herd.read_file(dir .. "/pid") or "") end)
  assert.truthy(herd.wait_port(13480, 5) and herd.wait_port(13481, 5))
  return pid
end

-- The herd server processes (and the script) of dir's config.
local function procs(dir)
  local out = {}
  for p in herd.sh("pgrep -f -- '" .. dir .. "/run.lua'"):gmatch("%d+") do
    local comm = herd.read_file("/proc/" .. p .. "/comm") or ""
    if comm:match("^herd") or comm:match("^run%-herd") then out[#out + 1] = tonumber(p) end
  end
  return out
end

local function all_gone(pids)
  return herd.eventually(function()
    for _, p in ipairs(pids) do if herd.alive(p) then return false end end
    return true
  end, 5)
end

local function run_and_interrupt(cmd)
  local dir = herd.tmpdir()
  local pid = start(dir, cmd(dir))
  local ps = procs(dir)
  finally(function()
    for _, p in ipairs(ps) do os.execute("kill " .. p .. " 2>/dev/null") end
    os.execute("kill " .. pid .. " 2>/dev/null")
  end)
  assert.equal(3, #ps) -- the script and two servers
  os.execute("kill -INT " .. pid)
  assert.truthy(all_gone(ps), "still running after SIGINT")
end

describe("tools/run-herd.sh #integration", function()
  it("stops the servers on SIGINT sent to the script alone", function()
    run_and_interrupt(function(dir) return "tools/run-herd.sh " .. dir .. "/run.lua" end)
  end)

  it("stops the servers on SIGINT sent to make run alone", function()
    run_and_interrupt(function(dir) return "make --no-print-directory -f " .. dir .. "/Makefile run" end)
  end)
end)
