-- hub: a forwarding rule of an operator's own, as a `forward` hook (see
-- docs/core-api.md): every record goes through one server, the config's
-- `hub`, linked to every other server, which sends it on to all of them.
-- A record is received once per server (n - 1 per IAMAT) whatever other
-- links the herd has for resilience; while a link of the hub is down the
-- record floods instead (the core's fallback flood), over those links.
local core = require "core"

core.config_key("hub")
local config = core.config
local hub = config.hub
if type(hub) ~= "string" or not config.servers[hub] then
  error("hub must name a server of the config, got " .. tostring(hub), 0)
end

local others = 0
for name in pairs(config.servers) do
  if name ~= hub then others = others + 1 end
end

-- forward(origin, from, live) -> { names } | "flood", rule name
local function forward(origin, from, live)
  if core.name == hub then
    -- All but the sender (the core skips it), or a flood when a server is
    -- cut off from the hub.
    if #live < others then return "flood", "hub" end
    return live, "hub"
  end
  if from ~= nil then return {}, "hub" end -- the hub has sent it everywhere
  for _, n in ipairs(live) do
    if n == hub then return { hub }, "hub" end
  end
  return "flood", "hub" -- this server's own record, the hub out of reach
end

return { forward = forward }
