-- places.json: the JSON writer for places answers.
--
-- Debian's lua-cjson 2.1.0 cannot tell an empty array from an empty object
-- (it writes both as {}) and escapes every "/" as "\/". Clients of the
-- legacy Nearby Search expect `"results": []`, so answers are written
-- here: an empty table is an array ([]) unless its key names an object of
-- the legacy shape (geometry, opening_hours, ...) or it carries
-- json.object_mt. The top level comes in Google's key order.
--
-- Speed matters (a WHATSAT storm encodes hundreds of answers), so the
-- writing itself is cjson's, in C: empty arrays are first swapped for a
-- marker string (copying only the tables on the way to them, so shared
-- answers are never changed), then the marker becomes [] and "\/" becomes
-- "/" in the text. That is exact: cjson escapes every "/", so "\/" in its
-- output is always an escaped slash. Should cjson refuse a value (a
-- function, a sparse array), a plain Lua writer takes over.
local cjson = require "cjson"

local M = {}

M.object_mt = { __name = "json.object" }
M.array_mt = { __name = "json.array" }

-- Keys whose value is an object in the legacy Nearby Search shape (and in
-- the places API (New) shape), so that {} stays {} when empty.
local OBJECT_KEYS = {
  geometry = true, location = true, viewport = true, northeast = true,
  southwest = true, opening_hours = true, plus_code = true,
  displayName = true, low = true, high = true, center = true, circle = true,
  locationRestriction = true, tags = true, error = true,
}

-- Google's order for the top level of a Nearby Search answer.
M.TOP_ORDER = { "html_attributions", "next_page_token", "results", "status",
  "error_message", "info_messages" }

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function escape_char(c)
  return ESC[c] or string.format("\\u%04x", c:byte())
end

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', escape_char) .. '"'
end

local function encode_number(n)
  if math.type(n) == "integer" then return string.format("%d", n) end
  if n ~= n or n == math.huge or n == -math.huge then return "null" end
  if n == math.floor(n) and math.abs(n) < 1e15 then
    return string.format("%d", math.tointeger(n))
  end
  return string.format("%.14g", n)
end

local encode_value

-- The length of t if it is a non-empty sequence 1..n with nothing else.
local function array_length(t)
  local n = #t
  if n == 0 then return nil end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  if count == n then return n end
  return nil
end

local function key_string(k)
  if type(k) == "string" then return k end
  if type(k) == "number" then return encode_number(k) end
  return nil -- other key types are skipped
end

