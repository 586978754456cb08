-- Writes the seed corpora of the fuzz targets (committed; rerun after a
-- wire-format change):  lua5.4 tests/fuzz/seeds.lua
-- Each seed starts with the target's control byte(s); see fuzz_lines.c
-- and fuzz_peer.c.
local dir = (arg[0]:match("^(.*)/") or ".") .. "/corpus"

local function write(sub, name, bytes)
  os.execute("mkdir -p " .. dir .. "/" .. sub)
  local f = assert(io.open(dir .. "/" .. sub .. "/" .. name, "wb"))
  f:write(bytes)
  f:close()
end

-- Lines: byte 0 = max_line (16 + 4 * (b & 63)), byte 1 = read size.
local L = string.char
write("lines", "iamat", L(63, 0x8f) ..
  "IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503\n")
write("lines", "iamat_whatsat", L(63, 0x8f) ..
  "IAMAT kiwi +34.068930-118.445127 1621464827.959498503\nWHATSAT kiwi 10 5\nWHATSAT kiwi 50 20\n")
write("lines", "crlf_tabs", L(40, 3) ..
  "  IAMAT\tx\t+1.5-2.5\t12.000000001 \r\n\r\n\v\fWHATSAT x 0.5 0\r\n")
write("lines", "no_newline", L(63, 0x81) .. "IAMAT last +1+1 1")
write("lines", "long", L(0, 0x84) .. string.rep("IAMAT", 40) .. "\nIAMAT y +0+0 0\n")
write("lines", "invalid", L(63, 0x9f) ..
  "AT A +0.1 x +1+1 1\nIAMAT a +91+0 1\nIAMAT a +1+181 1\nIAMAT a +1+1 1e9\nWHATSAT a 51 1\n" ..
  "WHATSAT a 10 21\nWHATSAT nobody 10 5\nFOO\n\n   \n")
write("lines", "binary", L(10, 7) .. "\0\1\2\n\255\254IAMAT \0 +1+1 1\n\128\n")
write("lines", "stamps", L(63, 0x8f) ..
  "IAMAT t +1+1 999999999999999999.999999999\nIAMAT t +1+1 0.1\nIAMAT t -1-1 1000000000000000000\n" ..
  "IAMAT t +00.000-000.000 00001.5\nIAMAT t +90-180 .5\n")

do -- more replies than out_pause (1024 in the target) from one read
  local t = {}
  for i = 1, 40 do t[i] = ("IAMAT p%d +1+1 %d.5\n"):format(i % 7, 100 + i) end
  write("lines", "pipelined", L(63, 0x9f) .. table.concat(t) .. "WHATSAT p1 50 20\n")
end

-- Peer: byte 0 bit 0 = authenticated, bits 1-7 = read size.
local function frame(t, payload) return string.pack(">I4BB", #payload + 2, 2, t) .. payload end
local KID = "\0\0\0\0" -- the tree key's id (an insecure herd's key is zeros; any id parses)
local function record(client, sec, nsec, line)
  return frame(3, string.pack(">i8i4s2s2", sec, nsec, client, line))
end
local rec = record("kiwi", 1621464827, 959498503,
  "AT P +0.263873386 kiwi +34.068930-118.445127 1621464827.959498503")
write("peer", "records", L(1 + 2 * 127) .. rec .. record("b", 5, 0, "AT P +1.000000000 b +1+1 5.0")
  .. frame(6, "") .. frame(7, ""))
-- Reconciliation: requests (SUMS_REQ 9, LEAF 5), answers (SUMS 4, SYNCREC 11,
-- DONE 10) and a HINT (12).
write("peer", "sums", L(1 + 2 * 127) .. rec ..
  frame(9, KID .. string.pack(">BI4", 0, 0)) .. frame(9, KID .. string.pack(">BI4", 2, 1000)) ..
  frame(4, KID .. string.pack(">BI4", 0, 0) .. string.rep("\0", 8 * 32)) ..
  frame(4, KID .. string.pack(">BI4", 2, 1000) .. string.rep("\1", 8 * 32)) .. frame(12, ""))
write("peer", "leaf", L(1 + 2 * 127) .. rec ..
  frame(5, KID .. string.pack(">I4BI2", 7, 0, 2) .. string.pack(">I8I8", 3, 9)) ..
  frame(5, KID .. string.pack(">I4BI2", 0, 0, 0)) .. frame(10, KID .. string.pack(">I4", 7)) ..
  frame(11, string.pack(">i8i4s2s2", 5, 0, "b", "AT P +1.000000000 b +1+1 5.0")))
write("peer", "split", L(1 + 2 * 3) .. rec .. rec)
write("peer", "hello", L(0 + 2 * 127) .. frame(1, "\1P" .. string.rep("n", 32)) ..
  frame(2, string.rep("m", 32)))
write("peer", "bad", L(1 + 2 * 127) .. string.pack(">I4", 1) .. frame(9, "x"))
