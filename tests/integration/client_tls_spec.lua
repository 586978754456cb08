-- The client tls_port (issue 12, "optional TLS for clients"): the client
-- protocol inside TLS, with the plain port's limits, order, logs and
-- stats, optional client certificates, and every way a TLS client can
-- misbehave. Certificates are made at run time with the openssl command
-- line; specs talk through tests/tools/tls_client.c (a relay from a plain
-- socket, or a one-shot check) and through openssl s_client itself.
-- Ports: clients 29000-29099, peers 30000-30099, TLS 31000-31099.
local herd = require "helpers.herd"
local chaos = require "helpers.chaos"
local socket = require "socket"

local quote = herd.quote
local TOOL = herd.bin:gsub("herd$", "tls_client")

-- QUIT closes the connection through core.close; SLOW answers 200 ms
-- later through core.defer/core.answer.
local SCRIPT = [[
local core = require "core"
return {
  on_line = function(conn, line, next)
    if line == "QUIT" then core.close(conn) return "bye\n" end
    if line == "SLOW" then
      local token = core.defer()
      core.after(200, function() core.answer(token, "slow done\n") end)
      return
    end
    return next(conn, line)
  end,
}
]]

local function count(text, pattern)
  local _, n = (text or ""):gsub(pattern, "")
  return n
end

