-- helpers.fake_core: a stand-in for the C `core` module, so scripts can be
-- unit-tested without the server. It records what scripts do (replies,
-- floods, logs, HTTP requests, timers) and lets the test drive time and
-- callbacks.
--
--   local fake = require("helpers.fake_core").install{ name = "Riley" }
--   local protocol = require "protocol"     -- now sees the fake
--   fake.clock = 1621464828 * 10^9         -- core.now() in ns
local M = {}

-- Compares two records by the core's rule: timestamp, then line bytes.
local function newer(sec, nsec, line, old)
  if sec ~= old.sec then return sec > old.sec end
  if nsec ~= old.nsec then return nsec > old.nsec end
  return line > old.line
end

function M.new(opts)
  opts = opts or {}
  local core = {
    name = opts.name or "Test",
    config = opts.config or { servers = {}, links = {}, places = { provider = "local" } },
    clock = opts.clock or 0,
    sent = {}, answers = {}, floods = {}, logs = {}, warnings = {},
    http_calls = {}, timers = {}, records = {}, deferred = {},
    next_token = 1, config_keys = {},
  }
  core.in_line = false

  function core.now() return core.clock end
  function core.log(msg) core.logs[#core.logs + 1] = msg end
  function core.warn(msg) core.warnings[#core.warnings + 1] = msg end
  function core.config_key(path) core.config_keys[path] = true end
  function core.send(conn, text)
    core.sent[#core.sent + 1] = { conn = conn, text = text }
    return true
  end
  function core.close() return true end
  function core.addr() return "127.0.0.1:1" end
  function core.defer()
    local t = core.next_token
    core.next_token = t + 1
    core.deferred[#core.deferred + 1] = t
    return t
  end
  function core.answer(token, text)
    core.answers[token] = text
    return true
  end
  function core.flood(client, except)
    core.floods[#core.floods + 1] = { client = client, except = except }
    return 0
  end
  -- The record rule of core/records.c on the fake store; the same cases
  -- run against both in tests/integration/fake_core_conformance_spec.lua.
  -- A peer's record is checked (unless checked says a script's format
  -- did), this server's own (from nil) is not; it is stored if newer, then
  -- flooded to all but the sender, unless it came by reconciliation.
  local syncing -- the tally of the pull core.receive hands up, or nil
  function core.accept_record(from, client, sec, nsec, line, checked)
    if from and not checked then
      local ok, err = require("herdtext").at(line, client, sec, nsec)
      if not ok then
        core.warn("record from " .. from .. " dropped: " .. err)
        return nil, err
      end
    end
    local stored, err = core.store.put(client, sec, nsec, line)
    if stored == nil then
      core.warn(("record for %s%s refused: %s"):format(client:sub(1, 64),
        from and " from " .. from or "", err))
      return nil, err
    end
    if stored and syncing then
      syncing.stored = syncing.stored + 1 -- the pull hints instead
    elseif stored then
      core.flood(client, from)
    end
    return stored
  end
  -- A neighbour's record as the core hands it up: one no newer than the
  -- stored record is dropped before any Lua runs; the others go to the
  -- on_record hook (core.on_record if the test sets one, else the
  -- server's default, accept_record). sync: it came by a reconciliation
  -- pull, which is not flooded; returns the pull's tally then (stored,
  -- refused: the fake has no store limit, so refused is 0).
  function core.receive(from, client, sec, nsec, line, sync)
    local old = core.records[client]
    local fresh = not old or newer(sec, nsec, line, old)
    local tally = sync and { stored = 0 } or nil
    if fresh then
      syncing = tally
      local ok, err = pcall(core.on_record or core.accept_record, from, client, sec, nsec, line)
      syncing = nil
      if not ok then core.warn("on_record: " .. tostring(err)) end
    end
    if tally then return tally.stored, 0 end
  end
  function core.links() return {} end
  function core.stats() return {} end

  core.store = {}
  -- Bounds of core/store.h (STORE_MAX_CLIENT, STORE_MAX_LINE).
  local MAX_CLIENT, MAX_LINE = 1024, 8192
  function core.store.put(client, sec, nsec, line)
    line = line:gsub("\n$", "") -- as the core: a final newline is not kept
    if #client == 0 or #client > MAX_CLIENT or #line == 0 or #line > MAX_LINE then
      return nil, "record too long or empty"
    end
    local old = core.records[client]
    if old and not newer(sec, nsec, line, old) then return false end
    core.records[client] = { sec = sec, nsec = nsec, line = line }
    return true
  end
  function core.store.get(client)
    local r = core.records[client]
    if r then return r.line, r.sec, r.nsec end
  end
  function core.store.stamp(client)
    local r = core.records[client]
    if r then return r.sec, r.nsec end
  end
  function core.store.count()
    local n = 0
    for _ in pairs(core.records) do n = n + 1 end
    return n
  end

  -- Timers fire only when the test calls core.fire_timers([premature]).
  local next_timer = 1
  local function add_timer(ms, fn, every)
    local id = next_timer
    next_timer = id + 1
    core.timers[id] = { ms = ms, fn = fn, every = every }
    return id
  end
  function core.after(ms, fn) return add_timer(ms, fn, false) end
  function core.every(ms, fn) return add_timer(ms, fn, true) end
  function core.cancel(id)
    local had = core.timers[id] ~= nil
    core.timers[id] = nil
    return had
  end
  -- premature: as after a reload, every timer runs once more and is gone.
  function core.fire_timers(premature)
    local due = {}
    for id, t in pairs(core.timers) do due[#due + 1] = id end
    table.sort(due)
    for _, id in ipairs(due) do
      local t = core.timers[id]
      if t then
        if not t.every or premature then core.timers[id] = nil end
        t.fn(premature == true)
      end
    end
  end

  -- HTTP requests wait until the test answers them:
  --   core.http_calls[1].cb({ status = 200, body = "..." })
  function core.http(req, cb)
    local id = #core.http_calls + 1
    core.http_calls[id] = { req = req, cb = cb, id = id }
    return id
  end
  function core.http_cancel(id)
    if core.http_calls[id] then core.http_calls[id].cancelled = true end
    return true
  end
  return core
end

-- Installs a fresh fake as require("core") and forgets the project's
-- modules, so each spec loads them against it.
function M.install(opts)
  local core = M.new(opts)
  package.loaded.core = core
  for name in pairs(package.loaded) do
    if name ~= "core" and not name:match("^helpers%.") and not name:match("^busted")
        and not name:match("^luassert") and not name:match("^say")
        and package.searchpath(name, "scripts/?.lua;scripts/?/init.lua") then
      package.loaded[name] = nil
    end
  end
  return core
end

return M
