-- helpers.real_core: the core's own record rule and store in a fake core,
-- so a unit spec of the scripts tests them and not a model of them.
-- core.accept_record, core.store and core.receive become those of
-- core/records.c and core/store.c (build/test/records_core.so, built from
-- tests/c/records_lua.c); the rest of the fake stays. Floods and log lines
-- of the real rule land where the fake keeps them (core.floods,
-- core.warnings), so specs read them as before.
--
--   local core = require("helpers.fake_core").install{ name = "Riley" }
--   require("helpers.real_core").attach(core)   -- before requiring scripts
local M = {}

local built

-- The module, built on first use (make -C tests/c, as places_core.so).
function M.load()
  if not built then
    local p = assert(io.popen("make -s -C tests/c 2>&1"))
    local out = p:read("a")
    assert(p:close(), "make -C tests/c failed:\n" .. out)
    built = true
  end
  if not package.cpath:find("build/test/?.so", 1, true) then
    package.cpath = "build/test/?.so;" .. package.cpath
  end
  return require "records_core"
end

-- Moves what the real rule flooded and logged since the last call into
-- the fake's lists.
local function collect(rc, core)
  for _, f in ipairs(rc.floods()) do core.floods[#core.floods + 1] = f end
  for _, l in ipairs(rc.log()) do core.warnings[#core.warnings + 1] = l end
end

-- Puts the real rule and an empty real store into core (a fake core).
function M.attach(core)
  local rc = M.load()
  rc.reset()
  local accept, receive = rc.accept_record, rc.receive
  core.real = rc
  core.records = nil -- the fake's store is gone: ask core.store
  core.store = rc.store
  function core.accept_record(...)
    local ok, err = accept(...)
    collect(rc, core)
    return ok, err
  end
  -- The hook is the one the test sets as core.on_record, as in the fake.
  function core.receive(...)
    rc.on_record(core.on_record)
    return (function(...)
      collect(rc, core)
      return ...
    end)(receive(...))
  end
  return core
end

return M
