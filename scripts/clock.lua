-- clock: POSIX timestamps as the classic protocol writes them, with exact
-- integer arithmetic (never doubles): "1621464827.959498503" is kept as
-- seconds and nanoseconds.
local M = {}

local NS = 1000000000
local MAX_SECONDS_DIGITS = 18 -- keeps every difference inside a 64-bit int

-- Returns sec, nsec, or nil, err for anything but digits with an optional
-- fraction of one to nine digits.
function M.parse(text)
  local int, frac = text:match("^(%d+)%.(%d+)$")
  if not int then
    int, frac = text:match("^(%d+)$"), ""
  end
  if not int then return nil, "time must be seconds with up to nine decimals" end
  if #frac > 9 then return nil, "more than nine decimals" end
  local digits = int:gsub("^0+", "")
  if #digits > MAX_SECONDS_DIGITS then return nil, "time out of range" end
  local sec = math.tointeger(tonumber(digits ~= "" and digits or "0"))
  local nsec = math.tointeger(tonumber(frac .. string.rep("0", 9 - #frac)))
  return sec, nsec
end

-- now_ns (integer nanoseconds) minus sec.nsec, as "+S.NNNNNNNNN" or
-- "-S.NNNNNNNNN": always signed, nine decimals, no exponent.
function M.diff(now_ns, sec, nsec)
  local dsec = now_ns // NS - sec
  local dnsec = now_ns % NS - nsec
  if dsec > 0 and dnsec < 0 then
    dsec, dnsec = dsec - 1, dnsec + NS
  elseif dsec < 0 and dnsec > 0 then
    dsec, dnsec = dsec + 1, dnsec - NS
  end
  local sign = (dsec < 0 or dnsec < 0) and "-" or "+"
  if dsec < 0 then dsec = -dsec end
  if dnsec < 0 then dnsec = -dnsec end
  return string.format("%s%d.%09d", sign, dsec, dnsec)
end

return M