local function encode_table(t, key, depth, out, order)
  if depth > 64 then error("places.json: nesting too deep", 0) end
  local mt = getmetatable(t)
  local n = array_length(t)
  if next(t) == nil then
    if mt == M.object_mt or (mt ~= M.array_mt and OBJECT_KEYS[key]) then
      out[#out + 1] = "{}"
    else
      out[#out + 1] = "[]"
    end
    return
  end
  if n and mt ~= M.object_mt then
    out[#out + 1] = "["
    for i = 1, n do
      if i > 1 then out[#out + 1] = "," end
      encode_value(t[i], nil, depth + 1, out)
    end
    out[#out + 1] = "]"
    return
  end
  -- An object: keys in the given order first, the rest sorted.
  local keys, seen = {}, {}
  for _, k in ipairs(order or {}) do
    if t[k] ~= nil then
      keys[#keys + 1] = k
      seen[k] = true
    end
  end
  local rest = {}
  for k in pairs(t) do
    local ks = key_string(k)
    if ks and not seen[k] then rest[#rest + 1] = k end
  end
  table.sort(rest, function(a, b) return key_string(a) < key_string(b) end)
  for _, k in ipairs(rest) do keys[#keys + 1] = k end
  out[#out + 1] = "{"
  for i, k in ipairs(keys) do
    if i > 1 then out[#out + 1] = "," end
    local ks = key_string(k)
    out[#out + 1] = encode_string(ks)
    out[#out + 1] = ":"
    encode_value(t[k], ks, depth + 1, out)
  end
  out[#out + 1] = "}"
end

encode_value = function(v, key, depth, out, order)
  local tv = type(v)
  if tv == "string" then
    out[#out + 1] = encode_string(v)
  elseif tv == "number" then
    out[#out + 1] = encode_number(v)
  elseif tv == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif tv == "table" then
    encode_table(v, key, depth, out, order)
  else
    -- nil, cjson.null and anything that has no JSON form
    out[#out + 1] = "null"
  end
end

-- The slow, exact Lua writer.
local function encode_lua(v, order)
  local out = {}
  encode_value(v, nil, 0, out, order)
  return table.concat(out)
end
M.encode_lua = encode_lua

local MARK = "\0herd:empty-array\0"
local MARK_JSON = '"\\u0000herd:empty-array\\u0000"' -- MARK as cjson writes it

-- s with every from replaced by to, plain text (no patterns): several
-- times faster than gsub on answers full of URLs.
local function replace_plain(s, from, to)
  local i = s:find(from, 1, true)
  if not i then return s end
  local out, n, pos, len = {}, 0, 1, #from
  while i do
    out[n + 1] = s:sub(pos, i - 1)
    out[n + 2] = to
    n = n + 2
    pos = i + len
    i = s:find(from, pos, true)
  end
  out[n + 1] = s:sub(pos)
  return table.concat(out)
end
M.replace_plain = replace_plain

-- v with every empty array replaced by MARK; tables are copied only on
-- the path to a replacement.
local function mark_empty(v, key, depth)
  if depth > 64 then error("places.json: nesting too deep", 0) end
  if next(v) == nil then
    local mt = getmetatable(v)
    if mt == M.object_mt or (mt ~= M.array_mt and OBJECT_KEYS[key]) then
      return v
    end
    return MARK
  end
  local copy
  for k, x in pairs(v) do
    if type(x) == "table" then
      local y = mark_empty(x, type(k) == "string" and k or nil, depth + 1)
      if y ~= x then
        if not copy then
          copy = {}
          for k2, x2 in pairs(v) do copy[k2] = x2 end
        end
        copy[k] = y
      end
    end
  end
  return copy or v
end

local function encode_fast(v, key)
  if type(v) == "table" then v = mark_empty(v, key, 0) end
  if v == MARK then return "[]" end
  local ok, text = pcall(cjson.encode, v)
  if not ok then return nil end
  return replace_plain(replace_plain(text, "\\/", "/"), MARK_JSON, "[]")
end

-- Encodes v; order (optional) lists the top-level keys that come first,
-- the other top-level keys follow sorted.
function M.encode(v, order)
  if type(v) ~= "table" or not order or next(v) == nil
      or getmetatable(v) == M.array_mt or array_length(v) then
    return encode_fast(v) or encode_lua(v, order)
  end
  local keys, seen = {}, {}
  for _, k in ipairs(order) do
    if v[k] ~= nil then
      keys[#keys + 1] = k
      seen[k] = true
    end
  end
  local rest = {}
  for k in pairs(v) do
    if type(k) ~= "string" then return encode_lua(v, order) end
    if not seen[k] then rest[#rest + 1] = k end
  end
  table.sort(rest)
  for _, k in ipairs(rest) do keys[#keys + 1] = k end
  local out = {}
  for i, k in ipairs(keys) do
    local text = encode_fast(v[k], k)
    if not text then return encode_lua(v, order) end
    out[i] = encode_string(k) .. ":" .. text
  end
  return "{" .. table.concat(out, ",") .. "}"
end

-- Decodes text; returns the value, or nil and an error message.
function M.decode(text)
  if type(text) ~= "string" then return nil, "not a string" end
  local ok, v = pcall(cjson.decode, text)
  if not ok then return nil, tostring(v) end
  return v
end

M.null = cjson.null

return M
