-- LuaRocks package of the LuaJIT binding: installs the module promotion_gates (one file, LuaJIT
-- FFI). The native library is not part of the rock: install it first (packaging/install.sh at
-- the repository root), then the module finds it through pg.load(path), PGATE_LIB, or on the
-- dynamic loader's path by the name its SONAME gives (see bindings/lua/README.md).
--   luarocks make bindings/lua/promotion-gates-0.1.0-1.rockspec     (in a checkout)
rockspec_format = "3.0"
package = "promotion-gates"
version = "0.1.0-1"
source = {
  url = "git+https://github.com/promotion-gates/promotion-gates.git",
  tag = "v0.1.0",
}
description = {
  summary = "Deterministic canary routing and promotion gates for LuaJIT and OpenResty",
  detailed = [[
LuaJIT FFI binding of promotion-gates, a Rust library that decides for every request whether
it goes to the stable or the canary version of a service, moves a release through
Canary, Staging and Production behind gates, and rolls a failing canary back by itself.
Needs LuaJIT 2.1 and the C library libpromotion_gates_ffi.so.
]],
  homepage = "https://github.com/promotion-gates/promotion-gates",
  license = "Apache-2.0",
  labels = { "canary", "rollout", "openresty", "luajit", "ffi" },
}
dependencies = {
  "lua >= 5.1, < 5.2", -- LuaJIT reports itself as Lua 5.1; the module needs its ffi library
}
build = {
  type = "builtin",
  modules = {
    promotion_gates = "bindings/lua/promotion_gates.lua",
  },
}
