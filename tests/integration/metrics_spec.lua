-- GET /metrics (core/metrics.c): the Prometheus endpoint of a server with
-- metrics_port, read by the Prometheus client's own parser
-- (tests/helpers/prom_parse.py, Debian's python3-prometheus-client) and by
-- hand. Ports: clients 15100-15109, peers 16100-16109, metrics 15600-15609,
-- the places mock 15105.
local herd = require "helpers.herd"
local mock_places = require "helpers.places_mock"
local socket = require "socket"
local cjson = require "cjson"

local MOCK = 15105
local METRICS = 15600

-- One raw HTTP exchange: sends request, reads until the server closes (or
-- timeout). Returns the whole answer, or nil and why.
local function exchange(port, request, timeout)
  local s = socket.tcp()
  s:settimeout(timeout or 5)
  local ok, err = s:connect("127.0.0.1", port)
  if not ok then return nil, err end
  s:send(request)
  local out, rerr, partial = s:receive("*a")
  s:close()
  if not out then return nil, rerr, partial end
  return out
end

local function get(port, path)
  local out = assert(exchange(port, "GET " .. path .. " HTTP/1.1\r\nHost: x\r\n\r\n"))
  local head, body = out:match("^(.-)\r\n\r\n(.*)$")
  return tonumber(head:match("^HTTP/1%.1 (%d+)")), head, body
end

local function parse(text)
  local dir = herd.tmpdir()
  local path = dir .. "/metrics.txt"
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  local out = herd.sh("/usr/bin/python3 tests/helpers/prom_parse.py < " .. herd.quote(path))
  os.execute("rm -rf " .. herd.quote(dir))
  local r = cjson.decode(out)
  assert(not r.error, "the Prometheus parser refused the text: " .. tostring(r.error))
  local fams = {}
  for _, fam in ipairs(r.families) do fams[fam.name] = fam end
  return fams
end

-- The value of the sample called name (with labels, if given) in fams.
local function value(fams, family, name, labels)
  local fam = fams[family]
  if not fam then return nil end
  for _, s in ipairs(fam.samples) do
    local match = s.name == name
    for k, v in pairs(labels or {}) do match = match and s.labels[k] == v end
    if match then return s.value end
  end
end

local function scrape(port)
  local status, head, body = get(port, "/metrics")
  assert.equal(200, status)
  return parse(body), body, head
end

-- Buckets never decrease, the +Inf bucket is the count.
local function check_histogram(fams, name)
  local fam = assert(fams[name], "no histogram " .. name)
  assert.equal("histogram", fam.type)
  local last, inf, count, les = -1, nil, nil, 0
  for _, s in ipairs(fam.samples) do
    if s.name == name .. "_bucket" then
      assert.is_true(s.value >= last, name .. " buckets decrease at le=" .. s.labels.le)
      last = s.value
      les = les + 1
      if s.labels.le == "+Inf" then inf = s.value end
    elseif s.name == name .. "_count" then
      count = s.value
    end
  end
  assert.equal(18, les) -- 50 µs .. 10 s, and +Inf
  assert.equal(count, inf)
  return count
end

describe("metrics #integration", function()
  local m, h
  lazy_setup(function()
    m, h = mock_places.start_with(MOCK, function()
      return herd.start({
        servers = {
          A = { port = 15100, peer_port = 16100, metrics_port = METRICS },
          B = { port = 15101, peer_port = 16101 },
        },
        links = { { "A", "B" } },
        places = { provider = "google", url = mock_places.url(MOCK, "google"), key = "k" },
      })
    end)
    assert(herd.eventually(function()
      return (h:ctl("A", "links") or ""):match("B up")
    end), "the link A-B did not come up")
  end)
  lazy_teardown(function()
    if h then h:stop() end
    if m then m:stop() end
  end)

  it("serves every stat of herd ctl stats, the links and build info in the text format",
    function()
      local fams, _, head = scrape(METRICS)
      assert.matches("\r\nContent%-Type: text/plain; version=0%.0%.4", head)
      local stats = h:stats("A")
      local n = 0
      for name in pairs(stats) do
        n = n + 1
        local fam = fams["herd_" .. name]
        assert(fam, "stat " .. name .. " is not on /metrics")
        assert.is_true(fam.type == "counter" or fam.type == "gauge", name)
        assert.is_true(#fam.documentation > 0, name .. " has no HELP")
        local sample = fam.type == "counter" and "herd_" .. name .. "_total" or "herd_" .. name
        assert.is_not_nil(value(fams, "herd_" .. name, sample), name)
      end
      assert.is_true(n >= 30, "only " .. n .. " stats")
      assert.equal(1, value(fams, "herd_info", "herd_info",
        { name = "A", provider = "google", links = "tls-secret", dissemination = "flood" }))
      assert.equal(1, value(fams, "herd_link_up", "herd_link_up", { peer = "B" }))
      assert.is_not_nil(value(fams, "herd_link_bytes_queued", "herd_link_bytes_queued", { peer = "B" }))
      assert.equal("counter", fams.herd_link_frames_out.type)
      for _, hist in ipairs({ "herd_iamat_seconds", "herd_whatsat_seconds",
        "herd_places_request_seconds", "herd_loop_turn_seconds" }) do
        check_histogram(fams, hist)
      end
    end)

  it("moves counters and histograms with traffic", function()
    local before = scrape(METRICS)
    local c = h:client("A")
    for i = 1, 5 do
      assert.matches("^AT A ", c:request(("IAMAT m%d +34.068930-118.445127 %s"):format(i, herd.now())))
    end
    c:send("WHATSAT m1 10 2\n")
    assert.matches("^AT A ", c:line())
    c:until_blank()
    c:close()
    local after = scrape(METRICS)
    local function delta(fam, name, labels)
      return value(after, fam, name, labels) - value(before, fam, name, labels)
    end
    assert.equal(6, delta("herd_lines_in", "herd_lines_in_total"))
    assert.equal(5, delta("herd_iamat_seconds", "herd_iamat_seconds_count"))
    assert.equal(1, delta("herd_whatsat_seconds", "herd_whatsat_seconds_count"))
    assert.equal(1, delta("herd_places_request_seconds", "herd_places_request_seconds_count"))
    assert.equal(1, delta("herd_http_completed", "herd_http_completed_total"))
    assert.equal(5, delta("herd_records", "herd_records"))
    assert.is_true(delta("herd_link_frames_out", "herd_link_frames_out_total", { peer = "B" }) >= 5)
    assert.is_true(delta("herd_whatsat_seconds", "herd_whatsat_seconds_sum") > 0)
    assert.is_true(delta("herd_loop_turn_seconds", "herd_loop_turn_seconds_count") >= 6)
    for _, hist in ipairs({ "herd_iamat_seconds", "herd_whatsat_seconds",
      "herd_places_request_seconds", "herd_loop_turn_seconds" }) do
      check_histogram(after, hist)
    end
  end)

  it("answers 404 to anything but GET /metrics", function()
    for _, req in ipairs({ "GET / HTTP/1.1\r\n\r\n", "GET /metricsx HTTP/1.1\r\n\r\n",
      "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "HEAD /metrics HTTP/1.1\r\n\r\n",
      "get /metrics HTTP/1.1\r\n\r\n", "\r\n\r\n" }) do
      local out = assert(exchange(METRICS, req))
      assert.matches("^HTTP/1%.1 404 ", out, req)
    end
  end)

  it("gives one response per connection, however many requests it carries", function()
    local req = "GET /metrics HTTP/1.1\r\n\r\n"
    local out = assert(exchange(METRICS, req .. req .. req))
    local n = select(2, out:gsub("HTTP/1%.1 200", ""))
    assert.equal(1, n)
  end)

  it("bounds hostile scrapers and keeps serving clients meanwhile", function()
    -- a request that never ends: closed at METRICS_MAX_REQUEST bytes
    local s = socket.tcp()
    s:settimeout(5)
    assert(s:connect("127.0.0.1", METRICS))
    s:send("GET /" .. string.rep("a", 5000))
    local out, err = s:receive("*a")
    assert.equal("", out or "", err)
    s:close()
    -- a scraper that never sends its request: closed at its deadline
    local slow = socket.tcp()
    slow:settimeout(15)
    assert(slow:connect("127.0.0.1", METRICS))
    slow:send("GET /metrics HTTP/1.1\r\n")
    local slow_start = socket.gettime()
    -- scrapers that never read their answer hold no slot once it is written
    local mute = {}
    for i = 1, 12 do
      mute[i] = socket.tcp()
      assert(mute[i]:connect("127.0.0.1", METRICS))
      mute[i]:send("GET /metrics HTTP/1.1\r\n\r\n")
    end
    -- too many at once: the ones over the limit are closed at once
    local idle, closed = {}, 0
    for i = 1, 20 do
      idle[i] = socket.tcp()
      idle[i]:settimeout(1)
      assert(idle[i]:connect("127.0.0.1", METRICS))
    end
    for i = 1, 20 do
      local _, e = idle[i]:receive(1)
      if e == "closed" then closed = closed + 1 end
    end
    assert.is_true(closed >= 20 - 8, closed .. " of 20 idle scrapers closed")
    -- the loop still serves clients at once
    local c = h:client("A")
    local t0 = socket.gettime()
    assert.matches("^AT A ", c:request("IAMAT busy +34.068930-118.445127 " .. herd.now()))
    assert.is_true(socket.gettime() - t0 < 1)
    c:close()
    for i = 1, 20 do idle[i]:close() end
    for i = 1, 12 do mute[i]:close() end
    -- the slow one goes by its deadline (10 s), and a real scrape then works
    local rest, e = slow:receive("*a")
    assert.equal("", rest or "", e)
    assert.is_true(socket.gettime() - slow_start < 13, "the slow scraper stayed too long")
    slow:close()
    assert.equal(200, (get(METRICS, "/metrics")))
  end)

  it("documents every metric it serves", function()
    local fams = scrape(METRICS)
    local f = assert(io.open("docs/operations.md"))
    local doc = f:read("a")
    f:close()
    for name, fam in pairs(fams) do
      local shown = fam.type == "counter" and name .. "_total" or name
      assert(doc:find("`" .. shown .. "`", 1, true), shown .. " is not in docs/operations.md")
    end
  end)

  it("keeps its metrics port across a reload that changes it, and says so", function()
    h.conf.servers.A.metrics_port = METRICS + 1
    local f = assert(io.open(h.config, "w"))
    f:write("return " .. herd.serialize(h.conf) .. "\n")
    f:close()
    assert.matches("^ok", h:ctl("A", "reload"))
    assert.matches("reload: the config changes servers", h:log("A"))
    assert.equal(200, (get(METRICS, "/metrics")))
  end)
end)

describe("loop turn metrics #integration", function()
  it("show a long turn: loop_turn_us_max and herd_loop_turn_seconds", function()
    local h = herd.start({ servers = { T = { port = 15103, metrics_port = 15603 } } },
      { scripts = { "../fixtures/spin.lua" } })
    local c = h:client("T")
    assert.matches("^AT T ", c:request("IAMAT t1 +34.068930-118.445127 " .. herd.now()))
    local before = scrape(15603)
    local max_before = h:stats("T").loop_turn_us_max
    assert.is_true(max_before < 50000, "a turn of " .. max_before .. " us before the spin")
    assert.equal("SPUN", c:request("SPIN 60"))
    c:close()
    local after = scrape(15603)
    local max_after = h:stats("T").loop_turn_us_max
    assert.is_true(max_after >= 60000, "longest turn " .. max_after .. " us after a 60 ms spin")
    -- the turns over 25 ms: all of them minus those at or under 25 ms
    local function over_25ms(fams)
      return value(fams, "herd_loop_turn_seconds", "herd_loop_turn_seconds_count")
        - value(fams, "herd_loop_turn_seconds", "herd_loop_turn_seconds_bucket", { le = "0.025" })
    end
    assert.equal(1, over_25ms(after) - over_25ms(before))
    h:stop()
  end)
end)

describe("metrics config #integration", function()
  local function check(servers)
    local dir = herd.tmpdir()
    local path = dir .. "/herd.lua"
    local f = assert(io.open(path, "w"))
    f:write("return { servers = " .. servers .. ", links = {} }\n")
    f:close()
    local rc, out, err = herd.run("--check --config " .. herd.quote(path))
    os.execute("rm -rf " .. herd.quote(dir))
    return rc, (out or "") .. (err or "")
  end

  it("checks metrics_port and metrics_host", function()
    local rc, out = check("{ A = { port = 15102, metrics_port = 70000 } }")
    assert.equal(1, rc)
    assert.matches("servers%.A%.metrics_port must be an integer from 1 to 65535", out)
    rc, out = check('{ A = { port = 15102, metrics_port = 15602, metrics_host = "example" } }')
    assert.equal(1, rc)
    assert.matches("servers%.A%.metrics_host must be an IPv4 or IPv6 address", out)
    rc, out = check('{ A = { port = 15102, metrics_port = 15602, metrics_host = "::1" } }')
    assert.equal(0, rc, out)
  end)
end)
