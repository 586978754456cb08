-- protocol: the classic CS 131 client protocol. Dispatches each line on its
-- first field through the commands table (scripts/commands.lua) and answers
-- "? <line>" to anything it does not accept (unknown commands, bad
-- operands, and server-to-server messages such as AT sent by a client).
-- Blank lines get no reply.
local iamat = require "iamat"
local records = require "records"
-- Loaded now, not at the first WHATSAT, so a bad places setting (unknown
-- provider, missing key) fails start-up and --check with its reason.
local whatsat = require "whatsat"
local fields = require("herdtext").fields

local M = {}

-- The dispatch table (scripts/commands.lua), shared with scripts that add
-- verbs. Only the verb is split off here: each handler scans its own
-- operands (IAMAT's in one C call).
M.commands = require "commands"
M.commands.IAMAT = iamat.command
-- whatsat returns its reply text (invalid input included), or nil once it
-- has deferred the answer. A fifth field means "more than four".
M.commands.WHATSAT = function(conn, line)
  return whatsat.command(conn, { fields(line, 5) }, line) or false
end

function M.on_line(conn, line)
  local verb = fields(line, 1)
  if not verb then return nil end
  local handler = M.commands[verb]
  local reply = handler and handler(conn, line)
  if reply == false then return nil end
  return reply or ("? " .. line .. "\n")
end

return {
  on_line = M.on_line,
  on_record = records.on_record,
}
