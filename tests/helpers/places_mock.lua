-- A mock places server for the tests: the legacy Nearby Search, Places API
-- (New) searchNearby and Overpass interpreter, on 127.0.0.1, with the
-- request and response shapes of the real services.
--
-- As a program:  lua5.4 tests/helpers/places_mock.lua PORT [IDLE_S]
--                (exits by itself after IDLE_S seconds without a request,
--                default 120, so a crashed test run leaves nothing behind)
-- As a module:   local mock = require "helpers.places_mock"
--                local m = mock.start(21001)   -- spawns the program, waits
--                m:config{ delay_ms = 200, mode = "500" }
--                m:requests()  -- what it received: method, path, query,
--                              -- headers (lowercased), body, conn, t_ms
--                m:reset()     -- forget requests, back to default config
--                m:stop()      -- kill by pid, wait for it to go
--
-- Config (POST /__mock/config, JSON): delay_ms (before each answer), mode
-- ("ok", "zero", "500", "badjson", "hang" (never answers), "close" (closes
-- without answering), "denied" (REQUEST_DENIED in a 200 for the legacy API,
-- 403 PERMISSION_DENIED for the new one, 429 for Overpass), "overlimit",
-- "big" (a 3 MiB answer, or big_bytes of padding)), count (results per answer, default 20), pretty
-- (legacy answers spread over lines with blank lines, default true).
-- One process, one thread: non-blocking sockets and socket.select, so
-- hundreds of concurrent delayed requests cost nothing but a timer each.

local socket = require "socket"
local cjson = require "cjson"

local LEGACY = "/maps/api/place/nearbysearch/json"
local NEW = "/v1/places:searchNearby"
local OVERPASS = "/api/interpreter"
local EMPTY = "__mock_empty_array__"

local function now_ms()
  return socket.gettime() * 1000
end

local function url_decode(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h)
    return string.char(tonumber(h, 16))
  end))
end

