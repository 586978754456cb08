-- places.health: tells the operator when the places provider fails (an
-- expired key, an unreachable or failing service, timeouts), which clients
-- only see as an error status. The first failure is a WARN line at once;
-- failures after it are counted and reported at most once a minute per
-- provider (a timer reports what is held); an answer after failures is an
-- INFO line, within the same one line a minute.
--   health.note(provider_name, result)   -- every answer WHATSAT gets
local core = require "core"

local M = {}

M.INTERVAL_MS = 60000
M.MESSAGE_MAX = 200 -- bytes of the provider's message quoted in a line

-- Statuses that say the provider did its job (INVALID_REQUEST is a query
-- it refused, not a failure of the provider).
local ANSWERED = { OK = true, ZERO_RESULTS = true, INVALID_REQUEST = true }

local states = {} -- provider name -> { failures, held, last_ns, latest, timer }

local function describe(result)
  local msg = result.error_message
  local text = tostring(result.status)
  if type(msg) == "string" and msg ~= "" then text = text .. ": " .. msg:sub(1, M.MESSAGE_MAX) end
  return text
end

local function report_held(name, st)
  if st.held == 0 then return end
  core.warn(("places: provider %s failed %d more times since the last report; latest: %s")
    :format(name, st.held, st.latest))
  st.held = 0
  st.last_ns = core.now()
end

local function arm(name, st)
  if st.timer or not core.after then return end
  local wait = M.INTERVAL_MS - (core.now() - st.last_ns) // 1000000
  st.timer = core.after(math.max(1, wait), function()
    st.timer = nil
    report_held(name, st)
  end)
end

local function due(st)
  return not st.last_ns or core.now() - st.last_ns >= M.INTERVAL_MS * 1000000
end

function M.note(name, result)
  local st = states[name]
  if ANSWERED[result.status] then
    if st and st.failures > 0 then
      -- Held failures stay for the timer: a flapping provider gets no more
      -- than one line a minute either.
      if due(st) then
        core.log(("places: provider %s answers again after %d failures")
          :format(name, st.failures))
        st.last_ns = core.now()
      end
      st.failures = 0
    end
    return
  end
  if not st then
    st = { failures = 0, held = 0 }
    states[name] = st
  end
  st.failures = st.failures + 1
  st.latest = describe(result)
  if not due(st) then
    st.held = st.held + 1
    arm(name, st)
  elseif st.held == 0 then
    core.warn(("places: provider %s failed: %s (further failures are counted, one line a minute)")
      :format(name, st.latest))
    st.last_ns = core.now()
  else
    st.held = st.held + 1
    report_held(name, st)
  end
end

return M
