-- iamat: the IAMAT command, answered with the record it makes (an AT line,
-- whose layout is records.lua's). The reply echoes the operands; an IAMAT
-- older than the stored record is answered but changes nothing, and so is
-- one that repeats the stored report (same time and location), whichever
-- server took it first: resending a report never starts a flood.
--
-- The record's format is records.lua's (by default one C call that scans
-- the operands and builds the reply); it is looked up at each IAMAT, since
-- a script may replace it (records.use). What is stored, repeated and
-- flooded is decided here and in records.lua.
local core = require "core"
local records = require "records"

local M = {}

-- Every IAMAT goes through these: keep them in locals.
local now, name, stamp = core.now, core.name, core.store.stamp
local accept_record = core.accept_record

-- Takes the line; returns the reply, or nil when invalid.
function M.command(conn, line)
  -- reply: the AT line and its newline, which the store drops
  local client, sec, nsec, reply = records.iamat(line, name, now())
  if not client then return nil end
  -- A repeat is rare: the timestamps are compared first, here, because a
  -- Lua call costs a few percent of an IAMAT.
  local s, n = stamp(client)
  if s == sec and n == nsec and records.same_report(client, reply) then
    return reply
  end
  -- Stored if newer and flooded to every neighbour: the rule a peer's
  -- record follows, with no sender (this server wrote the line, so it is
  -- not checked again). A record the store cannot keep (a client id over
  -- 1024 bytes, a full store) is not acknowledged: "? ", not an AT line
  -- for a location no server will know.
  if accept_record(nil, client, sec, nsec, reply) == nil then return nil end
  return reply
end

return M
