-- topology: this server's neighbours, from the config's `links`, a list of
-- bidirectional pairs { "Riley", "Jaquez" }. A link that names an unknown
-- server is a start-up error.
-- And the dissemination rule, the config's `dissemination`: "flood" (the
-- default: no forward hook, the core's built-in flood) or "tree" (the
-- forward hook of dissemination.lua's tree over these links).
local core = require "core"
local dissemination = require "dissemination"

local M = {}

function M.neighbours(self, config)
  if config.links ~= nil and type(config.links) ~= "table" then
    error("links must be a list of pairs { \"A\", \"B\" }, got a "
      .. type(config.links), 0)
  end
  local out, seen = {}, {}
  for i, link in ipairs(config.links or {}) do
    if type(link) ~= "table" or type(link[1]) ~= "string"
        or type(link[2]) ~= "string" then
      error(("links[%d] must be a pair of server names"):format(i), 0)
    end
    for _, name in ipairs(link) do
      if not config.servers[name] then
        error(("links[%d] names %s, which is not in servers"):format(i, name), 0)
      end
    end
    local a, b = link[1], link[2]
    local other = (a == self and b) or (b == self and a) or nil
    if other and other ~= self and not seen[other] then
      seen[other] = true
      out[#out + 1] = other
    end
  end
  table.sort(out)
  return out
end

-- The forward hook for config's dissemination (nil: the built-in flood);
-- an unknown rule is an error at load, so --check reports it.
function M.forward(config)
  local rule = config.dissemination
  if rule == nil or rule == "flood" then return nil end
  if rule ~= "tree" then
    error(('dissemination must be "flood" or "tree", got %s'):format(
      type(rule) == "string" and '"' .. rule .. '"' or "a " .. type(rule)), 0)
  end
  local names = {}
  for name in pairs(config.servers) do names[#names + 1] = name end
  table.sort(names)
  local tree -- built at the first call, once this server's name is known
  return function(origin, from, live)
    tree = tree or dissemination.tree(core.name, names, function(n)
      return M.neighbours(n, config)
    end)
    return tree(origin, from, live)
  end
end

core.config_key("dissemination")
return { neighbours = M.neighbours, forward = M.forward(core.config) }
