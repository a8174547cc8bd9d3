-- Tests of the LuaJIT module. Usage: luajit test.lua ROUTING_TSV LATENCY_TSV OVERRIDES_TSV
-- QUOTED_TSV (ROUTING_TSV: tests/vectors/routing.json converted by bindings/c/vectors_tsv.py; test.sh
-- makes it and sets PGATE_LIB.) Ends with "N passed, M failed"; exits 1 on any failure.

package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local pg = require("promotion_gates")

local passed, failed = 0, 0

local function check(ok, what)
  if ok then
    passed = passed + 1
  else
    failed = failed + 1
    io.stderr:write("FAILED: ", what, " (", debug.getinfo(2, "l").currentline, ")\n")
  end
  return ok
end

local function from_hex(hex)
  return (hex:gsub("%x%x", function(byte) return string.char(tonumber(byte, 16)) end))
end

--- The module's library as its functions share it (the upvalue C of Gate.config_json): the
--- function, the upvalue's index and the library, for a test that swaps in a stand-in.
local function library_upvalue(gate)
  local config_json = getmetatable(gate).__index.config_json
  for i = 1, 20 do
    local name, value = debug.getupvalue(config_json, i)
    if name == "C" then
      return config_json, i, value
    end
  end
  error("Gate.config_json has no upvalue C")
end

--- Counts the calls the module's functions make to the library's function `name`, through a
--- stand-in for the library (library_upvalue) that passes each call on: returns a function
--- giving the count so far, and one that puts the library back.
local function counting_calls(gate, name)
  local config_json, up, real = library_upvalue(gate)
  local calls = 0
  debug.setupvalue(config_json, up, setmetatable({
    [name] = function(...)
      calls = calls + 1
      return real[name](...)
    end,
  }, { __index = real }))
  return function() return calls end, function() debug.setupvalue(config_json, up, real) end
end

-- Routes every vector through a gate without overrides and, by the header's overridden rule
-- (the first line), through one with its overrides: with no forcing value and with the
-- ignored value.
local function test_vectors(path)
  local count, first = 0, true
  local overrides, ignored
  for line in io.lines(path) do
    if first then
      first = false
      overrides, ignored = line:match("^overridden\t([^\t]*)\t([^\t]*)$")
      check(overrides ~= nil, path .. ": the first line is no overridden rule")
    else
      local name, salt, id_hex, percent, bucket, threshold, is_canary =
        line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([01])$")
      if check(name ~= nil, "malformed vector line " .. (count + 1)) then
        count = count + 1
        local salted = '{"salt": "' .. salt:gsub('[\\"]', "\\%0") .. '"'
        local overridden = salted .. ', "overrides": ' .. tostring(overrides) .. "}"
        local id = from_hex(id_hex)
        for _, way in ipairs({
          { "no overrides", salted .. "}" },
          { "overrides, no forcing value", overridden },
          { "overrides, an ignored forcing value", overridden, ignored },
        }) do
          local how, config, value = way[1], way[2], way[3]
          local gate = assert(pg.new(config))
          local ok, err = gate:promote("canary", tonumber(percent))
          -- Each way's own call, and its error: an error of route_forced is no cue to route.
          local d
          if ok and value then
            d, err = gate:route_forced(id, value)
          elseif ok then
            d, err = gate:route(id)
          end
          check(d and d.bucket == tonumber(bucket) and d.threshold == tonumber(threshold)
                  and d.is_canary == (is_canary == "1") and d.traffic_percent == tonumber(percent)
                  and d.forced == 0,
                string.format("vector %s (%s): %s bucket %s threshold %s is_canary %s forced %s",
                              name, how, tostring(err), d and d.bucket, d and d.threshold,
                              d and tostring(d.is_canary), d and tostring(d.forced)))
          gate:free()
        end
      end
    end
  end
  check(count >= 100, "only " .. count .. " vectors")
  print("routing vectors: " .. count .. " routed, each without and with overrides")
end

local function find_id(gate, canary)
  for i = 0, 100000 do
    local id = "user-" .. i
    local d = gate:route(id)
    if d.is_canary == canary then
      return id, d
    end
  end
end

