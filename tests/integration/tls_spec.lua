-- Peer links over TLS 1.3: each attack of issue 12 on the links, scripted.
-- Ports: clients 11000-11499, peers 12000-12499.
local herd = require "helpers.herd"
local chaos = require "helpers.chaos"
local socket = require "socket"

local F, frame, rec = chaos.F, chaos.frame, chaos.record_payload
local quote = herd.quote

local FIXTURES = os.getenv("PWD") .. "/tests/fixtures"

local function count(text, pattern)
  local _, n = (text or ""):gsub(pattern, "")
  return n
end

local function link_up(h, a, b)
  return herd.eventually(function()
    local t = h:ctl(a, "links") or ""
    return t:match(b .. "%s+up") ~= nil
  end, 10)
end

-- A record frame for client at sec, as server `from` would send it.
local function record_frame(from, client, sec)
  local line = ("AT %s +0.000000001 %s +1+1 %d.0"):format(from, client, sec)
  return frame(F.RECORD, rec(client, sec, 0, line))
end

describe("peer links refuse whoever lacks the key #integration", function()
  local h
  lazy_setup(function()
    -- Delta is Bravo's neighbour but never runs: the test tool plays it.
    -- Charlie is Alpha's neighbour, not Bravo's.
    h = herd.start({
      servers = { Alpha = { port = 11001 }, Bravo = { port = 11002 }, Charlie = { port = 11003 },
        Delta = { port = 11004 } },
      links = { { "Alpha", "Bravo" }, { "Alpha", "Charlie" }, { "Bravo", "Delta" } },
    }, { only = { "Alpha", "Bravo", "Charlie" } })
    assert.truthy(link_up(h, "Alpha", "Bravo"))
    assert.truthy(link_up(h, "Alpha", "Charlie"))
  end)
  lazy_teardown(function() h:stop() end)

  it("gives the oracle attack of issue 12 (old wire format) no link and no record", function()
    local ups = count(h:log("Bravo"), "link Alpha up")
    -- As in the issue: read Bravo's nonce, have Alpha sign it, replay
    -- Alpha's answer to Bravo, then send a record.
    local function read_frame(c)
      c:settimeout(1)
      return chaos.read_frame(c)
    end
    local function hello_nonce(payload)
      if not payload or #payload < 1 then return string.rep("n", 32) end
      local n = payload:byte(1)
      return payload:sub(2 + n, 1 + n + 32)
    end
    local b = assert(chaos.connect("127.0.0.1", h:peer_port("Bravo"), 3))
    local _, bh = read_frame(b)
    local nb = hello_nonce(bh)
    local a = assert(chaos.connect("127.0.0.1", h:peer_port("Alpha"), 3))
    local _, ah = read_frame(a)
    local na = hello_nonce(ah)
    a:send(frame(F.HELLO, string.char(5) .. "Bravo" .. nb))
    local t, mac = read_frame(a)
    mac = (t == 2 and mac) or string.rep("m", 32)
    b:send(frame(F.HELLO, string.char(5) .. "Alpha" .. na) .. frame(2, mac)
      .. record_frame("Alpha", "oracle", 900))
    assert.is_true(chaos.closed_by_peer(b, 3), "Bravo kept the connection")
    a:close()
    b:close()
    herd.sleep(0.3)
    for _, n in ipairs({ "Alpha", "Bravo", "Charlie" }) do assert.is_nil(h:record(n, "oracle")) end
    assert.equal(ups, count(h:log("Bravo"), "link Alpha up"), "a second 'link Alpha up'")
  end)

  it("refuses a wrong key, an unknown secret, a non-neighbour's identity and no PSK at all", function()
    local ups = count(h:log("Bravo"), "link Alpha up")
    local port = h:peer_port("Bravo")
    local base = "--connect " .. port .. " --them Bravo "
    -- Control: the tool playing Delta with the right secret gets in.
    local out, ok = chaos.peer_tls_check(base .. "--me Delta --secret " .. quote(herd.secret))
    assert.is_true(ok, out)
    local before = h:stats("Bravo").peer_auth_failures
    local cases = {
      { "right key id, wrong key", "Delta", "--secret " .. quote(herd.secret) .. " --key-secret guess" },
      { "another secret", "Delta", "--secret another-secret" },
      { "Charlie, a declared server that is not Bravo's neighbour", "Charlie", "--secret " .. quote(herd.secret) },
      { "Delta's identity with Charlie's key", "Charlie", "--secret " .. quote(herd.secret)
        .. " --identity " .. quote("herd1 00000000 Delta") },
      { "an identity that is no herd server's", "Delta", "--secret x --identity 'Client_identity'" },
    }
    for _, case in ipairs(cases) do
      local o, good = chaos.peer_tls_check(base .. "--me " .. case[2] .. " " .. case[3])
      assert.is_false(good, case[1] .. ": " .. o)
      -- And through a relay: a record sent anyway is not stored.
      local c = chaos.peer_login("127.0.0.1", port, case[2], "Bravo", nil, { args = case[3] })
      if c then
        c:send(record_frame(case[2], "wrongkey", 901))
        chaos.closed_by_peer(c, 1)
        c:close()
      end
    end
    -- Plain TLS without any PSK (what any TLS client does).
    local s = herd.sh("timeout 5 openssl s_client -tls1_3 -connect 127.0.0.1:" .. port
      .. " </dev/null 2>&1; echo rc=$?")
    assert.matches("rc=1", s)
    herd.sleep(0.3)
    assert.is_nil(h:record("Bravo", "wrongkey"))
    local log = h:log("Bravo")
    assert.truthy(log:find("link Delta %(.-%): its secret %(key id %x+%) is none of this server's"))
    assert.truthy(log:find("PSK identity 'herd1 %x+ Charlie' names no neighbour"))
    assert.truthy(log:find("PSK identity 'Client_identity' is not a herd server's", 1, true))
    assert.truthy(log:find("link Delta %(.-%): authentication failed"))
    assert.is_nil(log:find(herd.secret, 1, true))
    assert.is_true(h:stats("Bravo").peer_auth_failures >= before + 6)
    assert.equal(ups, count(log, "link Alpha up"))
  end)
end)

