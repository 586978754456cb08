-- records: the Lua face of core/records.c, the one owner of a client's
-- record, the AT line
--   AT <server> <[+-]S.NNNNNNNNN> <client> <location> <time>
-- Every other script asks this module (never the line's fields): iamat.lua
-- builds a reply with M.iamat, whatsat.lua finds the location with
-- M.location, a repeat is told by M.same_report. The store lives in the C
-- core (core.store): per client the newest record by client time, ties
-- broken by the greater line, so every server picks the same one. The
-- accept rule (check, store if newer, flood on) is core.accept_record.
--
-- The format is the protocol's and a script may replace it (M.use): a herd
-- running that script builds, checks, stores, floods, reconciles and
-- answers WHATSAT with its lines. Without one, the classic format is C
-- (herdtext) throughout, and a peer's record is checked and stored
-- without entering Lua.
local core = require "core"
local text = require "herdtext"

local get, accept_record = core.store.get, core.accept_record
local at_fields = text.at_fields

local M = {}

-- iamat(line, server, now_ns) -> client, sec, nsec, reply (the AT line and
-- its newline) for "IAMAT <client> <location> <time>", else nil, err.
M.iamat = text.iamat

-- The location field of an AT line (a stored record), or nil.
function M.location(at)
  local _, _, _, loc = at_fields(at)
  return loc
end

-- True when the stored record for client reports the same location and
-- time as the AT line at (with or without its newline), byte for byte,
-- whichever server took it. For a report whose timestamp is the stored
-- one (core.store.stamp): then it repeats the stored report.
function M.same_report(client, at)
  local stored = get(client)
  return stored ~= nil and text.same_report(stored, at)
end

-- The on_record hook: a record from a peer must be an AT line that reports
-- its client at its timestamp (herdtext.at); it is stored if newer and
-- flooded to every neighbour but the sender. This is core.accept_record
-- itself: as the hook it runs without entering Lua.
M.on_record = accept_record

-- The fields a format gives, each a function as above:
--   iamat(line, server, now_ns) -> client, sec, nsec, reply | nil, err
--   read(line) -> client, sec, nsec | nil, err: what a peer's line reports
--   location(line) -> the location field ("[+-]lat[+-]lon"), or nil
--   same(a, b) -> whether two lines are the same report (server and time
--     difference aside)
local FORMAT_FIELDS = { "iamat", "read", "location", "same" }

-- Replaces the record format with format (the fields above) for this Lua
-- state, and returns the hooks a script returns so that peers' records
-- are checked by format.read, not by the classic C check:
--
--   return require("records").use(my_format)
--
-- A peer's record is stored only when format.read reports the client and
-- timestamp the record came with (the store is keyed and ordered by them).
function M.use(format)
  for _, k in ipairs(FORMAT_FIELDS) do
    if type(format[k]) ~= "function" then
      error("records.use: format." .. k .. " must be a function", 2)
    end
  end
  local read, same = format.read, format.same
  M.iamat, M.location = format.iamat, format.location
  function M.same_report(client, at)
    local stored = get(client)
    return stored ~= nil and same(stored, at) == true
  end
  function M.check(line, client, sec, nsec)
    local c, s, n = read(line)
    if not c then return nil, s or "not a record" end
    if c ~= client then return nil, "client does not match" end
    if s ~= sec or n ~= nsec then return nil, "timestamp does not match" end
    return true
  end
  -- The record rule of core.accept_record with the format's check: the
  -- sixth argument says the line is checked already.
  function M.on_record(from, client, sec, nsec, line)
    local ok, err = M.check(line, client, sec, nsec)
    if not ok then
      core.warn(("record from %s dropped: %s"):format(from, err))
      return nil, err
    end
    return accept_record(from, client, sec, nsec, line, true)
  end
  return { on_record = M.on_record }
end

-- check(line, client, sec, nsec) -> true | nil, err: whether a peer's line
-- is a record of client at sec.nsec in the format in use.
M.check = text.at

return M
