-- The store's keyed hashes, through the C test build/test/store_test
-- (tests/c/store_test.c): SipHash-1-3 and -2-4 against the published
-- vectors and OpenSSL's own SipHash; two stores with one tree key build the
-- same tree whatever the order of their records, another key moves nearly
-- every client to another leaf, and rekeying a full store
-- (store_set_tree_key) gives the tree of a store filled under the new key.
-- The table's growth (issue 15): while a doubled table moves its records a
-- few buckets at a time, every record is found, updated, replaced, listed
-- exactly once and rekeyed, with numbered ids and with the colliding ids of
-- build/test/collide_ids; the move ends within a bounded number of puts; and
-- no put or loop step costs more than 2 ms of CPU at any size (the old
-- table moved 131,072 records in one put: 52 ms).
-- HERD_STORE_TEST_RECORDS sets the number of records (default 20000).
local RECORDS = os.getenv("HERD_STORE_TEST_RECORDS") or "20000"
-- `make test SANITIZE=1` exports SANITIZE: the test then runs under ASan/UBSan.
local STORE_TEST = os.getenv("SANITIZE") == "1"
  and "build/san/test/store_test" or "build/test/store_test"

local sh = require("helpers.herd").command

describe("store keys", function()
  it("SipHash matches its vectors; one tree key, one tree; rekeying rebuilds it; the table grows a few buckets at a time", function()
    local rc, out = sh("make -s -C tests/c")
    assert(rc == 0, "make -C tests/c failed:\n" .. out)
    local ids = os.tmpname()
    finally(function() os.remove(ids) end)
    rc, out = sh("build/test/collide_ids 40000 >" .. ids)
    assert(rc == 0, "collide_ids failed:\n" .. out)
    rc, out = sh(STORE_TEST .. " " .. RECORDS .. " " .. ids)
    assert.equal(0, rc, out)
    assert.truthy(out:match("store_test: %d+ checks, 0 failed"), out)
  end)
end)
