# Sourced by e2e.sh and bench.sh: what both need to run the program e2e/ on loopback ports
# under wrk. Uses $root (the repository's root) and $here (bindings/go).

# install_wrk: wrk from the Debian package (.ci/apt-install), when it is missing
install_wrk() {
  command -v wrk >/dev/null || "$root/.ci/apt-install" wrk
}

# build_e2e <output>: builds the library, its pkg-config files for this checkout, and the
# program e2e/ into <output>
build_e2e() {
  (cd "$root" && cargo build --release -q -p promotion-gates-ffi)
  local pkgconfig
  pkgconfig="$(dirname "$("$root/.ci/build-dir" release)")/pkgconfig"
  "$root/packaging/install.sh" --build-tree-pc "$pkgconfig" >/dev/null
  (cd "$here" && PKG_CONFIG_PATH="$pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" CGO_ENABLED=1 \
    go build -o "$1" ./e2e)
}

# shellcheck source=../free_port.sh
. "$here/../free_port.sh"

# write_ids_lua <file>: a wrk script sending a new routing key (X-Request-Id) per request, as
# clients with their own request ids would, from a random prefix per wrk thread
write_ids_lua() {
  cat >"$1" <<'LUA'
local n = 0
local prefix
function init(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000); prefix = math.random(1, 1e9) end
function request()
  n = n + 1
  return wrk.format(nil, nil, {["X-Request-Id"] = prefix .. "-" .. n})
end
LUA
}
