-- whereis: a new client command, added without touching the built-in
-- scripts.
--
--   WHEREIS <client>   ->   the stored AT line for <client>, as WHATSAT's
--                           first line shows it, or "? <the line>" when no
--                           server of the herd has heard of <client>
--
-- Load it after the protocol, in the config (a path is relative to the
-- config file; a bare name is a built-in script):
--
--   scripts = { "protocol", "topology", "whereis.lua" },
--
-- or for one run, on the command line (a path relative to where you are):
--
--   build/herd --config herd.lua --script examples/whereis/whereis.lua Riley
--
-- on_line is chained: when several scripts define it, the later one is
-- called with the earlier one as an extra last argument, `next`. This one
-- answers WHEREIS itself and passes every other line on to the protocol,
-- unchanged, so IAMAT, WHATSAT and the "? " answers stay as they were.
-- Records live in the C core (core.store), so WHEREIS sees what any server
-- flooded here, and the data survives a script reload.
local core = require "core"
-- herdtext.fields splits on the protocol's white space, in C: this runs
-- before every line, IAMATs included, so it must stay cheap.
local fields = require("herdtext").fields

local M = {}

function M.on_line(conn, line, next)
  local verb, client, extra = fields(line)
  if verb ~= "WHEREIS" then
    if next then return next(conn, line) end
    return "? " .. line .. "\n" -- loaded without a protocol underneath
  end
  local at = client and not extra and core.store.get(client)
  if not at then return "? " .. line .. "\n" end
  return at .. "\n"
end

return { on_line = M.on_line }
