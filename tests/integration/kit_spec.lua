-- The operator's test kit from an empty folder: `make install PREFIX=...`
-- into a temporary prefix, the README's example spec written as it stands
-- (between the kit-example marker and the end of its code block) beside
-- examples/whereis/whereis.lua, then plain busted there. It must pass,
-- leave no server running and no herd folder behind. No fixed ports: the
-- kit takes free ones.
local herd = require "helpers.herd"

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"rc=$?\""))
  local out = p:read("a")
  p:close()
  return tonumber(out:match("rc=(%d+)%s*$")), out
end

local function readme_example()
  local readme = herd.read_file("README.md")
  local at = assert(readme:find("<!-- kit-example", 1, true), "no kit-example marker in README.md")
  return assert(readme:match("```lua\n(.-)```", at), "no code block after the marker")
end

-- The folders the kit made under the run id this spec gives it.
local function herd_dirs(run)
  local p = io.popen("ls -d /tmp/herd-test." .. run .. ".* 2>/dev/null")
  local out = p:read("a")
  p:close()
  local set = {}
  for d in out:gmatch("/tmp/herd%-test%." .. run .. "%.%S+") do set[d] = true end
  return set
end

describe("the test kit #integration", function()
  it("runs the README's example spec with plain busted from an empty folder", function()
    local root = herd.tmpdir()
    finally(function() os.execute("rm -rf " .. herd.quote(root)) end)
    local prefix, work = root .. "/prefix", root .. "/work"
    local rc, out = sh(("make -s install PREFIX=%s && mkdir -p %s && cp examples/whereis/whereis.lua %s/")
      :format(herd.quote(prefix), herd.quote(work), herd.quote(work)))
    assert.equal(0, rc, out)
    herd.write_file(work .. "/whereis_spec.lua", readme_example())
    local run = ("kit%d"):format(math.random(1e6, 1e7))
    rc, out = sh(("cd %s && env -u HERD_BIN -u HERD_SCRIPT_DIR -u HERD_DATA_DIR HERD_TEST_RUN=%s "
      .. "LUA_PATH=%s LUA_CPATH=%s busted whereis_spec.lua")
      :format(herd.quote(work), run, herd.quote(prefix .. "/share/lua/5.4/?.lua;;"),
        herd.quote(prefix .. "/lib/lua/5.4/?.so;;")))
    assert.equal(0, rc, out)
    assert.matches("1 success / 0 failures / 0 errors", out)
    -- Nothing left: no server of the prefix running, no new herd folder.
    local _, ps = sh("for p in /proc/[0-9]*; do readlink $p/exe; done 2>/dev/null | grep -Fx "
      .. herd.quote(prefix .. "/bin/herd") .. " || true")
    assert.equal("", (ps:gsub("rc=%d+%s*$", ""):gsub("%s", "")))
    assert.same({}, herd_dirs(run))
    -- herdtext is installed too.
    rc, out = sh(("LUA_CPATH=%s lua5.4 -e 'assert(require(\"herdtext\"))'")
      :format(herd.quote(prefix .. "/lib/lua/5.4/?.so;;")))
    assert.equal(0, rc, out)
  end)
end)
