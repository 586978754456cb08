-- The libFuzzer targets (tests/fuzz): built with clang, every committed
-- regression input and seed replayed, then each target fuzzed for
-- HERD_FUZZ_SECONDS (default 20) from a copy of its seed corpus. A crash
-- fails the spec and its input is kept in build/fuzz/crashes/ (make it a
-- regression: tests/fuzz/README.md). Skipped with a message where clang or
-- its fuzzer runtime is missing.
local chaos = require "helpers.chaos"

local SECONDS = tonumber(os.getenv("HERD_FUZZ_SECONDS") or "") or 20
local CC = os.getenv("FUZZ_CC") or "clang"
local ROOT = chaos.ROOT
local TARGETS = { lines = "fuzz_lines", peer = "fuzz_peer" }

local function fuzzer_available()
  local dir = chaos.sh("mktemp -d"):gsub("%s+$", "")
  local src = dir .. "/t.c"
  local f = io.open(src, "w")
  f:write("#include <stddef.h>\n#include <stdint.h>\n"
    .. "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }\n")
  f:close()
  local out = chaos.sh(("%s -fsanitize=fuzzer,address,undefined %s -o %s/t 2>&1; echo rc=$?")
    :format(CC, src, dir))
  os.execute("rm -rf " .. dir)
  if out:match("rc=0") then return true end
  return false, (out:gsub("rc=%d+%s*$", ""):sub(1, 300))
end

local available, why = fuzzer_available()

describe("libFuzzer targets #chaos #fuzz", function()
  if not available then
    it("skipped: no clang with libFuzzer", function()
      print(("\nfuzzing SKIPPED: %s cannot build a libFuzzer target (%s); install clang and "
        .. "libclang-rt-dev to run it"):format(CC, why))
    end)
    return
  end

  lazy_setup(function()
    local out = chaos.sh("make -C tests/fuzz FUZZ_CC=" .. CC .. " 2>&1; echo rc=$?")
    assert(out:match("rc=0%s*$"), "building the fuzzers failed:\n" .. out)
  end)

  for _, kind in ipairs({ "lines", "peer" }) do
    local bin = ROOT .. "/build/fuzz/" .. TARGETS[kind]

    it(TARGETS[kind] .. ": the regression inputs and seeds pass", function()
      local files = chaos.sh(("ls %s/tests/fuzz/regressions/%s/* %s/tests/fuzz/corpus/%s/* 2>/dev/null")
        :format(ROOT, kind, ROOT, kind))
      local list = {}
      for f in files:gmatch("[^\n]+") do list[#list + 1] = chaos.quote(f) end
      assert.is_true(#list > 0, "no inputs")
      local out = chaos.sh(("%s -close_fd_mask=2 %s 2>&1; echo rc=$?"):format(bin, table.concat(list, " ")))
      assert(out:match("rc=0%s*$"), "a regression input fails again:\n" .. out:sub(-3000))
      print(("\n%s: %d regression and seed inputs replayed, no failure"):format(TARGETS[kind], #list))
    end)

    it(TARGETS[kind] .. ": " .. SECONDS .. " s of fuzzing find no crash", function()
      local work = chaos.sh("mktemp -d"):gsub("%s+$", "")
      finally(function() os.execute("rm -rf " .. work) end)
      os.execute(("mkdir -p %s/corpus %s/art && cp %s/tests/fuzz/corpus/%s/* %s/corpus/")
        :format(work, work, ROOT, kind, work))
      local log = work .. "/log"
      os.execute(("%s -max_total_time=%d -timeout=10 -rss_limit_mb=2048 -close_fd_mask=2 "
        .. "-print_final_stats=1 -artifact_prefix=%s/art/ %s/corpus >%s 2>&1")
        :format(bin, SECONDS, work, work, log))
      local text = chaos.sh("cat " .. log)
      local crashes = chaos.sh("ls " .. work .. "/art 2>/dev/null")
      if crashes:find("%S") then
        os.execute(("mkdir -p %s/build/fuzz/crashes && cp %s/art/* %s/build/fuzz/crashes/")
          :format(ROOT, work, ROOT))
      end
      local runs = text:match("stat::number_of_executed_units:%s*(%d+)")
      local rate = text:match("stat::average_exec_per_sec:%s*(%d+)")
      local cov, ft = text:match("DONE%s+cov: (%d+) ft: (%d+)")
      if not cov then cov, ft = text:match(".*cov: (%d+) ft: (%d+)") end
      local corpus = chaos.sh("ls " .. work .. "/corpus | wc -l"):match("%d+")
      local rss = text:match("stat::peak_rss_mb:%s*(%d+)")
      print(("\n%s: %s runs in %d s (%s/s), coverage %s edges / %s features, corpus %s inputs, "
        .. "peak RSS %s MB, crashes: %s"):format(TARGETS[kind], runs or "?", SECONDS, rate or "?",
        cov or "?", ft or "?", corpus or "?", rss or "?",
        crashes:find("%S") and crashes:gsub("%s+", " ") or "none"))
      assert(not crashes:find("%S"), "the fuzzer found a crash (kept in build/fuzz/crashes/):\n"
        .. text:sub(-4000))
      assert.truthy(runs, "the fuzzer did not finish:\n" .. text:sub(-2000))
    end)
  end
end)