local function test_wrappers()
  check(pg.version():match("^%d+%.%d+%.%d+") ~= nil, "version")
  check(pg.status_str(6) == "PGATE_STATUS_SLO_NOT_MET", "status_str")
  check(pg.status_str(99) == "PGATE_STATUS_UNKNOWN", "status_str unknown")
  -- Checked before the FFI converts them: 2^32 + 6 would wrap to 6, 2^40 to 0.
  -- A refused value is shown as the number it is (0.1 + 0.2 is not 0.3, as tostring's 14
  -- digits wrote it), a string quoted, and a table's __tostring, the host's code, at most 160
  -- bytes of it.
  local long = setmetatable({}, { __tostring = function() return ("é"):rep(100) end })
  local failing = setmetatable({}, { __tostring = function() error("no text") end })
  local cases = {
    { 2 ^ 32 + 6, "4294967302" }, { 2 ^ 40, "1099511627776" }, { -1, "-1" }, { 1.5, "1.5" },
    { 0 / 0, "nan" }, { 0.1 + 0.2, "0.30000000000000004" }, { 1e300, "1e+300" },
    -- a string quoted, so that "5" is told from 5 and "" shows; a newline cannot end the line
    { "x", '"x"' }, { "", '""' }, { "5\n", '"5\\n"' },
    { long, ("é"):rep(80) .. "...(200 bytes)" }, { failing, "<table>" },
  }
  for _, case in ipairs(cases) do
    local none, message, status = pg.status_str(case[1])
    check(none == nil and status == pg.INVALID_ARGUMENT
            and message:find("invalid status = " .. case[2] .. ": ", 1, true),
          "status_str(" .. case[2] .. "): " .. tostring(message or none))
  end
  -- The library stays the one loaded: the same name returns it, another is refused.
  local lib_path = os.getenv("PGATE_LIB")
  check(pg.load() ~= nil and pg.load(lib_path) == pg.load(), "load of the loaded library")
  local none, message, status = pg.load("/nonexistent/libpromotion_gates_ffi.so")
  check(none == nil and status == pg.INVALID_ARGUMENT
          and message:find('invalid path = "/nonexistent/libpromotion_gates_ffi.so": the library '
                             .. "is already loaded from " .. lib_path, 1, true),
        "load of another library: " .. tostring(message))

  local none, message, status = pg.new('{"slo_treshold": 0.9}')
  check(none == nil and status == 4 and message:find("slo_treshold", 1, true), "unknown field")

  local gate = assert(pg.new(
    '{"environment": {"canary": {"traffic_percent": 50}}, "feature_flags": ["new_api", "beta"]}',
    '{"min_samples": 10, "warm_up_ms": 0, "promotion_evidence": false}'))
  local _, canary = find_id(gate, true)
  local flags = gate:flags(canary)
  check(#flags == 2 and flags[1] == "beta" and flags[2] == "new_api", "canary flags")
  local _, stable = find_id(gate, false)
  check(#gate:flags(stable) == 0, "stable flags")
  -- A flag set the gate never gave out: the library's call says only its status; the
  -- binding names the field and the value.
  local forged = gate:route("a")
  forged.flag_set = 12345
  local none, message, status = gate:flags(forged)
  check(none == nil and status == 16 -- PGATE_STATUS_UNKNOWN_FLAG_SET
          and message == "PGATE_STATUS_UNKNOWN_FLAG_SET: invalid flag_set = 12345: not a flag set "
                       .. "of this gate (another gate's decision, or one replaced more than 60 "
                       .. "writes ago)",
        "flags of an unknown set: " .. tostring(message))
  -- A method called with "." takes its first argument as the gate: refused as no gate, not
  -- as a freed one.
  none, message, status = gate.route("user-1")
  check(none == nil and status == pg.INVALID_ARGUMENT
          and message == 'PGATE_STATUS_INVALID_ARGUMENT: invalid gate = "user-1": route needs '
                           .. "a gate (call it as gate:route(...), with a colon)",
        "a method called with a dot: " .. tostring(message))
  -- Every method, called with a dot and a decision first (a cdata, whose unknown field raises
  -- when read), refuses it the same way; free frees nothing.
  local ffi = require("ffi")
  for name, method in pairs(getmetatable(gate)) do
    if type(method) == "function" then
      local ok, result, why, code = pcall(method, forged, "x")
      check(ok and result == nil and code == pg.INVALID_ARGUMENT
              and why:find("invalid gate = cdata<", 1, true) and why:find(name .. " needs a gate", 1, true),
            "gate." .. name .. "(decision): " .. tostring(ok) .. " " .. tostring(why or result))
    end
  end
  check(gate:route("a") ~= nil, "a dot call frees nothing")
  -- A decision route may not write into (const) is refused, not raised by the FFI.
  local const = ffi.cast("const pgate_decision *", forged)
  for _, call in ipairs({ function() return gate:route("u", const) end,
                          function() return gate:route_forced("u", "canary", const) end }) do
    local ok, result, why, code = pcall(call)
    check(ok and result == nil and code == pg.INVALID_ARGUMENT
            and why:find("invalid decision = cdata<const struct pgate_decision *>: ", 1, true)
            and why:find(": const, and route writes into it", 1, true),
          "a const decision to route into: " .. tostring(ok) .. " " .. tostring(why or result))
  end
  check(gate:record(const, true, 1) ~= nil, "a const decision is recorded")
  -- A path that is no file name is refused, not raised.
  for _, path in ipairs({ {}, 5, "" }) do
    none, message, status = pg.load(path)
    check(none == nil and status == pg.INVALID_ARGUMENT
            and message:find("invalid path = ", 1, true)
            and message:find("a library's file name or path, a non-empty string, or nil", 1, true),
          "load(" .. tostring(path) .. "): " .. tostring(message))
  end
  -- A NUL byte ends the name ffi.load reads: refused, shown escaped as every refused string.
  none, message, status = pg.load(lib_path .. "\0.old")
  check(none == nil and status == pg.INVALID_ARGUMENT
          and message == 'PGATE_STATUS_INVALID_ARGUMENT: invalid path = "' .. lib_path .. '\\0.old": '
                           .. "a file name holds no NUL byte (ffi.load would load the name before it)",
        "load of a path with a NUL byte: " .. tostring(message))

  -- Route into a reused decision; ids are bytes, NULs included.
  local reused = gate:route("a\0b")
  check(gate:route("a\0b", reused) == reused and reused.bucket ~= gate:route("a").bucket,
        "ids with NUL bytes")

  check(gate:record(canary, true, 2e6) == "counted", "record")
  check(gate:record_by_id("someone", true, 2e6) == "counted", "record_by_id")
  -- A client gone before the SLO's latency target (500 ms): nothing; after it: recorded.
  check(gate:record_abandoned(canary, 1e6) == false, "record_abandoned before the target")
  check(gate:record_abandoned(canary, 2e9) == true, "record_abandoned after the target")
  local _, bad_message = gate:record_abandoned(canary, -1)
  check(bad_message and bad_message:find("invalid latency = ", 1, true), "record_abandoned -1")
  -- record_abandoned_as says what happened to the outcome, as gate:record does.
  check(gate:record_abandoned_as(canary, 1e6) == false, "record_abandoned_as before the target")
  check(gate:record_abandoned_as(canary, 2e9) == "counted", "record_abandoned_as after the target")
  _, bad_message = gate:record_abandoned_as(canary, -1)
  check(bad_message and bad_message:find("invalid latency = ", 1, true), "record_abandoned_as -1")
  local h = gate:health()
  check(h.environment == "canary" and h.canary_requests >= 1 and not h.sufficient_data
          and h.recommendation == "monitor" and h.evidence:find("min_samples 10", 1, true),
        "health without enough data")
  check(gate:check_slo() == false, "check_slo without data")

  local ok
  ok, message, status = gate:promote("canary", 75)
  check(ok == nil and status == 7 and message:find("not enough data", 1, true), "gated ramp")
  ok, message, status = gate:promote("canary", 0 / 0)
  check(ok == nil and status == 3 and message:find("environment.canary.traffic_percent", 1, true), "NaN")
  ok, message, status = gate:promote("testing")
  check(ok == nil and status == 2, "unknown environment name")
  -- A canary without a percentage is refused, not moved to 0 %.
  local before = gate:state()
  ok, message, status = gate:promote("canary")
  check(ok == nil and status == pg.INVALID_ARGUMENT
          and message:find("invalid traffic_percent = nil: ", 1, true), "canary without a percentage")
  local after = gate:state()
  check(after.environment == "canary" and after.traffic_percent == before.traffic_percent
          and after.stage == before.stage, "a canary without a percentage changes nothing")

  for i = 1, 400 do
    gate:record(gate:route("feed-" .. i), true, 1e6)
  end
  h = gate:health()
  check(h.sufficient_data and h.recommendation == "healthy" and h.health_score == 1, "healthy")
  check(gate:check_slo() == true, "check_slo with data")
  check(gate:promote("canary", 75) == true, "ramp up with data")

  check(gate:enable_feature("dark_mode") == true and gate:is_feature_enabled("dark_mode"), "enable")
  check(gate:disable_feature("dark_mode") == true and not gate:is_feature_enabled("dark_mode"),
        "disable")
  ok, message, status = gate:disable_feature("dark_mode")
  check(ok == nil and status == 10, "disable twice")
  ok, _, status = gate:enable_feature("\255")
  check(ok == nil and status == 2, "flag name not UTF-8")

  check(gate:rollback("lua test") == true, "rollback")
  local history = gate:rollback_history_json()
  check(history:find('"reason":"lua test"', 1, true) and history:find('"trigger":"manual"', 1, true)
          and history:find('"trigger":"flag_disabled"', 1, true), "history")
  check(gate:route("x").environment == 2, "rolled back to production")

  local config = gate:config_json()
  check(config:find('"environment":"production"', 1, true), "config_json")
  ok, message, status = gate:swap_config('{"slo_threshold": 7}')
  check(ok == nil and status == 3 and message:find("slo_threshold", 1, true), "bad swap")
  check(gate:config_json() == config, "a refused swap changes nothing")
  ok, message, status = gate:swap_config('{"gate": "search"}')
  check(ok == nil and status == 3 and message:find("keeps its name", 1, true), "a rename is refused")
  local name = config:match('"gate":"([^"]*)"')
  check(gate:swap_config('{"gate": "' .. name .. '", "salt": "s2"}') == true
          and gate:config_json():find('"salt":"s2"', 1, true), "swap")

  -- After free, every call fails before it reaches the library: never a use after free.
  local decision = gate:route("x")
  gate:free()
  gate:free()
  local calls = {
    route = function() return gate:route("x") end,
    record = function() return gate:record(decision, true, 1e6) end,
    record_by_id = function() return gate:record_by_id("x", true, 1e6) end,
    record_by_id_forced = function() return gate:record_by_id_forced("x", "canary", true, 1e6) end,
    record_abandoned = function() return gate:record_abandoned(decision, 2e9) end,
    record_abandoned_as = function() return gate:record_abandoned_as(decision, 2e9) end,
    flags = function() return gate:flags(decision) end,
    health = function() return gate:health() end,
    check_slo = function() return gate:check_slo() end,
    promote = function() return gate:promote("canary", 5) end,
    promote_from = function() return gate:promote_from(decision.stage, "canary", 5) end,
    rollback = function() return gate:rollback("r") end,
    enable_feature = function() return gate:enable_feature("f") end,
    disable_feature = function() return gate:disable_feature("f") end,
    is_feature_enabled = function() return gate:is_feature_enabled("f") end,
    swap_config = function() return gate:swap_config("{}") end,
    swap_config_from = function() return gate:swap_config_from(0, "{}") end,
    config_json = function() return gate:config_json() end,
    rollback_history_json = function() return gate:rollback_history_json() end,
  }
  for operation, call in pairs(calls) do
    local result, why, code = call()
    check(result == nil and code == 13
            and why == "PGATE_STATUS_INVALID_HANDLE: " .. operation .. " on a freed gate",
          operation .. " after free: " .. tostring(why))
  end

  -- A gate left to the garbage collector is freed by its finalizer: each of 50 reaches the
  -- library's pgate_gate_free, counted by a stand-in for the library (its finalizer is the
  -- pgate_gate_free of the library pg.new called).
  local frees, restore = counting_calls(gate, "pgate_gate_free")
  for _ = 1, 50 do
    pg.new()
  end
  restore()
  collectgarbage()
  collectgarbage()
  check(frees() == 50, frees() .. " of 50 gates left to the garbage collector were freed")
end

local function test_telemetry()
  local gate = assert(pg.new('{"gate": "edge", "environment": {"canary": {"traffic_percent": 50}}}'))
  local text = assert(gate:metrics_prometheus())
  check(text:find('promotion_health_score{gate="edge"}', 1, true) ~= nil, "health score series")
  local manual = 'promotion_rollbacks_total{gate="edge",trigger="manual",rule="none"}'
  check(text:find(manual .. " 0\n", 1, true) ~= nil, "rollbacks start at 0")
  assert(gate:rollback("bad deploy"))
  check(gate:metrics_prometheus():find(manual .. " 1\n", 1, true) ~= nil, "a rollback counted")
  local json = assert(gate:latency_histograms_json())
  check(json:find('"encoding":"hdrhistogram-v2-deflate-base64"', 1, true) ~= nil, "encoding")
  check(json:find('"canary":"HISTF', 1, true) ~= nil, "canary histogram in V2 base64")
  gate:free()
  for operation, call in pairs({ metrics_prometheus = gate.metrics_prometheus,
                                 latency_histograms_json = gate.latency_histograms_json }) do
    local result, why, code = call(gate)
    check(result == nil and code == 13
            and why == "PGATE_STATUS_INVALID_HANDLE: " .. operation .. " on a freed gate",
          operation .. " after free: " .. tostring(why))
  end
end

-- A bad latency is the one error every binding gives it (the same status and words in C++,
-- Go and Python), and nothing is recorded; decisions must be decisions.
local function test_arguments()
  local ffi = require("ffi")
  local gate = assert(pg.new('{"environment": {"canary": {"traffic_percent": 50}}}'))
  local d = gate:route("user-1")
  local rule = ": a latency must be finite, at least 0 and below 2^64 ns"
  -- A reference's tostring is its address (140052170748312LL for an int64_t &): the boxes
  -- it refers to, kept here while the references are used.
  local boxes = { int64 = ffi.new("int64_t[1]", -1), int32 = ffi.new("int32_t[1]", -7),
                  five = ffi.new("int64_t[1]", 5), unsigned = ffi.new("uint64_t[1]", 5) }
  for _, case in ipairs({
    { -1, "-1" }, { -0.5, "-0.5" }, { 0 / 0, "nan" }, { 1 / 0, "inf" }, { -1 / 0, "-inf" },
    -- 2^64 as tostring wrote it, 1.844674407371e+19, reads back below 2^64.
    { 1e300, "1e+300" }, { 2 ^ 64, "1.8446744073709552e+19" }, { -1LL, "-1" },
    -- Any C integer or floating cdata, shown by its value (never its address), also through
    -- a reference.
    { ffi.new("int32_t", -7), "-7" }, { ffi.new("const int8_t", -3), "-3" },
    { ffi.new("double", -0.5), "-0.5" }, { ffi.cast("int64_t &", boxes.int64), "-1" },
    { ffi.cast("const int64_t &", boxes.int64), "-1" }, { ffi.cast("int32_t &", boxes.int32), "-7" },
  }) do
    for _, by_id in ipairs({ false, true }) do
      local result, message, status
      if by_id then
        result, message, status = gate:record_by_id("user-1", true, case[1])
      else
        result, message, status = gate:record(d, true, case[1])
      end
      local want = "PGATE_STATUS_INVALID_ARGUMENT: invalid latency = " .. case[2] .. " ns" .. rule
      check(result == nil and status == 2 and message == want,
            "latency " .. case[2] .. (by_id and " by id" or "") .. ": " .. tostring(message))
    end
  end
  local _, message, status = gate:record(d, true, "5")
  check(status == 2 and message:find('invalid latency = "5": not a number', 1, true), "string latency")
  _, message, status = gate:record(d, true, ffi.new("bool", true))
  check(status == 2 and message:find("invalid latency = true: not a number", 1, true),
        "a bool cdata latency, shown by its value: " .. tostring(message))
  local h = gate:health()
  check(h.canary_requests + h.production_requests == 0, "a refused latency is not recorded")

  check(gate:record(d, true, 0) == "counted", "latency 0")
  check(gate:record(d, true, 2 ^ 64 - 2048) == "counted", "the largest number below 2^64")
  check(gate:record(d, true, -1ULL) == "counted", "uint64_t max")
  check(gate:record(d, true, 5LL) == "counted", "int64_t")
  check(gate:record(d, true, ffi.cast("int64_t &", boxes.five)) == "counted"
          and gate:record(d, true, ffi.cast("uint64_t &", boxes.unsigned)) == "counted",
        "an int64_t and a uint64_t through a reference")
  for _, form in ipairs({ "uint32_t", "const uint16_t", "int8_t", "unsigned char", "long", "size_t",
                          "float" }) do
    local result, why = gate:record(d, true, ffi.new(form, 5))
    check(result == "counted", form .. " cdata latency: " .. tostring(why))
  end
  check(gate:record(d, true, 1.4) == "counted", "a fraction of a nanosecond")

  _, message, status = gate:record({ stage = 2 ^ 64 + 1, is_canary = true }, true, 1)
  check(status == 2 and message:find("invalid decision = table", 1, true), "a table is no decision")
  _, message, status = gate:flags(5)
  check(status == 2 and message:find("invalid decision = 5", 1, true), "flags of a number")
  local array = ffi.new("pgate_decision[1]")
  gate:route("user-1", array[0])
  check(gate:record(array + 0, true, 1) == "counted", "a pointer to a decision")

  -- A NULL pointer is no decision: refused by every call that takes one (gate:flags read
  -- through it and crashed LuaJIT).
  local null = ffi.cast("pgate_decision *", nil)
  for operation, call in pairs({
    flags = function() return gate:flags(null) end,
    record = function() return gate:record(null, true, 1) end,
    record_abandoned = function() return gate:record_abandoned(null, 2e9) end,
    record_abandoned_as = function() return gate:record_abandoned_as(null, 2e9) end,
    route = function() return gate:route("u", null) end,
    route_forced = function() return gate:route_forced("u", "canary", null) end,
  }) do
    local result, why, code = call()
    check(result == nil and code == 2 and why == "PGATE_STATUS_INVALID_ARGUMENT: invalid decision "
            .. "= NULL: a pgate_decision from gate:route", operation .. " of NULL: " .. tostring(why))
  end

  -- Any other wrong type is an error return naming the argument and its value, never a raise
  -- from the FFI's conversions ("attempt to get length", "cannot convert 'nil' to 'bool'").
  for _, case in ipairs({
    { "invalid id = nil: not a string", function() return gate:route(nil) end },
    { "invalid id = 42: not a string", function() return gate:route(42) end },
    { "invalid decision = 5: ", function() return gate:route("u", 5) end },
    { "invalid id = nil: not a string", function() return gate:route_forced(nil, "canary") end },
    { "invalid value = 1: not a string or nil", function() return gate:route_forced("u", 1) end },
    { "invalid success = nil: not true or false", function() return gate:record(d, nil, 1) end },
    { "invalid success = 0: not true or false", function() return gate:record(d, 0, 1) end },
    { "invalid id = false: not a string", function() return gate:record_by_id(false, true, 1) end },
    { 'invalid success = "ok": not true or false',
      function() return gate:record_by_id("u", "ok", 1) end },
    { "invalid id = nil: not a string",
      function() return gate:record_by_id_forced(nil, "canary", true, 1) end },
    { "invalid value = 1: not a string or nil",
      function() return gate:record_by_id_forced("u", 1, true, 1) end },
    { "invalid success = nil: not true or false",
      function() return gate:record_by_id_forced("u", nil, nil, 1) end },
    { "invalid reason = nil: not a string", function() return gate:rollback(nil) end },
    { "invalid name = nil: not a string", function() return gate:enable_feature(nil) end },
    { "invalid name = 7: not a string", function() return gate:disable_feature(7) end },
    { "invalid name = nil: not a string", function() return gate:is_feature_enabled() end },
    { "invalid stage = -1: a stage number from 0, below 2^53",
      function() return gate:promote_from(-1, "canary", 5) end },
    { "invalid stage = 9007199254740992: a stage number from 0, below 2^53",
      function() return gate:promote_from(2 ^ 53, "canary", 5) end },
    { "invalid stage = 1.5: a stage number", function() return gate:promote_from(1.5, "canary", 5) end },
    { 'invalid stage = "1": a stage number', function() return gate:promote_from("1", "canary", 5) end },
    { "invalid stage = -1: a stage number", -- an int64_t cdata would wrap to 2^64 - 1
      function() return gate:promote_from(-1LL, "canary", 5) end },
    { 'invalid environment = "": "canary", "staging" or "production"',
      function() return gate:promote("", 5) end },
    { 'invalid environment = "canary\\n": "canary", "staging" or "production"',
      function() return gate:promote("canary\n", 5) end },
    { 'invalid traffic_percent = "5": not a number', function() return gate:promote("canary", "5") end },
    { 'invalid environment = "testing": "canary", "staging" or "production"',
      function() return gate:promote_from(0, "testing") end },
    { 'invalid traffic_percent = nil: "canary" takes a percentage',
      function() return gate:promote_from(0, "canary") end },
    { "invalid json = nil: not a string", function() return gate:swap_config(nil) end },
    { "invalid json = nil: not a string", function() return gate:swap_config_from(0, nil) end },
    { "invalid json = 5: not a string", function() return gate:swap_config_from(0, 5) end },
    { "invalid change_count = -1: a change count from 0, below 2^53",
      function() return gate:swap_config_from(-1, "{}") end },
    { "invalid change_count = 9007199254740992: a change count from 0, below 2^53",
      function() return gate:swap_config_from(2 ^ 53, "{}") end },
    { 'invalid change_count = "1": a change count', function() return gate:swap_config_from("1", "{}") end },
    { "invalid change_count = -1: a change count", function() return gate:swap_config_from(-1LL, "{}") end },
    { "invalid change_count = nil: a change count", function() return gate:swap_config_from(nil, "{}") end },
    { "invalid json = nil: not a string", function() return gate:swap_slo(nil) end },
    { "invalid config_json = 42: not a string or nil", function() return pg.new(42) end },
    { "invalid slo_json = true: not a string or nil", function() return pg.new(nil, true) end },
  }) do
    local ok, result, message, status = pcall(case[2])
    check(ok and result == nil and status == 2
            and message:find("PGATE_STATUS_INVALID_ARGUMENT: " .. case[1], 1, true) == 1,
          case[1] .. ": " .. tostring(ok) .. " " .. tostring(message or result))
  end
  -- A name no flag can have is refused with the status enable_feature refuses it with:
  -- INVALID_FLAG, or INVALID_ARGUMENT for bytes that are not UTF-8 (is_feature_enabled
  -- answered INVALID_ARGUMENT for all). Each row: the message's start, the name, its status.
  for _, case in ipairs({
    -- named as the library names values (a long one shortened)
    { 'invalid name = "a b": not a flag name (1 to 128 bytes of UTF-8, no whitespace, '
        .. "control, format or invisible characters)", "a b", pg.INVALID_FLAG },
    { 'invalid name = "": not a flag name', "", pg.INVALID_FLAG },
    { 'invalid name = "tab\\there\\u{1}": not a flag name',
      "tab\there\1", pg.INVALID_FLAG },
    -- the other control characters as the library writes them ({:?}), C1 controls too
    { 'invalid name = "\\0\\u{1b}\\u{7f}\\u{85}\\u{a0}x": not a flag name',
      "\0\27\127\194\133\194\160x", pg.INVALID_FLAG },
    -- bytes that are not UTF-8 escaped, so the message is UTF-8; é as it is
    { 'invalid name = "bad\\xff": not a flag name',
      "bad\255", pg.INVALID_ARGUMENT },
    { 'invalid name = "ab\\xc3": not a flag name',
      "ab\195", pg.INVALID_ARGUMENT },
    { 'invalid name = "caf\195\169 x": not a flag name',
      "caf\195\169 x", pg.INVALID_FLAG },
    -- characters drawn as nothing escaped, which the library refuses for them: U+2800, U+FE0F
    { 'invalid name = "beta\\u{2800}\\u{fe0f}": not a flag name',
      "beta\226\160\128\239\184\143", pg.INVALID_FLAG },
    { 'invalid name = "' .. string.rep("n", 159) .. '"...(201 bytes): not a flag name',
      -- "é" spans bytes 160 and 161: cut before it
      string.rep("n", 159) .. "é" .. string.rep("n", 40), pg.INVALID_FLAG },
  }) do
    local none, message, status = gate:is_feature_enabled(case[2])
    local _, _, enabled = gate:enable_feature(case[2])
    check(none == nil and status == case[3] and status == enabled
            and message:find(pg.status_str(status) .. ": " .. case[1], 1, true) == 1,
          case[1] .. ": " .. tostring(message) .. " (" .. tostring(status) .. ", enable: "
            .. tostring(enabled) .. ")")
  end
  -- The binding quotes a name as the library does: every character up to U+00FF that either
  -- escapes, beside letters, compared with the library's own message for the same name.
  local names = {}
  for byte = 0, 0x20 do names[#names + 1] = "a" .. string.char(byte) .. "b" end
  for code = 0x7F, 0xFF do
    local text = code < 0x80 and string.char(code)
                 or string.char(0xC0 + math.floor(code / 64), 0x80 + code % 64)
    names[#names + 1] = "a " .. text .. '"\\'
  end
  for _, name in ipairs(names) do
    local _, ours = gate:is_feature_enabled(name)
    local _, library = gate:enable_feature(name)
    local shown = ours and ours:match('^PGATE_STATUS_[%u_]+: invalid name = (".*"): ')
    check(shown and library and library:find("invalid feature flag name " .. shown .. ": ", 1, true),
          "quoted as the library quotes: " .. tostring(ours) .. " | " .. tostring(library))
  end
  local h = gate:read_health()
  check(h.canary_requests + h.production_requests == 15, "a refused call records nothing")
  gate:free()
end

-- A ramp loop's look, then a rollback before its promotion: gate:promote_from refuses it rather
-- than start a new rollout of the build rolled back; from the stage the gate is in, it promotes.
local function test_promote_from()
  local gate = assert(pg.new('{"environment": {"canary": {"traffic_percent": 10}}}'))
  local looked = gate:state().stage
  check(gate:rollback("the judge, or another worker") == true, "rollback after the look")
  local ok, message, status = gate:promote_from(looked, "canary", 25)
  check(ok == nil and status == pg.STAGE_CHANGED and status == 19
          and message:find("PGATE_STATUS_STAGE_CHANGED: the gate left stage " .. looked .. ": ",
                           1, true) == 1
          and message:find("nothing was promoted", 1, true),
        "promote_from a stage the gate left: " .. tostring(message))
  local now = gate:state()
  check(now.environment == "production" and now.stage ~= looked, "a refused promote_from changes nothing")

  check(gate:promote_from(now.stage, "canary", 25) == true, "promote_from the current stage")
  local d = gate:route("u")
  check(d.environment == 0 and d.traffic_percent == 25 and d.stage ~= now.stage, "promoted")
  -- A decision's stage is a uint64_t cdata: taken as it is.
  check(gate:promote_from(d.stage, "canary", 5) == true, "promote_from a decision's stage")
  ok, message, status = gate:promote_from(d.stage, "canary", 1)
  check(ok == nil and status == pg.STAGE_CHANGED, "a decision's stage, ended: " .. tostring(message))
  -- From the stage it is in, its other refusals are gate:promote's (a bad argument is refused first).
  local stage = gate:state().stage
  ok, message, status = gate:promote_from(stage, "canary", 50)
  check(ok == nil and status == 7 and message:find("not enough data", 1, true), "gated ramp")
  ok, message, status = gate:promote_from(stage, "canary", 0 / 0)
  check(ok == nil and status == 3 and message:find("environment.canary.traffic_percent", 1, true), "NaN")
  check(gate:state().stage == stage, "refused promotions change nothing")
  gate:free()
end

-- A stage, a change count and a change number take the forms a count takes: changes_since
-- refused a uint64_t cdata that promote_from and swap_config_from took, and promote_from and
-- swap_config_from a non-negative int64_t that metrics_prometheus_counted took.
local function test_numeric_forms()
  local ffi = require("ffi")
  local gate = assert(pg.new('{"environment": {"canary": {"traffic_percent": 10}}}'))
  assert(gate:rollback("a change to read"))
  local forms = {
    int64_t = function(n) return ffi.new("int64_t", n) end,
    uint64_t = function(n) return ffi.new("uint64_t", n) end,
    uint32_t = function(n) return ffi.new("uint32_t", n) end,
    double = function(n) return ffi.new("double", n) end,
  }
  for name, form in pairs(forms) do
    -- After change 1 (not 0, which a conversion dropping its argument would pass too).
    local expected = assert(gate:changes_since(1))
    check(expected ~= assert(gate:changes_since(0)), "changes_since(1) differs from (0)")
    check(gate:changes_since(form(1)) == expected, "changes_since(" .. name .. " 1): "
            .. tostring((select(2, gate:changes_since(form(1))))))
    -- The stage the gate is in, in each form: the move is made (Production to Canary at 5 %),
    -- then the stage it left is refused as left, not as no stage number.
    local stage = gate:state().stage
    local ok, message, status = gate:promote_from(form(stage), "canary", 5)
    check(ok == true, "promote_from(" .. name .. " stage): " .. tostring(message))
    ok, message, status = gate:promote_from(form(stage), "canary", 5)
    check(ok == nil and status == pg.STAGE_CHANGED,
          "promote_from(" .. name .. " stage left): " .. tostring(message))
    assert(gate:rollback("back to Production"))
    local count = gate:change_count()
    ok, message = gate:swap_config_from(form(count), gate:config_json())
    check(ok == true, "swap_config_from(" .. name .. " count): " .. tostring(message))
  end
  for _, bad in ipairs({ ffi.new("int64_t", -1), ffi.new("double", 0.5), ffi.new("int32_t", -2) }) do
    for call, run in pairs({
      changes_since = function() return gate:changes_since(bad) end,
      promote_from = function() return gate:promote_from(bad, "canary", 5) end,
      swap_config_from = function() return gate:swap_config_from(bad, "{}") end,
    }) do
      local ok, message, status = run()
      local shown = tostring(tonumber(bad)) -- the value, never the cdata's address
      check(ok == nil and status == 2 and message:find(" = " .. shown .. ": a ", 1, true)
              and message:find(" from 0, below 2^53, or an int64_t or uint64_t cdata from 0", 1, true),
            call .. "(" .. tostring(bad) .. "): " .. tostring(message))
    end
  end
  gate:free()
end

-- A hot reload's read: the change count first, then the config, with the flag wide_layout on.
local function read_to_edit(gate)
  local seen = gate:change_count()
  local config = gate:config_json()
  local edited, n = config:gsub('"feature_flags":%[%]', '"feature_flags":["wide_layout"]')
  if n == 0 then
    edited, n = config:gsub('"feature_flags":%[', '"feature_flags":["wide_layout",')
  end
  check(n == 1, "feature_flags in " .. config)
  return seen, edited
end

-- gate:swap_config_from(seen, edited) is refused as changed since `seen`, changing nothing.
local function refused_as_changed(gate, seen, edited, what)
  local before = gate:config_json()
  local ok, message, status = gate:swap_config_from(seen, edited)
  local now = gate:change_count()
  check(ok == nil and status == pg.GATE_CHANGED and status == 20 and now > seen
          and message:find("PGATE_STATUS_GATE_CHANGED: the gate changed since change " .. seen
                             .. " (now " .. now .. ": ", 1, true) == 1
          and message:find("read its config again", 1, true),
        what .. ": " .. tostring(message))
  check(gate:config_json() == before and gate:is_feature_enabled("wide_layout") == false,
        what .. ": a refused swap_config_from changes nothing")
end

-- A hot reload reads the change count, then the config, and edits it; a rollback, a kill
-- switch or an SLO swap comes before its swap: gate:swap_config_from refuses it rather than
-- undo that change; from the count the gate is at, it swaps.
local function test_swap_config_from()
  local ffi = require("ffi")
  local gate = assert(pg.new('{"environment": {"canary": {"traffic_percent": 10}}}'))
  local seen, config = read_to_edit(gate)
  check(gate:rollback("the judge, or another worker") == true, "rollback after the read")
  refused_as_changed(gate, seen, config, "a rollback")
  check(gate:state().environment == "production", "a refused swap keeps the rollback")

  -- From the count it is at (a number, or a uint64_t cdata), it is gate:swap_config.
  seen, config = read_to_edit(gate)
  check(gate:swap_config_from(seen, config) == true, "swap_config_from the current count")
  check(gate:is_feature_enabled("wide_layout") == true and gate:state().environment == "production",
        "swapped")
  check(gate:swap_config_from(ffi.new("uint64_t", gate:change_count()), gate:config_json()) == true,
        "swap_config_from a uint64_t count")
  -- Its other refusals are gate:swap_config's (the gate unchanged).
  seen = gate:change_count()
  local swapped = gate:config_json()
  local ok, message, status = gate:swap_config_from(seen, '{"slo_threshold": 7}')
  check(ok == nil and status == 3 and message:find("slo_threshold", 1, true), "bad swap")
  ok, message, status = gate:swap_config_from(seen, "")
  check(ok == nil and status == 4, "an empty document: " .. tostring(message))
  check(gate:change_count() == seen and gate:config_json() == swapped, "refused swaps change nothing")
  gate:free()

  -- A kill switch begins no stage (in Canary, where a flag turned on begins one), and a config
  -- read before it does not turn the flag on again.
  gate = assert(pg.new('{"environment": {"canary": {"traffic_percent": 10}}, "feature_flags": ["dark_mode"]}'))
  seen, config = read_to_edit(gate)
  local stage = gate:state().stage
  check(gate:disable_feature("dark_mode") == true, "a kill switch after the read")
  check(gate:state().stage == stage, "a kill switch is no new stage")
  refused_as_changed(gate, seen, config, "a kill switch")
  check(gate:is_feature_enabled("dark_mode") == false, "the flag stays off")
  -- An SLO swap changes no config, yet it counts.
  seen, config = read_to_edit(gate)
  check(gate:swap_slo("{}") == true, "an SLO swap after the read")
  refused_as_changed(gate, seen, config, "an SLO swap")
  gate:free()
end

-- tests/vectors/latency.tsv, which C++, Go and Python read too: KIND (int: an int64_t cdata;
-- float: a number), NS, EXPECT (the nanoseconds recorded, or the exact error message).
local function test_latency_vectors(path)
  local ffi = require("ffi")
  local gate = assert(pg.new('{"environment": {"canary": {"traffic_percent": 50}}}'))
  local d = gate:route("user-1")
  local cases = 0
  for line in assert(io.open(path)):lines() do
    if line ~= "" and line:sub(1, 1) ~= "#" then
      local kind, ns, expect = line:match("^(%a+)\t([^\t]+)\t(.+)$")
      check(kind == "int" or kind == "float", "latency.tsv line: " .. line)
      local value
      if kind == "int" then -- digit by digit, negative first, so int64's minimum fits
        value = ffi.new("int64_t", 0)
        for digit in ns:gmatch("%d") do value = value * 10 - tonumber(digit) end
        if ns:sub(1, 1) ~= "-" then value = -value end
      else
        value = ({ inf = 1 / 0, ["-inf"] = -1 / 0 })[ns] or tonumber(ns)
      end
      local result, message, status = gate:record(d, true, value)
      if expect:match("^%d+$") then
        check(result == "counted", "latency " .. ns .. ": " .. tostring(message))
        -- The nanoseconds recorded, digit for digit (a number's whole value, a 64-bit
        -- integer's digits without LL).
        local recorded = pg._latency_ns(value)
        local digits = type(recorded) == "number" and recorded % 1 == 0
                         and string.format("%.0f", recorded)
                       or tostring(recorded):gsub("U?LL$", "")
        check(digits == expect, "latency " .. ns .. " recorded as " .. digits .. " ns, not " .. expect)
      else
        check(result == nil and status == 2
                and message == "PGATE_STATUS_INVALID_ARGUMENT: " .. expect,
              "latency " .. ns .. ": " .. tostring(message))
      end
      cases = cases + 1
    end
  end
  check(cases > 0, "latency.tsv holds cases")
  gate:free()
end

-- The module's tables mirror the C header, both ways: every enum's values (PGATE_STATUS_*
-- as pg.OK ..., PGATE_ENVIRONMENT_* as pg.environments, PGATE_FORCED_* as pg.forced,
-- PGATE_RECORDED_* as pg.recorded, PGATE_RECOMMENDATION_* as pg.recommendations, PGATE_RULE_*
-- as pg.rules), every #define PGATE_* number and FLAG_SET_GRACE_WRITES. A value that differs,
-- one the header has and the module not (or the reverse), or an enum no table mirrors fails.
local function test_header_constants()
  local header = arg[0]:gsub("[^/]*$", "") .. "../../include/promotion_gates.h"
  -- The header's numbers the module leaves out on purpose, each with its reason.
  local not_mirrored = {
    QUARANTINED_GATES = "a bound of the library's own on the freed gates it keeps; nothing a caller passes or reads",
  }
  local unmirrored_enums = {
    log_level = "only pgate_set_log_callback's, which the module leaves out (check_cdef.py's NOT_DECLARED)",
  }
  local enums, enum, numbers = {}, nil, {}
  for line in io.lines(header) do
    local define, number = line:match("^#define PGATE_([%u%d_]+) (%d+)$")
    if define and not not_mirrored[define] then
      numbers[define] = tonumber(number)
    end
    local grace = line:match("`FLAG_SET_GRACE_WRITES` %((%d+)%)")
    if grace then
      check(numbers.FLAG_SET_GRACE_WRITES == nil or numbers.FLAG_SET_GRACE_WRITES == tonumber(grace),
            "the header gives FLAG_SET_GRACE_WRITES one value")
      numbers.FLAG_SET_GRACE_WRITES = tonumber(grace)
    end
    local opened = line:match("^enum pgate_([%w_]+)$")
    if opened then
      enum = opened
      enums[enum] = {}
    elseif line:match("^%s*enum pgate_") then
      -- An enum opened in another form (`enum pgate_rule {`) would be skipped without a word.
      check(false, "the header's line '" .. line .. "' opens an enum in a form this test does not"
            .. " read")
    elseif line:match("^};") then
      enum = nil
    elseif enum then
      local name, value = line:match("^%s*PGATE_" .. enum:upper() .. "_([%u%d_]+) = (%d+),")
      if name then
        enums[enum][name] = tonumber(value)
      end
    end
  end
  check(numbers.FLAG_SET_GRACE_WRITES ~= nil, "FLAG_SET_GRACE_WRITES is in the header")
  check(enums.status and enums.status.OK == 0, "the header's statuses are read")
  -- value -> lower-case name (and, for environments, name -> value), nothing more.
  local by_value = { environment = pg.environments, forced = pg.forced, recorded = pg.recorded,
                     recommendation = pg.recommendations }
  -- Every enum compared below was read, with its values: one the loop does not meet is not
  -- compared at all.
  local compared = { "status", "rule" }
  for name in pairs(by_value) do
    compared[#compared + 1] = name
  end
  for name in pairs(unmirrored_enums) do
    compared[#compared + 1] = name
  end
  for _, name in ipairs(compared) do
    check(enums[name] and next(enums[name]) ~= nil, "enum pgate_" .. name .. " is read from the"
          .. " header, with its values")
  end
  for name, values in pairs(enums) do
    local size = 0
    for member, value in pairs(values) do
      size = size + 1
      local where = "PGATE_" .. name:upper() .. "_" .. member .. " = " .. value
      if name == "status" then
        check(pg[member] == value, where .. ": pg." .. member .. " is " .. tostring(pg[member]))
        numbers[member] = value
      elseif name == "rule" then
        check(pg.rules[member:lower()] == value, where .. ": pg.rules." .. member:lower() .. " is "
              .. tostring(pg.rules[member:lower()]))
      elseif by_value[name] then
        check(by_value[name][value] == member:lower(), where .. ": [" .. value .. "] is "
              .. tostring(by_value[name][value]))
        if name == "environment" then
          check(pg.environments[member:lower()] == value, where .. ": pg.environments."
                .. member:lower() .. " is " .. tostring(pg.environments[member:lower()]))
        end
      end
    end
    local mirror = (name == "rule" and pg.rules) or by_value[name]
    if mirror then
      local entries = 0
      for _ in pairs(mirror) do
        entries = entries + 1
      end
      if name == "environment" then
        entries = entries / 2 -- by value and by name
      end
      check(size > 0 and entries == size, entries .. " " .. name .. " entries in Lua, " .. size
            .. " in the header")
    else
      check(name == "status" or unmirrored_enums[name], "enum pgate_" .. name .. ": no table mirrors it")
    end
  end
  -- Every number the header gives is the module's constant of that name, and every constant
  -- of the module (an upper-case name with a number) is one of the header's.
  for name, value in pairs(numbers) do
    check(pg[name] == value, name .. " = " .. value .. " in the header, " .. tostring(pg[name]) .. " in Lua")
  end
  for name, value in pairs(pg) do
    if type(name) == "string" and name:match("^%u[%u%d_]*$") and type(value) == "number" then
      check(numbers[name] ~= nil, "pg." .. name .. " = " .. value .. ": not in the header")
    end
  end
end

-- Change notifications: the counter moves once per change, and the JSON says what changed,
-- including an automatic rollback with the rules that fired.
local function test_changes()
  local gate = assert(pg.new('{"environment": {"canary": {"traffic_percent": 100}}}'))
  check(gate:change_count() == 0, "no change yet")
  check(gate:changes_since(0) == "[]", "no changes yet")
  assert(gate:enable_feature("dark_mode"))
  check(gate:change_count() == 1, "a flag change counted")
  local failures = 0
  for i = 0, 999 do
    local d = gate:route("user-" .. i)
    if not d.is_canary then
      break
    end
    assert(gate:record(d, false, 1e6))
    failures = failures + 1
  end
  check(failures > 0 and gate:state().environment == "production", "the judge rolled back")
  check(gate:change_count() == 2, "the rollback counted")
  local all = assert(gate:changes_since(0))
  check(all:find('"kind":"flags"', 1, true) and all:find('"flags_enabled":["dark_mode"]', 1, true),
        "the flag change: " .. all)
  check(all:find('"kind":"rollback"', 1, true) and all:find('"trigger":"automatic"', 1, true)
          and all:find('"overwhelming_errors"', 1, true), "the rollback with its rules: " .. all)
  local last = assert(gate:changes_since(1))
  check(last:find('"sequence":2', 1, true) and not last:find('"sequence":1,', 1, true),
        "changes above 1: " .. last)
  check(gate:changes_since(2) == "[]", "nothing above the newest")
  for _, bad in ipairs({ -1, 0.5, 2 ^ 53, "1" }) do
    local result, message, status = gate:changes_since(bad)
    check(result == nil and status == 2 and message:find("invalid after", 1, true),
          "changes_since(" .. tostring(bad) .. "): " .. tostring(message))
  end
  gate:free()
end

-- Parity: the read-only health, the state, the SLO read and a swap that keeps the stage and
-- the recorded counts.
local function test_parity()
  local gate = assert(pg.new('{"environment": {"canary": {"traffic_percent": 100}}, '
                               .. '"auto_rollback_enabled": false}'))
  for i = 1, 50 do
    assert(gate:record_by_id("user-" .. i, false, 1e6))
  end
  -- Same environment and salt: same stage, same data; rolling back allowed from now on.
  assert(gate:swap_config('{"environment": {"canary": {"traffic_percent": 100}}, '
                            .. '"auto_rollback_enabled": true}'))
  for _ = 1, 3 do
    local h = assert(gate:read_health())
    check(h.recommendation == "rollback" and h.canary_requests == 50
            and h.evidence:find("FIRED", 1, true), "read_health: " .. tostring(h.evidence))
  end
  check(gate:state().environment == "canary", "a read never rolls back")
  check(assert(gate:monitor_health()).recommendation == "rollback", "monitor_health judges")
  check(gate:state().environment == "production", "and rolls back")
  gate:free()

  -- With every rule firing the evidence line is over 1 KiB. monitor_health judges once:
  -- judging again after the rollback would return Production's health and hide the rollback.
  local config = '{"environment": {"canary": {"traffic_percent": 50}}, "auto_rollback_enabled": %s}'
  gate = assert(pg.new(config:format("false"), '{"p99_budget_ms": 10, "warm_up_ms": 0, '
                                                 .. '"min_samples": 10}'))
  for i = 0, 4999 do
    local d = gate:route("user-" .. i)
    if d.is_canary then -- a third fail, all slow
      assert(gate:record(d, i % 3 ~= 0, (900 + (i % 7) * 100) * 1e6))
    else
      assert(gate:record(d, true, 1e6))
    end
  end
  assert(gate:swap_config(config:format("true")))
  -- One call for a line of any length: a second would read the window anew, after the
  -- rollback the first may have made (a read asking again for a longer buffer made two).
  local reads, restore = counting_calls(gate, "pgate_read_health")
  local read = assert(gate:read_health())
  restore()
  check(#read.evidence > 1024, "the case needs a long evidence line: " .. #read.evidence)
  check(reads() == 1, "read_health read the health " .. reads() .. " times, not once")
  local judged = assert(gate:monitor_health())
  check(judged.recommendation == "rollback" and judged.environment == "canary"
          and judged.rules_fired == read.rules_fired
          and bit.band(judged.rules_fired, pg.rules.error_rate_max) ~= 0
          and bit.band(judged.rules_fired, pg.rules.p99_budget) ~= 0
          and judged.evidence == read.evidence,
        "monitor_health returns the rollback it judged: " .. judged.evidence)
  check(gate:state().environment == "production", "and rolled back")
  gate:free()

  gate = assert(pg.new('{"environment": {"canary": {"traffic_percent": 50}}}',
                       '{"min_samples": 40, "warm_up_ms": 0}'))
  check(gate:slo_json():find('"min_samples":40', 1, true), "slo_json")
  for i = 1, 300 do
    assert(gate:record_by_id("user-" .. i, true, 20e6))
  end
  local before, state = assert(gate:read_health()), assert(gate:state())
  check(state.environment == "canary" and state.traffic_percent == 50, "state")
  local seen = gate:change_count()
  check(gate:swap_slo('{"min_samples": 1000}') == true, "swap_slo")
  local after = assert(gate:read_health())
  check(after.canary_requests == before.canary_requests
          and after.production_requests == before.production_requests
          and after.stage == before.stage, "a swapped SLO keeps the recorded counts")
  check(before.sufficient_data and not after.sufficient_data, "and judges with the new policy")
  check(gate:state().stage == state.stage, "a swapped SLO keeps the stage")
  check(gate:slo_json():find('"min_samples":1000', 1, true), "the new SLO")
  check(gate:changes_since(seen):find('"kind":"config"', 1, true), "an SLO swap is a change")
  local ok, message, status = gate:swap_slo('{"max_error_rate": 2.5}')
  check(ok == nil and status == 3 and message:find("max_error_rate", 1, true)
          and message:find("2.5", 1, true), "a bad SLO: " .. tostring(message))
  check(gate:slo_json():find('"min_samples":1000', 1, true), "a refused swap changes nothing")

  gate:free()
  for _, operation in ipairs({ "read_health", "monitor_health", "state", "slo_json", "swap_slo",
                               "change_count", "changes_since" }) do
    local result, why, code = gate[operation](gate, operation == "swap_slo" and "{}" or 0)
    check(result == nil and code == 13
            and why == "PGATE_STATUS_INVALID_HANDLE: " .. operation .. " on a freed gate",
          operation .. " after free: " .. tostring(why))
  end
end

-- Parity with C++, Go and Python: the gate's name, the override names, and one exposition for
-- several gates, which refuses two gates of one name naming both positions.
local function test_names()
  local web = assert(pg.new('{"gate": "web", "environment": {"canary": {"traffic_percent": 50}}, '
                              .. '"overrides": {"header": "X-Canary", "cookie": "pg_canary"}}'))
  local api = assert(pg.new('{"gate": "api"}'))
  check(web:name() == "web" and api:name() == "api", "name")
  check(assert(pg.new()):name() == "default", "the default name")
  local longest = string.rep("g", 128) -- the longest name the library takes
  check(assert(pg.new('{"gate": "' .. longest .. '"}')):name() == longest, "the longest name")

  local names = assert(web:override_names())
  check(names.header == "X-Canary" and names.cookie == "pg_canary", "override names")
  local seen = web:change_count()
  assert(web:swap_config('{"gate": "web", "environment": {"canary": {"traffic_percent": 50}}, '
                           .. '"overrides": {"cookie": "say-\'canary\'"}}'))
  names = assert(web:override_names())
  check(web:change_count() > seen and names.header == nil and names.cookie == "say-'canary'",
        "override names after a swap: " .. tostring(names.header) .. ", " .. tostring(names.cookie))
  names = assert(api:override_names())
  check(names.header == nil and names.cookie == nil, "no override names")

  assert(web:rollback("bad deploy"))
  local text = assert(pg.metrics_prometheus(web, api))
  local _, families = text:gsub("# TYPE promotion_health_score gauge", "")
  local manual = 'promotion_rollbacks_total{gate="%s",trigger="manual",rule="none"} %d\n'
  check(families == 1 and text:find(manual:format("web", 1), 1, true)
          and text:find(manual:format("api", 0), 1, true), "one exposition, one series per gate")
  check(pg.metrics_prometheus(web) == web:metrics_prometheus(), "one gate's exposition")
  check(not assert(pg.metrics_prometheus()):find('gate="', 1, true), "no gate")

  local twin = assert(pg.new('{"gate": "web", "environment": "staging"}'))
  for _, case in ipairs({
    { { web, api, twin }, 2, 'gates[3] is named "web", as gates[1] is: their series would repeat' },
    { { api, web, web }, 2, "gates[2] and gates[3] are the same gate" },
    { { web, {} }, 2, "invalid gates[2] = table" },
    { { web, 5 }, 2, "invalid gates[2] = 5: not a gate" },
  }) do
    local result, message, status = pg.metrics_prometheus(unpack(case[1]))
    check(result == nil and status == case[2]
            and message:find(pg.status_str(status) .. ": " .. case[3], 1, true) == 1,
          case[3] .. ": " .. tostring(message))
  end
  twin:free()
  local result, message, status = pg.metrics_prometheus(web, twin)
  check(result == nil and status == 13
          and message == "PGATE_STATUS_INVALID_HANDLE: metrics_prometheus on a freed gate (gates[2])",
        "a freed gate: " .. tostring(message))
  for _, operation in ipairs({ "name", "override_names" }) do
    local none, why, code = twin[operation](twin)
    check(none == nil and code == 13
            and why == "PGATE_STATUS_INVALID_HANDLE: " .. operation .. " on a freed gate",
          operation .. " after free: " .. tostring(why))
  end
  web:free()
  api:free()
end

-- An exposition's # lines (one string) and its samples: { family, series, value } each.
local function parsed(text)
  local families, samples = {}, {}
  for line in text:gmatch("[^\n]+") do
    if line:sub(1, 1) == "#" then
      families[#families + 1] = line
    else
      local series, value = line:match("^(.*) (%S+)$")
      samples[#samples + 1] = { series:match("^[^{]*"), series, tonumber(value) }
    end
  end
  return table.concat(families, "\n"), samples
end

-- The host's counts replace the four outcome counters in the exposition, and nothing else
-- changes (as the Rust test a_hosts_counts_replace_the_four_outcome_counters_and_nothing_else);
-- counts that are no counts are refused before the library is called.
local function test_counted()
  local web = assert(pg.new('{"gate": "web", "environment": {"canary": {"traffic_percent": 50}}, '
                              .. '"overrides": {"header": "X-Canary", "canary_ids": ["tester"]}}'))
  local api = assert(pg.new('{"gate": "api", "environment": "staging"}'))
  -- The gate's own counts: one forced outcome, one foreign, one forcing value ignored.
  check(web:record(assert(web:route("tester")), true, 1000) == "forced", "a forced outcome")
  local foreign = assert(web:route("u"))
  foreign.stage = foreign.stage + 1
  check(web:record(foreign, true, 1000) == "foreign", "a foreign outcome")
  check(assert(web:route_forced("u", "nope")).forced == 0, "an ignored forcing value")
  local four = { -- family: the host's count, the gate's own
    promotion_late_outcomes_total = { 11, 0 },
    promotion_foreign_outcomes_total = { 12, 1 },
    promotion_forced_outcomes_total = { 13, 1 },
    promotion_ignored_override_values_total = { 14, 1 },
  }
  local host = { late_outcomes = 11, foreign_outcomes = 12, forced_outcomes = 13,
                 ignored_override_values = 14 }
  local none = { late_outcomes = 0, foreign_outcomes = 0, forced_outcomes = 0,
                 ignored_override_values = 0 }
  local counted, message = pg.metrics_prometheus_counted({ host, none }, web, api)
  check(counted ~= nil, "counted: " .. tostring(message))
  local families, samples = parsed(counted or "")
  local own_families, own_samples = parsed(assert(pg.metrics_prometheus(web, api)))
  check(families == own_families, "the same families")
  check(#samples == #own_samples and #samples > 20, #samples .. " samples, own " .. #own_samples)
  local wrong = {}
  for i, sample in ipairs(samples) do
    local family, series, value = unpack(sample)
    local own = own_samples[i] or {}
    local want = four[family]
    if series ~= own[2] then
      wrong[#wrong + 1] = series .. " where the gates' own has " .. tostring(own[2])
    elseif want and series:find('gate="web"', 1, true) then
      if value ~= want[1] or own[3] ~= want[2] then
        wrong[#wrong + 1] = series .. " " .. value .. ", own " .. own[3]
      end
    elseif want then
      if value ~= 0 or own[3] ~= 0 then
        wrong[#wrong + 1] = series .. " " .. value .. ", own " .. own[3]
      end
    -- no series here reads the clock: the rest is the gates' own, unchanged (NaN ~= NaN)
    elseif value ~= own[3] and (value == value or own[3] == own[3]) then
      wrong[#wrong + 1] = series .. " " .. value .. ", own " .. own[3]
    end
  end
  check(#wrong == 0, "series the counts changed or missed: " .. table.concat(wrong, "; "))
  local most = { late_outcomes = 0xFFFFFFFFFFFFFFFFULL, foreign_outcomes = 2 ^ 63 + 2048,
                 forced_outcomes = require("ffi").new("int64_t", 7), ignored_override_values = 0 }
  local served = {} -- each counter's value in the exposition, a float as Prometheus reads it
  for _, sample in ipairs(select(2, parsed(web:metrics_prometheus_counted(most) or ""))) do
    served[sample[2]] = sample[3]
  end
  check(served['promotion_late_outcomes_total{gate="web"}'] == 2 ^ 64
          and served['promotion_foreign_outcomes_total{gate="web"}'] == 2 ^ 63 + 2048
          and served['promotion_forced_outcomes_total{gate="web"}'] == 7,
        "a uint64_t, a number and an int64_t count served as they are")
  local ffi = require("ffi")
  local narrow = { late_outcomes = ffi.new("uint32_t", 0xFFFFFFFF),
                   foreign_outcomes = ffi.new("const uint8_t", 6),
                   forced_outcomes = ffi.new("int16_t", 7),
                   ignored_override_values = ffi.new("double", 8) }
  served = {}
  for _, sample in ipairs(select(2, parsed(web:metrics_prometheus_counted(narrow) or ""))) do
    served[sample[2]] = sample[3]
  end
  check(served['promotion_late_outcomes_total{gate="web"}'] == 0xFFFFFFFF
          and served['promotion_foreign_outcomes_total{gate="web"}'] == 6
          and served['promotion_forced_outcomes_total{gate="web"}'] == 7
          and served['promotion_ignored_override_values_total{gate="web"}'] == 8,
        "uint32_t, uint8_t, int16_t and double counts served as they are: "
          .. tostring(select(2, web:metrics_prometheus_counted(narrow))))
  check(assert(pg.metrics_prometheus_counted({})) == "", "no gate")

  -- Refused before the library is called: the module's library (the upvalue C its functions
  -- share, as in test_growing_text) is swapped for one that counts the calls.
  local calls, restore = counting_calls(web, "pgate_metrics_prometheus_counted")
  local bad = { late_outcomes = -1, foreign_outcomes = 0, forced_outcomes = 0,
                ignored_override_values = 0 }
  local minus_three = ffi.new("int64_t[1]", -3) -- referred to below
  local cases = {
    { { host }, "invalid #counts = 1: one table of counts per gate (gates: 2)" },
    { { host, none, none }, "invalid #counts = 3: one table of counts per gate (gates: 2)" },
    { { host, nil }, "invalid #counts = 1: one table of counts per gate (gates: 2)" },
    { { nil, host }, "invalid counts[1] = nil: a table of the four counts" },
    { { host, 5 }, "invalid counts[2] = 5: a table of the four counts" },
    { "counts", 'invalid counts = "counts": a table of 2 tables of counts, one per gate' },
    { { host, bad }, "invalid counts[2].late_outcomes = -1: a count, a whole number from 0 to 2^64 - 1" },
    { { host, { late_outcomes = 0, foreign_outcomes = 2 ^ 64, forced_outcomes = 0,
                ignored_override_values = 0 } },
      "invalid counts[2].foreign_outcomes = 1.8446744073709552e+19: a count" },
    { { host, { late_outcomes = 0, foreign_outcomes = 0, forced_outcomes = 0.5,
                ignored_override_values = 0 } }, "invalid counts[2].forced_outcomes = 0.5: a count" },
    { { host, { late_outcomes = 0, foreign_outcomes = 0, forced_outcomes = 0 } },
      "invalid counts[2].ignored_override_values = nil: a count" },
    { { { late_outcomes = 0, foreign_outcomes = 0, forced_outcomes = 0,
          ignored_override_values = "7" }, host },
      'invalid counts[1].ignored_override_values = "7": a count' },
    { { host, { late_outcomes = require("ffi").new("int64_t", -2), foreign_outcomes = 0,
                forced_outcomes = 0, ignored_override_values = 0 } },
      "invalid counts[2].late_outcomes = -2: a count" },
    -- Any C integer or floating cdata, shown by its value (never its address).
    { { host, { late_outcomes = 0, foreign_outcomes = ffi.new("int32_t", -5),
                forced_outcomes = 0, ignored_override_values = 0 } },
      "invalid counts[2].foreign_outcomes = -5: a count" },
    { { host, { late_outcomes = 0, foreign_outcomes = 0, forced_outcomes = ffi.new("float", 0.5),
                ignored_override_values = 0 } },
      "invalid counts[2].forced_outcomes = 0.5: a count" },
    { { host, { late_outcomes = 0 / 0, foreign_outcomes = 0, forced_outcomes = 0,
                ignored_override_values = 0 } }, "invalid counts[2].late_outcomes = nan: a count" },
    { { host, { late_outcomes = 0, foreign_outcomes = 0, forced_outcomes = 0,
                ignored_override_values = ffi.cast("int64_t &", minus_three) } },
      "invalid counts[2].ignored_override_values = -3: a count" }, -- not the box's address
  }
  for _, case in ipairs(cases) do
    local result, why, status = pg.metrics_prometheus_counted(case[1], web, api)
    check(result == nil and status == pg.INVALID_ARGUMENT
            and (why or ""):find("PGATE_STATUS_INVALID_ARGUMENT: " .. case[2], 1, true) == 1,
          case[2] .. ": " .. tostring(why))
  end
  local result, why = web:metrics_prometheus_counted(bad)
  check(result == nil and why == "PGATE_STATUS_INVALID_ARGUMENT: invalid counts.late_outcomes = "
          .. "-1: a count, a whole number from 0 to 2^64 - 1", tostring(why))
  result, why = web:metrics_prometheus_counted(nil)
  check(result == nil and (why or ""):find("invalid counts = nil: a table of the four counts", 1, true),
        tostring(why))
  result, why = pg.metrics_prometheus_counted({ host, host }, web, 5)
  check(result == nil and why == "PGATE_STATUS_INVALID_ARGUMENT: invalid gates[2] = 5: not a gate",
        tostring(why))
  check(calls() == 0, calls() .. " calls reached the library")
  result, why = pg.metrics_prometheus_counted({ host, host }, web, web)
  check(result == nil and why == "PGATE_STATUS_INVALID_ARGUMENT: gates[1] and gates[2] are the same gate",
        tostring(why))
  check(calls() == 1, "the library refused the gate given twice")
  restore()
  api:free()
  result, why = pg.metrics_prometheus_counted({ host, host }, web, api)
  check(result == nil and why == "PGATE_STATUS_INVALID_HANDLE: metrics_prometheus_counted on a "
          .. "freed gate (gates[2])", tostring(why))
  web:free()
  result, why = web:metrics_prometheus_counted(host)
  check(result == nil and why == "PGATE_STATUS_INVALID_HANDLE: metrics_prometheus_counted on a "
          .. "freed gate", tostring(why))
end

-- With a state store, the sync thread may lengthen a document between two calls of a read.
-- The test puts a growth exactly there: it swaps the module's library (the upvalue C its
-- functions share) for a proxy whose read lengthens the document after the call.
local function test_growing_text()
  local flags = {}
  for i = 1, 40 do
    flags[i] = '"a_release_flag_with_a_rather_long_name_' .. i .. '"'
  end
  local gate = assert(pg.new('{"feature_flags": [' .. table.concat(flags, ", ") .. "]}"))
  local config_json, up, real = library_upvalue(gate)
  local reads, always_short = 0, 0
  debug.setupvalue(config_json, up, setmetatable({
    pgate_config_json = function(handle, buf, cap, len)
      local status = real.pgate_config_json(handle, buf, cap, len)
      reads = reads + 1
      assert(gate:enable_feature("grown_" .. reads))
      return status
    end,
    pgate_slo_json = function(_, _, cap, len) -- a text that never fits
      always_short = always_short + 1
      len[0] = cap + 1
      return pg.BUFFER_TOO_SMALL
    end,
  }, { __index = real }))
  local text, message = gate:config_json()
  local slo, why, status = gate:slo_json()
  debug.setupvalue(config_json, up, real)
  check(text and text:find('"grown_1"', 1, true) and #text > 1024,
        "a document that grew between two reads: " .. tostring(message))
  check(slo == nil and status == pg.BUFFER_TOO_SMALL and why:find("kept growing", 1, true)
          and always_short == 8, "a text that never fits: " .. tostring(why) .. ", "
          .. always_short .. " calls")
  check(gate:slo_json():find('"min_samples"', 1, true), "the library is back")
  gate:free()
end

if not arg[4] then
  io.stderr:write("usage: luajit test.lua ROUTING_TSV LATENCY_TSV OVERRIDES_TSV QUOTED_TSV\n")
  os.exit(2)
end
print("promotion-gates " .. pg.version() .. " on " .. jit.version)
-- tests/vectors/quoted.tsv, which Rust and C++ read too: how the module shows a value it refuses
-- itself (its local quoted, reached as an upvalue of Gate.is_feature_enabled). Each row: INPUT
-- (hex), a tab, SHOWN, and where Rust's {:?} differs a tab and its text, which the module does
-- not follow (it carries no Unicode tables but the format and invisible characters').
local function test_quoted(path)
  local gate = assert(pg.new())
  local is_feature_enabled, quoted = getmetatable(gate).__index.is_feature_enabled, nil
  gate:free()
  for i = 1, 40 do
    local name, value = debug.getupvalue(is_feature_enabled, i)
    if name == "quoted" then
      quoted = value
      break
    end
  end
  assert(quoted, "Gate.is_feature_enabled has no upvalue quoted")
  local rows = 0
  for line in io.lines(path) do
    if line ~= "" and line:sub(1, 1) ~= "#" then
      local hex, shown = line:match("^(%x*)\t([^\t]*)")
      if check(hex and #hex % 2 == 0, "quoted.tsv line: " .. line) then
        local ours = quoted(from_hex(hex))
        check(ours == shown, line .. ": shown as " .. ours)
        rows = rows + 1
      end
    end
  end
  check(rows >= 100, "only " .. rows .. " quoted rows")
  print("quoted vectors: " .. rows .. " shown")
end

-- tests/vectors/overrides.tsv, which Rust, C, C++, Go and Python read too: each route line's
-- version and `forced`, and what recording it does; then a forced canary failing every
-- request, counted in neither cohort.
local function test_overrides(path)
  local gates, cases = {}, 0
  for line in io.lines(path) do
    if line:sub(1, 1) ~= "#" then
      local name, json = line:match("^config\t([^\t]*)\t(.*)$")
      if name then
        gates[name] = assert(pg.new(json))
      else
        local config, id, field, is_canary, forced =
          line:match("^route\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([01])\t([%a_]+)$")
        if check(config and gates[config], "overrides.tsv line: " .. line) then
          local gate = gates[config]
          -- VALUE: "-" none, "hex:" and the bytes in hex, or the field's bytes.
          local value = field
          if field == "-" then
            value = nil
          elseif field:sub(1, 4) == "hex:" then
            value = from_hex(field:sub(5))
          end
          local d = gate:route_forced(id, value)
          check(d and d.is_canary == (is_canary == "1") and pg.forced[d.forced] == forced,
                string.format("%s: is_canary %s forced %s", line, d and tostring(d.is_canary),
                              d and tostring(d.forced)))
          local expected = forced == "none" and "counted" or "forced"
          local recorded = gate:record(d, true, 1000)
          check(recorded == expected, line .. ": recorded " .. tostring(recorded))
          recorded = gate:record_by_id_forced(id, value, true, 1000)
          check(recorded == expected, line .. ": recorded by id with the value " .. tostring(recorded))
          -- The plain call cannot see the value: only an id list forces it.
          recorded = gate:record_by_id(id, true, 1000)
          check(recorded == (forced == "id_list" and "forced" or "counted"),
                line .. ": recorded by id alone " .. tostring(recorded))
          cases = cases + 1
        end
      end
    end
  end
  check(cases >= 45, "only " .. cases .. " override cases")
  for _, gate in pairs(gates) do
    gate:free()
  end

  local gate = assert(pg.new('{"environment": {"canary": {"traffic_percent": 0}}, '
                               .. '"overrides": {"header": "X-Canary", "canary_ids": ["tester-1"]}}'))
  for i = 1, 200 do
    local d = gate:route_forced("user-" .. i, "canary")
    check(d.is_canary and pg.forced[d.forced] == "value", "forced by value")
    check(gate:record(d, false, 5e9) == "forced", "a forced failure is recorded apart")
  end
  local tester = gate:route("tester-1") -- route checks the id lists too
  check(tester.is_canary and pg.forced[tester.forced] == "id_list", "forced by id list")
  local h = gate:health()
  check(h.canary_requests + h.production_requests == 0, "forced outcomes in no cohort")
  check(gate:metrics_prometheus():find('promotion_forced_outcomes_total{gate="default"} 200', 1,
                                       true) ~= nil, "the forced count is exported")
  local plain = gate:route_forced("user-1", nil)
  check(not plain.is_canary and plain.forced == 0, "no value: routed by bucket")
  check(gate:record(plain, true, 1000) == "counted", "an unforced outcome counts")
  -- By id: the plain call cannot see the value; given it, the outcome is counted apart.
  check(gate:record_by_id_forced("user-2", "canary", false, 1000) == "forced", "by id, forced")
  check(gate:record_by_id_forced("user-2", "", false, 1000) == "counted", "an empty value")
  check(gate:record_by_id("user-2", false, 1000) == "counted", "by id alone")
  check(gate:metrics_prometheus():find('promotion_ignored_override_values_total{gate="default"} 0',
                                       1, true) ~= nil, "no ignored value counted by a record")
  gate:free()
  print("override vectors: " .. cases .. " routed")
end

-- sync_now: a gate that reads its store once a minute reads another gate's rollback at once
-- when asked; without a store there is nothing to read.
local function test_sync_now()
  local ffi = require("ffi")
  ffi.cdef("int usleep(unsigned int usec);")
  local path = os.tmpname()
  os.remove(path)
  local function document(sync_ms)
    return '{"environment": {"canary": {"traffic_percent": 10}}, "store": {"sqlite": {"path": "'
      .. path .. '", "sync_interval_ms": ' .. sync_ms .. '}}}'
  end
  local slow = assert(pg.new(document(60000)))
  local other = assert(pg.new(document(20)))
  local seen = slow:change_count()
  assert(other:rollback("bad deploy"))
  check(slow:sync_now() == true, "asked")
  local deadline = os.time() + 5
  while slow:change_count() == seen do
    assert(os.time() <= deadline, "the rollback was not read within 5 s")
    ffi.C.usleep(1000)
  end
  check(slow:state().environment == "production", "the slow gate follows the rollback")
  local storeless = assert(pg.new())
  check(storeless:sync_now() == false, "no store: nothing to read")
  for _, gate in ipairs({ slow, other, storeless }) do
    gate:free()
  end
  local none, message = storeless:sync_now()
  check(none == nil and message:find("INVALID_HANDLE", 1, true), "freed: " .. tostring(message))
  for _, suffix in ipairs({ "", "-wal", "-shm" }) do
    os.remove(path .. suffix)
  end
end

-- The state store: where a document's store keeps the state, read from the document alone,
-- and whether a gate's store judges every process's outcomes.
local function test_store()
  local path = os.tmpname()
  os.remove(path)
  local function sqlite(more)
    return '{"store": {"sqlite": {"path": "' .. path .. '"' .. (more or "") .. "}}}"
  end
  local deep = "/" .. string.rep("d", 600) .. "/a.db" -- longer than the first buffer
  for _, case in ipairs({
    { sqlite(), "sqlite:" .. path },
    { '{"store": {"sqlite": {"path": "gates/a.db"}}}', "sqlite:gates/a.db" },
    { '{"store": {"sqlite": {"path": "' .. deep .. '"}}}', "sqlite:" .. deep },
    { '{"store": {"etcd": {"endpoints": ["http://127.0.0.1:2379"], "prefix": "/pg/checkout"}}}',
      "etcd:/pg/checkout" },
    { '{"gate": "checkout"}', "" },
    { nil, "" },
  }) do
    local at, why = pg.store_location(case[1])
    check(at == case[2], "store_location of " .. tostring(case[1]) .. ": " .. tostring(at or why))
  end
  check(io.open(path) == nil, "store_location opens and creates nothing")
  local none, message, status = pg.store_location(sqlite(', "sync_interval_ms": 5'))
  check(none == nil and status == 3 and message:find("PGATE_STATUS_INVALID_CONFIG: ", 1, true) == 1
          and message:find("store.sqlite.sync_interval_ms", 1, true) and message:find("5", 1, true),
        "a refused document names the field: " .. tostring(message))
  none, message, status = pg.store_location(42)
  check(none == nil and status == 2
          and message == "PGATE_STATUS_INVALID_ARGUMENT: invalid config_json = 42: not a string or nil",
        "store_location of a number: " .. tostring(message))

  local fleet = assert(pg.new(sqlite()))
  local own = assert(pg.new('{"gate": "own", "store": {"sqlite": {"path": "' .. path
                              .. '", "fleet_judging": false}}}'))
  local storeless = assert(pg.new())
  check(fleet:fleet_judging() == true, "fleet judging: the default")
  check(own:fleet_judging() == false, "fleet judging turned off")
  check(storeless:fleet_judging() == false, "no store: no fleet judging")
  for _, gate in ipairs({ fleet, own, storeless }) do
    gate:free()
  end
  none, message, status = storeless:fleet_judging()
  check(none == nil and status == 13
          and message == "PGATE_STATUS_INVALID_HANDLE: fleet_judging on a freed gate",
        "fleet_judging after free: " .. tostring(message))
  for _, suffix in ipairs({ "", "-wal", "-shm" }) do
    os.remove(path .. suffix)
  end

  -- A document's gate name and fleet judging, read from it alone, are those of its gate.
  for _, document in ipairs({
    sqlite(), '{"gate": "own", "store": {"sqlite": {"path": "' .. path .. '", "fleet_judging": false}}}',
    '{"gate": "checkout"}', nil,
  }) do
    local name = assert(pg.document_gate_name(document))
    local sums = pg.document_fleet_judging(document)
    check(io.open(path) == nil, "the document reads open and create nothing")
    local gate = assert(pg.new(document))
    check(name == gate:name() and sums == gate:fleet_judging(),
          "document reads of " .. tostring(document) .. ": " .. name .. ", " .. tostring(sums))
    gate:free()
    for _, suffix in ipairs({ "", "-wal", "-shm" }) do
      os.remove(path .. suffix)
    end
  end
  check(pg.document_gate_name() == "default" and pg.document_fleet_judging() == false,
        "the default document: the default name, no store")
  local longest = string.rep("n", pg.NAME_CAPACITY - 1)
  check(pg.document_gate_name('{"gate": "' .. longest .. '"}') == longest, "the longest name fits")
  for _, read in ipairs({ pg.document_gate_name, pg.document_fleet_judging }) do
    none, message, status = read('{"gate": ""}')
    check(none == nil and status == 3 and message:find("PGATE_STATUS_INVALID_CONFIG: ", 1, true) == 1
            and message:find('invalid gate = ""', 1, true), "a refused document: " .. tostring(message))
    none, message, status = read('{"gate": ')
    check(none == nil and status == 4 and message:find("invalid JSON config", 1, true),
          "a malformed document: " .. tostring(message))
    none, message, status = read(42)
    check(none == nil and status == 2
            and message == "PGATE_STATUS_INVALID_ARGUMENT: invalid config_json = 42: not a string or nil",
          "a number: " .. tostring(message))
  end
end

-- An SLO document checked against a config document, read from the two alone: accepted and
-- refused exactly as pg.new accepts and refuses the pair, with its words.
local function test_document_check_slo()
  local path = os.tmpname()
  os.remove(path)
  local hour = '{"rollback_window_seconds": 3600, "store": {"sqlite": {"path": "' .. path .. '"}}}'
  local five = '{"rollback_window_seconds": 5}'
  for _, case in ipairs({
    { hour, '{"evaluation_interval_ms": 60000}' }, -- a minute fits an hour, not the default 300 s
    { five, '{"evaluation_interval_ms": 500, "min_samples": 20}' },
    { nil, '{"min_samples": 20}' },
    { nil, nil },
  }) do
    local ok, message = pg.document_check_slo(case[1], case[2])
    check(ok == true, "accepted: " .. tostring(case[1]) .. ", " .. tostring(case[2]) .. ": "
                        .. tostring(message))
  end
  check(io.open(path) == nil, "document_check_slo opens and creates nothing")
  for _, case in ipairs({
    -- config, SLO, status, what the message names
    { five, nil, 3, "invalid evaluation_interval_ms = 1000: at most a tenth of "
                      .. "rollback_window_seconds = 5, 500 ms: " },
    { nil, '{"evaluation_interval_ms": 60000}', 3,
      "invalid evaluation_interval_ms = 60000: at most a tenth of rollback_window_seconds = 300" },
    { hour, '{"min_samples": 1}', 3, "invalid min_samples = 1: " },
    { '{"rollback_window_seconds": 0}', nil, 3, "invalid rollback_window_seconds = 0: " },
    { nil, '{"min_sample": 20}', 4, "invalid JSON SLO config: min_sample: unknown field" },
    { nil, "\255", 2, 'invalid slo_json = "\\xff": SLO config is not valid UTF-8' },
  }) do
    local none, message, status = pg.document_check_slo(case[1], case[2])
    check(none == nil and status == case[3]
            and message:find(pg.status_str(case[3]) .. ": " .. case[4], 1, true) == 1,
          "refused, naming the field and value: " .. tostring(message))
    local gate, by_new, new_status = pg.new(case[1], case[2])
    check(gate == nil and by_new == message and new_status == status,
          "refused as pg.new refuses the pair: " .. tostring(by_new))
  end
  check(io.open(path) == nil, "a refused pair opens and creates nothing")
  for _, case in ipairs({
    { 42, "{}", "invalid config_json = 42: not a string or nil" },
    { 42, 43, "invalid config_json = 42: not a string or nil" },
    { "{}", 43, "invalid slo_json = 43: not a string or nil" },
    { nil, false, "invalid slo_json = false: not a string or nil" },
  }) do
    local none, message, status = pg.document_check_slo(case[1], case[2])
    check(none == nil and status == 2 and message == "PGATE_STATUS_INVALID_ARGUMENT: " .. case[3],
          "document_check_slo of " .. tostring(case[1]) .. ", " .. tostring(case[2]) .. ": "
            .. tostring(message))
  end
end

-- Runs `fn` interpreted, as code run once is (an allocation inside a call then collects
-- garbage), and turns the JIT back on if it was. The traces earlier tests compiled are
-- flushed first: jit.off() alone keeps running them, and a trace may keep a table field or an
-- upvalue it loaded before an allocation whose finalizer changed it.
local function interpreted(fn)
  local jit_was_on = jit.status()
  jit.off()
  jit.flush()
  fn()
  if jit_was_on then
    jit.on()
  end
end

-- Runs `rounds` rounds of `call(gate, freed, setup)`, interpreted: each round makes a gate of
-- `config`, runs `setup(gate)` (if given), then leaves to the garbage collector a finalizer
-- that frees the gate, and calls `call` until the finalizer ran; `freed()` says whether it has
-- (after a call, when nothing else allocates: whether the free ran inside that call). Every
-- other round, the collector steps at the first allocation of each call (collectgarbage
-- "restart" sets its threshold to the heap's size), so the finalizer runs there: left to its
-- own pace, the collector may finish its cycles at one allocation nearly every time, and
-- gate:change_count's finalizers all ran at its boxed result, after the library call, none
-- at its buffer before it.
local function until_a_finalizer_frees(rounds, config, call, setup)
  local ffi = require("ffi")
  interpreted(function() for round = 1, rounds do
    local gate, done = assert(pg.new(config)), false
    local prepared = setup and setup(gate)
    local function freed() return done end
    local at_first_allocation = round % 2 == 0
    ffi.gc(ffi.new("char[64]"), function() done = true; gate:free() end)
    repeat
      if at_first_allocation then
        collectgarbage("restart")
      end
      call(gate, freed, prepared)
    until done
  end end)
end

-- Swaps the module's library (the upvalue C, as in test_counted) for a watch of it that notes
-- each call given, as its first argument, a gate freed before by a pgate_gate_free through
-- the watch; returns the function that puts the library back and returns the names of those
-- calls. The hot calls (pgate_route, pgate_change_count...) take a freed gate without a word
-- (its memory stays as it was while the library quarantines it), so a test of a finalizer's
-- free asks this watch. A gate is known by its cdata, the handle the module keeps and frees
-- (Gate:free and the finalizer of M.new pass that one): a lookup allocates nothing, where an
-- address would, and an allocation in the watch could run a finalizer, between the module's
-- read and its call, that no allocation of the module's ran. (An exposition's gates are
-- passed in an array, whose reads allocate: those calls are cold, and the library refuses a
-- gate it freed.) A name pgate_flag_set_name returned points into its gate's memory: the
-- module's next copy with a length (ffi.string(name, len); its copies without one are of
-- status names and error messages) is that name's, unless the module calls the library or
-- ffi.string first. Made after a pgate_gate_free of that gate, it read freed memory, named
-- "ffi.string of a freed gate's name" (the library's quarantine keeps that memory as it was,
-- so the copy's text would not show it).
local function watch_freed_gates()
  local ffi = require("ffi")
  local probe = assert(pg.new())
  local config_json, up, real = library_upvalue(probe)
  probe:free()
  local freed, given = setmetatable({}, { __mode = "k" }), {}
  local named, name_freed = nil, false -- the gate whose name awaits its copy; freed since?
  local real_string = ffi.string
  ffi.string = function(...)
    if named ~= nil and name_freed and select("#", ...) == 2 then
      given[#given + 1] = "ffi.string of a freed gate's name"
    end
    named, name_freed = nil, false
    return real_string(...)
  end
  debug.setupvalue(config_json, up, setmetatable({}, { __index = function(self, name)
    local call = real[name]
    local function watched(first, ...)
      if freed[first] then
        given[#given + 1] = name
      end
      if name == "pgate_gate_free" then
        freed[first] = true
        name_freed = name_freed or rawequal(first, named)
        return call(first, ...)
      end
      named, name_freed = nil, false
      if name == "pgate_flag_set_name" then
        local status = call(first, ...)
        named = first
        return status
      end
      return call(first, ...)
    end
    rawset(self, name, watched)
    return watched
  end }))
  return function()
    debug.setupvalue(config_json, up, real)
    ffi.string = real_string
    return given
  end
end

-- "N calls were given a freed gate: a, b, c" (three names at most), for a check's message.
local function calls_given_a_freed_gate(given)
  return #given .. " calls were given a freed gate: "
           .. table.concat(given, ", ", 1, math.min(#given, 3))
end

-- A finalizer that frees a gate may run at any allocation, also inside a call on that gate:
-- route's own decision, the strings and table of flags, the boxed pointer and length of a
-- name. A call then read the handle it had read before, and the library used the freed gate
-- (routes on it, a crash in flags), or flags copied a name from the freed gate's memory.
local function test_freed_by_a_finalizer()
  local routed_after_free, refused, routed_on_freed, flags_on_freed = 0, 0, 0, 0
  local unwatch = watch_freed_gates()
  -- route alone: its decision is the loop's only allocation, so the finalizer runs inside
  -- route (in the loop below, flags allocates more and its finalizer runs there).
  until_a_finalizer_frees(300, '{"environment": {"canary": {"traffic_percent": 50}}}',
    function(gate, freed)
      local d, message = gate:route("user-42")
      if freed() and d then
        routed_after_free = routed_after_free + 1
      elseif d == nil then
        refused = refused + 1
        check(message == "PGATE_STATUS_INVALID_HANDLE: route on a freed gate", message)
      end
    end)
  local names = {}
  for i = 1, 200 do
    names[i] = ('"flag_%03d_%s"'):format(i, ("n"):rep(60))
  end
  local config = '{"environment": {"canary": {"traffic_percent": 100}}, "feature_flags": ['
    .. table.concat(names, ",") .. "]}"
  until_a_finalizer_frees(300, config, function(gate, freed, decision)
    local d, message = gate:route("user-42")
    if freed() and d then
      routed_on_freed = routed_on_freed + 1
    elseif d == nil then
      check(message == "PGATE_STATUS_INVALID_HANDLE: route on a freed gate", message)
    end
    local list, why = gate:flags(decision)
    if list == nil and why ~= "PGATE_STATUS_INVALID_HANDLE: flags on a freed gate" then
      check(false, "flags: " .. tostring(why))
    elseif list and #list ~= 200 then
      flags_on_freed = flags_on_freed + 1
    end
  end, function(gate) return assert(gate:route("u")) end)
  local given = unwatch()
  check(routed_after_free == 0 and refused == 300, routed_after_free .. " routes returned a "
          .. "decision after a finalizer freed their gate inside them; " .. refused .. " refused")
  check(routed_on_freed == 0, routed_on_freed .. " routes on a gate a finalizer freed")
  check(flags_on_freed == 0, flags_on_freed .. " flag lists cut by a finalizer's free")
  check(#given == 0, calls_given_a_freed_gate(given))
end

-- The same for every other call that allocates before it reaches the library (its error
-- box, its buffers, its arguments' table): each read the handle before its allocations, so a
-- gate a finalizer freed meanwhile reached the library (which refused it as no live gate, by
-- its quarantine of freed addresses, a debugging aid, or took it: pgate_change_count reads
-- what a freed gate's memory still holds) or was passed as NULL.
local function test_every_call_sees_a_finalizers_free()
  local calls = {
    state = function(g) return g:state() end,
    read_health = function(g) return g:read_health() end,
    monitor_health = function(g) return g:monitor_health() end,
    config_json = function(g) return g:config_json() end,
    slo_json = function(g) return g:slo_json() end,
    swap_slo = function(g) return g:swap_slo("{}") end,
    swap_config = function(g) return g:swap_config('{"environment": {"canary": {"traffic_percent": 5}}}') end,
    swap_config_from = function(g)
      return g:swap_config_from(0, '{"environment": {"canary": {"traffic_percent": 5}}}')
    end,
    promote = function(g) return g:promote("canary", 7) end,
    rollback = function(g) return g:rollback("drill") end,
    enable_feature = function(g) return g:enable_feature("x") end,
    disable_feature = function(g) return g:disable_feature("x") end,
    rollback_history_json = function(g) return g:rollback_history_json() end,
    metrics_prometheus = function(g) return g:metrics_prometheus() end,
    name = function(g) return g:name() end,
    latency_histograms_json = function(g) return g:latency_histograms_json() end,
    changes_since = function(g) return g:changes_since(0) end,
    override_names = function(g) return g:override_names() end,
    change_count = function(g) g.count_buf = nil; return g:change_count() end,
  }
  local wrong = {}
  local unwatch = watch_freed_gates()
  for operation, call in pairs(calls) do
    until_a_finalizer_frees(20, '{"environment": {"canary": {"traffic_percent": 5}}}', function(gate)
      local ok, message, status = call(gate)
      -- (a refusal of the call itself, a flag not enabled say, is no matter here)
      if ok == nil and (status == 1 or status == 13)
         and message ~= "PGATE_STATUS_INVALID_HANDLE: " .. operation .. " on a freed gate" then
        wrong[#wrong + 1] = operation .. ": " .. tostring(message) .. " (" .. tostring(status) .. ")"
      end
    end)
  end
  -- All gates of one exposition are read after its buffer's allocation too.
  until_a_finalizer_frees(20, nil, function(gate)
    local ok, message, status = pg.metrics_prometheus(gate)
    if ok == nil and (status == 1 or status == 13)
       and message ~= "PGATE_STATUS_INVALID_HANDLE: metrics_prometheus on a freed gate (gates[1])" then
      wrong[#wrong + 1] = "pg.metrics_prometheus: " .. tostring(message)
    end
  end)
  local given = unwatch()
  check(#wrong == 0, #wrong .. " calls reached the library with a gate a finalizer freed: "
          .. table.concat(wrong, "; ", 1, math.min(#wrong, 3)))
  check(#given == 0, calls_given_a_freed_gate(given))
end

-- A finalizer may run at any allocation, also one inside a call on a gate, and call the same
-- gate: flags kept a name's pointer and length in the gate's own buffers, and read the pointer
-- (boxed: an allocation) before the length, so a finalizer's gate:flags(d_long) there left
-- its last name's length for the copy of d_short's name (a read past its end); read_health
-- read its struct through a reference (an allocation) and its fields after more, so a
-- finalizer's record and read_health there gave one call's evidence with another's numbers.
-- Each round leaves such a finalizer to the collector and calls both until it ran: every
-- name must be one of d_short's, and each health's canary count the one its evidence gives.
local function test_a_finalizers_call_on_the_same_gate()
  local ffi = require("ffi")
  local long = {}
  for i = 1, 8 do
    long[i] = ('"release_%d_%s"'):format(i, ("r"):rep(90))
  end
  local gate = assert(pg.new('{"environment": {"canary": {"traffic_percent": 50}}, '
    .. '"graduated_flags": ["a", "bb"], "feature_flags": [' .. table.concat(long, ",") .. "]}"))
  local d_short = assert(gate:route((find_id(gate, false))))
  local d_long = assert(gate:route((find_id(gate, true))))
  local short_names = { a = true, bb = true }
  check(#assert(gate:flags(d_short)) == 2 and #assert(gate:flags(d_long)) == 10,
        "a stable decision with two flags, a canary one with ten")
  -- `rounds` rounds of `call()` (returning what it read wrong, or nil) until a finalizer
  -- calling `reenter()` ran: the wrong reads, and how many calls were made.
  local function with_reentry(rounds, reenter, call)
    local wrong, calls, reentered = {}, 0, 0
    interpreted(function() for round = 1, rounds do
      local done = false
      ffi.gc(ffi.new("char[64]"), function()
        done = true
        reentered = reentered + 1
        reenter()
      end)
      repeat
        if round % 2 == 0 then
          collectgarbage("restart")
        end
        calls = calls + 1
        wrong[#wrong + 1] = call()
      until done
    end end)
    check(reentered == rounds, reentered .. " finalizers ran of " .. rounds)
    return wrong, calls
  end
  local wrong, calls = with_reentry(1000, function() gate:flags(d_long) end, function()
    local names, why = gate:flags(d_short)
    for _, name in ipairs(names or { "(none: " .. tostring(why) .. ")" }) do
      if not short_names[name] then
        return ("%q (%d bytes)"):format(name:sub(1, 40), #name)
      end
    end
  end)
  check(#wrong == 0, #wrong .. " flag lists of " .. calls .. " took another call's buffers: "
          .. table.concat(wrong, ", ", 1, math.min(#wrong, 3)))
  wrong, calls = with_reentry(1000, function()
    gate:record(d_long, true, 1e6)
    gate:read_health()
  end, function()
    local health, message = gate:read_health()
    if health == nil then
      return tostring(message)
    end
    local shown = tonumber(health.evidence:match("canary (%d+) req"))
    if shown ~= health.canary_requests then
      return ("canary_requests %d, evidence %q"):format(health.canary_requests,
                                                        health.evidence:sub(1, 40))
    end
  end)
  check(#wrong == 0, #wrong .. " healths of " .. calls .. " took another call's buffers: "
          .. table.concat(wrong, ", ", 1, math.min(#wrong, 3)))
  -- A finalizer routing a stable id into the very decision whose flags are read, a canary's:
  -- the list is one set's, the long or the short one, never a mix of both (nor a failure: the
  -- long set's length read, then a name past the short set's end).
  local short_id, long_id = find_id(gate, false), find_id(gate, true)
  local long_names = {}
  for _, name in ipairs(assert(gate:flags(d_long))) do
    long_names[name] = true
  end
  local d = assert(gate:route(long_id))
  wrong, calls = with_reentry(1000, function() gate:route(short_id, d) end, function()
    assert(gate:route(long_id, d))
    local names, why = gate:flags(d)
    if names == nil then
      return tostring(why)
    end
    local set = #names == 2 and short_names or long_names
    for _, name in ipairs(names) do
      if not set[name] or (#names ~= 2 and #names ~= 10) then
        return ("%q in a list of %d"):format(name:sub(1, 40), #names)
      end
    end
  end)
  check(#wrong == 0, #wrong .. " flag lists of " .. calls .. " mixed two decisions' sets: "
          .. table.concat(wrong, ", ", 1, math.min(#wrong, 3)))
  gate:free()
end

-- The module loaded a second time in one Lua state (busted's insulate, a hot reload): its
-- declarations were refused as redefinitions.
local function test_loaded_twice()
  package.loaded.promotion_gates = nil
  local ok, again = pcall(require, "promotion_gates")
  package.loaded.promotion_gates = pg
  if check(ok, "a second load: " .. tostring(again)) then
    local gate = again.new('{"environment": {"canary": {"traffic_percent": 50}}}')
    check(gate and gate:route("u") ~= nil, "a gate of the second load routes")
    if gate then
      gate:free()
    end
  end
end

-- gate:free() returns true, as the other calls that change something do (it returned
-- nothing), and true again on a freed gate.
local function test_free_returns_true()
  local gate = assert(pg.new())
  check(gate:free() == true, "free returns true")
  check(gate:free() == true, "free of a freed gate returns true")
end

-- gate:free() returns the library's failure as the other calls return theirs: a free that
-- panicked (a gate made before a fork, freed in the child, whose sync thread is not there
-- to join) returned true. A stand-in library whose pgate_gate_free returns
-- PGATE_STATUS_PANIC (14) after freeing the gate; the gate is gone all the same.
local function test_free_returns_its_failure()
  local gate = assert(pg.new())
  local config_json, up, real = library_upvalue(gate)
  debug.setupvalue(config_json, up, setmetatable({
    pgate_gate_free = function(handle)
      real.pgate_gate_free(handle)
      return pg.PANIC
    end,
  }, { __index = real }))
  local ok, message, status = gate:free()
  debug.setupvalue(config_json, up, real)
  check(ok == nil and status == 14 and message == "PGATE_STATUS_PANIC",
        "a failing free: " .. tostring(ok) .. ", " .. tostring(message) .. ", " .. tostring(status))
  local again, why, code = gate:route("u")
  check(again == nil and code == 13, "a gate whose free failed is freed: " .. tostring(why))
  check(gate:free() == true, "free of a gate whose free failed returns true")
  -- A free refused inside a log callback frees nothing: the gate stays usable, and is freed
  -- by the next free.
  gate = assert(pg.new())
  config_json, up, real = library_upvalue(gate)
  debug.setupvalue(config_json, up, setmetatable({
    pgate_gate_free = function() return pg.INVALID_ARGUMENT end,
  }, { __index = real }))
  ok, message, status = gate:free()
  debug.setupvalue(config_json, up, real)
  check(ok == nil and status == 2, "a refused free: " .. tostring(message))
  check(gate:route("u") ~= nil, "a gate whose free was refused still routes")
  check(gate:free() == true, "a gate whose free was refused is freed by the next free")
end

-- read_health and monitor_health read every field of the health struct while the call's box
-- of it is alive: a reference to its element does not keep it, and the reads allocate (the
-- table, boxed 64-bit values). A stand-in library passes each call on, then gives the box a
-- finalizer that overwrites it with 0xff bytes, and the collector runs at each allocation:
-- a health table read from a collected box (the box passed on in a tail call, its caller's
-- frame gone: 977 of 1000 read so) has 2^64 - 1 requests and no environment.
local function test_health_box_outlives_its_reads()
  local ffi = require("ffi")
  local gate = assert(pg.new('{"environment": {"canary": {"traffic_percent": 50}}}'))
  for i = 1, 200 do
    assert(gate:record(assert(gate:route("u" .. i)), true, 1e6))
  end
  local control = assert(gate:read_health())
  local config_json, up, real = library_upvalue(gate)
  local overwritten = 0
  local function overwriting(name)
    return function(handle, out, evidence, cap, len)
      local status = real[name](handle, out, evidence, cap, len)
      ffi.gc(out, function(box)
        overwritten = overwritten + 1
        ffi.fill(box, ffi.sizeof("pgate_health"), 0xff)
      end)
      return status
    end
  end
  debug.setupvalue(config_json, up, setmetatable({
    pgate_read_health = overwriting("pgate_read_health"),
    pgate_monitor_health = overwriting("pgate_monitor_health"),
  }, { __index = real }))
  collectgarbage("setpause", 0)
  collectgarbage("setstepmul", 100000)
  local bad = 0
  for round = 1, 1000 do
    local operation = round % 2 == 0 and "read_health" or "monitor_health"
    local h = assert(gate[operation](gate))
    if h.environment ~= control.environment or h.production_requests ~= control.production_requests
        or h.canary_requests ~= control.canary_requests or h.stage ~= control.stage then
      bad = bad + 1
    end
  end
  collectgarbage("setpause", 200)
  collectgarbage("setstepmul", 200)
  debug.setupvalue(config_json, up, real)
  check(overwritten > 900, "the collector ran between reads: " .. overwritten .. " boxes overwritten")
  check(bad == 0, bad .. " of 1000 health tables read from a collected box")
  gate:free()
end

-- $PGATE_LIB set empty counts as unset, as Python's PROMOTION_GATES_LIBRARY (ffi.load("")
-- looked for "lib.so", and the error did not say where the name came from), and a library it
-- names that cannot be loaded is an error naming the variable. Each in a child luajit, whose
-- library is not loaded yet.
local function test_pgate_lib()
  local lib_path = assert(os.getenv("PGATE_LIB"))
  local here = arg[0]:gsub("[^/]*$", "")
  local interpreter = arg[-1] or "luajit"
  local function shell_word(word) return "'" .. word:gsub("'", "'\\''") .. "'" end
  local function child(env, source)
    local script = os.tmpname()
    local file = assert(io.open(script, "w"))
    file:write(string.format("package.path = %q .. '?.lua;' .. package.path\n", here), source)
    file:close()
    local run = assert(io.popen(env .. " " .. shell_word(interpreter) .. " " .. shell_word(script)
                                  .. " 2>&1"))
    local output = run:read("*a")
    run:close()
    os.remove(script)
    return output
  end
  -- Loaded by the name the SONAME gives from $PGATE_LIB's directory (test.sh links it there):
  -- the name loaded must be that one, not the unversioned libpromotion_gates_ffi.so that
  -- load falls back to (pg.load of the name loaded returns the library, of another nil), and
  -- the file the child mapped must be that library, not one of the same name that the
  -- loader's cache knows elsewhere (an earlier install in /usr/local/lib).
  local output = child("PGATE_LIB= LD_LIBRARY_PATH=" .. shell_word(lib_path:match("^(.*)/")), [[
local pg = require("promotion_gates")
print(pg.version())
local major, minor = pg._VERSION:match("^(%d+)%.(%d+)%.")
local soname = "libpromotion_gates_ffi.so." .. (major == "0" and "0." .. minor or major)
local again, err = pg.load(soname)
print(again ~= nil and "loaded by " .. soname or tostring(err))
for line in io.lines("/proc/self/maps") do
  local path = line:match("^%S+%s+%S+%s+%S+%s+%S+%s+%S+%s+(.+)$")
  if path and path:match("[^/]*$"):find("libpromotion_gates_ffi", 1, true) then
    print(path)
    break
  end
end]])
  local version, by, mapped = output:match("^([^\n]*)\n([^\n]*)\n([^\n]*)\n$")
  check(version == pg._VERSION, "an empty PGATE_LIB is unset: " .. output)
  check(by and by:find("^loaded by libpromotion_gates_ffi%.so%.%d") ~= nil,
        "an empty PGATE_LIB loads the name the SONAME gives first: " .. output)
  local same = mapped and os.execute("[ " .. shell_word(mapped) .. " -ef " .. shell_word(lib_path) .. " ]")
  check(same == 0 or same == true, "an empty PGATE_LIB maps " .. lib_path .. " from $PGATE_LIB's "
                                     .. "directory: mapped " .. tostring(mapped))
  output = child("PGATE_LIB=/nonexistent/libpromotion_gates_ffi.so",
                 'local ok, err = pcall(require("promotion_gates").load)\nprint(ok, err)')
  check(output:find('false\t[^\n]*PGATE_LIB="/nonexistent/libpromotion_gates_ffi.so" could not be '
                      .. "loaded: .*libpromotion_gates_ffi.so") ~= nil,
        "a PGATE_LIB that cannot be loaded is named: " .. output)
end

-- A host that declared one of the header's structs before requiring the module (it cdef'd the
-- header itself, or the part it uses): the module's declaration of that struct is refused as
-- a redefinition, and every other declaration must still be made (LuaJIT stops a cdef block at
-- its first error: a struct sharing a block lost what followed it, and require failed with
-- "missing declaration for symbol 'pgate_metrics_prometheus'"). Each struct in a Lua state of
-- its own (a child luajit), as the header declares it, after the typedefs it uses.
local function test_host_declared_structs()
  local here = arg[0]:gsub("[^/]*$", "")
  local header = assert(io.open(here .. "../../include/promotion_gates.h")):read("*a")
  header = header:gsub("/%*.-%*/", "")
  local interpreter = arg[-1] or "luajit"
  local function shell_word(word) return "'" .. word:gsub("'", "'\\''") .. "'" end
  local structs = 0
  for name in header:gmatch("typedef struct (pgate_[%w_]+) {") do
    structs = structs + 1
    local struct = assert(header:match("typedef struct " .. name .. " {.-} " .. name .. ";"), name)
    local script = os.tmpname()
    local file = assert(io.open(script, "w"))
    file:write(string.format([=[
local ffi = require("ffi")
ffi.cdef("typedef uint32_t pgate_environment; typedef uint32_t pgate_recommendation;"
         .. "typedef uint8_t pgate_forced;" .. %q)
package.path = %q .. "?.lua;" .. package.path
local pg = require("promotion_gates")
local gate = assert(pg.new('{"environment": {"canary": {"traffic_percent": 50}}}'))
local decision = assert(gate:route("user-1"))
assert(gate:record(decision, true, 1000) == "counted")
assert(gate:health().canary_requests + gate:health().production_requests == 1)
assert(gate:metrics_prometheus():find("promotion_", 1, true))
assert(gate:metrics_prometheus_counted({ late_outcomes = 1, foreign_outcomes = 2,
                                         forced_outcomes = 3, ignored_override_values = 4 }))
gate:free()
print("ok")
]=], struct, here))
    file:close()
    local child = assert(io.popen(shell_word(interpreter) .. " " .. shell_word(script) .. " 2>&1"))
    local output = child:read("*a")
    child:close()
    os.remove(script)
    check(output == "ok\n", "struct " .. name .. " declared by the host first: " .. output)
  end
  check(structs >= 3, structs .. " structs in the header")
end

test_vectors(arg[1])
test_host_declared_structs()
test_header_constants()
test_wrappers()
test_promote_from()
test_numeric_forms()
test_swap_config_from()
test_telemetry()
test_arguments()
test_latency_vectors(arg[2])
test_changes()
test_parity()
test_overrides(arg[3])
test_quoted(arg[4])
test_growing_text()
test_names()
test_counted()
test_sync_now()
test_store()
test_document_check_slo()
test_freed_by_a_finalizer()
test_every_call_sees_a_finalizers_free()
test_a_finalizers_call_on_the_same_gate()
test_loaded_twice()
test_free_returns_true()
test_free_returns_its_failure()
test_health_box_outlives_its_reads()
test_pgate_lib()
print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