describe("the client tls_port #integration", function()
  local dir, script, relays = nil, nil, {}

  -- Starts tls_client relaying one plain connection to the TLS port
  -- (args: more tls_client options: certificates, --tls12); returns the
  -- plain port to connect to.
  local function relay_port(port, args)
    local out = os.tmpname()
    local pid = herd.sh(quote(TOOL) .. " --connect " .. port .. " " .. (args or "")
      .. " --listen 0 >" .. out .. " 2>&1 & echo $!"):gsub("%s+", "")
    relays[#relays + 1] = pid
    local lport = herd.eventually(function()
      return tonumber((herd.read_file(out) or ""):match("ready (%d+)"))
    end, 3, 0.01)
    os.remove(out)
    assert(lport, "tls_client did not start")
    return lport
  end

  -- A helpers.herd client whose bytes travel inside TLS.
  local function tls_client(port, args)
    return assert(herd.connect(relay_port(port, args)))
  end

  -- tls_client --check: handshake, one line, its reply. true or false, output.
  local function tls_check(port, args)
    local out = herd.sh(quote(TOOL) .. " --connect " .. port .. " " .. (args or "") .. " --check 2>&1")
    return out:match("^ok") ~= nil, out
  end

  local function files(name, ca)
    return "--cert " .. quote(dir .. "/" .. name .. ".crt") .. " --key " .. quote(dir .. "/" .. name .. ".key")
      .. (ca and (" --ca " .. quote(dir .. "/" .. ca .. ".crt")) or "")
  end

  lazy_setup(function()
    dir = herd.tmpdir()
    chaos.make_certs(dir, { "Alpha", "Bravo", "Charlie", "Delta", "Echo", "client1" })
    chaos.make_certs(dir, { "rogue" }, "otherca")
    script = dir .. "/quit.lua"
    herd.write_file(script, SCRIPT)
  end)
  lazy_teardown(function()
    for _, pid in ipairs(relays) do os.execute("kill " .. pid .. " 2>/dev/null") end
    herd.sh("rm -rf " .. quote(dir))
  end)

  describe("without client certificates", function()
    local h
    lazy_setup(function()
      h = herd.start({
        servers = { Alpha = { port = 29001, tls_port = 31001 }, Bravo = { port = 29002, tls_port = 31002 } },
        links = { { "Alpha", "Bravo" } },
        client_tls = { cert = dir .. "/{name}.crt", key = dir .. "/{name}.key" },
        limits = { first_line_ms = 1500 },
      }, { scripts = { script } })
    end)
    lazy_teardown(function() h:stop() end)

    it("answers IAMAT and WHATSAT over TLS as the plain port does, and floods the record", function()
      local before = h:stats("Alpha")
      local c = tls_client(31001, "--ca " .. quote(dir .. "/ca.crt"))
      local t = herd.now()
      local at = c:request("IAMAT tlskiwi +34.068930-118.445127 " .. t)
      assert.matches("^AT Alpha %+%d+%.%d%d%d%d%d%d%d%d%d tlskiwi %+34%.068930%-118%.445127 " .. t:gsub("%.", "%%.") .. "$", at)
      c:send("WHATSAT tlskiwi 10 3\n")
      local over_tls = assert(c:until_blank())
      c:close()
      local plain = h:client("Bravo")
      local whatsat = herd.eventually(function()
        plain:send("WHATSAT tlskiwi 10 3\n")
        local r = plain:until_blank()
        return r and r:find("^AT Alpha") and r
      end, 5)
      plain:close()
      assert.equal(over_tls, whatsat, "the TLS and plain replies differ")
      assert.matches('"status" ?: ?"OK"', over_tls)
      -- Flooded from the TLS client's server to its neighbour, unchanged.
      assert.equal(at, herd.eventually(function() return h:record("Bravo", "tlskiwi") end, 5))
      local log = h:log("Alpha")
      assert.truthy(log:find("IN 127%.0%.0%.1:%d+ IAMAT tlskiwi"))
      assert.truthy(log:find("OUT 127%.0%.0%.1:%d+ AT Alpha %S+ tlskiwi"))
      local after = h:stats("Alpha")
      assert.equal(before.tls_accepted + 1, after.tls_accepted)
      assert.equal(before.lines_in + 2, after.lines_in)
    end)

    it("keeps request order with deferred replies, half-close and core.close inside TLS", function()
      local c = tls_client(31001)
      c:send("SLOW\nIAMAT ord1 +1+1 " .. herd.now() .. "\nnonsense here\nSLOW\n")
      c:shutdown() -- becomes a close_notify: the client has finished
      local all = c:all()
      c:close()
      local lines = {}
      for l in all:gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
      assert.equal(4, #lines, all)
      assert.equal("slow done", lines[1])
      assert.matches("^AT Alpha %S+ ord1 ", lines[2])
      assert.equal("? nonsense here", lines[3])
      assert.equal("slow done", lines[4])
      -- core.close: the replies given so far, then the connection ends.
      c = tls_client(31001)
      c:send("IAMAT ord2 +1+1 " .. herd.now() .. "\nQUIT\nIAMAT ord3 +1+1 " .. herd.now() .. "\n")
      local got = c:all()
      c:close()
      assert.matches("^AT Alpha %S+ ord2 [^\n]+\nbye\n$", got)
      assert.is_nil(h:record("Alpha", "ord3"))
      -- A connection open in the gauge while it lasts, gone after.
      c = tls_client(31001)
      c:request("IAMAT ord4 +1+1 " .. herd.now())
      assert.equal(1, h:stats("Alpha").tls_connections)
      c:close()
      assert.truthy(herd.eventually(function() return h:stats("Alpha").tls_connections == 0 end, 5))
    end)

    it("serves openssl s_client -quiet, over TLS 1.3 and 1.2, verified against the CA", function()
      for _, version in ipairs({ "-tls1_3", "-tls1_2" }) do
        local id = "sclient" .. version:gsub("%W", "")
        local out = herd.sh("printf 'IAMAT " .. id .. " +10+20 " .. herd.now() .. "\\nQUIT\\n' | timeout 10 "
          .. "openssl s_client -quiet " .. version .. " -connect 127.0.0.1:31001 -CAfile "
          .. quote(dir .. "/ca.crt") .. " -verify_return_error -verify_hostname Alpha 2>/dev/null")
        assert.matches("^AT Alpha %S+ " .. id .. " %+10%+20 %S+\nbye\n$", out)
      end
      -- The plain port is unchanged beside it.
      assert.matches("^AT Alpha ", h:client("Alpha"):request("IAMAT plainside +1+1 " .. herd.now()))
    end)

    it("refuses a TLS 1.2 renegotiation and keeps serving", function()
      -- s_client's R command asks for a renegotiation; the server's refusal
      -- ends s_client's session with "no renegotiation".
      local out = herd.sh("(printf 'R\\n'; sleep 1) | timeout 10 openssl s_client -tls1_2 "
        .. "-connect 127.0.0.1:31001 2>&1")
      assert.truthy(out:find("RENEGOTIATING", 1, true), out)
      assert.truthy(out:find("no renegotiation", 1, true), out)
      assert.is_true(tls_check(31001, "--tls12"))
    end)

    it("closes a plain-text client on the TLS port, logs and counts it", function()
      local before = h:stats("Alpha")
      local c = assert(herd.connect(31001))
      c:send("IAMAT plaintotls +1+1 " .. herd.now() .. "\n")
      c.sock:settimeout(3)
      local data, err, partial = c.sock:receive("*a")
      c:close()
      local got = data or partial or ""
      assert.is_nil(got:find("AT Alpha", 1, true), "answered in clear text")
      assert.is_not.equal("timeout", err)
      local after = h:stats("Alpha")
      assert.equal(before.tls_handshake_failures + 1, after.tls_handshake_failures)
      assert.equal(before.tls_accepted, after.tls_accepted)
      assert.is_nil(h:record("Alpha", "plaintotls"))
      assert.truthy(h:log("Alpha"):find("TLS handshake failed, connection closed: handshake: [^\n]*wrong version number"))
    end)

    it("closes garbage at once, and half handshakes and silent connections at first_line_ms", function()
      local before = h:stats("Alpha")
      local deadline_lines = count(h:log("Alpha"), "connection closed: no TLS handshake before the deadline")
      local rng = 12345
      local garbage = chaos.random_bytes(2000, function()
        rng = (rng * 1103515245 + 12345) % 4294967296
        return rng
      end)
      local g = assert(chaos.connect("127.0.0.1", 31001, 3))
      g:send(string.char(0x16, 0x03, 0x01, 0x00, 0x20) .. garbage) -- a record header, then junk
      assert.is_true(chaos.closed_by_peer(g, 3), "garbage kept its connection")
      g:close()
      -- A ClientHello's record header announcing 512 bytes, then nothing.
      local half = assert(chaos.connect("127.0.0.1", 31001, 3))
      half:send(string.char(0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03))
      local silent = assert(chaos.connect("127.0.0.1", 31001, 3))
      local t0 = socket.gettime()
      -- The plain port serves meanwhile.
      assert.matches("^AT Alpha ", h:client("Alpha"):request("IAMAT whilesilent +1+1 " .. herd.now()))
      assert.is_true(chaos.closed_by_peer(half, 6), "a half handshake held its connection")
      assert.is_true(chaos.closed_by_peer(silent, 6), "a silent connection held its connection")
      local held = socket.gettime() - t0
      half:close()
      silent:close()
      -- first_line_ms 1.5 s, swept once a second.
      assert.is_true(held >= 1.2 and held < 5, ("closed after %.1f s"):format(held))
      local after = h:stats("Alpha")
      assert.equal(before.tls_handshake_failures + 3, after.tls_handshake_failures)
      assert.equal(before.timeouts + 2, after.timeouts)
      assert.equal(deadline_lines + 2,
        count(h:log("Alpha"), "connection closed: no TLS handshake before the deadline"))
    end)
  end)

  describe("with client certificates", function()
    local h
    lazy_setup(function()
      h = herd.start({
        servers = { Charlie = { port = 29011, tls_port = 31011 } },
        links = {},
        client_tls = { cert = dir .. "/{name}.crt", key = dir .. "/{name}.key", ca = dir .. "/ca.crt" },
      }, { scripts = { script } })
    end)
    lazy_teardown(function() h:stop() end)

    it("refuses no certificate and one from another CA, accepts the CA's", function()
      local before = h:stats("Charlie")
      local ok, out = tls_check(31011, "--ca " .. quote(dir .. "/ca.crt"))
      assert.is_false(ok, out)
      ok, out = tls_check(31011, files("rogue", "ca"))
      assert.is_false(ok, out)
      ok, out = tls_check(31011, files("client1", "ca"))
      assert.is_true(ok, out)
      ok, out = tls_check(31011, files("client1") .. " --tls12")
      assert.is_true(ok, out)
      assert.matches("TLSv1%.2", out)
      -- s_client without a certificate gets no answer.
      local s = herd.sh("printf 'IAMAT nocert +1+1 " .. herd.now() .. "\\nQUIT\\n' | timeout 10 "
        .. "openssl s_client -quiet -connect 127.0.0.1:31011 2>/dev/null")
      assert.is_nil(s:find("AT Charlie", 1, true))
      s = herd.sh("printf 'IAMAT withcert +1+1 " .. herd.now() .. "\\nQUIT\\n' | timeout 10 "
        .. "openssl s_client -quiet -connect 127.0.0.1:31011 -cert " .. quote(dir .. "/client1.crt")
        .. " -key " .. quote(dir .. "/client1.key") .. " 2>/dev/null")
      assert.matches("^AT Charlie %S+ withcert ", s)
      assert.is_nil(h:record("Charlie", "nocert"))
      local after = h:stats("Charlie")
      assert.equal(before.tls_handshake_failures + 3, after.tls_handshake_failures)
      assert.equal(before.tls_accepted + 3, after.tls_accepted)
      local log = h:log("Charlie")
      assert.truthy(log:find("TLS handshake failed, connection closed: handshake: [^\n]*certificate", 1), log)
      assert.truthy(log:find("TLS clients on 31011 with client certificates", 1, true))
    end)
  end)

  describe("reload", function()
    local h
    lazy_setup(function()
      h = herd.start({
        servers = { Echo = { port = 29041, tls_port = 31041 } },
        links = {},
        client_tls = { cert = dir .. "/{name}.crt", key = dir .. "/{name}.key", ca = dir .. "/ca.crt" },
      })
    end)
    lazy_teardown(function() h:stop() end)

    it("says a changed tls_port or client_tls needs a restart, and keeps the running ones", function()
      local conf = herd.read_file(h.config)
      finally(function() herd.write_file(h.config, conf) end)
      h.conf.servers.Echo.tls_port = 31042
      h.conf.client_tls = { cert = dir .. "/{name}.crt", key = dir .. "/{name}.key" }
      herd.write_file(h.config, "return " .. herd.serialize(h.conf) .. "\n")
      local out = h:ctl("Echo", "reload")
      assert.matches("^ok: .*the config changes servers, client_tls, which take effect only on a restart", out)
      -- Still on 31041, still asking for a client certificate.
      assert.is_false((tls_check(31041, "")))
      assert.is_true((tls_check(31041, files("client1"))))
      assert.is_false(herd.wait_port(31042, 0.3))
    end)
  end)

  describe("limits", function()
    local h
    lazy_setup(function()
      h = herd.start({
        servers = { Delta = { port = 29021, tls_port = 31021 } },
        links = {},
        client_tls = { cert = dir .. "/Delta.crt", key = dir .. "/Delta.key" },
        -- stall_ms: long enough for a reader on a loaded machine, short
        -- enough to wait for in the never-reading case.
        limits = { out_pause = 4096, stall_ms = 4000, first_line_ms = 1500, max_connections = 6 },
      })
    end)
    lazy_teardown(function() h:stop() end)

    it("lets silent TLS connections hold no slot past first_line_ms", function()
      -- herd.start's probe of the plain port may still hold a slot.
      assert.truthy(herd.eventually(function() return h:stats("Delta").connections == 0 end, 3))
      local socks = {}
      for i = 1, 6 do socks[i] = assert(chaos.connect("127.0.0.1", 31021, 3)) end
      assert.truthy(herd.eventually(function() return h:stats("Delta").tls_connections == 6 end, 3))
      -- Every slot taken: a seventh connection, on either port, is refused.
      local c = assert(herd.connect(29021))
      c.sock:settimeout(2)
      local r, err = c:request("IAMAT refused +1+1 " .. herd.now())
      c:close()
      assert.is_nil(r)
      assert.equal("closed", err)
      for _, s in ipairs(socks) do assert.is_true(chaos.closed_by_peer(s, 6)) s:close() end
      assert.matches("^AT Delta ", h:client("Delta"):request("IAMAT slotfree +1+1 " .. herd.now()))
      assert.truthy(h:log("Delta"):find("connection refused: limit of 6 connections reached", 1, true))
    end)

    it("pauses a slow TLS reader at out_pause and resumes it with every reply in order", function()
      -- Enough replies (about 13 MB) to fill every socket buffer on the way.
      local n, batch = 300000, {}
      for i = 1, n do batch[i] = ("IAMAT slow%d +1+1 %d.0\n"):format(i, 1000 + i) end
      local data = table.concat(batch)
      local c = socket.tcp()
      c:setoption("recv-buffer-size", 4096)
      c:settimeout(3)
      assert(c:connect("127.0.0.1", relay_port(31021)))
      c:settimeout(0)
      local before = h:stats("Delta").lines_in
      local sent, chunks, got = 0, {}, 0
      local function pump(read)
        if sent < #data then
          local last, _, partial = c:send(data, sent + 1)
          sent = last or partial or sent
        end
        if read then
          local s, err, partial = c:receive(65536)
          s = s or partial
          if s and #s > 0 then
            chunks[#chunks + 1] = s
            got = got + #s
          end
          return err
        end
      end
      -- Writing without reading for a second: the server stops at out_pause.
      local t = socket.gettime()
      while socket.gettime() - t < 1 do
        pump(false)
        socket.sleep(0.01)
      end
      local mid = h:stats("Delta").lines_in - before
      -- Then it reads, 4 KiB of socket buffer at a time, and gets everything.
      local deadline = socket.gettime() + 60
      local text, ended
      c:settimeout(0.01)
      repeat
        local err = pump(true)
        text = nil
        if err == "closed" then
          ended = "closed by the server after " .. got .. " bytes"
          break
        end
        if sent == #data then
          text = table.concat(chunks)
          local _, lines = text:gsub("\n", "")
          if lines >= n then break end
        end
      until socket.gettime() > deadline
      c:close()
      text = text or table.concat(chunks)
      print(("\nslow TLS reader: %d of %d lines handled while it did not read; then all %d bytes of replies read"):format(
        mid, n, #text))
      assert.is_true(mid < n, "the server read every line with nobody reading")
      local i = 0
      for l in text:gmatch("([^\n]*)\n") do
        i = i + 1
        if not l:find("^AT Delta %S+ slow" .. i .. " ") then
          error("reply " .. i .. " out of order or missing: " .. l)
        end
      end
      assert.equal(n, i, ended or "60 s passed")
    end)

    it("keeps a TLS client that never reads within bounded memory and cuts it at stall_ms", function()
      local pid = h:pid("Delta")
      local flood = dir .. "/flood.txt"
      local lines, n = {}, 400000
      for i = 1, n do lines[i] = ("IAMAT f%d +1+1 %d.0\n"):format(i % 1000, 2000 + i) end
      herd.write_file(flood, table.concat(lines))
      local size = #table.concat(lines)
      local before = h:stats("Delta")
      local cuts = count(h:log("Delta"), "not reading its replies")
      local base = chaos.rss_kb(pid)
      local watch = chaos.rss_watch(pid)
      local tool = herd.sh(quote(TOOL) .. " --connect 31021 --flood " .. quote(flood)
        .. " --hold 12 >/dev/null 2>&1 & echo $!"):gsub("%s+", "")
      relays[#relays + 1] = tool
      local cut = herd.eventually(function()
        return count(h:log("Delta"), "not reading its replies") > cuts
      end, 16, 0.2)
      local peak = watch:stop()
      os.execute("kill " .. tool .. " 2>/dev/null")
      local st = h:stats("Delta")
      local handled = st.lines_in - before.lines_in
      local grown = ((peak or 0) - (base or 0)) / 1024
      print(("\nTLS client never reading: %.1f MB of IAMATs offered, %d of %d handled, RSS +%.1f MiB"):format(
        size / 1e6, handled, n, grown))
      assert.truthy(cut, "the stalled TLS client was never cut")
      assert.is_true(handled < n / 2, "the server handled nearly everything")
      local bound = chaos.sanitized(herd.bin) and 256 or 32
      assert.is_true(grown < bound, ("RSS grew by %.1f MiB"):format(grown))
      assert.equal(before.timeouts + 1, st.timeouts)
    end)
  end)

  describe("--check", function()
    local cdir
    lazy_setup(function() cdir = herd.tmpdir() end)
    lazy_teardown(function() herd.sh("rm -rf " .. quote(cdir)) end)

    local function check(conf)
      local path = cdir .. "/herd.lua"
      conf.insecure = true
      herd.write_file(path, "return " .. herd.serialize(conf) .. "\n")
      local rc, out, err = herd.run("--config " .. quote(path) .. " --check")
      return rc, (out or "") .. (err or "")
    end
    local function tls(extra)
      local t = { cert = dir .. "/{name}.crt", key = dir .. "/{name}.key" }
      for k, v in pairs(extra or {}) do t[k] = v end
      return t
    end

    it("passes a good config and names every mistake", function()
      local rc, out = check({ servers = { Alpha = { port = 29031, tls_port = 31031 } }, client_tls = tls() })
      assert.equal(0, rc, out)
      local cases = {
        { "servers.Alpha.tls_port needs client_tls", { servers = { Alpha = { port = 29031, tls_port = 31031 } } } },
        { "client_tls.cert: cannot read " .. dir .. "/missing.crt", { servers = { Alpha = { port = 29031,
          tls_port = 31031 } }, client_tls = tls({ cert = dir .. "/missing.crt" }) } },
        { "client_tls must be { cert = FILE, key = FILE [, ca = FILE] }", { servers = { Alpha = { port = 29031 } },
          client_tls = "yes" } },
        { "client_tls.key must be a file name", { servers = { Alpha = { port = 29031 } },
          client_tls = { cert = dir .. "/Alpha.crt" } } },
        { "unknown key 'client_tls.verify'", { servers = { Alpha = { port = 29031 } },
          client_tls = tls({ verify = true }) } },
        { "client_tls.ca: cannot read", { servers = { Alpha = { port = 29031 } },
          client_tls = tls({ ca = dir .. "/nothere.crt" }) } },
        -- {name} for a server that has no files.
        { "client_tls of servers.Zulu (tls_port 31032): " .. dir .. "/Zulu.crt", { servers = {
          Alpha = { port = 29031, tls_port = 31031 }, Zulu = { port = 29032, tls_port = 31032 } }, client_tls = tls() } },
        { "client_tls of servers.Alpha (tls_port 31031): " .. dir .. "/Bravo.key", { servers = { Alpha = { port = 29031, tls_port = 31031 } },
          client_tls = { cert = dir .. "/Alpha.crt", key = dir .. "/Bravo.key" } } },
        { "servers.Alpha.port and servers.Bravo.tls_port are both port 29031", { servers = {
          Alpha = { port = 29031 }, Bravo = { port = 29032, tls_port = 29031 } }, client_tls = tls() } },
        { "servers.Alpha.peer_port and servers.Bravo.tls_port are both port 30031", { servers = {
          Alpha = { port = 29031 }, Bravo = { port = 29032, tls_port = 30031 } }, client_tls = tls() } },
        { "servers.Alpha.port and servers.Alpha.tls_port are both port 29031", { servers = {
          Alpha = { port = 29031, tls_port = 29031 } }, client_tls = tls() } },
        { "servers.Alpha.tls_port must be an integer", { servers = { Alpha = { port = 29031, tls_port = 70000 } },
          client_tls = tls() } },
      }
      for _, case in ipairs(cases) do
        rc, out = check(case[2])
        assert.is_not.equal(0, rc, case[1])
        assert.truthy(out:find(case[1], 1, true), "expected '" .. case[1] .. "' in: " .. out)
        assert.is_nil(out:find("stack traceback", 1, true), out)
      end
    end)
  end)
end)
