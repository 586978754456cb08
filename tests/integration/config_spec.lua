-- What --check and start-up refuse in a config, each as one line naming
-- the file and the key (issue 13 items 5-8), and the admin commands'
-- validation (items 10, 11). Ports 13000-13499 (peers 14000-14499).
local herd = require "helpers.herd"

local function config_file(text)
  local dir = herd.tmpdir()
  local path = dir .. "/herd.lua"
  herd.write_file(path, text)
  return path, dir
end

local function check(text, env)
  local path = config_file(text)
  local rc, out, err = herd.run("--config " .. herd.quote(path) .. " --check", env)
  return rc, out, err, path
end

-- A refusal: exit 1, one line on stderr naming the file, no traceback.
local function refused(text, pattern, env)
  local rc, _, err, path = check(text, env)
  assert.equal(1, rc, err)
  assert.matches(path, err, 1, true)
  assert.matches(pattern, err, 1, true)
  assert.falsy(err:find("traceback", 1, true), err)
  assert.equal(1, select(2, err:gsub("\n", "")), err)
end

describe("config validation #integration", function()
  it("checks and starts a herd of 300 servers, one linked to all", function()
    local s, l = {}, {}
    for i = 0, 299 do
      s[#s + 1] = ("S%03d = { port = %d }"):format(i, 13000 + i)
      if i > 0 then l[#l + 1] = ('{ "S000", "S%03d" }'):format(i) end
    end
    local dir = herd.tmpdir()
    local text = ("return { servers = { %s }, links = { %s }, secret = 's', log_dir = %q }")
      :format(table.concat(s, ", "), table.concat(l, ", "), dir .. "/logs")
    local path = dir .. "/herd.lua"
    herd.write_file(path, text)
    local rc, out, err = herd.run("--config " .. path .. " --check")
    assert.equal(0, rc, err)
    assert.matches("ok %(300 servers", out)
    local pidfile = dir .. "/pid"
    os.execute(("%s --config %s S000 >%s/out 2>%s/err & echo $! >%s"):format(
      herd.quote(herd.bin), path, dir, dir, pidfile))
    local pid = herd.eventually(function() return tonumber(herd.read_file(pidfile) or "") end)
    finally(function() os.execute("kill " .. pid .. " 2>/dev/null") end)
    assert.truthy(herd.wait_port(13000, 5), herd.read_file(dir .. "/err"))
    local c = assert(herd.connect(13000))
    assert.matches("^AT S000 ", c:request("IAMAT kiwi +34.068930-118.445127 " .. herd.now()))
    c:close()
    local links = herd.sh(("%s ctl --config %s S000 links"):format(herd.quote(herd.bin), path))
    assert.equal(299, select(2, links:gsub("\nS", "")) + (links:match("^S") and 1 or 0))
  end)

  it("refuses a server name a protocol field or a file name cannot hold", function()
    refused('return { servers = { ["a b"] = { port = 13301 } } }', "'a b' is not a server name")
    refused(('return { servers = { ["%s"] = { port = 13301 } } }'):format(("x"):rep(300)),
      "1 to 64 printable")
    refused('return { servers = { ["a/b"] = { port = 13301 } } }', "is not a server name")
  end)

  it("refuses unknown keys at every level", function()
    local base = "servers = { A = { port = 13301%s } }"
    refused(("return { %s }"):format(base:format(", peerport = 3")), "unknown key 'servers.A.peerport'")
    refused(("return { %s, places = { provdier = 'google' } }"):format(base:format("")),
      "unknown key 'places.provdier'")
    refused(("return { %s, limits = { max_lines = 3 } }"):format(base:format("")),
      "unknown key 'limits.max_lines'")
    refused(("return { %s, links_redial = { min = 3 } }"):format(base:format("")),
      "unknown key 'links_redial.min'")
    refused(("return { %s, linsk = {} }"):format(base:format("")), "unknown key 'linsk'")
  end)

  it("refuses ports two listeners share, naming both servers", function()
    refused("return { servers = { A = { port = 13301 }, B = { port = 13301 } } }",
      "servers.A.port and servers.B.port are both port 13301")
    refused("return { servers = { A = { port = 13301 }, B = { port = 12301 } } }",
      "servers.A.port and servers.B.peer_port are both port 13301")
    refused("return { servers = { A = { port = 13301, peer_port = 13301 } } }",
      "servers.A.port and servers.A.peer_port are both port 13301")
    -- Different hosts may share a port (one server per machine).
    assert.equal(0, (check("return { servers = { A = { port = 13301, host = '127.0.0.2' }, " ..
      "B = { port = 13301, host = '127.0.0.3' } } }")))
  end)

  it("refuses the local provider without its data, at --check and at start-up", function()
    local text = "return { servers = { A = { port = 13302 } } }"
    refused(text, "the local places provider has no data", { HERD_DATA_DIR = "/nonexistent" })
    local path = config_file(text)
    local rc, _, err = herd.run("--config " .. path .. " A", { HERD_DATA_DIR = "/nonexistent" })
    assert.equal(1, rc)
    assert.matches("/nonexistent/places", err, 1, true)
  end)

  it("says what is wrong with the places provider or a link in one line", function()
    local text = "return { servers = { A = { port = 13303 } } }"
    refused(text, 'places.provider "google" (from HERD_PLACES_PROVIDER) needs an API key',
      { HERD_PLACES_PROVIDER = "google" })
    refused(text, 'unknown provider "bing"', { HERD_PLACES_PROVIDER = "bing" })
    refused("return { servers = { A = { port = 13303 } }, links = { { 'A', 'B' } }, secret = 's' }",
      "links[1] names B, which is not a server (servers: A)")
  end)
end)

describe("herd ctl #integration", function()
  local h, id
  lazy_setup(function()
    h = herd.start({ servers = { A = { port = 13310 }, B = { port = 13311 } },
      links = { { "A", "B" } } })
    id = ("i"):rep(1020)
    local c = h:client("A")
    assert.matches("^AT A ", c:request(("IAMAT %s +34.068930-118.445127 %s"):format(id, herd.now())))
    c:close()
  end)
  lazy_teardown(function() if h then h:stop() end end)

  local function ctl(args, cwd)
    local cmd = ("%s ctl --config %s %s"):format(herd.quote(herd.bin), herd.quote(h.config), args)
    if cwd then cmd = "cd " .. herd.quote(cwd) .. " && " .. cmd end
    local dir = herd.tmpdir()
    local rc = tonumber(herd.sh(("%s >%s/out 2>%s/err; echo $?"):format(cmd, dir, dir)):match("%d+"))
    return rc, herd.read_file(dir .. "/out"), herd.read_file(dir .. "/err")
  end

  it("refuses a cut time that is not an integer from 0 to a day", function()
    for _, ms in ipairs({ "-5", "abc", "99999999999", "12x" }) do
      local rc, out = ctl("A cut B " .. ms)
      assert.equal(1, rc)
      assert.matches("^error: MS must be an integer", out)
    end
    local rc, out = ctl("A cut B 10")
    assert.equal(0, rc)
    assert.equal("ok\n\n", out)
  end)

  it("finds a record whose id is 1,020 bytes", function()
    local rc, out = ctl("A record " .. id)
    assert.equal(0, rc)
    assert.matches("^AT A %S+ " .. id .. " ", out)
  end)

  it("names the servers for an unknown server", function()
    local rc, _, err = ctl("Nobody stats")
    assert.equal(1, rc)
    assert.matches("unknown server Nobody (servers: A, B)", err, 1, true)
  end)

  it("finds the socket of a relative log_dir from any directory", function()
    local dir = herd.tmpdir()
    local path = dir .. "/herd.lua"
    herd.write_file(path, "return { servers = { C = { port = 13320 } }, log_dir = 'rel-logs' }")
    os.execute(("cd / && %s --config %s C >/dev/null 2>&1 & echo $! >%s/pid"):format(
      herd.quote(herd.bin), path, dir))
    local pid = herd.eventually(function() return tonumber(herd.read_file(dir .. "/pid") or "") end)
    finally(function() os.execute("kill " .. pid .. " 2>/dev/null") end)
    assert.truthy(herd.wait_port(13320, 5))
    assert.truthy(herd.read_file(dir .. "/rel-logs/C.log"))
    local out = herd.sh(("cd /tmp && %s ctl --config %s C stats"):format(herd.quote(herd.bin), path))
    assert.matches("records %d+", out)
  end)

  it("says in the reload reply that a change needs a restart", function()
    local conf = herd.read_file(h.config)
    herd.write_file(h.config, conf:gsub('%["max_records"%] = %d+', "") ..
      "")
    local text = "return " .. herd.serialize(h.conf):gsub("^{", "{ limits = { max_records = 7 },", 1) .. "\n"
    herd.write_file(h.config, text)
    finally(function() herd.write_file(h.config, conf) end)
    local rc, out = ctl("A reload")
    assert.equal(0, rc)
    assert.matches("^ok: .*the config changes limits, which take effect only on a restart", out)
  end)
end)
