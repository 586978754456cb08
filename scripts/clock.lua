-- clock: POSIX timestamps as the classic protocol writes them, with exact
-- integer arithmetic (never doubles): "1621464827.959498503" is kept as
-- seconds and nanoseconds. The scanning is herdtext's (C, on every IAMAT's
-- path); the format it accepts is written down here.
local text = require "herdtext"

local M = {}

-- Returns sec, nsec, or nil, err. Accepts digits with an optional fraction
-- of one to nine digits; at most 18 digits of seconds (leading zeros
-- aside), so every difference fits a 64-bit integer.
M.parse = text.timestamp

-- now_ns (integer nanoseconds) minus sec.nsec, as "+S.NNNNNNNNN" or
-- "-S.NNNNNNNNN": always signed, nine decimals, no exponent.
M.diff = text.timediff

return M