local function parse_form(s)
  local t = {}
  for pair in (s or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    t[url_decode(k)] = url_decode(v)
  end
  return t
end

-- Encodes with cjson, then turns the EMPTY marker into [] (cjson 2.1.0
-- writes an empty table as {}).
local function encode(v)
  return (cjson.encode(v):gsub('"' .. EMPTY .. '"', "[]"))
end

---------------------------------------------------------------------------
-- The module side: start/stop/control from a spec.
---------------------------------------------------------------------------

local M = {}

local function http(port, method, path, body)
  local c = socket.tcp()
  c:settimeout(5)
  local ok, err = c:connect("127.0.0.1", port)
  if not ok then return nil, err end
  body = body or ""
  c:send(("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n" ..
    "Connection: close\r\n\r\n%s"):format(method, path, #body, body))
  local all, rerr, partial = c:receive("*a")
  c:close()
  all = all or partial
  if not all or all == "" then return nil, rerr or "empty reply" end
  local status = tonumber(all:match("^HTTP/1%.%d (%d+)"))
  local resp_body = all:match("\r\n\r\n(.*)$") or ""
  return status, resp_body
end

local Mock = {}
Mock.__index = Mock

local function here()
  local src = debug.getinfo(1, "S").source
  return src:sub(1, 1) == "@" and src:sub(2) or "tests/helpers/places_mock.lua"
end

function M.start(port)
  local p = assert(io.popen(("exec lua5.4 %s %d >/dev/null 2>&1 & echo $!")
    :format(here(), port)))
  local pid = tonumber(p:read("*l"))
  p:close()
  assert(pid, "places_mock: no pid")
  local self = setmetatable({ port = port, pid = pid }, Mock)
  local deadline = now_ms() + 5000
  while now_ms() < deadline do
    if http(port, "GET", "/__mock/ping") == 200 then return self end
    socket.sleep(0.02)
  end
  self:stop()
  error("places_mock: did not start on port " .. port)
end

function Mock:config(t)
  local status, body = http(self.port, "POST", "/__mock/config", cjson.encode(t))
  assert(status == 200, "places_mock config: " .. tostring(body))
end

function Mock:reset()
  local status, body = http(self.port, "POST", "/__mock/reset")
  assert(status == 200, "places_mock reset: " .. tostring(body))
end

function Mock:requests()
  local status, body = http(self.port, "GET", "/__mock/requests")
  assert(status == 200, "places_mock requests: " .. tostring(body))
  return cjson.decode(body)
end

function Mock:stop()
  if not self.pid then return end
  os.execute(("kill %d 2>/dev/null"):format(self.pid))
  for _ = 1, 100 do -- up to 2 s, then SIGKILL
    if not os.execute(("kill -0 %d 2>/dev/null"):format(self.pid)) then
      break
    end
    socket.sleep(0.02)
  end
  os.execute(("kill -9 %d 2>/dev/null"):format(self.pid))
  self.pid = nil
end

-- Starts a mock on port, then start_herd(); if that fails the mock is
-- stopped before the error goes on, so a failed set-up leaves no process.
function M.start_with(port, start_herd)
  local m = M.start(port)
  local ok, h = pcall(start_herd)
  if not ok then
    m:stop()
    error(h, 0)
  end
  return m, h
end

M.url = function(port, api)
  local path = ({ google = LEGACY, ["google-new"] = NEW, overpass = OVERPASS })[api]
  return "http://127.0.0.1:" .. port .. assert(path, "unknown api " .. tostring(api))
end

---------------------------------------------------------------------------
-- The server side.
---------------------------------------------------------------------------

local function default_config()
  return { delay_ms = 0, mode = "ok", count = 20, pretty = true }
end

local config = default_config()
local records = {}
local answers, answers_n = {}, 0 -- cache: request key -> raw response

local REASONS = { [200] = "OK", [400] = "Bad Request", [403] = "Forbidden",
  [404] = "Not Found", [429] = "Too Many Requests",
  [500] = "Internal Server Error" }

local function response(status, body, ctype)
  return ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" ..
    "Connection: keep-alive\r\n\r\n%s"):format(status, REASONS[status] or "X",
    ctype or "application/json; charset=UTF-8", #body, body)
end

-- The i-th mock place near (lat, lon): farther with every i.
local function spot(lat, lon, i)
  return lat + i * 0.0007, lon + i * 0.0005
end

local function legacy_place(lat, lon, i)
  local plat, plon = spot(lat, lon, i)
  local p = {
    business_status = "OPERATIONAL",
    geometry = {
      location = { lat = plat, lng = plon },
      viewport = {
        northeast = { lat = plat + 0.001, lng = plon + 0.001 },
        southwest = { lat = plat - 0.001, lng = plon - 0.001 },
      },
    },
    icon = "https://maps.gstatic.com/mapfiles/place_api/icons/v1/png_71/generic_business-71.png",
    icon_background_color = "#7B9EB0",
    icon_mask_base_uri = "https://maps.gstatic.com/mapfiles/place_api/icons/v2/generic_pinlet",
    name = "Mock Place " .. i,
    opening_hours = { open_now = (i % 2 == 1) },
    photos = { {
      height = 3024, width = 4032, photo_reference = "mockphoto" .. i,
      html_attributions = (i == 2) and EMPTY
        or { '<a href="https://maps.google.com/maps/contrib/' .. i .. '">A</a>' },
    } },
    place_id = "ChIJmock" .. i,
    plus_code = { compound_code = "3G9H+X4 Los Angeles, CA",
      global_code = "85633G9H+X4" },
    rating = 4.5,
    reference = "ChIJmock" .. i,
    scope = "GOOGLE",
    types = { "restaurant", "food", "point_of_interest", "establishment" },
    user_ratings_total = 100 + i,
    vicinity = i .. " Mock Street, Los Angeles",
  }
  if i == 3 then p.vicinity = "Line one\n\n\nline two" end
  return p
end

local function new_place(lat, lon, i)
  local plat, plon = spot(lat, lon, i)
  return {
    id = "ChIJmock" .. i,
    types = { "restaurant", "food", "point_of_interest", "establishment" },
    formattedAddress = i .. " Mock Street, Los Angeles, CA 90024, USA",
    shortFormattedAddress = i .. " Mock Street, Los Angeles",
    location = { latitude = plat, longitude = plon },
    viewport = {
      low = { latitude = plat - 0.001, longitude = plon - 0.001 },
      high = { latitude = plat + 0.001, longitude = plon + 0.001 },
    },
    rating = 4.5,
    userRatingCount = 100 + i,
    priceLevel = "PRICE_LEVEL_MODERATE",
    businessStatus = "OPERATIONAL",
    displayName = { text = "Mock Place " .. i, languageCode = "en" },
    iconMaskBaseUri = "https://maps.gstatic.com/mapfiles/place_api/icons/v2/generic_pinlet",
    iconBackgroundColor = "#7B9EB0",
    plusCode = { globalCode = "85633G9H+X4",
      compoundCode = "3G9H+X4 Los Angeles, CA" },
    currentOpeningHours = { openNow = (i % 2 == 1) },
  }
end

local function osm_element(lat, lon, i)
  local plat, plon = spot(lat, lon, i)
  local e = {
    type = (i % 3 == 0) and "way" or "node",
    id = 1000 + i,
    tags = { amenity = (i % 2 == 0) and "cafe" or "restaurant",
      name = "Mock Amenity " .. i, ["addr:housenumber"] = tostring(i),
      ["addr:street"] = "Mock Street", ["addr:city"] = "Los Angeles" },
  }
  if e.type == "way" then
    e.center = { lat = plat, lon = plon }
  else
    e.lat, e.lon = plat, plon
  end
  return e
end

local function pretty(body)
  -- Google's legacy answers are indented over many lines; add blank lines
  -- too, so the herd's newline collapsing has something to do.
  return "{\n\n   " .. body:sub(2, -2):gsub(',"', ',\n\n\n   "') .. "\n}\n\n"
end

local function answer_legacy(req)
  local q = req.query
  local mode = config.mode
  if not q.key or q.key == "" or mode == "denied" then
    return response(200, encode {
      error_message = q.key and "The provided API key is invalid."
        or "You must use an API key to authenticate each request to Google Maps Platform APIs.",
      html_attributions = EMPTY, results = EMPTY, status = "REQUEST_DENIED" })
  end
  if mode == "overlimit" then
    return response(200, encode { error_message = "You have exceeded your daily request quota for this API.",
      html_attributions = EMPTY, results = EMPTY, status = "OVER_QUERY_LIMIT" })
  end
  local lat, lon = (q.location or ""):match("^([-+]?[%d.]+),([-+]?[%d.]+)$")
  local radius = tonumber(q.radius)
  if not lat or not radius or radius <= 0 or radius > 50000 then
    return response(200, encode { html_attributions = EMPTY, results = EMPTY,
      status = "INVALID_REQUEST" })
  end
  local n = mode == "zero" and 0 or config.count
  local results = {}
  for i = 1, math.min(n, 20) do
    results[i] = legacy_place(tonumber(lat), tonumber(lon), i)
  end
  local body = encode { html_attributions = EMPTY,
    results = #results > 0 and results or EMPTY,
    status = #results > 0 and "OK" or "ZERO_RESULTS" }
  if config.pretty then body = pretty(body) end
  return response(200, body)
end

local function new_error(status, code, message)
  return response(status, encode { error = { code = status, message = message,
    status = code } })
end

local function answer_new(req)
  local h = req.headers
  if config.mode == "denied" or not h["x-goog-api-key"] then
    return new_error(403, "PERMISSION_DENIED",
      "API key not valid. Please pass a valid API key.")
  end
  if config.mode == "overlimit" then
    return new_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.")
  end
  if not h["x-goog-fieldmask"] then
    return new_error(400, "INVALID_ARGUMENT",
      "FieldMask is a required parameter. See how to provide it here.")
  end
  local ok, body = pcall(cjson.decode, req.body)
  local circle = ok and type(body) == "table" and body.locationRestriction
    and body.locationRestriction.circle
  local c = circle and circle.center
  if not (c and tonumber(c.latitude) and tonumber(c.longitude)
      and tonumber(circle.radius) and circle.radius > 0
      and circle.radius <= 50000) then
    return new_error(400, "INVALID_ARGUMENT", "Invalid locationRestriction.")
  end
  local max = body.maxResultCount or 20
  if type(max) ~= "number" or max < 1 or max > 20 then
    return new_error(400, "INVALID_ARGUMENT",
      "maxResultCount must be between 1 and 20.")
  end
  local n = config.mode == "zero" and 0 or math.min(config.count, max)
  if n == 0 then return response(200, "{}\n") end
  local places = {}
  for i = 1, n do places[i] = new_place(c.latitude, c.longitude, i) end
  return response(200, encode { places = places })
end

local function answer_overpass(req)
  if config.mode == "denied" or config.mode == "overlimit" then
    return response(429, "<html><body>Too Many Requests</body></html>",
      "text/html")
  end
  local form = parse_form(req.body)
  local data = form.data or ""
  local r, lat, lon = data:match("around:([%d.]+),([-+]?[%d.]+),([-+]?[%d.]+)")
  if not data:find("[out:json]", 1, true) or not r then
    return response(400, "<html><body>Error: bad query</body></html>",
      "text/html")
  end
  local n = config.mode == "zero" and 0 or config.count
  local elements = {}
  for i = 1, n do elements[i] = osm_element(tonumber(lat), tonumber(lon), i) end
  return response(200, encode {
    version = 0.6, generator = "Overpass API 0.7.62 (mock)",
    osm3s = { timestamp_osm_base = "2024-01-01T00:00:00Z",
      copyright = "The data included in this document is from www.openstreetmap.org. The data is made available under ODbL." },
    elements = #elements > 0 and elements or EMPTY })
end

-- Returns the raw response, or "hang" / "close".
local function handle(req)
  local path = req.path
  if path == "/__mock/ping" then return response(200, "{}"), true end
  if path == "/__mock/config" then
    local ok, t = pcall(cjson.decode, req.body)
    if not ok or type(t) ~= "table" then return response(400, "{}") end
    for k, v in pairs(t) do config[k] = v end
    return response(200, encode(config)), true
  end
  if path == "/__mock/reset" then
    config, records = default_config(), {}
    return response(200, "{}"), true
  end
  if path == "/__mock/requests" then
    return response(200, #records > 0 and encode(records) or "[]"), true
  end
  if #records < 100000 then records[#records + 1] = req end
  local mode = config.mode
  if mode == "hang" or mode == "close" then return mode end
  if mode == "500" then
    return response(500, "<html><body>Internal Server Error</body></html>",
      "text/html")
  end
  if mode == "badjson" then return response(200, '{"results": [ {"name": ') end
  if mode == "big" then
    return response(200, '{"status":"OK","results":[],"pad":"' ..
      string.rep("x", config.big_bytes or 3 * 1024 * 1024) .. '"}')
  end
  -- Answers depend only on the API, the request's centre and limits and
  -- the config, so identical ones are built once (hundreds of concurrent
  -- requests would otherwise spend the mock's time encoding JSON).
  -- The radius only matters through its validity; leave it out of the key.
  local radius = tonumber(req.query.radius or req.body:match('"radius":%s*([-%d.eE+]+)')
    or (parse_form(req.body).data or ""):match("around:([-%d.]+)"))
  local valid = radius and radius > 0 and radius <= 50000
  local key = table.concat({ path, req.method,
    (req.raw_query:gsub("radius=[^&]*", "")),
    (req.body:gsub('"radius":%s*[-%d.eE+]+', ""):gsub("around%%3A[-%d.]+", "")),
    tostring(valid),
    req.headers["x-goog-api-key"] and "k" or "-",
    req.headers["x-goog-fieldmask"] and "f" or "-", mode,
    tostring(config.count), tostring(config.pretty) }, "\0")
  local cached = answers[key]
  if cached then return cached end
  local resp
  if path == LEGACY and req.method == "GET" then
    resp = answer_legacy(req)
  elseif path == NEW and req.method == "POST" then
    resp = answer_new(req)
  elseif path == OVERPASS and (req.method == "POST" or req.method == "GET") then
    if req.method == "GET" then req.body = req.raw_query end
    resp = answer_overpass(req)
  end
  if resp then
    if answers_n > 1000 then answers, answers_n = {}, 0 end
    answers[key], answers_n = resp, answers_n + 1
    return resp
  end
  return response(404, encode { error = "no such endpoint: " .. path })
end

-- Parses one request off the front of buf: returns req, rest or nil.
local function parse(buf, conn_id)
  local head_end = buf:find("\r\n\r\n", 1, true)
  if not head_end then return nil end
  local head = buf:sub(1, head_end - 1)
  local method, target = head:match("^(%u+) (%S+) HTTP/1%.%d")
  local headers = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
    headers[name:lower()] = value
  end
  local len = tonumber(headers["content-length"] or "0") or 0
  if #buf < head_end + 3 + len then return nil end
  local body = buf:sub(head_end + 4, head_end + 3 + len)
  local path, raw_query = (target or "/"):match("^([^?]*)%??(.*)$")
  return {
    method = method or "?", path = path, raw_query = raw_query,
    query = parse_form(raw_query), headers = headers, body = body,
    conn = conn_id, t_ms = now_ms(),
  }, buf:sub(head_end + 4 + len)
end

local function serve(port, idle_s)
  local server = assert(socket.bind("127.0.0.1", port, 1024))
  local last_activity = now_ms()
  server:settimeout(0)
  local conns = {}   -- socket -> { id, inbuf, out, queue = { {due, resp} } }
  local order = {}   -- sockets, for select
  local next_id = 0

  local function drop(c)
    conns[c] = nil
    for i, s in ipairs(order) do
      if s == c then table.remove(order, i) break end
    end
    c:close()
  end

  while true do
    local now = now_ms()
    if now - last_activity > idle_s * 1000 then
      io.stderr:write("places_mock: idle for ", idle_s, " s, exiting\n")
      os.exit(0)
    end
    local timeout = 1.0
    local sendt = {}
    for _, c in ipairs(order) do
      local st = conns[c]
      -- Move answers that are due into the output, in request order.
      while st.queue[1] and st.queue[1].due <= now do
        local item = table.remove(st.queue, 1)
        if item.resp == "close" then st.close_after = true
        elseif item.resp ~= "hang" then st.out = st.out .. item.resp end
      end
      if st.queue[1] then
        timeout = math.min(timeout, (st.queue[1].due - now) / 1000)
      end
      if st.out ~= "" then sendt[#sendt + 1] = c end
      if st.close_after and st.out == "" then st.dead = true end
    end
    for i = #order, 1, -1 do
      if conns[order[i]].dead then drop(order[i]) end
    end
    local recvt = { server }
    for _, c in ipairs(order) do recvt[#recvt + 1] = c end
    local readable, writable = socket.select(recvt, sendt, math.max(timeout, 0))
    for _, c in ipairs(readable or {}) do
      if c == server then
        while true do
          local client = server:accept()
          if not client then break end
          client:settimeout(0)
          -- luasocket writes in 8 KiB steps; without this, Nagle holds the
          -- last step until the client's delayed ACK (40 ms a response).
          client:setoption("tcp-nodelay", true)
          next_id = next_id + 1
          conns[client] = { id = next_id, inbuf = "", out = "", queue = {} }
          order[#order + 1] = client
        end
      elseif conns[c] then
        local st = conns[c]
        local data, err, partial = c:receive(65536)
        local chunk = data or partial
        if chunk and #chunk > 0 then
          st.inbuf = st.inbuf .. chunk
          last_activity = now_ms()
        end
        while true do
          local req, rest = parse(st.inbuf, st.id)
          if not req then break end
          st.inbuf = rest
          local resp, control = handle(req)
          local delay = control and 0 or (tonumber(config.delay_ms) or 0)
          st.queue[#st.queue + 1] = { due = now_ms() + delay, resp = resp }
          if (req.headers.connection or ""):lower() == "close"
              and resp ~= "hang" then
            st.queue[#st.queue + 1] = { due = now_ms() + delay, resp = "close" }
          end
        end
        if err == "closed" then drop(c) end
      end
    end
    for _, c in ipairs(writable or {}) do
      local st = conns[c]
      if st and st.out ~= "" then
        local last, err, partial_last = c:send(st.out)
        local sent = last or partial_last or 0
        st.out = st.out:sub(sent + 1)
        if err == "closed" then drop(c) end
      end
    end
  end
end

local first, second = ...
if first and tonumber(first) then serve(tonumber(first), tonumber(second) or 120) end

return M
