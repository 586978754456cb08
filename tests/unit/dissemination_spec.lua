-- The forwarding rules (scripts/dissemination.lua) and how topology.lua
-- picks one from the config, against the fake core. A small simulator
-- plays the core's part: each server asks its rule where a record goes
-- on (as the core does, per origin and incoming link) and drops a record
-- it already holds, so the receptions per record are counted as the
-- herd's peer_records_in would be.
local fake_core = require "helpers.fake_core"

local function install(config)
  fake_core.install({ name = "A", config = config })
  return dofile("scripts/topology.lua"), require "dissemination"
end

local function pairs_of(names, linked)
  local links = {}
  for i = 1, #names do
    for j = i + 1, #names do
      if linked(i, j) then links[#links + 1] = { names[i], names[j] } end
    end
  end
  return links
end

local function servers_of(names)
  local servers = {}
  for _, n in ipairs(names) do servers[n] = {} end
  return servers
end

local function names_of(n)
  local names = {}
  for i = 1, n do names[i] = ("S%02d"):format(i) end
  return names
end

-- Spreads one record from origin with each server's rule; live(a, b) says
-- whether the link a-b is up. Returns receptions, the set of servers that
-- hold it, and how many copies went out flagged as a flood.
local function spread(names, links, rules, origin, live)
  live = live or function() return true end
  local topology = dofile("scripts/topology.lua")
  local config = { servers = servers_of(names), links = links }
  local nbs = {}
  for _, n in ipairs(names) do nbs[n] = topology.neighbours(n, config) end
  local function up_of(n)
    local up = {}
    for _, m in ipairs(nbs[n]) do if live(n, m) then up[#up + 1] = m end end
    return up
  end
  local has, received, queue = { [origin] = true }, 0, {}
  local function send(at, from, flooded)
    local up = up_of(at)
    local to, forced = nil, flooded
    if flooded then
      to = "flood"
    else
      to = rules[at](origin, from, up)
    end
    if to == "flood" then
      forced = true
      to = {}
      for _, m in ipairs(up) do if m ~= from then to[#to + 1] = m end end
    end
    for _, m in ipairs(to) do queue[#queue + 1] = { m, at, forced } end
  end
  send(origin, nil, false)
  local flooded_by = {}
  local i = 1
  while queue[i] do
    local at, from, flooded = queue[i][1], queue[i][2], queue[i][3]
    received = received + 1
    if not has[at] then
      has[at] = true
      if flooded then flooded_by[at] = true end
      send(at, from, flooded)
    elseif flooded and not flooded_by[at] then
      -- The core floods a FLOODREC of a record it holds on, once.
      flooded_by[at] = true
      send(at, from, true)
    end
    i = i + 1
    assert(i < 100000, "the spread does not end")
  end
  return received, has
end

local function tree_rules(names, links)
  local topology, dissemination = install({ servers = servers_of(names), links = links })
  local config = { servers = servers_of(names), links = links }
  local rules = {}
  for _, n in ipairs(names) do
    rules[n] = dissemination.tree(n, names, function(x) return topology.neighbours(x, config) end)
  end
  return rules
end

local function count(set)
  local n = 0
  for _ in pairs(set) do n = n + 1 end
  return n
end

describe("dissemination.shortest_path_tree", function()
  local _, dissemination = install({ servers = {}, links = {} })
  it("gives every server its parent toward the origin, ties to the smaller name", function()
    local adj = { A = { "B", "C" }, B = { "A", "D" }, C = { "A", "D" }, D = { "B", "C" } }
    local parent, dist = dissemination.shortest_path_tree("A", adj)
    assert.same({ B = "A", C = "A", D = "B" }, parent)
    assert.same({ A = 0, B = 1, C = 1, D = 2 }, dist)
  end)
  it("leaves out servers the origin cannot reach", function()
    local parent = dissemination.shortest_path_tree("A", { A = { "B" }, B = { "A" }, C = {} })
    assert.same({ B = "A" }, parent)
  end)
end)

describe("the tree rule", function()
  it("reaches every server of a 20-server mesh with n - 1 receptions per record", function()
    local names = names_of(20)
    local links = pairs_of(names, function() return true end)
    local rules = tree_rules(names, links)
    for _, origin in ipairs({ "S01", "S07", "S20" }) do
      local received, has = spread(names, links, rules, origin)
      assert.equal(20, count(has))
      assert.equal(19, received)
    end
  end)

  it("reaches every server of a ring and of a random graph with n - 1", function()
    local names = names_of(12)
    local ring = pairs_of(names, function(i, j) return j == i + 1 or (i == 1 and j == 12) end)
    math.randomseed(17)
    local random = pairs_of(names, function(i, j) return j == i + 1 or math.random() < 0.3 end)
    for _, links in ipairs({ ring, random }) do
      local rules = tree_rules(names, links)
      for _, origin in ipairs(names) do
        local received, has = spread(names, links, rules, origin)
        assert.equal(12, count(has))
        assert.equal(11, received)
      end
    end
  end)

  it("floods at once for the origins whose tree lost a link, and still reaches everyone", function()
    local names = names_of(20)
    local links = pairs_of(names, function() return true end)
    local rules = tree_rules(names, links)
    -- In a mesh every origin's tree is a star: S01 cannot tell S02 directly.
    local cut = function(a, b) return not ((a == "S01" and b == "S02") or (a == "S02" and b == "S01")) end
    assert.equal("flood", (rules.S01("S01", nil, { "S03" })))
    local received, has = spread(names, links, rules, "S01", cut)
    assert.equal(20, count(has))
    assert.is_true(received > 19, "a fallback costs more than the tree: " .. received)
    -- Other origins' trees do not use the cut link: no flood for them.
    received, has = spread(names, links, rules, "S05", cut)
    assert.equal(20, count(has))
    assert.equal(19, received)
  end)

  it("floods a record that comes off its tree or names no server", function()
    local names = names_of(4)
    local links = pairs_of(names, function() return true end)
    local rules = tree_rules(names, links)
    local all = { "S01", "S03", "S04" }
    assert.same({}, (rules.S02("S01", "S01", all)))
    assert.equal("flood", (rules.S02("S01", "S03", all)))
    assert.equal("flood", (rules.S02(nil, "S01", all)))
    assert.equal("flood", (rules.S02("Nobody", "S01", all)))
    local kids, name = rules.S02("S02", nil, all)
    assert.same(all, kids)
    assert.equal("tree", name)
  end)
end)

describe("topology.lua's forward hook", function()
  local servers = { A = {}, B = {}, C = {} }
  local links = { { "A", "B" }, { "B", "C" } }
  it("is absent for the built-in flood, by default or by name", function()
    assert.is_nil(install({ servers = servers, links = links }).forward)
    assert.is_nil(install({ servers = servers, links = links, dissemination = "flood" }).forward)
  end)
  it("is the tree rule of this server for dissemination = \"tree\"", function()
    local topology = install({ servers = servers, links = links, dissemination = "tree" })
    assert.same({ "B" }, (topology.forward("A", nil, { "B" })))
    assert.same({}, (topology.forward("C", "B", { "B" })))
    assert.equal("flood", (topology.forward("A", nil, {})))
  end)
  it("declares the key and refuses an unknown rule by name", function()
    local core = fake_core.install({ name = "A", config = { servers = servers, links = links } })
    dofile("scripts/topology.lua")
    assert.is_true(core.config_keys.dissemination)
    fake_core.install({ name = "A", config = { servers = servers, links = links, dissemination = "gossip" } })
    assert.has_error(function() dofile("scripts/topology.lua") end,
      'dissemination must be "flood" or "tree", got "gossip"')
    fake_core.install({ name = "A", config = { servers = servers, links = links, dissemination = 3 } })
    assert.has_error(function() dofile("scripts/topology.lua") end,
      'dissemination must be "flood" or "tree", got a number')
  end)
end)