describe("peer links with certificates #integration", function()
  local h, dir
  lazy_setup(function()
    dir = herd.tmpdir()
    chaos.make_certs(dir, { "Alpha", "Bravo", "Delta", "Mallory" })
    chaos.make_certs(dir, { "Rogue" }, "otherca")
    -- Delta is Bravo's neighbour but never runs: the test tool plays it.
    h = herd.start({
      servers = { Alpha = { port = 11011 }, Bravo = { port = 11012 }, Delta = { port = 11013 } },
      links = { { "Alpha", "Bravo" }, { "Bravo", "Delta" } },
      tls = { cert = dir .. "/{name}.crt", key = dir .. "/{name}.key", ca = dir .. "/ca.crt" },
    }, { only = { "Alpha", "Bravo" } })
  end)
  lazy_teardown(function()
    h:stop()
    herd.sh("rm -rf " .. quote(dir))
  end)

  it("brings links up with certificates and refuses one naming a non-neighbour or from another CA", function()
    assert.truthy(link_up(h, "Alpha", "Bravo"))
    assert.truthy(h:log("Alpha"):find("link Bravo up %(.-TLSv1%.3.-certificate"))
    local ups = count(h:log("Bravo"), "link Alpha up")
    local r = h:client("Alpha"):request("IAMAT certok +1+1 " .. herd.now())
    assert.truthy(herd.eventually(function() return h:record("Bravo", "certok") == r end))
    local port = h:peer_port("Bravo")
    local function files(name, ca)
      return "--cert " .. quote(dir .. "/" .. name .. ".crt") .. " --key " .. quote(dir .. "/" .. name .. ".key")
        .. " --ca " .. quote(dir .. "/" .. (ca or "ca") .. ".crt")
    end
    local base = "--connect " .. port .. " --me Delta --them Bravo "
    local out, ok = chaos.peer_tls_check(base .. files("Delta"))
    assert.is_true(ok, out)
    -- Mallory's certificate is from the herd's CA, but Mallory is no neighbour.
    out, ok = chaos.peer_tls_check(base .. files("Mallory"))
    assert.is_false(ok, out)
    -- Rogue's is from another CA (the tool trusts Bravo's CA; Bravo does not trust Rogue's).
    out, ok = chaos.peer_tls_check(base .. files("Rogue"))
    assert.is_false(ok, out)
    -- No certificate at all.
    local s = herd.sh("timeout 5 openssl s_client -tls1_3 -CAfile " .. quote(dir .. "/ca.crt")
      .. " -connect 127.0.0.1:" .. port .. " </dev/null 2>&1; echo rc=$?")
    assert.is_nil(s:find("link Delta up", 1, true))
    for _, name in ipairs({ "Mallory", "Rogue" }) do
      local c = chaos.peer_login("127.0.0.1", port, "Delta", "Bravo", nil, { args = files(name) })
      if c then
        c:send(record_frame("Delta", "certforged", 950))
        chaos.closed_by_peer(c, 1)
        c:close()
      end
    end
    herd.sleep(0.3)
    assert.is_nil(h:record("Bravo", "certforged"))
    local log = h:log("Bravo")
    assert.truthy(log:find("authentication failed: its certificate names no neighbour", 1, true))
    assert.truthy(log:find("authentication failed: handshake: certificate: unable to get local issuer", 1, true), log)
    assert.equal(ups, count(log, "link Alpha up"))
    assert.equal(1, count(log, "link Delta up"), "only the control connection")
  end)
end)

