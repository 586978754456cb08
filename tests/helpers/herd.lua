-- helpers.herd: start a herd of real build/herd processes from any config
-- and talk to them, for busted specs (the project's and operators' own).
--
--   local herd = require "helpers.herd"
--   local h = herd.start({ servers = { A = { port = 24001 } } })
--   local c = h:client("A")
--   assert.equal("AT A ...", c:request("IAMAT ..."))
--   h:stop()            -- in a finally() or lazy_teardown: stops every PID
--
-- Servers listen on 127.0.0.1 only. Every wait is bounded.
local socket = require "socket"

local M = {}

M.bin = os.getenv("HERD_BIN") or "build/herd"
M.secret = "test-secret-not-for-production"

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end
M.sh = sh

-- Runs cmd with its stderr in its output; returns its exit code (0 on
-- success) and the output.
function M.command(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok and 0 or code, out
end

local function sleep(s) socket.sleep(s) end
M.sleep = sleep

local function write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end
M.write_file = write_file

local function read_file(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
M.read_file = read_file

-- Lua source for a plain value (tables of strings, numbers, booleans).
local function serialize(v, indent)
  indent = indent or ""
  local t = type(v)
  if t == "string" then return string.format("%q", v) end
  if t ~= "table" then return tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do
    local key = type(k) == "number" and ("[" .. k .. "]")
      or ("[" .. string.format("%q", k) .. "]")
    parts[#parts + 1] = indent .. "  " .. key .. " = " .. serialize(v[k], indent .. "  ")
  end
  return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
end
M.serialize = serialize

local function tmpdir()
  -- The run id lets tools/test.sh stop whatever a failed spec left behind.
  local run = os.getenv("HERD_TEST_RUN") or "manual"
  return (sh("mktemp -d /tmp/herd-test." .. run .. ".XXXXXX"):gsub("%s+$", ""))
end
M.tmpdir = tmpdir

-- The absolute path of file in the folder of the spec that calls this.
function M.beside(file)
  local dir = debug.getinfo(2, "S").source:match("^@(.*)/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then dir = require("lfs").currentdir() .. "/" .. dir end
  return dir .. "/" .. file
end

-- Waits until host:port accepts a connection; true or false after timeout.
function M.wait_port(port, timeout, host)
  local deadline = socket.gettime() + (timeout or 5)
  repeat
    local c = socket.tcp()
    c:settimeout(0.2)
    if c:connect(host or "127.0.0.1", port) then
      c:close()
      return true
    end
    c:close()
    sleep(0.02)
  until socket.gettime() > deadline
  return false
end

local function alive(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  return stat ~= nil and not stat:match("^%d+ %b() [ZX]")
end
M.alive = alive

-- A client connection.
local Client = {}
Client.__index = Client

function M.connect(port, timeout)
  local c = socket.tcp()
  c:settimeout(timeout or 5)
  local ok, err = c:connect("127.0.0.1", port)
  if not ok then return nil, err end
  return setmetatable({ sock = c }, Client)
end

function Client:send(text) return self.sock:send(text) end
function Client:line() return self.sock:receive("*l") end
function Client:request(line)
  self.sock:send(line .. "\n")
  return self.sock:receive("*l")
end
-- Reads a multi-line reply up to and including the blank line that ends it;
-- returns the reply text with its newlines.
function Client:until_blank()
  local lines = {}
  repeat
    local l, err = self.sock:receive("*l")
    if not l then return nil, err, table.concat(lines, "\n") end
    lines[#lines + 1] = l
  until l == ""
  return table.concat(lines, "\n") .. "\n"
end
function Client:shutdown() return self.sock:shutdown("send") end
function Client:all()
  local s, err, partial = self.sock:receive("*a")
  return s or partial, err
end
function Client:close() self.sock:close() end
-- Sends n one-line requests, line_of(i) each (with its "\n"), pipelined in
-- batches of 1000, reading each batch's replies before the next.
function Client:pipeline(n, line_of)
  local batch = {}
  for i = 1, n do
    batch[#batch + 1] = line_of(i)
    if #batch == 1000 or i == n then
      self:send(table.concat(batch))
      for _ = 1, #batch do self:line() end
      batch = {}
    end
  end
end

-- A running herd.
local Herd = {}
Herd.__index = Herd

local function copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return t
end
M.copy = copy

-- A TCP port on 127.0.0.1 that nothing listens on now (the kernel's pick).
function M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- The directory of the spec file that called into this module.
local function spec_dir()
  for level = 3, 20 do
    local info = debug.getinfo(level, "S")
    if not info then break end
    local src = info.source
    if src:sub(1, 1) == "@" and src:match("_spec%.lua$") then
      local dir = src:match("^@(.*)/[^/]*$") or "."
      if dir:sub(1, 1) ~= "/" then dir = require("lfs").currentdir() .. "/" .. dir end
      return dir
    end
  end
  return require("lfs").currentdir()
end

-- busted's finally() of the test running now, if start() was called
-- inside an it() (busted keeps it in the spec's environment, not _G).
local function current_finally()
  for level = 3, 40 do
    local info = debug.getinfo(level, "f")
    if not info then return nil end
    for i = 1, 255 do
      local name, v = debug.getupvalue(info.func, i)
      if not name then break end
      if name == "_ENV" and type(v) == "table" and type(v.finally) == "function" then return v.finally end
    end
  end
end

-- A script entry as the spec wrote it: built-in names stay; a path is
-- found beside the spec, else from the working directory (the config
-- itself is written elsewhere, so it gets an absolute path).
local function script_path(entry, dir)
  if type(entry) ~= "string" or entry:sub(1, 1) == "/" then return entry end
  if not entry:find("/", 1, true) and not entry:match("%.lua$") then return entry end
  local beside = dir .. "/" .. entry
  if read_file(beside) or not read_file(entry) then return beside end
  return require("lfs").currentdir() .. "/" .. entry
end

-- conf: a config table (servers, links, ... as in the config file), which
-- is copied, never changed; a server without a port gets a free one (and a
-- free peer port). Script paths are relative to the calling spec.
-- opts.only: names to start (default all); opts.env: extra environment;
-- opts.scripts: extra --script files; opts.wait: false to skip waiting.
-- Inside an it(), start registers its own cleanup (stop every server,
-- remove its folder); elsewhere (lazy_setup) call h:cleanup() or h:stop()
-- in the matching teardown. A server that does not start fails the spec
-- with its stderr, after the others are stopped.
function M.start(conf, opts)
  opts = opts or {}
  conf = copy(conf)
  local dir = spec_dir()
  local h = setmetatable({ dir = tmpdir(), procs = {}, opts = copy(opts) }, Herd)
  local fin = current_finally()
  if fin then fin(function() h:cleanup() end) end
  conf.log_dir = conf.log_dir or (h.dir .. "/logs")
  if conf.secret == nil and not conf.insecure and not conf.tls then conf.secret = M.secret end
  for _, srv in pairs(conf.servers or {}) do
    if not srv.port then
      srv.port = M.free_port()
      srv.peer_port = srv.peer_port or M.free_port()
    end
  end
  if type(conf.scripts) == "table" then
    for i, entry in ipairs(conf.scripts) do conf.scripts[i] = script_path(entry, dir) end
  end
  for i, entry in ipairs(h.opts.scripts or {}) do h.opts.scripts[i] = script_path(entry, dir) end
  -- HERD_TEST_STATE_SYNC (always, batch, off): a herd started without a
  -- state_dir of its own keeps one in its directory, so a suite runs with
  -- state on disk (make test-state).
  local sync = os.getenv("HERD_TEST_STATE_SYNC")
  if sync and sync ~= "" and conf.state_dir == nil then
    conf.state_dir = h.dir .. "/state"
    conf.state_sync = sync
  end
  -- HERD_TEST_DISSEMINATION (flood, tree): a herd whose config says no
  -- rule and that loads the built-in topology runs that one, so a suite
  -- runs under the tree rule (make test-tree).
  local rule = os.getenv("HERD_TEST_DISSEMINATION")
  local builtin = conf.scripts == nil
  for _, entry in ipairs(type(conf.scripts) == "table" and conf.scripts or {}) do
    builtin = builtin or entry == "topology"
  end
  if rule and rule ~= "" and conf.dissemination == nil and builtin then
    conf.dissemination = rule
  end
  h.conf = conf
  h.config = h.dir .. "/herd.lua"
  write_file(h.config, "return " .. serialize(conf) .. "\n")
  local names = opts.only
  if not names then
    names = {}
    for name in pairs(conf.servers) do names[#names + 1] = name end
    table.sort(names)
  end
  for _, name in ipairs(names) do h:start_one(name) end
  if opts.wait ~= false then
    for _, name in ipairs(names) do
      if not h:wait(name) then
        local err = h:stderr(name) or ""
        h:stop()
        error("server " .. name .. " did not start: " .. err, 2)
      end
    end
  end
  return h
end

function Herd:port(name) return self.conf.servers[name].port end
function Herd:peer_port(name)
  return self.conf.servers[name].peer_port or self.conf.servers[name].port + 1000
end

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.quote = quote

-- Starts one server in the background; its pid, exit status, stdout and
-- stderr are kept in the herd's directory.
function Herd:start_one(name, extra_env)
  local base = self.dir .. "/" .. name
  local env = {}
  for k, v in pairs(self.opts.env or {}) do env[#env + 1] = k .. "=" .. quote(v) end
  for k, v in pairs(extra_env or {}) do env[#env + 1] = k .. "=" .. quote(v) end
  local args = { quote(M.bin), "--config", quote(self.config) }
  for _, s in ipairs(self.opts.scripts or {}) do
    args[#args + 1] = "--script"
    args[#args + 1] = quote(s)
  end
  args[#args + 1] = quote(name)
  os.remove(base .. ".rc")
  local cmd = string.format(
    "(%s %s >%s 2>%s & echo $! >%s; wait $!; echo $? >%s) >/dev/null 2>&1 &",
    table.concat(env, " "), table.concat(args, " "),
    quote(base .. ".out"), quote(base .. ".err"), quote(base .. ".pid"),
    quote(base .. ".rc"))
  os.execute(cmd)
  local deadline = socket.gettime() + 5
  local pid
  repeat
    pid = tonumber(read_file(base .. ".pid") or "")
    if not pid then sleep(0.01) end
  until pid or socket.gettime() > deadline
  os.remove(base .. ".pid")
  self.procs[name] = pid
  return pid
end

-- Waits until the server this herd started listens: its port answers and
-- its own log says so (not some other process holding the port), or it
-- has exited. True or false.
function Herd:wait(name, timeout)
  local deadline = socket.gettime() + (timeout or 5)
  local pid = self.procs[name]
  local mark = name .. " listening on "
  repeat
    if pid and not alive(pid) then return false end
    local log = read_file(self.conf.log_dir .. "/" .. name .. ".log") or ""
    if log:find(mark, 1, true) and M.wait_port(self:port(name), 0.01) then return true end
    sleep(0.01)
  until socket.gettime() > deadline
  return false
end

function Herd:pid(name) return self.procs[name] end
function Herd:stderr(name) return read_file(self.dir .. "/" .. name .. ".err") end
-- The server's log file. A server hands INFO and data lines to its log's
-- writer in batches at most 2 ms behind (WARN and ERROR at once): this
-- waits a little longer first, so a test sees every line logged before it
-- asked.
function Herd:log(name)
  sleep(0.01)
  return read_file(self.conf.log_dir .. "/" .. name .. ".log") or ""
end

-- The exit status once the server has exited (waits up to timeout).
function Herd:exit_code(name, timeout)
  local deadline = socket.gettime() + (timeout or 5)
  repeat
    local rc = read_file(self.dir .. "/" .. name .. ".rc")
    if rc and rc:match("%d") then return tonumber(rc:match("%d+")) end
    sleep(0.02)
  until socket.gettime() > deadline
end

-- Sends sig (default TERM) and waits for the process to go.
function Herd:signal(name, sig, timeout)
  local pid = self.procs[name]
  if not pid then return true end
  os.execute("kill -" .. (sig or "TERM") .. " " .. pid .. " 2>/dev/null")
  local deadline = socket.gettime() + (timeout or 5)
  while alive(pid) and socket.gettime() < deadline do sleep(0.01) end
  local gone = not alive(pid)
  if gone then self.procs[name] = nil end
  return gone
end

function Herd:kill(name) return self:signal(name, "KILL") end

function Herd:restart(name, extra_env)
  self:start_one(name, extra_env)
  return self:wait(name)
end

-- Stops every server this herd started: TERM, then KILL if needed.
function Herd:stop()
  for name in pairs(self.procs) do
    if not self:signal(name, "TERM", 5) then self:signal(name, "KILL", 2) end
  end
end

-- Stops the servers and removes the herd's folder (config, logs, output);
-- HERD_KEEP_TEST_DIRS=1 keeps it for a post-mortem.
function Herd:cleanup()
  self:stop()
  if os.getenv("HERD_KEEP_TEST_DIRS") ~= "1" and self.dir:match("^/tmp/herd%-test%.") then
    os.execute("rm -rf " .. quote(self.dir))
  end
end

function Herd:client(name, timeout)
  return assert(M.connect(self:port(name), timeout))
end

-- One exchange on the server's admin socket at path.
local function ctl_once(path, command)
  local unix = require "socket.unix"
  local c = unix.stream and unix.stream() or unix()
  c:settimeout(5)
  local ok, err = c:connect(path)
  if not ok then
    c:close()
    return nil, err
  end
  c:send(command .. "\n")
  c:shutdown("send")
  local out, rerr = c:receive("*a")
  c:close()
  if not out then return nil, rerr end
  return (out:gsub("\n\n$", "\n"))
end

-- Sends one admin command over the server's Unix socket and returns the
-- answer without its closing blank line (see core/admin.h), or nil, err.
-- An exchange that fails (the socket not there yet, or a connection closed
-- with no answer, seen on loaded machines right after a restart) is tried
-- twice more, 50 ms apart; a server that is gone still fails all three.
function Herd:ctl(name, command)
  local path = self.conf.admin_socket or (self.conf.log_dir .. "/" .. name .. ".sock")
  local out, err
  for attempt = 1, 3 do
    out, err = ctl_once(path, command)
    if out then return out end
    if attempt < 3 then sleep(0.05) end
  end
  return nil, err
end

-- Waits (at most timeout seconds, default 30) until every link of each
-- server named is up, none down or cut (`herd ctl NAME links`). True or
-- false.
function Herd:links_up(names, timeout)
  return M.eventually(function()
    for _, n in ipairs(names) do
      local out = self:ctl(n, "links") or ""
      if out == "" or out:find(" down ") or out:find(" cut ") then return false end
    end
    return true
  end, timeout or 30, 0.1)
end

-- The stored AT line for client at a server, or nil.
-- nil, err when the admin socket did not answer.
function Herd:record(name, client)
  local out, err = self:ctl(name, "record " .. client)
  if not out then return nil, err or "no answer" end
  if out ~= "none\n" then return (out:gsub("\n$", "")) end
end

-- A server's counters as a table.
function Herd:stats(name)
  local t = {}
  for k, v in (self:ctl(name, "stats") or ""):gmatch("(%S+) (%d+)") do t[k] = tonumber(v) end
  return t
end

-- One-shot exchange the way the classic graders talk: write, half-close,
-- read everything.
function Herd:oneshot(name, text)
  local c = self:client(name)
  c:send(text)
  c:shutdown()
  local out = c:all()
  c:close()
  return out
end

-- Polls fn() until it returns a truthy value or timeout; returns the value.
function M.eventually(fn, timeout, step)
  local deadline = socket.gettime() + (timeout or 5)
  repeat
    local v = fn()
    if v then return v end
    sleep(step or 0.02)
  until socket.gettime() > deadline
  return fn()
end

-- A current timestamp "sec.nsec" as the classic clients write it.
function M.now()
  local t = socket.gettime()
  return string.format("%d.%09d", math.floor(t), math.floor((t % 1) * 1e9))
end

-- Runs build/herd with arguments, returns exit code, stdout, stderr.
function M.run(args, env)
  local dir = tmpdir()
  local e = {}
  for k, v in pairs(env or {}) do e[#e + 1] = k .. "=" .. quote(v) end
  local cmd = string.format("%s %s %s >%s/out 2>%s/err; echo $?", table.concat(e, " "),
    quote(M.bin), args, dir, dir)
  local rc = tonumber(sh(cmd):match("%d+"))
  local out, err = read_file(dir .. "/out"), read_file(dir .. "/err")
  os.execute("rm -rf " .. quote(dir))
  return rc, out, err
end

return M
