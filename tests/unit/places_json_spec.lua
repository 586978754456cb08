local fake_core = require "helpers.fake_core"

describe("places.json", function()
  local json
  before_each(function()
    fake_core.install()
    json = require "places.json"
  end)

  it("writes empty arrays as [] and known objects as {}", function()
    assert.equal('{"html_attributions":[],"results":[],"status":"ZERO_RESULTS"}',
      json.encode({ html_attributions = {}, results = {}, status = "ZERO_RESULTS" },
        json.TOP_ORDER))
    -- Key order below the top level follows Lua's table order, which
    -- changes from run to run: check each member, not the whole string.
    local text = json.encode({ opening_hours = {}, types = {} })
    assert.matches('^{"[%w_]+":[%[{][%]}],"[%w_]+":[%[{][%]}]}$', text)
    assert.matches('"opening_hours":{}', text)
    assert.matches('"types":%[%]', text)
    assert.equal("{}", json.encode(setmetatable({}, json.object_mt)))
  end)

  it("puts the top level in Google's order and sorts the rest", function()
    local text = json.encode({ zzz = true, error_message = "m", status = "OK",
      results = { { b = 2, a = 1 } }, html_attributions = { "a" }, aaa = 1 }, json.TOP_ORDER)
    assert.equal('{"html_attributions":["a"],"results":[{', text:sub(1, 39))
    assert.matches('}%],"status":"OK","error_message":"m","aaa":1,"zzz":true}$', text)
    assert.same({ a = 1, b = 2 }, json.decode(text).results[1])
  end)

  it("writes empty arrays deep inside, without changing the value", function()
    local v = { results = { { photos = { { html_attributions = {}, w = 1 } },
      opening_hours = {}, types = { "a" } } } }
    local text = json.encode(v, json.TOP_ORDER)
    assert.matches('"html_attributions":%[%]', text)
    assert.matches('"opening_hours":{}', text)
    assert.same({}, v.results[1].photos[1].html_attributions)
    assert.is_nil(next(v.results[1].photos[1].html_attributions))
    assert.same(json.decode(json.encode_lua(v)), json.decode(text))
  end)

  it("falls back to the Lua writer for what cjson refuses", function()
    assert.equal('{"a":null}', json.encode({ a = 0 / 0 }))
    assert.equal('[1,null]', json.encode({ 1, print }))
  end)

  it("escapes quotes, backslashes and control characters, not slashes", function()
    assert.equal([["a\"b\\c\nd\te\u0001 https://x/y"]],
      json.encode_lua("a\"b\\c\nd\te\1 https://x/y"))
    local s = "a\\/b\\\\/c/d" -- a\/b\\/c/d: backslashes next to slashes
    assert.equal([["a\\/b\\\\/c/d"]], json.encode(s))
    assert.equal(s, json.decode(json.encode(s)))
    assert.equal([[{"u":"https://x/y"}]], json.encode({ u = "https://x/y" }))
  end)

  it("writes integers as integers and floats with 14 digits", function()
    assert.equal("[1,101,34.0689302,-118.445127,null]",
      json.encode({ 1, 101.0, 34.0689302, -118.445127, 0 / 0 }))
  end)

  it("round-trips what cjson decodes, null included", function()
    local text = '{"a":[1,2,{"b":null}],"c":"d"}'
    assert.equal(text, json.encode_lua(json.decode(text)))
    assert.same(json.decode(text), json.decode(json.encode(json.decode(text))))
    assert.is_nil((json.decode("{bad")))
  end)
end)
