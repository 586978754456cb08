-- protocol: the classic CS 131 client protocol. Dispatches each line on its
-- first field and answers "? <line>" to anything it does not accept
-- (unknown commands, bad operands, and server-to-server messages such as AT
-- sent by a client). Blank lines get no reply.
local iamat = require "iamat"
local records = require "records"
-- Loaded now, not at the first WHATSAT, so a bad places setting (unknown
-- provider, missing key) fails start-up and --check with its reason.
local whatsat = require "whatsat"
local fields = require("herdtext").fields

local M = {}

-- Handlers take (conn, line, field1, ..., field5) -- a fifth field means
-- "more than four", which no classic command accepts -- and return the
-- reply, nil for invalid input, or false once they have deferred the
-- answer (core.defer).
M.commands = {
  IAMAT = iamat.command,
  -- whatsat returns its reply text (invalid input included), or nil once
  -- it has deferred the answer.
  WHATSAT = function(conn, line, ...)
    return whatsat.command(conn, { ... }, line) or false
  end,
}

function M.on_line(conn, line)
  local verb, a, b, c, d = fields(line)
  if not verb then return nil end
  local handler = M.commands[verb]
  local reply = handler and handler(conn, line, verb, a, b, c, d)
  if reply == false then return nil end
  return reply or ("? " .. line .. "\n")
end

return {
  on_line = M.on_line,
  on_record = records.on_record,
}
