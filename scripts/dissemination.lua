-- dissemination: the forwarding rules a topology script can give the core
-- (its `forward` hook, see docs/core-api.md). The core asks a rule once per
-- (origin, incoming link) and caches the answer until a link comes up or
-- goes down, so a rule may compute at leisure.
--
--   forward(origin, from, live) -> { names }, rule_name
--                                | "flood", rule_name
--
-- origin: the server that took the IAMAT (nil when the record's line does
-- not name a server); from: the neighbour it came from (nil: this
-- server's own); live: the names of the links up now. A list of names sends
-- the record on those links; "flood" sends it on every live link but
-- `from` and has every server that receives it flood it on once.
--
-- tree(self, names, neighbours) is the built-in `tree` rule: eager push
-- along the shortest-path tree of each origin over the links that
-- neighbours(name) gives, the same on every server (ties broken by name),
-- and a flood for the origins whose tree has a link of this server's down.
local M = {}

-- { [name] = parent } of origin's shortest-path tree (origin's own parent
-- nil; a server origin cannot reach is absent). The parent of a server at
-- distance d is its smallest-named neighbour at distance d - 1, so every
-- server computes the same tree.
function M.shortest_path_tree(origin, adj)
  local dist, order = { [origin] = 0 }, { origin }
  local i = 1
  while order[i] do
    local n = order[i]
    for _, m in ipairs(adj[n] or {}) do
      if not dist[m] then
        dist[m] = dist[n] + 1
        order[#order + 1] = m
      end
    end
    i = i + 1
  end
  local parent = {}
  for name, d in pairs(dist) do
    for _, m in ipairs(adj[name] or {}) do
      if dist[m] == d - 1 and (not parent[name] or m < parent[name]) then
        parent[name] = m
      end
    end
  end
  return parent, dist
end

-- The links as an adjacency list { [name] = { sorted names } }, both
-- directions, from neighbours(name) for every server in names.
function M.adjacency(names, neighbours)
  local set = {}
  for _, a in ipairs(names) do
    set[a] = set[a] or {}
    for _, b in ipairs(neighbours(a)) do
      set[b] = set[b] or {}
      set[a][b], set[b][a] = true, true
    end
  end
  local adj = {}
  for a, bs in pairs(set) do
    local list = {}
    for b in pairs(bs) do list[#list + 1] = b end
    table.sort(list)
    adj[a] = list
  end
  return adj
end

-- The tree rule for server self (see the header).
function M.tree(self, names, neighbours)
  local adj = M.adjacency(names, neighbours)
  local children = {} -- per origin, self's children in its tree (sorted)
  local function children_of(origin)
    if not children[origin] then
      local parent, dist = M.shortest_path_tree(origin, adj)
      local kids = {}
      if dist[self] then
        for _, n in ipairs(adj[self] or {}) do
          if parent[n] == self then kids[#kids + 1] = n end
        end
      end
      children[origin] = { kids = kids, parent = parent[self], reached = dist[self] ~= nil }
    end
    return children[origin]
  end
  return function(origin, from, live)
    if origin == nil or adj[origin] == nil then return "flood", "tree" end
    local t = children_of(origin)
    -- A record off its tree (a neighbour running another rule or links)
    -- is flooded, so it reaches everyone anyway.
    if not t.reached or (from ~= nil and from ~= t.parent) then
      return "flood", "tree"
    end
    local up = {}
    for _, n in ipairs(live) do up[n] = true end
    for _, kid in ipairs(t.kids) do
      -- A child cut off: its subtree hears of the record only by a flood.
      if not up[kid] then return "flood", "tree" end
    end
    return t.kids, "tree"
  end
end

return M