describe("a man in the middle of a peer link #integration", function()
  local h, proxy_dir, proxy_pid
  local PROXY = 12030
  lazy_setup(function()
    -- Bravo's config points Alpha's peer port at nothing, so the only
    -- link is Alpha's dial, which Alpha's own config sends through the
    -- proxy.
    local conf = {
      servers = { Alpha = { port = 11021, peer_port = 12031 }, Bravo = { port = 11022 } },
      links = { { "Alpha", "Bravo" } },
    }
    h = herd.start(conf, { only = { "Bravo" } })
    local alt = h.dir .. "/alpha.lua"
    local c2 = { servers = { Alpha = { port = 11021 }, Bravo = { port = 11022, peer_port = PROXY } },
      links = conf.links, log_dir = conf.log_dir, secret = conf.secret }
    herd.write_file(alt, "return " .. herd.serialize(c2) .. "\n")
    proxy_dir = h.dir .. "/mitm"
    os.execute("mkdir -p " .. quote(proxy_dir))
    proxy_pid = herd.sh("python3 " .. quote(herd.beside("../tools/mitm_proxy.py")) .. " " .. PROXY .. " "
      .. h:peer_port("Bravo") .. " " .. quote(proxy_dir) .. " >/dev/null 2>&1 & echo $!"):gsub("%s+", "")
    assert.truthy(herd.eventually(function() return herd.read_file(proxy_dir .. "/ready") end, 5))
    local main = h.config
    h.config = alt
    h:start_one("Alpha")
    h.config = main
    assert.truthy(h:wait("Alpha"))
    assert.truthy(link_up(h, "Alpha", "Bravo"))
  end)
  lazy_teardown(function()
    h:stop()
    if proxy_pid and proxy_pid ~= "" then os.execute("kill " .. proxy_pid .. " 2>/dev/null") end
  end)

  local function seen() return herd.read_file(proxy_dir .. "/seen") or "" end

  it("sees no client id or location in what it relays", function()
    assert.truthy(herd.eventually(function()
      return (h:log("Alpha"):find("link Bravo up %(127%.0%.0%.1:" .. PROXY)) ~= nil
    end))
    local r = h:client("Alpha"):request("IAMAT mitm-watched-client +12.345678-98.765432 " .. herd.now())
    assert.truthy(herd.eventually(function() return h:record("Bravo", "mitm-watched-client") == r end))
    local bytes = seen()
    assert.is_true(#bytes > 500, "the proxy relayed " .. #bytes .. " bytes")
    assert.is_nil(bytes:find("mitm-watched-client", 1, true))
    assert.is_nil(bytes:find("+12.345678-98.765432", 1, true))
    assert.is_nil(bytes:find("AT Alpha", 1, true))
  end)

  it("kills the link on an injected frame or an altered byte, stores nothing, then heals", function()
    local ups = count(h:log("Bravo"), "link Alpha up")
    local inject = record_frame("Alpha", "injected", 990)
    local hexed = inject:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end)
    herd.write_file(proxy_dir .. "/cmd", "inject " .. hexed)
    local r1 = h:client("Alpha"):request("IAMAT during-inject +1+1 " .. herd.now())
    assert.truthy(herd.eventually(function()
      return count(h:log("Bravo"), "link Alpha down") >= 1
    end), "the injected frame did not kill the link")
    assert.truthy(herd.eventually(function() return count(h:log("Bravo"), "link Alpha up") >= ups + 1 end, 10))
    assert.truthy(herd.eventually(function() return h:record("Bravo", "during-inject") == r1 end, 10))
    -- An altered byte in the next record.
    herd.write_file(proxy_dir .. "/cmd", "flip")
    local r2 = h:client("Alpha"):request("IAMAT during-flip +2+2 " .. herd.now())
    assert.truthy(herd.eventually(function()
      return count(h:log("Bravo"), "link Alpha down") >= 2
    end), "the altered byte did not kill the link")
    assert.truthy(herd.eventually(function() return count(h:log("Bravo"), "link Alpha up") >= ups + 2 end, 10))
    -- Reconciliation brings the genuine record, byte for byte.
    assert.truthy(herd.eventually(function() return h:record("Bravo", "during-flip") == r2 end, 10))
    assert.is_nil(h:record("Bravo", "injected"))
    assert.truthy(h:log("Bravo"):find("link Alpha %(.-%): TLS error, link closed"))
  end)
end)

