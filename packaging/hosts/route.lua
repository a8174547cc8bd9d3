-- A LuaJIT host of the installed rock: luajit route.lua GATE PERCENT ID routes one request on
-- a canary of PERCENT % and prints "canary BUCKET" or "stable BUCKET" (the module finds the
-- installed library on the loader's path, by its SONAME libpromotion_gates_ffi.so.0.MINOR or
-- else libpromotion_gates_ffi.so), then on standard error the file the process mapped
-- (/proc/self/maps: the file the name resolved to, which packaging/test.sh compares with the
-- one it expects).
local pg = require("promotion_gates")
local gate_name, percent, id = arg[1], arg[2], arg[3]
local gate = assert(pg.new(string.format(
  '{"gate": "%s", "environment": {"canary": {"traffic_percent": %s}}}', gate_name, percent)))
local d = gate:route(id)
print((d.is_canary and "canary " or "stable ") .. tostring(d.bucket))
gate:free()
local mapped = "none"
for line in io.lines("/proc/self/maps") do
  local path = line:match("^%S+%s+%S+%s+%S+%s+%S+%s+%S+%s+(.+)$")
  if path and path:match("[^/]*$"):find("libpromotion_gates_ffi", 1, true) then
    mapped = path
    break
  end
end
io.stderr:write(mapped, "\n")
