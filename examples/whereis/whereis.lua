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
-- It adds its verb to the protocol's dispatch table (scripts/commands.lua)
-- instead of wrapping on_line, so the other lines, IAMATs included, do not
-- pass through it: IAMAT, WHATSAT and the "? " answers stay as they were,
-- at no cost. (A chained on_line is for what must see every line; see
-- docs/core-api.md.) Records live in the C core (core.store), so WHEREIS
-- sees what any server flooded here, and the data survives a script
-- reload.
local core = require "core"
local commands = require "commands"
local fields = require("herdtext").fields

local M = {}

-- The stored AT line, or nil (the client gets "? <line>").
function M.command(conn, line)
  local _, client, extra = fields(line, 3)
  local at = client and not extra and core.store.get(client)
  if not at then return nil end
  return at .. "\n"
end

commands.WHEREIS = M.command

return {}
