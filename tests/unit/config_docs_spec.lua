-- Every key the core's config tables know (core/config.c, the known-key
-- lists) is documented in README.md, docs/operations.md or docs/places.md.
-- A helper adding a key to a list adds its line to the docs too.
local function read(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

describe("config keys", function()
  it("are each documented", function()
    local src = read("core/config.c")
    local docs = read("README.md") .. read("docs/operations.md") .. read("docs/places.md")
    local lists, missing = 0, {}
    for name, body in src:gmatch("static const char %*const ([%w_]+_keys)%[%] = (%b{})") do
      lists = lists + 1
      for key in body:gmatch('"([%w_]+)"') do
        if not docs:find("`" .. key .. "`", 1, true) and not docs:find("%f[%w_]" .. key .. " *=")
            and not docs:find("." .. key .. "`", 1, true) then
          missing[#missing + 1] = name .. ": " .. key
        end
      end
    end
    assert.is_true(lists >= 5, "no known-key lists found in core/config.c")
    assert.same({}, missing)
  end)
end)
