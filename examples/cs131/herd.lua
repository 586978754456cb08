-- The classic CS 131 herd: five servers; Riley talks with Jaquez and
-- Juzang, Bernard with everyone but Riley, Juzang with Campbell.
-- Run it with `make run`, or one server by hand:
--   build/herd --config examples/cs131/herd.lua Riley
-- Each server's metrics are at http://127.0.0.1:<metrics_port>/metrics
-- (examples/monitoring/ scrapes them).
return {
  servers = {
    Riley    = { port = 12001, metrics_port = 12101 },
    Jaquez   = { port = 12002, metrics_port = 12102 },
    Juzang   = { port = 12003, metrics_port = 12103 },
    Campbell = { port = 12004, metrics_port = 12104 },
    Bernard  = { port = 12005, metrics_port = 12105 },
  },
  links = {
    { "Riley", "Jaquez" }, { "Riley", "Juzang" },
    { "Bernard", "Jaquez" }, { "Bernard", "Juzang" }, { "Bernard", "Campbell" },
    { "Juzang", "Campbell" },
  },
  places = { provider = "local" },
  log_dir = "logs",
  -- A development secret so the example runs out of the box. Anyone who
  -- reads this file knows it: set HERD_SECRET (which overrides it) for any
  -- herd that others can reach.
  secret = "cs131-example-development-secret",
  secret_is_development = true,
}
