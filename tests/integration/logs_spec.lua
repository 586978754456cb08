-- Log privacy and what the log tells an operator (issue 12's log items,
-- issue 13 items 12 and 13). Ports 13400-13499 (peers 14400-14499).
local herd = require "helpers.herd"
local mock_places = require "helpers.places_mock"

local function mode(path)
  return herd.sh("stat -c %a " .. herd.quote(path)):gsub("%s+$", "")
end

describe("server logs #integration", function()
  it("are 0640 in a 0750 directory herd creates, the admin socket 0600; an existing directory keeps its mode", function()
    local h = herd.start({ servers = { A = { port = 13401 } } })
    finally(function() h:stop() end)
    assert.equal("750", mode(h.conf.log_dir))
    assert.equal("640", mode(h.conf.log_dir .. "/A.log"))
    -- The admin socket beside it answers herd ctl: its owner only.
    assert.equal("600", mode(h.conf.log_dir .. "/A.sock"))
    local dir = herd.tmpdir()
    os.execute("chmod 755 " .. dir)
    local h2 = herd.start({ servers = { B = { port = 13402 } }, log_dir = dir })
    finally(function() h2:stop() end)
    assert.equal("755", mode(dir))
  end)

  it("with log_io = false keep client lines out, and links and warnings in", function()
    local h = herd.start({ servers = { A = { port = 13403 }, B = { port = 13404 } },
      links = { { "A", "B" } }, log_io = false })
    finally(function() h:stop() end)
    local c = h:client("A")
    local at = c:request("IAMAT secret.client +34.068930-118.445127 " .. herd.now())
    assert.matches("^AT A ", at)
    assert.matches("^%? ", c:request("BOGUS line"))
    c:close()
    assert.truthy(herd.eventually(function() return h:log("A"):find("link B up", 1, true) end, 5))
    local log = h:log("A")
    assert.falsy(log:find("secret.client", 1, true))
    assert.falsy(log:find(" IN ", 1, true))
    assert.falsy(log:find(" OUT ", 1, true))
  end)

  it("escape a warning's newline on stderr as in the file", function()
    local dir = herd.tmpdir()
    local script = dir .. "/warn.lua"
    herd.write_file(script, [[
local core = require "core"
return { on_start = function() core.warn("peer Evil\nherd: ERROR: forged") end }
]])
    local h = herd.start({ servers = { A = { port = 13405 } } }, { scripts = { script } })
    finally(function() h:stop() end)
    local err = herd.eventually(function()
      local e = h:stderr("A") or ""
      return e:find("Evil", 1, true) and e
    end, 5)
    assert.truthy(err)
    assert.falsy(err:find("\nherd: ERROR: forged", 1, true), err)
    assert.truthy(err:find("peer Evil\\nherd: ERROR: forged", 1, true), err)
  end)

  it("say which places data was loaded", function()
    local h = herd.start({ servers = { A = { port = 13406 } } })
    finally(function() h:stop() end)
    local line = herd.eventually(function() return h:log("A"):match("INFO places: [^\n]*") end, 5)
    assert.matches("provider local, .*places%-sample%.bin: %d+ places %(the sample", line)
  end)
end)

describe("a failing places provider #integration #http", function()
  it("is a WARN at the first failure, then counted, not one line per query", function()
    local m = mock_places.start(13450)
    finally(function() m:stop() end)
    m:config({ mode = "500" })
    local h = herd.start({ servers = { A = { port = 13407 } },
      places = { provider = "google", timeout_ms = 2000 } },
      { env = { HERD_PLACES_KEY = "k", HERD_PLACES_URL = mock_places.url(13450, "google") } })
    finally(function() h:stop() end)
    local c = h:client("A")
    assert.matches("^AT A ", c:request("IAMAT kiwi +34.068930-118.445127 " .. herd.now()))
    for _ = 1, 5 do
      c:send("WHATSAT kiwi 10 5\n")
      local reply = assert(c:until_blank())
      assert.matches('"status"', reply)
    end
    c:close()
    local log = h:log("A")
    local _, warns = log:gsub("WARN script: places: provider google failed", "")
    assert.equal(1, warns, log)
    assert.matches("WARN script: places: provider google failed: UNKNOWN_ERROR", log, 1, true)
    assert.matches("places: provider google failed", h:stderr("A"))
  end)
end)
