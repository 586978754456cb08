-- herdtext.json_cut (core/textlib.c): strict checking, compacting, the
-- top-level results cut, the top-level order, and what it reports.
local text = require "herdtext"
local cjson = require "cjson"

local cut = text.json_cut
local ORDER = { "html_attributions", "next_page_token", "results", "status",
  "error_message", "info_messages" }

-- An answer with n results, pretty-printed the way Google writes them.
local function answer(n, extra)
  local results = {}
  for i = 1, n do
    results[i] = ('      {\n         "name" : "Place %d",\n         "types" : [ "cafe" ],\n' ..
      '         "geometry" : { "location" : { "lat" : %d.5, "lng" : -118 } }\n      }'):format(i, i)
  end
  return '{\n   "html_attributions" : [],\n   "results" : [\n' ..
    table.concat(results, ",\n") .. '\n   ],\n   "status" : "OK"' .. (extra or "") .. '\n}\n'
end

local function err_of(s, ...)
  local out, err = cut(s, ...)
  assert.is_nil(out, s)
  return err
end

describe("herdtext.json_cut", function()
  it("compacts, and reports the status and the two arrays", function()
    local out, status, attrs, results = cut(answer(2))
    assert.equal('{"html_attributions":[],"results":[{"name":"Place 1","types":["cafe"],' ..
      '"geometry":{"location":{"lat":1.5,"lng":-118}}},{"name":"Place 2","types":["cafe"],' ..
      '"geometry":{"location":{"lat":2.5,"lng":-118}}}],"status":"OK"}', out)
    assert.equal("OK", status)
    assert.is_true(attrs)
    assert.is_true(results)
    assert.same(cjson.decode(answer(2)), cjson.decode(out))
  end)

  it("cuts results to 0, 1, 5, 20 and more than there are", function()
    local body = answer(20)
    for _, bound in ipairs({ 0, 1, 5, 19, 20, 21, 1000 }) do
      local out = assert(cut(body, bound))
      local t = cjson.decode(out)
      assert.equal(math.min(bound, 20), #t.results, bound)
      for i = 1, #t.results do assert.equal("Place " .. i, t.results[i].name) end
      assert.equal("OK", t.status)
    end
    assert.matches('"results":%[%],"status"', (cut(body, 0)))
    assert.equal(cut(body), cut(body, 20))
    assert.equal('{"results":[]}', cut('{"results":[]}', 3))
    assert.has_error(function() cut(body, -1) end)
  end)

  it("cuts only the top-level results, never one inside a result", function()
    local out = cut('{"results":[{"results":[1,2,3],"x":{"results":[4,5]}},2,3],' ..
      '"other":{"results":[6,7,8]}}', 1)
    assert.equal('{"results":[{"results":[1,2,3],"x":{"results":[4,5]}}],' ..
      '"other":{"results":[6,7,8]}}', out)
  end)

  it("leaves strings alone: brackets, commas, quotes, spaces, escapes", function()
    local s = '{"results" : [ "a ] , [ } {", "q\\"uo\\\\te\\"", "x\\ny\\tz", "\\u00e9\\u20AC\\ud83d\\ude00",' ..
      ' "sp  ace" ], "k\\"ey" : "v" }'
    local out = assert(cut(s, 3))
    assert.equal('{"results":["a ] , [ } {","q\\"uo\\\\te\\"","x\\ny\\tz"],"k\\"ey":"v"}', out)
    assert.same({ "a ] , [ } {", 'q"uo\\te"', "x\ny\tz", "é€😀", "sp  ace" },
      cjson.decode((cut(s))).results)
  end)

  it("writes every \\/ as /, as the Lua writer does", function()
    local out = cut('{"icon":"https:\\/\\/maps.example\\/a.png","results":["\\\\\\/"]}')
    assert.equal('{"icon":"https://maps.example/a.png","results":["\\\\/"]}', out)
    assert.equal("\\/", cjson.decode(out).results[1])
  end)

  it("decodes the status, and tells when arrays are missing or not arrays", function()
    assert.same({ '{"status":"OK/\\u00e9\\n"}', "OK/é\n", false, false },
      { cut('{"status":"OK\\/\\u00e9\\n"}') })
    assert.same({ '{"status":5,"results":{},"html_attributions":"x"}', nil, false, false },
      { cut('{"status":5,"results":{},"html_attributions":"x"}') })
    assert.same({ "{}", nil, false, false }, { cut(" { } ") })
    -- a repeated key: the last one counts, as in decoders
    local out, status = cut('{"status":"A","status":"B"}')
    assert.equal("B", status)
    assert.equal("B", cjson.decode(out).status)
    assert.is_nil(select(2, cut('{"status":"A","status":null}')))
  end)

  it("puts the top level in the given order, the rest after it by key", function()
    local body = '{"zz":1,"status":"OK","error_message":"m","a!":2,"results":[1,2],' ..
      '"a":3,"html_attributions":[]}'
    assert.equal('{"html_attributions":[],"results":[1],"status":"OK","error_message":"m",' ..
      '"a":3,"a!":2,"zz":1}', cut(body, 1, ORDER))
    -- already in order: unchanged; no order: the input's
    assert.equal('{"html_attributions":[],"results":[],"status":"OK"}',
      cut('{ "html_attributions":[], "results":[], "status":"OK" }', nil, ORDER))
    assert.equal('{"status":"OK","results":[]}', cut('{"status":"OK","results":[]}'))
    assert.has_error(function() cut("{}", nil, { 1 }) end)
  end)

  it("tells where the results' parts are, so a cut needs no rescan", function()
    local body = answer(20, ',\n   "zz" : "after"')
    local out, _, _, _, parts = cut(body, nil, ORDER)
    assert.equal(22, #parts)
    assert.equal("[", out:sub(parts[1], parts[1]))
    assert.equal("]", out:sub(parts[22], parts[22]))
    for bound = 0, 19 do
      assert.equal(cut(body, bound, ORDER), out:sub(1, parts[bound + 1]) .. out:sub(parts[22]))
    end
    assert.same({ 12, 13 }, select(5, cut('{"results":[ ]}')))
    assert.is_nil(select(5, cut(body, 5)))                         -- cut already
    assert.is_nil(select(5, cut('{"results":[1],"results":[2]}'))) -- which one?
    assert.is_nil(select(5, cut('{"results":[' .. ("1,"):rep(64) .. '1]}')))
  end)

  it("accepts the whole grammar", function()
    local ok = {
      '{"n":[0,-0,1,-1,1.5,-0.25,1e5,1E+5,1e-5,123456789012345678901234567890]}',
      '{"l":[true,false,null],"e":{},"a":[],"s":""}',
      '{"u":"\\u0000\\u001f\\"\\\\\\/\\b\\f\\n\\r\\t"}',
      '{"utf8":"é € 😀 \xef\xbf\xbf"}',
      ' \t\r\n{ "a" :\n[ { } , [ ] ] }\n\t \r',
    }
    for _, s in ipairs(ok) do
      local out = cut(s)
      assert.is_string(out, s)
      assert.is_nil(out:find("^%s"))
      assert.same(cjson.decode(s), cjson.decode(out))
    end
  end)

  it("refuses invalid JSON with the reason and the byte", function()
    assert.equal("unexpected end at byte 1", err_of(""))
    assert.equal("unexpected end at byte 4", err_of("   "))
    assert.equal("the top level is not an object at byte 1", err_of("[1,2]"))
    assert.equal("the top level is not an object at byte 1", err_of('"s"'))
    assert.equal("trailing characters at byte 10", err_of('{"a":1}  x'))
    assert.equal("trailing characters at byte 8", err_of('{"a":1}{}'))
    assert.equal("expected , or } in object at byte 7", err_of('{"a":01}'))
    assert.equal("unterminated string at byte 8", err_of('{"a":"x'))
    assert.equal("unexpected end in object at byte 7", err_of('{"a":1'))
    assert.equal("expected , or ] in array at byte 9", err_of('{"a":[1 2]}'))
    assert.equal("expected a string key at byte 2", err_of("{a:1}"))
    assert.equal("expected a string key at byte 8", err_of('{"a":1,}'))
    assert.equal("unexpected character at byte 9", err_of('{"a":[1,]}'))
    assert.equal("expected : at byte 6", err_of('{"a" 1}'))
    for _, bad in ipairs({ '{"a":tru}', '{"a":nul}', '{"a":+1}', '{"a":.5}', '{"a":1.}',
        '{"a":1e}', '{"a":-}', '{"a":NaN}', '{"a":Infinity}', '{"a":0x10}', "{'a':1}",
        '{"a":"\\x"}', '{"a":"\\u12"}', '{"a":"\\u12G4"}', '{"a":"\\ud800"}',
        '{"a":"\\udc00"}', '{"a":"\\ud800\\u0041"}', '{"a":"tab\there"}', '{"a":"nl\nhere"}',
        '{"a":"\0"}', '{"a":"\xff"}', '{"a":"\xc0\xaf"}', '{"a":"\xed\xa0\x80"}',
        '{"a":"\xf4\x90\x80\x80"}', '{"a":"\xe2\x82"}', '{"a":1}\0', '\xef\xbb\xbf{}' }) do
      assert.matches(" at byte %d+$", err_of(bad), 1)
    end
  end)

  it("limits nesting to 64 levels, without recursing deeper", function()
    local function nest(n) return '{"a":' .. ("["):rep(n - 1) .. ("]"):rep(n - 1) .. "}" end
    assert.is_string((cut(nest(64))))
    assert.equal("nesting deeper than 64 at byte 69", err_of(nest(65)))
    assert.matches("^nesting deeper than 64", err_of(nest(100000)))
    assert.matches("^nesting deeper than 64", err_of('{"a":' .. ('{"a":'):rep(100) .. "1" ..
      ("}"):rep(101)))
  end)

  it("takes linear time on long inputs", function()
    local big = '{"results":[' .. ('"' .. ("x"):rep(1000) .. '",'):rep(2000) .. '1],"s":"' ..
      ("y"):rep(1000000) .. '"}'
    local t0 = os.clock()
    local out = assert(cut(big, 3))
    assert.equal(12 + 3 * 1002 + 2 + 7 + 1000000 + 2, #out)
    assert.is_true(os.clock() - t0 < 1)
  end)
end)