describe("secret rotation #integration", function()
  local h
  local NAMES = { "Alpha", "Bravo", "Charlie" }
  lazy_setup(function()
    h = herd.start({
      servers = { Alpha = { port = 11031 }, Bravo = { port = 11032 }, Charlie = { port = 11033 } },
      links = { { "Alpha", "Bravo" }, { "Bravo", "Charlie" }, { "Alpha", "Charlie" } },
      secret = "rotation-secret-A",
    })
    for _, a in ipairs(NAMES) do
      for _, b in ipairs(NAMES) do
        if a ~= b then assert.truthy(link_up(h, a, b)) end
      end
    end
  end)
  lazy_teardown(function() h:stop() end)

  it("moves a running herd from secret A to B through three reloads with no link down and no record lost", function()
    local sent, n = {}, 0
    local clients = {}
    for _, name in ipairs(NAMES) do clients[name] = h:client(name) end
    local function traffic(k)
      for _ = 1, k do
        n = n + 1
        local name = NAMES[n % 3 + 1]
        local id = "rot" .. n
        sent[id] = clients[name]:request(("IAMAT %s +%d+%d %d.5"):format(id, n % 80, n % 170, 1000 + n))
        herd.sleep(0.002)
      end
    end
    -- Both ends dial at start-up; the duplicate's loser can be logged
    -- "down" at the far end just after the link showed up. Only lines
    -- written from here on count.
    herd.sleep(0.3)
    local before = {}
    for _, name in ipairs(NAMES) do before[name] = #h:log(name) end
    traffic(50)
    local steps = { { "rotation-secret-A", "rotation-secret-B" }, { "rotation-secret-B", "rotation-secret-A" },
      { "rotation-secret-B" } }
    for _, list in ipairs(steps) do
      h.conf.secret = list
      herd.write_file(h.config, "return " .. herd.serialize(h.conf) .. "\n")
      -- Reload one server at a time, IAMATs flowing in between, and cut
      -- one link after each reload so handshakes happen under the new
      -- lists too (a cut is logged as such, not as a lost link).
      for _, name in ipairs(NAMES) do
        assert.matches("protocol", h:ctl(name, "reload"))
        traffic(20)
      end
      assert.matches("ok", h:ctl("Alpha", "cut Bravo 50"))
      assert.truthy(herd.eventually(function()
        return (h:ctl("Alpha", "links") or ""):match("Bravo%s+up")
      end, 10), "the cut link did not come back under " .. table.concat(list, ","))
      traffic(20)
    end
    -- Every record everywhere.
    for id, line in pairs(sent) do
      for _, name in ipairs(NAMES) do
        assert.truthy(herd.eventually(function() return h:record(name, id) == line end, 5), id .. " at " .. name)
      end
    end
    -- Only the operator's three cuts took a link down: each logged once
    -- at Alpha (cut by operator) and once at Bravo (closed by peer).
    local function since(name) return h:log(name):sub(before[name] + 1) end
    assert.equal(3, count(since("Alpha"), "link Bravo down %([^\n]*cut by operator"))
    assert.equal(3, count(since("Bravo"), "link Alpha down"))
    local function downs(name, pattern)
      local lines = {}
      for line in since(name):gmatch("[^\n]*" .. pattern .. "[^\n]*") do lines[#lines + 1] = line end
      return lines
    end
    assert.same({}, downs("Charlie", "link %S+ down"))
    assert.same({}, downs("Alpha", "link Charlie down"))
    assert.same({}, downs("Bravo", "link Charlie down"))
    for _, name in ipairs(NAMES) do
      local log = h:log(name)
      assert.is_nil(log:find("authentication failed", 1, true), name)
      -- A reload never re-derives the reconciliation key.
      assert.is_nil(log:find("reconciliation key", 1, true), name)
      assert.is_nil(log:find("rotation-secret", 1, true), "a secret in " .. name .. "'s log")
    end
    -- The last redial used the new secret, and A no longer opens the door.
    assert.truthy(h:log("Bravo"):find("link Alpha up %([^\n]*secret #1") )
    local base = "--connect " .. h:peer_port("Bravo") .. " --me Alpha --them Bravo "
    local out, ok = chaos.peer_tls_check(base .. "--secret rotation-secret-A")
    assert.is_false(ok, out)
  end)
end)

describe("silent connections at the peer ports #integration", function()
  local h
  lazy_setup(function()
    h = herd.start({
      servers = { Alpha = { port = 11041 }, Bravo = { port = 11042 } },
      links = { { "Alpha", "Bravo" } },
    })
    assert.truthy(link_up(h, "Alpha", "Bravo"))
  end)
  lazy_teardown(function() h:stop() end)

  it("do not keep a link down, held from the neighbours' own address at both ends", function()
    local crowd = {}
    local opened = 0
    local function refill()
      for _, name in ipairs({ "Alpha", "Bravo" }) do
        crowd[name] = crowd[name] or {}
        local list = crowd[name]
        for k = #list, 1, -1 do
          local s = list[k]
          s:settimeout(0)
          local _, err = s:receive(1)
          if err == "closed" then
            s:close()
            table.remove(list, k)
          end
        end
        while #list < 100 do
          local s = chaos.connect("127.0.0.1", h:peer_port(name), 1)
          if not s then break end
          list[#list + 1] = s
          opened = opened + 1
        end
      end
    end
    local ok, err = pcall(function()
      refill()
      -- The link drops (cut for 100 ms) and must come back while the
      -- crowd is held and replaced as fast as the servers close it.
      assert.matches("ok", h:ctl("Alpha", "cut Bravo 100"))
      local up = false
      local deadline = socket.gettime() + 15
      local t0 = socket.gettime()
      while not up and socket.gettime() < deadline do
        refill()
        up = ((h:ctl("Alpha", "links") or ""):match("Bravo%s+up")) ~= nil
        if not up then herd.sleep(0.05) end
      end
      assert.is_true(up, "the link stayed down under " .. opened .. " silent connections")
      print(("\nsilent connections: link back in %.2f s while %d silent connections were held (200 at a time)")
        :format(socket.gettime() - t0, opened))
    end)
    for _, list in pairs(crowd) do for _, s in ipairs(list) do s:close() end end
    assert(ok, err)
    local r = h:client("Alpha"):request("IAMAT aftercrowd +1+1 " .. herd.now())
    assert.truthy(herd.eventually(function() return h:record("Bravo", "aftercrowd") == r end))
    assert.is_true(h:stats("Alpha").peer_handshakes_evicted + h:stats("Bravo").peer_handshakes_evicted > 0)
  end)
end)

describe("the reconciliation key #integration", function()
  local h
  lazy_teardown(function() if h then h:stop() end end)

  it("converges when two servers start with different first secrets, then reconciles", function()
    -- Both hold both secrets, in a different order: each starts with the
    -- tree key of its own first secret, and the link agrees on one.
    h = herd.start({
      servers = { Alpha = { port = 11051 }, Bravo = { port = 11052 } },
      links = { { "Alpha", "Bravo" } },
      secret = "tree-secret-X,tree-secret-Y",
    }, { only = { "Alpha" } })
    local lines = {}
    for k = 1, 200 do
      lines[k] = h:client("Alpha"):request(("IAMAT tk%d +1+1 %d.5"):format(k, 5000 + k))
    end
    h:start_one("Bravo", { HERD_SECRET = "tree-secret-Y,tree-secret-X" })
    assert.truthy(h:wait("Bravo"))
    for k = 1, 200 do
      assert.truthy(herd.eventually(function() return h:record("Bravo", "tk" .. k) == lines[k] end, 10), "tk" .. k)
    end
    local adopted = count(h:log("Alpha"), "reconciliation key: adopted Bravo's")
      + count(h:log("Bravo"), "reconciliation key: adopted Alpha's")
    assert.equal(1, adopted)
    -- The acceptor logs which of its secrets the dialler offered: its second.
    assert.truthy(h:log("Bravo"):find("link Alpha up %([^\n]*accepted[^\n]*secret #2")
      or h:log("Alpha"):find("link Bravo up %([^\n]*accepted[^\n]*secret #2"))
    -- The root sums now agree: a periodic sync sends no records.
    local before = h:stats("Alpha").peer_records_out + h:stats("Bravo").peer_records_out
    herd.sleep(5.5)
    assert.equal(before, h:stats("Alpha").peer_records_out + h:stats("Bravo").peer_records_out)
  end)
end)

describe("both ends dialling at once #integration", function()
  local h
  lazy_teardown(function() if h then h:stop() end end)

  it("report one down per loss, not a second for the duplicate the far end dropped", function()
    h = herd.start({
      servers = { Alpha = { port = 11061 }, Bravo = { port = 11062 } },
      links = { { "Alpha", "Bravo" } },
      secret = "simultaneous-dial-secret",
      -- on_link calls counted, to check what the scripts saw.
      scripts = { "protocol", "topology", FIXTURES .. "/count_links.lua" },
    })
    assert.truthy(link_up(h, "Alpha", "Bravo"))
    assert.truthy(link_up(h, "Bravo", "Alpha"))
    herd.sleep(0.3)
    local function seen(name)
      local text = h:client(name):request("LINKSSEEN") or ""
      local ups, downs = text:match("ups=(%d+) downs=(%d+)")
      return { ups = tonumber(ups), downs = tonumber(downs) }
    end
    local before = { Alpha = #h:log("Alpha"), Bravo = #h:log("Bravo") }
    local seen_before = { Alpha = seen("Alpha"), Bravo = seen("Bravo") }
    local ROUNDS = 12
    -- Both ends cut the link for the same 150 ms, so both redial when the
    -- cuts end, within a few ms of each other: each round races the two
    -- dials, and each end keeps the one dialled by Alpha. (A dial that
    -- reaches an end still cut is closed in its handshake: never up.)
    for round = 1, ROUNDS do
      assert.matches("ok", h:ctl("Alpha", "cut Bravo 150"))
      assert.matches("ok", h:ctl("Bravo", "cut Alpha 150"))
      assert.truthy(link_up(h, "Alpha", "Bravo"), "round " .. round)
      assert.truthy(link_up(h, "Bravo", "Alpha"), "round " .. round)
      herd.sleep(0.05)
    end
    local function since(name) return h:log(name):sub(before[name] + 1) end
    local replaced = count(since("Alpha") .. since("Bravo"), "dialled at the same time")
    print(("simultaneous dials: %d rounds, %d connections replaced by the far end's choice"):format(ROUNDS, replaced))
    for _, name in ipairs({ "Alpha", "Bravo" }) do
      local downs = {}
      for line in since(name):gmatch("[^\n]*link %S+ down[^\n]*") do downs[#downs + 1] = line end
      assert.equal(ROUNDS, #downs, name .. ":\n" .. table.concat(downs, "\n"))
      local now, was = seen(name), seen_before[name]
      -- One down and at least one up per round (a connection replacing
      -- another is a second up, as documented).
      assert.equal(ROUNDS, now.downs - was.downs, name)
      assert.truthy(now.ups - was.ups >= ROUNDS, name)
    end
  end)
end)
