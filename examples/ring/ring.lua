-- ring: a topology computed by a rule instead of listed link by link.
--
-- In the config, `links` names a rule instead of listing pairs:
--
--   links = "ring",                    -- every server linked to the next one
--                                      -- and the previous one, names sorted
--   links = "mesh",                    -- every server linked to every other
--   links = { rule = "ring", order = { "Riley", "Jaquez", "Juzang",
--             "Campbell", "Bernard" } },   -- a ring in this order
--   scripts = { "protocol", "ring.lua" },  -- instead of "topology"
--
-- The rule is read by the neighbours hook, which the core calls at
-- start-up (and for every server under --check). Links come from the
-- start-up answer: a reload calls the new script only to compare, keeps
-- the links and warns when they would change, so a change of rule needs a
-- restart of every server (each one computes its own neighbours, and a
-- link is up only when both ends agree on it).
--
-- Loaded after the built-in topology script (scripts = { "protocol",
-- "topology", "ring.lua" }), a `links` list is still handed on to it: the
-- core passes the earlier neighbours hook as the extra last argument.
local M = {}

M.RULES = { ring = true, mesh = true }

-- The rule and the order of the ring from config.links; raises (with a
-- message naming the config key) for a rule it does not know.
function M.rule(config)
  local links = config.links
  local rule, order = links, nil
  if type(links) == "table" then rule, order = links.rule, links.order end
  if not M.RULES[rule] then
    error(("links: unknown rule %s (rules: \"ring\", \"mesh\", or " ..
      "{ rule = \"ring\", order = { names... } })"):format(
      type(rule) == "string" and ("%q"):format(rule) or type(rule)), 0)
  end
  if order == nil then
    order = {}
    for name in pairs(config.servers) do order[#order + 1] = name end
    table.sort(order)
  else
    local seen = {}
    for i, name in ipairs(order) do
      if not config.servers[name] then
        error(("links.order[%d] names %s, which is not in servers")
          :format(i, tostring(name)), 0)
      end
      if seen[name] then
        error(("links.order names %s twice"):format(name), 0)
      end
      seen[name] = true
    end
    for name in pairs(config.servers) do
      if not seen[name] then
        error(("links.order leaves out %s"):format(name), 0)
      end
    end
  end
  return rule, order
end

-- self's neighbours under the rule, sorted.
function M.compute(self, config)
  local rule, order = M.rule(config)
  local out, seen = {}, { [self] = true }
  local function add(name)
    if not seen[name] then
      seen[name] = true
      out[#out + 1] = name
    end
  end
  if rule == "mesh" then
    for _, name in ipairs(order) do add(name) end
  else
    local n = #order
    for i, name in ipairs(order) do
      if name == self then
        add(order[(i - 2) % n + 1]) -- the previous one
        add(order[i % n + 1])       -- the next one
      end
    end
  end
  table.sort(out)
  return out
end

function M.neighbours(self, config, next)
  -- A plain list of pairs is the built-in topology's business.
  if next and type(config.links) == "table" and config.links.rule == nil then
    return next(self, config)
  end
  return M.compute(self, config)
end

return { neighbours = M.neighbours }
