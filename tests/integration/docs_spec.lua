-- The docs against the code, so that drift fails the suite:
--   * every core function a script can call is in docs/core-api.md, and
--     every counter core.stats() (and so herd ctl stats) gives is in
--     core-api.md's list and operations.md's table (a server, port 28990);
--   * every key of the config loader's tables (core/config.c) has its row
--     in operations.md's "The config file";
--   * every relative link of the docs reaches a file, and every #anchor a
--     heading of that file (GitHub's slugs);
--   * the README's sample session, run against the example herd, gets the
--     replies the README shows (free ports);
--   * every spec the docs name as proof (`x_spec`, "test name") exists and
--     has a test of that name (busted --list).
local herd = require "helpers.herd"
local lfs = require "lfs"

local function read(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

-- The Markdown files whose links are checked.
local function doc_files()
  local files = { "README.md" }
  for _, dir in ipairs({ "docs", "examples", "tests" }) do
    for entry in lfs.dir(dir) do
      local path = dir .. "/" .. entry
      if dir == "docs" and entry:match("%.md$") then
        files[#files + 1] = path
      elseif entry ~= "." and entry ~= ".." and lfs.attributes(path .. "/README.md", "mode") == "file" then
        files[#files + 1] = path .. "/README.md"
      end
    end
  end
  table.sort(files)
  return files
end

-- Markdown without fenced code blocks and code spans (no links there).
local function prose(text)
  local out, fenced = {}, false
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if line:match("^%s*```") then
      fenced = not fenced
    elseif not fenced then
      out[#out + 1] = line
    end
  end
  return (table.concat(out, "\n"):gsub("``.-``", ""):gsub("`[^`\n]*`", ""))
end

-- GitHub's anchor for a heading: lower case, punctuation dropped, each
-- space a hyphen; a repeated slug gets -1, -2, ...
local function slug(heading)
  local s = heading:gsub("%[(.-)%]%b()", "%1"):lower()
  s = s:gsub("[^%w _%-\128-\255]", "")
  return (s:gsub(" ", "-"))
end

local function anchors(text)
  local set, seen, fenced = {}, {}, false
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if line:match("^%s*```") then fenced = not fenced end
    local heading = not fenced and line:match("^#+%s+(.-)%s*#*%s*$")
    if heading then
      local s = slug(heading)
      local n = seen[s]
      seen[s] = (n or -1) + 1
      set[n and (s .. "-" .. (n + 1)) or s] = true
    end
  end
  return set
end

-- dir/a/../b -> dir/b
local function normalize(path)
  local parts = {}
  for part in path:gmatch("[^/]+") do
    if part == ".." and #parts > 0 and parts[#parts] ~= ".." then
      parts[#parts] = nil
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  return table.concat(parts, "/")
end

-- What is wrong with the relative links of file: a list of messages.
local function broken_links(file, anchors_of)
  local dir = file:match("^(.*)/[^/]*$") or "."
  local bad = {}
  for target in prose(read(file)):gmatch("%]%(([^)%s]+)[^)]*%)") do
    if not target:match("^%a[%w+.-]*:") then
      local path, anchor = target:match("^([^#]*)#?(.*)$")
      path = path == "" and file or normalize(dir .. "/" .. path)
      local mode = lfs.attributes(path, "mode")
      if not mode then
        bad[#bad + 1] = file .. ": " .. target .. " (no " .. path .. ")"
      elseif anchor ~= "" and path:match("%.md$") and not anchors_of(path)[anchor] then
        bad[#bad + 1] = file .. ": " .. target .. " (no heading #" .. anchor .. " in " .. path .. ")"
      end
    end
  end
  return bad
end

-- The README's sample session: the block after the sample-session marker,
-- each "$ printf '...' [ARG] | nc -q1 HOST PORT" with the lines it prints.
local function sample_session()
  local readme = read("README.md")
  local at = assert(readme:find("<!-- sample-session", 1, true), "no sample-session marker in README.md")
  local block = assert(readme:match("```console\n(.-)```", at), "no console block after the marker")
  local steps = {}
  for line in block:gmatch("([^\n]*)\n") do
    if line:sub(1, 2) == "$ " then
      local fmt, arg, port = line:match("^%$ printf '(.-)'%s*(.-)%s*|%s*nc %-q1 127%.0%.0%.1 (%d+)$")
      assert(fmt, "a command the test cannot run: " .. line)
      steps[#steps + 1] = { fmt = fmt, arg = arg, port = tonumber(port), out = {} }
    else
      assert(#steps > 0, "output before the first command: " .. line)
      table.insert(steps[#steps].out, line)
    end
  end
  assert(#steps >= 2, "the session has fewer than two commands")
  return steps
end

-- Every test busted knows, as one line of normalized text per spec file
-- name ("x_spec" -> its full test names).
local function test_names()
  local names = {}
  for _, run in ipairs({ "default", "chaos" }) do
    local p = assert(io.popen("busted --run=" .. run .. " --list 2>&1"))
    for file, name in p:read("a"):gmatch("([^\n]-)%.lua:%d+: ([^\n]*)") do
      local spec = file:match("([%w_]+_spec)$")
      if spec then names[spec] = (names[spec] or "") .. "\n" .. name:gsub("%s+", " ") end
    end
    p:close()
  end
  return names
end

-- What the docs' citations of tests get wrong: `x_spec` or
-- `path/x_spec.lua`, optionally followed by [,] "the test's name" (cut at
-- a "...").
local function wrong_citations(file, names)
  local text, bad = read(file), {}
  for pos, token in text:gmatch("()`([^`\n]+)`") do
    local spec = token:match("^[%w_/%.]-([%w_]+_spec)%.lua$") or token:match("^([%w_]+_spec)$")
    if spec then
      local quoted = text:match('^%s*,?%s*"([^"]+)"', pos + #token + 2)
      local want = quoted and (quoted:gsub("%.%.%..*$", ""):gsub("….*$", ""):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", ""))
      if not names[spec] then
        bad[#bad + 1] = file .. ": " .. spec .. " is no spec busted knows"
      elseif want and want ~= "" and not names[spec]:find(want, 1, true) then
        bad[#bad + 1] = file .. ": " .. spec .. " has no test \"" .. want .. "\""
      end
    end
  end
  return bad
end

local DIFF = "^[+-]%d+%.%d%d%d%d%d%d%d%d%d$"
local STAMP = "^%d+%.%d%d%d%d%d%d%d%d%d$"

local function fields(line)
  local t = {}
  for f in line:gmatch("%S+") do t[#t + 1] = f end
  return t
end

-- Whether the reply line got matches the README's line shown. An AT line
-- matches field by field, except its time difference and the client's
-- timestamp, which the README shows from one run: both must have their
-- format, the timestamp must be the last one the session sent, the
-- difference small. A
-- line the README shortens with "..." matches when every piece between
-- them appears in order (the first at the start, the last at the end).
local function line_matches(shown, got, sent_stamp)
  if shown:find("...", 1, true) then
    local pieces = {}
    for piece in (shown .. " ..."):gmatch("(.-)%s*%.%.%.%s*") do pieces[#pieces + 1] = piece end
    local pos = 1
    for i, piece in ipairs(pieces) do
      local s, e = got:find(piece, pos, true)
      if not s or (i == 1 and s ~= 1) then return false, "no " .. piece end
      pos = e + 1
    end
    local last = pieces[#pieces]
    return got:sub(-#last) == last, "does not end with " .. last
  end
  if shown:match("^AT ") then
    local s, g = fields(shown), fields(got)
    if #s ~= 6 or #g ~= 6 then return false, "not six fields" end
    for i = 1, 6 do
      if i == 3 then
        if not (s[3]:match(DIFF) and g[3]:match(DIFF) and math.abs(tonumber(g[3])) < 10) then
          return false, "time difference " .. s[3] .. " / " .. g[3]
        end
      elseif i == 6 then
        if not (s[6]:match(STAMP) and g[6] == sent_stamp) then return false, "timestamp " .. g[6] end
      elseif s[i] ~= g[i] then
        return false, "field " .. i
      end
    end
    return true
  end
  return shown == got, "differs"
end

describe("the docs #integration", function()
  local h
  lazy_teardown(function() if h then h:stop() end end)

  it("name every core function and every stat the server has", function()
    h = herd.start({
      servers = { A = { port = 28990 } },
      scripts = { "protocol", "topology", os.getenv("PWD") .. "/tests/fixtures/core_keys.lua" },
    })
    local answer = h:client("A"):request("COREKEYS") or ""
    local api, ops = read("docs/core-api.md"), read("docs/operations.md")
    local missing, fns, stats = {}, 0, 0
    for kind, name in answer:gmatch("(%a+) ([%w_.]+)") do
      if kind == "fn" then
        fns = fns + 1
        if not api:find("core." .. name .. "(", 1, true) then
          missing[#missing + 1] = "core." .. name .. " in docs/core-api.md"
        end
      else
        stats = stats + 1
        if not api:find("`" .. name .. "`", 1, true) then
          missing[#missing + 1] = "stat " .. name .. " in docs/core-api.md"
        end
        if not ops:find("| `" .. name .. "` |", 1, true) then
          missing[#missing + 1] = "stat " .. name .. " in docs/operations.md's table"
        end
      end
    end
    assert.truthy(fns >= 20 and stats >= 30, "COREKEYS answered: " .. answer)
    assert.same({}, missing)
  end)

  it("give every config key the loader accepts its row in operations.md", function()
    local src = read("core/config.c")
    local rows = assert(src:match("config_tables%[%]%s*=%s*(%b{})"), "no config_tables in core/config.c")
    local path_of, tables = {}, 0
    for path, list in rows:gmatch('{%s*"([^"]*)"%s*,%s*([%w_]+)%s*}') do
      path_of[list] = path
      tables = tables + 1
    end
    local section = assert(read("docs/operations.md"):match("\n## The config file\n(.-)\n## "),
      "no section '## The config file' in docs/operations.md")
    local found, keys, missing = 0, 0, {}
    for list, body in src:gmatch("static const char %*const ([%w_]+)%[%] = (%b{})") do
      local path = path_of[list]
      if path then
        found = found + 1
        for key in body:gmatch('"([%w_]+)"') do
          keys = keys + 1
          local full = path == "" and key or (path:gsub("%*", "NAME") .. "." .. key)
          if not section:find("\n| `" .. full .. "` |", 1, true) then missing[#missing + 1] = full end
        end
      end
    end
    assert.is_true(tables >= 7, "config_tables has " .. tables .. " rows")
    assert.equal(tables, found, "a key list of config_tables was not found")
    assert.is_true(keys >= 50, "only " .. keys .. " keys found")
    assert.same({}, missing)
  end)

  it("link only to files and headings that exist", function()
    local cache = {}
    local function anchors_of(path)
      cache[path] = cache[path] or anchors(read(path))
      return cache[path]
    end
    local files, bad = doc_files(), {}
    assert.is_true(#files >= 12, "only " .. #files .. " Markdown files found")
    for _, file in ipairs(files) do
      for _, msg in ipairs(broken_links(file, anchors_of)) do bad[#bad + 1] = msg end
    end
    assert.same({}, bad)
  end)

  it("name as proof only specs and tests that exist", function()
    local names, bad, specs = test_names(), {}, 0
    for _ in pairs(names) do specs = specs + 1 end
    assert.is_true(specs >= 40, "busted --list gave " .. specs .. " spec files")
    for _, file in ipairs(doc_files()) do
      for _, msg in ipairs(wrong_citations(file, names)) do bad[#bad + 1] = msg end
    end
    assert.same({}, bad)
  end)

  it("show the README's sample session as the example herd answers it", function()
    local steps = sample_session()
    local conf = dofile("examples/cs131/herd.lua")
    local name_of = {}
    for name, srv in pairs(conf.servers) do
      name_of[srv.port] = name
      -- Free ports instead of the example's, so nothing else is disturbed;
      -- the committed sample of places data, as the README says.
      conf.servers[name] = {}
    end
    conf.log_dir = nil
    conf.places.data = lfs.currentdir() .. "/data/places-sample.bin"
    local ex = herd.start(conf)
    local clients, seen, stamp = {}, {}, nil
    for _, step in ipairs(steps) do
      local name = assert(name_of[step.port], "no server of examples/cs131/herd.lua on port " .. step.port)
      local text = step.fmt:gsub("\\n", "\n")
      if step.arg ~= "" then
        assert.equal('"$(date +%s.%N)"', step.arg)
        stamp = herd.now()
        text = text:gsub("%%s", stamp)
      end
      -- The README's reader is slower than a flood: wait for the records.
      for client in pairs(clients) do
        assert.truthy(herd.eventually(function() return ex:record(name, client) end, 5),
          client .. " never reached " .. name)
      end
      local verb, client = text:match("^(%u+) (%S+)")
      if verb == "IAMAT" then clients[client] = true end
      local got = {}
      for l in ex:oneshot(name, text):gmatch("([^\n]*)\n") do got[#got + 1] = l end
      assert.equal(#step.out, #got, "lines of the reply to " .. text .. table.concat(got, "\n"))
      for i, shown in ipairs(step.out) do
        local ok, why = line_matches(shown, got[i], stamp)
        assert.is_true(ok, ("README's %q\nserver's %q\n%s"):format(shown, got[i], why or ""))
        -- The same line shown twice is the same line both times (the
        -- stored AT line that WHATSAT repeats).
        if seen[shown] then assert.equal(seen[shown], got[i]) end
        seen[shown] = got[i]
      end
    end
  end)
end)
