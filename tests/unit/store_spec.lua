-- The store's keyed hashes, through the C test build/test/store_test
-- (tests/c/store_test.c): SipHash-1-3 and -2-4 against the published
-- vectors and OpenSSL's own SipHash; two stores with one tree key build the
-- same tree whatever the order of their records, another key moves nearly
-- every client to another leaf, and rekeying a full store
-- (store_set_tree_key) gives the tree of a store filled under the new key.
-- HERD_STORE_TEST_RECORDS sets the number of records (default 20000).
local RECORDS = os.getenv("HERD_STORE_TEST_RECORDS") or "20000"
-- `make test SANITIZE=1` exports SANITIZE: the test then runs under ASan/UBSan.
local STORE_TEST = os.getenv("SANITIZE") == "1"
  and "build/san/test/store_test" or "build/test/store_test"

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok and 0 or code, out
end

describe("store keys", function()
  it("SipHash matches its vectors; one tree key, one tree; rekeying rebuilds it", function()
    local rc, out = sh("make -s -C tests/c")
    assert(rc == 0, "make -C tests/c failed:\n" .. out)
    rc, out = sh(STORE_TEST .. " " .. RECORDS)
    assert.equal(0, rc, out)
    assert.truthy(out:match("store_test: %d+ checks, 0 failed"), out)
  end)
end)
