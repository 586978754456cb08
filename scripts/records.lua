-- records: client locations as AT lines, how they are accepted from clients
-- and from peers, and flooded. The store itself lives in the C core
-- (core.store), which keeps per client the newest record by client time,
-- ties broken by the greater AT line, so every server picks the same one.
local core = require "core"
local location = require "location"
local text = require "herdtext"

local fields, scan_at = text.fields, text.at
-- Every new record goes through these: keep them in locals.
local get, put, flood = core.store.get, core.store.put, core.flood
local in_range = location.in_range

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

-- Stores a record if it is newer and floods it to every neighbour but the
-- one it came from. Returns true when it was new, false when not newer, nil
-- and the reason when the store refuses it (too long, empty).
local function accept(client, sec, nsec, line, from)
  local stored, err = put(client, sec, nsec, line)
  if stored == nil then
    core.warn("record for " .. client .. " refused: " .. err)
    return nil, err
  end
  if stored then flood(client, from) end
  return stored
end
M.accept = accept

-- The on_record hook: a record from the peer `from`. The AT line must have
-- the right shape and agree with the client and timestamp it came with
-- (herdtext.at, in C: this runs for every new record from a peer), and its
-- location must be in range.
function M.on_record(from, client, sec, nsec, line)
  local lat, lon = scan_at(line, client, sec, nsec)
  local err = not lat and lon or not in_range(lat, lon) and "bad location"
  if err then
    core.warn("record from " .. from .. " dropped: " .. err)
    return
  end
  accept(client, sec, nsec, line, from)
end

return M
