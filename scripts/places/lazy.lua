-- places.lazy: a provider answer kept as checked JSON text until a script
-- looks inside it.
--
-- Decoding a 10 KB answer into Lua tables and encoding it back for the
-- reply cost far more than the rest of a WHATSAT, and most answers are
-- never looked at: they are only cut to the client's bound. So a provider
-- whose answer is valid JSON in the legacy shape returns a lazy result:
--
--   local r = lazy.new(compact, status, parts)  -- from herdtext.json_cut
--                                               -- (google) or
--                                               -- core.places_json (local)
--   r.status                  -- a real field, read at no cost
--   lazy.cut(r, bound)        -- the reply JSON, cut in C (nil: use tables)
--
-- Anything else (reading another key, assigning one, pairs, #) first
-- decodes the whole answer into the table itself and removes the
-- metatable, so from then on it is an ordinary result table and scripts
-- that read or replace fields (examples/places-filter) work unchanged.
-- Lua 5.4 honours __pairs, but rawget, rawlen and next on an untouched
-- lazy result see only `status`. A script that changes `status` (a plain
-- field, no metamethod sees it) or rawsets a key gets the table path too:
-- lazy.cut checks the table still holds only the original status.
local herdtext = require "herdtext"
local json = require "places.json"
local common = require "places.common"

local M = {}

local index, newindex, lazy_pairs, len

-- Decodes t's text into t itself. Keeps t.status as it is now: a script
-- may have set it (or cleared it) before touching anything else.
function M.materialise(t)
  local mt = getmetatable(t)
  if type(mt) ~= "table" or mt.__index ~= index then return t end
  setmetatable(t, nil)
  local full, err = json.decode(mt.text)
  if type(full) ~= "table" then
    -- Cannot happen for text json_cut accepted; answer in the error shape.
    full = common.error_result("UNKNOWN_ERROR",
      "places: a checked answer did not decode: " .. tostring(err))
    rawset(t, "status", full.status)
  end
  if type(full.html_attributions) ~= "table" then full.html_attributions = {} end
  if type(full.results) ~= "table" then full.results = {} end
  for k, v in pairs(full) do
    if k ~= "status" then rawset(t, k, v) end
  end
  return t
end
local materialise = M.materialise

index = function(t, k)
  materialise(t)
  return rawget(t, k)
end
newindex = function(t, k, v)
  materialise(t)
  rawset(t, k, v)
end
lazy_pairs = function(t)
  materialise(t)
  return next, t, nil
end
len = function(t)
  materialise(t)
  return rawlen(t)
end

-- A lazy result for compact, the text json_cut returned (without a bound)
-- for an answer whose top-level status is the string status, or that
-- core.places_json wrote; parts is what either returned last, if
-- anything: where results' elements end.
function M.new(compact, status, parts)
  return setmetatable({ status = status }, {
    __index = index, __newindex = newindex, __pairs = lazy_pairs, __len = len,
    __name = "places.lazy", text = compact, status = status, parts = parts,
  })
end

-- Whether t is a lazy result nobody has looked inside yet.
function M.untouched(t)
  local mt = getmetatable(t)
  if type(mt) ~= "table" or mt.__index ~= index then return false end
  local k = next(t)
  return k == "status" and next(t, k) == nil and rawget(t, "status") == mt.status
end

-- The answer as one JSON line with results cut to bound, when t is an
-- untouched lazy result; else nil (encode the table instead).
function M.cut(t, bound)
  if not M.untouched(t) then return nil end
  local mt = getmetatable(t)
  local text, parts = mt.text, mt.parts
  if not parts then return (herdtext.json_cut(text, bound)) end
  -- parts = { "[", end of element 1, ..., end of element n, "]" }: the
  -- text up to element bound's end, then from the "]" on, no rescan.
  local n = #parts - 2
  if bound >= n then return text end
  return text:sub(1, parts[bound + 1]) .. text:sub(parts[n + 2])
end

return M
