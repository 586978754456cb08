-- topology: this server's neighbours, from the config's `links`, a list of
-- bidirectional pairs { "Riley", "Jaquez" }. A link that names an unknown
-- server is a start-up error.
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

return { neighbours = M.neighbours }
