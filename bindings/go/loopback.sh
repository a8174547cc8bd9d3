# Sourced by e2e.sh and bench.sh: what both need to run the program e2e/ on loopback ports
# under wrk. Uses $root (the repository's root) and $here (bindings/go).

# install_wrk: wrk from the Debian package, when it is missing
install_wrk() {
  command -v wrk >/dev/null && return 0
  local apt_get=(apt-get)
  [ "$(id -u)" -eq 0 ] || apt_get=(sudo apt-get)
  "${apt_get[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -qq --no-install-recommends wrk
}

# build_e2e <output>: builds the library, its pkg-config files for this checkout, and the
# program e2e/ into <output>
build_e2e() {
  (cd "$root" && cargo build --release -q -p promotion-gates-ffi)
  local target="${CARGO_TARGET_DIR:-$root/target}"
  case "$target" in /*) ;; *) target="$root/$target" ;; esac
  "$root/packaging/install.sh" --build-tree-pc "$target/pkgconfig" >/dev/null
  (cd "$here" && PKG_CONFIG_PATH="$target/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" CGO_ENABLED=1 \
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
