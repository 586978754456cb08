-- records: client locations as AT lines, how they are accepted from clients
-- and from peers, and flooded. The store itself lives in the C core
-- (core.store), which keeps per client the newest record by client time,
-- ties broken by the greater AT line, so every server picks the same one;
-- the rule that stores and floods a record is the core's too
-- (core.accept_record).
local core = require "core"

local fields = require("herdtext").fields
local get, accept_record = core.store.get, core.accept_record

local M = {}

-- True when the stored record for client reports the same location and
-- time fields as the AT line at (with or without its newline), byte for
-- byte, whichever server took it. For a report whose timestamp is the
-- stored one (core.store.stamp): then it repeats the stored report.
function M.same_report(client, at)
  local _, _, _, _, loc, time = fields(get(client))
  local _, _, _, _, loc2, time2 = fields(at)
  return loc == loc2 and time == time2
end

-- The on_record hook: a record from a peer must be an AT line that reports
-- its client at its timestamp (herdtext.at's rules); it is stored if newer
-- and flooded to every neighbour but the sender. This is the core's built-in
-- rule, core.accept_record, in C: a server runs it for every new record it
-- hears, about four times per IAMAT in the example herd, and as the hook
-- itself it runs without entering Lua. A script that wants another rule
-- chains on_record (docs/core-api.md); next is this function.
M.on_record = accept_record

return M
