-- protocol: the classic CS 131 client protocol. Splits each line into
-- fields, dispatches on the first, and answers "? <line>" to anything it
-- does not accept (unknown commands, bad operands, and server-to-server
-- messages such as AT sent by a client). Blank lines get no reply.
local records = require "records"

local M = {}

-- Handlers take (conn, fields, line) and return the reply, or nil for
-- invalid input. A handler that answers later calls core.defer() and
-- returns false.
M.commands = {
  IAMAT = function(conn, fields) return require("iamat").command(conn, fields) end,
  -- whatsat returns its reply text (invalid input included), or nil once
  -- it has deferred the answer.
  WHATSAT = function(conn, fields, line)
    return require("whatsat").command(conn, fields, line) or false
  end,
}

local function split(line)
  local fields = {}
  for field in line:gmatch("%S+") do fields[#fields + 1] = field end
  return fields
end

function M.on_line(conn, line)
  local fields = split(line)
  if #fields == 0 then return nil end
  local handler = M.commands[fields[1]]
  local reply = handler and handler(conn, fields, line)
  if reply == false then return nil end
  return reply or ("? " .. line .. "\n")
end

return {
  on_line = M.on_line,
  on_record = records.on_record,
}
