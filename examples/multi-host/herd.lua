-- A herd spread over several machines: the five classic servers, one per
-- machine, on a private network (10.0.0.0/24 here; a VLAN, a VPC subnet or
-- a WireGuard mesh). The same file goes to every machine, e.g. as
-- /etc/herd/herd.lua; each machine runs the one server named after it:
--
--   herd --config /etc/herd/herd.lua --check Riley   # validate first
--   systemctl enable --now herd@Riley                # examples/systemd
--
-- What each machine listens on (see docs/operations.md):
--
--   port       12001/tcp  CLIENTS. Expose this one: the only port clients
--                         use (IAMAT, WHATSAT, ...).
--   peer_port  13001/tcp  PEERS. Keep it private: allow it only from the
--                         other herd machines (their `host` below). Links
--                         are TLS 1.3 keyed by the herd secret, so nobody
--                         without it can join, read or alter them; a
--                         firewall still keeps strangers off the port.
--   admin socket          ADMIN. A Unix socket (mode 0600), never on the
--                         network: `herd ctl` on the machine itself, as the
--                         user the server runs as (or root).
--
-- `host` is an IP address (v4 or v6) here; a DNS name also works (resolved
-- at start-up to bind, and at each dial). The server binds both its client
-- and its peer port to it, and its neighbours dial host:peer_port.
-- Clients on another network reach the client port through a load
-- balancer or port forward to host:port, or give each machine an address
-- both clients and peers can reach and firewall peer_port.
return {
  servers = {
    Riley    = { host = "10.0.0.11", port = 12001, peer_port = 13001 },
    Jaquez   = { host = "10.0.0.12", port = 12001, peer_port = 13001 },
    Juzang   = { host = "10.0.0.13", port = 12001, peer_port = 13001 },
    Campbell = { host = "10.0.0.14", port = 12001, peer_port = 13001 },
    Bernard  = { host = "10.0.0.15", port = 12001, peer_port = 13001 },
  },

  links = {
    { "Riley", "Jaquez" }, { "Riley", "Juzang" },
    { "Bernard", "Jaquez" }, { "Bernard", "Juzang" }, { "Bernard", "Campbell" },
    { "Juzang", "Campbell" },
  },

  -- No secret in this file: every machine gets the same HERD_SECRET from
  -- its environment (systemd: EnvironmentFile=/etc/herd/herd.env, mode
  -- 0600). A server with links refuses to start without one. Make one with
  --   printf 'HERD_SECRET=%s\n' "$(openssl rand -hex 32)"
  -- and copy the same line to every machine.

  -- Plain lines by default; JSON lines suit a log shipper.
  log_dir = "/var/log/herd",        -- <log_dir>/<NAME>.log
  log_format = "json",

  -- Records on disk, so a herd restarted at once (a redeploy, a power cut)
  -- keeps its clients; see docs/operations.md, "State on disk".
  state_dir = "/var/lib/herd",      -- <state_dir>/<NAME>/
  state_sync = "batch",             -- fsync at most every state_sync_ms

  -- One server per machine, so one fixed path does. This path is used for
  -- every server of this file: to run several of them on one machine,
  -- leave admin_socket out, and each gets <log_dir>/<NAME>.sock.
  admin_socket = "/run/herd/herd.sock",

  -- The offline provider needs no key. For Google, set places.provider
  -- (or HERD_PLACES_PROVIDER) and put HERD_PLACES_KEY in the same
  -- environment file, never here.
  places = { provider = "local" },

  -- Links between machines see real latency: redial a lost neighbour
  -- from half a second up to ten seconds.
  links_redial = { min_ms = 500, max_ms = 10000 },
}
