-- records: client locations as AT lines, how they are accepted from clients
-- and from peers, and flooded. The store itself lives in the C core
-- (core.store), which keeps per client the newest record by client time,
-- ties broken by the greater AT line, so every server picks the same one.
local core = require "core"

local fields = require("herdtext").fields
-- Every new record goes through these: keep them in locals.
local get, put, flood = core.store.get, core.store.put, core.flood

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

-- A client's report: stored if newer and then flooded to every neighbour.
-- Returns true when it was new, false when not newer, nil and the reason
-- when the store refuses it (too long, empty).
function M.accept(client, sec, nsec, line)
  local stored, err = put(client, sec, nsec, line)
  if stored == nil then
    core.warn("record for " .. client .. " refused: " .. err)
    return nil, err
  end
  if stored then flood(client) end
  return stored
end

-- The on_record hook: a record from a peer must be an AT line that reports
-- its client at its timestamp (herdtext.at's rules); it is stored if newer
-- and flooded to every neighbour but the sender. This is the core's built-in
-- rule, core.accept_record, in C: a server runs it for every new record it
-- hears, about four times per IAMAT in the example herd, and as the hook
-- itself it runs without entering Lua. A script that wants another rule
-- chains on_record (docs/core-api.md); next is this function.
M.on_record = core.accept_record

return M
