-- The docs against the running core: every core function a script can
-- call is in docs/core-api.md, and every counter core.stats() (and so
-- herd ctl stats) gives is in core-api.md's list and operations.md's
-- table. Port 28990.
local herd = require "helpers.herd"

local function read(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
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
end)
