-- The config keys of the trust layer: checked by --check with the file and
-- the key named; a host given by name; peers_from.
-- Ports: clients 11201-11212, peers 12201-12212.
local herd = require "helpers.herd"
local chaos = require "helpers.chaos"

local function check(extra)
  local dir = herd.tmpdir()
  local path = dir .. "/herd.lua"
  herd.write_file(path, "return { servers = { A = { port = 11201 }, B = { port = 11202 } },\n"
    .. "  links = { { 'A', 'B' } }, " .. extra .. " }\n")
  local rc, out, err = herd.run("--check --config " .. herd.quote(path))
  os.execute("rm -rf " .. herd.quote(dir))
  return rc, (out or "") .. (err or "")
end

describe("trust layer config #integration", function()
  it("--check refuses each bad key with the file and key named", function()
    local cases = {
      { "secret = { 'a', 5 }", "secret%[2%] must be a non%-empty string" },
      { "secret = 5", "secret must be a string or a list of strings" },
      { "secret = 'x', tls = { cert = '/etc/hosts' }", "tls.key must be a file name" },
      { "secret = 'x', tls = { cert = 'c', key = 'k', ca = 'a', bogus = 1 }", "unknown key 'tls.bogus'" },
      { "secret = 'x', tls = { cert = '/nonexistent.crt', key = 'k', ca = 'a' }", "tls.cert: cannot read /nonexistent.crt" },
      { "secret = 'x', peers_from = { '10.0.0.0/33' }", "peers_from%[1%] must be an address block" },
      { "secret = 'x', peers_from = { 'example.com/8' }", "peers_from%[1%] must be an address block" },
      { "secret = 'x', peers_from = {}", "peers_from is empty" },
      { "secret = 'x', limits = { peer_out_max = 10 }", "limits.peer_out_max must be an integer" },
      { "secret = 'x', limits = { peer_handshake_ms = 0 }", "limits.peer_handshake_ms must be an integer" },
      { "secret = 'x', servers = { A = { port = 11201, host = 'bad host!' } }", "servers.A.host must be an IPv4 or IPv6 address or a DNS name" },
    }
    for _, case in ipairs(cases) do
      local rc, text = check(case[1])
      assert.is_true(rc ~= 0, case[1] .. " passed --check")
      assert.matches("herd%.lua: .*" .. case[2], text)
    end
    -- And good ones pass.
    for _, good in ipairs({ "secret = { 'new', 'old' }", "secret = 'a,b'",
      "secret = 'x', peers_from = { '10.0.0.0/8', '127.0.0.1/32', '::1/128', 'fd00::/8' }",
      "secret = 'x', limits = { peer_out_max = 1048576, peer_handshake_ms = 5000 }",
      "servers = { A = { port = 11201, host = 'localhost' }, B = { port = 11202, host = 'b-1.herd.example' } }, secret = 'x'" }) do
      local rc, text = check(good)
      assert.equal(0, rc, good .. ": " .. text)
    end
  end)

  it("links servers given by a DNS name, with the resolved address in the log line", function()
    local h = herd.start({
      servers = { A = { port = 11203, host = "localhost" }, B = { port = 11204, host = "localhost" } },
      links = { { "A", "B" } },
    })
    local ok, err = pcall(function()
      assert.truthy(herd.eventually(function()
        return (h:ctl("A", "links") or ""):match("B%s+up")
      end, 10))
      local log = h:log("A") .. h:log("B")
      assert.truthy(log:find("up %(localhost %(127%.0%.0%.1%):1220[34], dialled"), log)
      local r = h:client("A"):request("IAMAT byname +1+1 " .. herd.now())
      assert.truthy(herd.eventually(function() return h:record("B", "byname") == r end))
    end)
    h:stop()
    assert(ok, err)
  end)

  it("peers_from closes connections from elsewhere before any TLS and keeps the link", function()
    local h = herd.start({
      servers = { A = { port = 11205 }, B = { port = 11206 } },
      links = { { "A", "B" } },
      peers_from = { "127.0.0.1/32" },
    })
    local ok, err = pcall(function()
      assert.truthy(herd.eventually(function()
        return (h:ctl("A", "links") or ""):match("B%s+up")
      end, 10))
      local c = assert(chaos.connect("127.0.0.1", h:peer_port("A"), 3, "127.0.0.2"))
      assert.is_true(chaos.closed_by_peer(c, 2))
      c:close()
      assert.equal(1, h:stats("A").peer_refused_from)
      assert.truthy(h:log("A"):find("peer 127%.0%.0%.2:%d+: refused, not in peers_from"))
      assert.truthy((h:ctl("A", "links") or ""):match("B%s+up"))
    end)
    h:stop()
    assert(ok, err)
  end)

  it("refuses to start when OpenSSL gives no random bytes, instead of using a zero key", function()
    -- failrand.so (tests/tools/failrand.c) makes every RAND_bytes fail.
    local shim = herd.bin:gsub("[^/]+$", "") .. "failrand.so"
    assert.truthy(io.open(shim), "missing " .. shim)
    local dir = herd.tmpdir()
    local path = dir .. "/herd.lua"
    herd.write_file(path, "return { servers = { A = { port = 11211 } }, secret = 'x', log_dir = '"
      .. dir .. "' }\n")
    local cmd = ("LD_PRELOAD=%s ASAN_OPTIONS=verify_asan_link_order=0 timeout 5 %s --config %s A >%s/out 2>&1; echo $?")
      :format(herd.quote(shim), herd.quote(herd.bin), herd.quote(path), dir)
    local p = io.popen(cmd)
    local rc = tonumber(p:read("a"):match("%d+"))
    p:close()
    local out = herd.read_file(dir .. "/out") or ""
    os.execute("rm -rf " .. herd.quote(dir))
    assert.equal(1, rc, out) -- 124 would be timeout's: it ran on
    assert.matches("no random key for the record store %(RAND_bytes%)", out)
  end)
end)
