-- Three servers in a line, A - B - C, speaking IAMAT and AT with a heading
-- and a speed (extra_fields.lua, found beside this file). Run each one:
--   build/herd --config examples/extra-fields/herd.lua A   (B, C alike)
return {
  servers = {
    A = { port = 12201 },
    B = { port = 12202 },
    C = { port = 12203 },
  },
  links = { { "A", "B" }, { "B", "C" } },
  scripts = { "protocol", "topology", "extra_fields.lua" },
  places = { provider = "local" },
  log_dir = "logs",
  -- A development secret so the example runs out of the box: set
  -- HERD_SECRET (which overrides it) for any herd that others can reach.
  secret = "extra-fields-example-development-secret",
  secret_is_development = true,
}
