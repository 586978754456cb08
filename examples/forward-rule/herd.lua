-- Four servers, A the hub: a star A - B, A - C, A - D, and B - C, C - D
-- for resilience. Records go through A (hub.lua); the extra links carry
-- a record only while a link of A is down.
return {
  servers = {
    A = { port = 12301 }, B = { port = 12302 },
    C = { port = 12303 }, D = { port = 12304 },
  },
  links = { { "A", "B" }, { "A", "C" }, { "A", "D" }, { "B", "C" }, { "C", "D" } },
  hub = "A",
  scripts = { "protocol", "topology", "hub.lua" },
  secret = "a-secret-for-this-example-only",
  secret_is_development = true,
}
