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
    assert.equal('{"opening_hours":{},"types":[]}',
      json.encode({ opening_hours = {}, types = {} }))
    assert.equal("{}", json.encode(setmetatable({}, json.object_mt)))
  end)

  it("puts the top level in Google's order and sorts the rest", function()
    assert.equal('{"html_attributions":["a"],"results":[{"a":1,"b":2}],"status":"OK","error_message":"m","zzz":true}',
      json.encode({ zzz = true, error_message = "m", status = "OK",
        results = { { b = 2, a = 1 } }, html_attributions = { "a" } }, json.TOP_ORDER))
  end)

  it("escapes quotes, backslashes and control characters, not slashes", function()
    assert.equal([["a\"b\\c\nd\te\u0001 https://x/y"]],
      json.encode("a\"b\\c\nd\te\1 https://x/y"))
  end)

  it("writes integers as integers and floats with 14 digits", function()
    assert.equal("[1,101,34.0689302,-118.445127,null]",
      json.encode({ 1, 101.0, 34.0689302, -118.445127, 0 / 0 }))
  end)

  it("round-trips what cjson decodes, null included", function()
    local text = '{"a":[1,2,{"b":null}],"c":"d"}'
    assert.equal(text, json.encode(json.decode(text)))
    assert.is_nil((json.decode("{bad")))
  end)
end)
