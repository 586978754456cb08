-- records: client locations as AT lines, how they are accepted from clients
-- and from peers, and flooded. The store itself lives in the C core
-- (core.store), which keeps per client the newest record by client time,
-- ties broken by the greater AT line, so every server picks the same one.
local core = require "core"
local location = require "location"
local text = require "herdtext"

local fields, scan_at = text.fields, text.at
-- Every IAMAT goes through these: keep them in locals.
local stamp, get, put, flood = core.store.stamp, core.store.get,
  core.store.put, core.flood
local in_range = location.in_range

local M = {}

-- Checks an AT line as a peer sent it: the shape (scanned by herdtext.at,
-- in C: this runs for every new record from a peer), the ranges, and that
-- it agrees with the client and timestamp it came with. Returns true or
-- nil, err.
function M.valid(client, sec, nsec, line)
  local server, who, s, n, lat, lon = scan_at(line)
  if not server then return nil, who end
  if who ~= client then return nil, "client does not match" end
  if not in_range(lat, lon) then return nil, "bad location" end
  if s ~= sec or n ~= nsec then return nil, "timestamp does not match" end
  return true
end

-- True when the stored record for client is the report of the AT line at
-- (with or without its newline): the same timestamp and the same location
-- and time fields, byte for byte, whichever server took it.
function M.repeats(client, sec, nsec, at)
  local s, n = stamp(client)
  if s ~= sec or n ~= nsec then return false end
  local _, _, _, _, loc, time = fields(get(client))
  local _, _, _, _, loc2, time2 = fields(at)
  return loc == loc2 and time == time2
end

-- Stores a record if it is newer and floods it to every neighbour but the
-- one it came from. Returns true when it was new, false when not newer, nil
-- and the reason when the store refuses it (too long, empty).
function M.accept(client, sec, nsec, line, from)
  local stored, err = put(client, sec, nsec, line)
  if stored == nil then
    core.warn("record for " .. client .. " refused: " .. err)
    return nil, err
  end
  if stored then flood(client, from) end
  return stored
end

-- The on_record hook: a record from the peer `from`.
function M.on_record(from, client, sec, nsec, line)
  local ok, err = M.valid(client, sec, nsec, line)
  if not ok then
    core.warn("record from " .. from .. " dropped: " .. err)
    return
  end
  M.accept(client, sec, nsec, line, from)
end

return M
