-- promotion-gates for LuaJIT (OpenResty / nginx): a thin FFI module over the C ABI.
--
--   local pg = require("promotion_gates")
--   local gate = assert(pg.new('{"environment": {"canary": {"traffic_percent": 10}}}'))
--   local d = gate:route(ngx.var.cookie_session or ngx.var.remote_addr)
--   if d.is_canary then ... end
--   gate:record(d, ngx.status < 500, latency_ns)
--
-- Failures come back the lua-resty way: `nil, "PGATE_STATUS_NAME: message", status`. The
-- declarations below mirror include/promotion_gates.h (the C99/C11 form: enums as uint32_t).
--
-- Arguments are checked before the FFI converts them, which would wrap or saturate numbers (-1
-- as a uint64_t is 2^63) and raise for other types: a latency must be finite, at least 0 and
-- below 2^64 ns, a decision a pgate_decision cdata (or a pointer to one, not NULL), ids,
-- names, reasons and documents strings, and `success` a boolean; anything else is nil,
-- "PGATE_STATUS_INVALID_ARGUMENT: invalid <argument> = <value>: ...", 2 (a NULL decision:
-- "invalid decision = NULL: ..."). After gate:free() every call fails with
-- PGATE_STATUS_INVALID_HANDLE and never reaches the library. A C call never yields, so no
-- coroutine can free a gate while another is inside a call on it; a finalizer may (it runs at
-- any allocation), so each call reads its gate after its own allocations.

local ffi = require("ffi")

-- ffi.cdef, once per Lua state: declarations are the state's, and a second load of the module
-- in one state (busted's insulate, a hot reload) would otherwise fail on "attempt to redefine".
-- LuaJIT stops parsing a block at its first error, so a struct the host may already have
-- declared (it cdef'd the header, or the part it uses) goes in a call of its own, never
-- before the declarations that follow it: a struct's body is the only redefinition refused,
-- and it would take the rest of its block with it (check_cdef.py checks each stands alone). A
-- typedef or a function declared again is not refused but ignored, even when it differs:
-- LuaJIT keeps the first declaration, so only an identical one is harmless, and a host's
-- earlier different declaration wins (check_cdef.py refuses a name declared twice here).
local function cdef(declarations)
  local ok, err = pcall(ffi.cdef, declarations)
  if not ok and not tostring(err):find("attempt to redefine", 1, true) then
    error(err, 2)
  end
end

cdef [[
typedef uint32_t pgate_status;
typedef uint32_t pgate_environment;
typedef uint32_t pgate_recommendation;
typedef uint32_t pgate_recorded;
typedef uint8_t pgate_forced;
typedef struct pgate_error pgate_error;
typedef struct pgate_gate pgate_gate;
]]

cdef [[
typedef struct pgate_health {
  uint64_t stage;
  uint64_t canary_requests;
  uint64_t production_requests;
  uint64_t canary_p99_ns;
  uint64_t production_p99_ns;
  double traffic_percent;
  double canary_error_rate;
  double production_error_rate;
  double canary_compliance;
  double health_score;
  pgate_environment environment;
  pgate_recommendation recommendation;
  uint32_t rules_fired;
  bool sufficient_data;
} pgate_health;
]]

cdef [[
typedef struct pgate_decision {
  uint64_t stage;
  double traffic_percent;
  uint32_t bucket;
  uint32_t threshold;
  uint32_t flag_set;
  pgate_environment environment;
  bool is_canary;
  pgate_forced forced;
} pgate_decision;
]]

cdef [[
pgate_status pgate_error_status(const pgate_error *err);
const char *pgate_error_message(const pgate_error *err);
void pgate_error_free(pgate_error *err);
pgate_status pgate_gate_new(const char *config_json, size_t config_len, const char *slo_json,
                            size_t slo_len, pgate_gate **gate_out, pgate_error **err);
pgate_status pgate_gate_free(pgate_gate *gate);
pgate_status pgate_config_json(const pgate_gate *gate, char *buf, size_t cap, size_t *len_out);
pgate_status pgate_swap_config(const pgate_gate *gate, const char *json, size_t len,
                               pgate_error **err);
pgate_status pgate_swap_config_from(const pgate_gate *gate, uint64_t change_count,
                                    const char *json, size_t len, pgate_error **err);
const char *pgate_version(void);
pgate_status pgate_monitor_health(const pgate_gate *gate, pgate_health *out, char *evidence,
                                  size_t evidence_cap, size_t *evidence_len);
pgate_status pgate_check_slo(const pgate_gate *gate, bool *compliant);
pgate_status pgate_promote(const pgate_gate *gate, uint32_t environment, double traffic_percent,
                           pgate_error **err);
pgate_status pgate_promote_from(const pgate_gate *gate, uint64_t stage, uint32_t environment,
                                double traffic_percent, pgate_error **err);
pgate_status pgate_rollback(const pgate_gate *gate, const char *reason, size_t len,
                            pgate_error **err);
pgate_status pgate_enable_feature(const pgate_gate *gate, const char *name, size_t len,
                                  pgate_error **err);
pgate_status pgate_disable_feature(const pgate_gate *gate, const char *name, size_t len,
                                   pgate_error **err);
pgate_status pgate_is_feature_enabled(const pgate_gate *gate, const char *name, size_t len,
                                      bool *enabled);
pgate_status pgate_rollback_history_json(const pgate_gate *gate, char *buf, size_t cap,
                                         size_t *len_out);
pgate_status pgate_route(const pgate_gate *gate, const char *id, size_t id_len,
                         pgate_decision *out);
pgate_status pgate_route_forced(const pgate_gate *gate, const char *id, size_t id_len,
                                const char *value, size_t value_len, pgate_decision *out);
pgate_status pgate_record(const pgate_gate *gate, const pgate_decision *decision, bool success,
                          uint64_t latency_ns, pgate_recorded *recorded);
pgate_status pgate_record_abandoned(const pgate_gate *gate, const pgate_decision *decision,
                                    uint64_t waited_ns, bool *recorded);
pgate_status pgate_record_abandoned_as(const pgate_gate *gate, const pgate_decision *decision,
                                       uint64_t waited_ns, bool *recorded,
                                       pgate_recorded *recorded_as);
pgate_status pgate_record_by_id(const pgate_gate *gate, const char *id, size_t id_len,
                                bool success, uint64_t latency_ns, pgate_recorded *recorded);
pgate_status pgate_record_by_id_forced(const pgate_gate *gate, const char *id, size_t id_len,
                                       const char *value, size_t value_len, bool success,
                                       uint64_t latency_ns, pgate_recorded *recorded);
pgate_status pgate_flag_set_len(const pgate_gate *gate, uint32_t set, size_t *len_out);
pgate_status pgate_flag_set_name(const pgate_gate *gate, uint32_t set, size_t index,
                                 const char **name_out, size_t *len_out);
const char *pgate_status_str(uint32_t status);
]]

local C -- the loaded library, set by M.load

local M = {}

--- This module's version; the library it loads must share it up to the minor number (before
--- 1.0 a minor release may change the ABI, a struct's layout; a patch release does not).
M._VERSION = "0.1.0"

-- Every status of the library (PGATE_STATUS_* in the C header), the third value of an error.
M.OK = 0
M.NULL_POINTER = 1
M.INVALID_ARGUMENT = 2
M.INVALID_CONFIG = 3
M.INVALID_JSON = 4
M.INVALID_PROMOTION = 5
M.SLO_NOT_MET = 6
M.INSUFFICIENT_DATA = 7
M.ALREADY_THERE = 8
M.INVALID_FLAG = 9
M.FLAG_NOT_ENABLED = 10
M.ROLLBACK_REFUSED = 11
M.BUFFER_TOO_SMALL = 12
M.INVALID_HANDLE = 13
M.PANIC = 14
M.INDEX_OUT_OF_RANGE = 15
M.UNKNOWN_FLAG_SET = 16
M.FLAG_SETS_EXHAUSTED = 17
M.STORE = 18
-- What gate:promote_from returns when the gate left the stage it was given: nothing changed.
M.STAGE_CHANGED = 19
-- What gate:swap_config_from returns when the gate changed since the change count it was
-- given: nothing changed.
M.GATE_CHANGED = 20
-- FLAG_SET_GRACE_WRITES: a replaced flag set stays readable for at least this many writes of
-- its gate (M.UNKNOWN_FLAG_SET after).
M.FLAG_SET_GRACE_WRITES = 60
-- PGATE_EVIDENCE_CAPACITY: room for any evidence line of pgate_monitor_health.
M.EVIDENCE_CAPACITY = 4096
-- PGATE_NAME_CAPACITY: room for any name of pgate_gate_name and pgate_override_names.
M.NAME_CAPACITY = 129
M.environments = { [0] = "canary", [1] = "staging", [2] = "production",
                   canary = 0, staging = 1, production = 2 }
M.recommendations = { [0] = "healthy", [1] = "monitor", [2] = "rollback", [3] = "no_data" }
M.recorded = { [0] = "counted", [1] = "late", [2] = "foreign", [3] = "forced" }
-- A decision's `forced` field (pgate_forced): 0 routed by its bucket, 1 forced by the forcing
-- value passed to gate:route_forced, 2 by the config's overrides id lists.
M.forced = { [0] = "none", [1] = "value", [2] = "id_list" }
-- The judge's rules, as the bits of `health().rules_fired` (PGATE_RULE_* in the C header).
M.rules = {
  slo_compliance = 1, error_rate_max = 2, error_rate_vs_stable = 4, overwhelming_errors = 8,
  p99_vs_stable = 16, p99_budget = 32, health_score = 64, error_burst = 128,
  errors_over_stage = 256, latency_shift = 512, no_data = 1024,
}

-- nil, "PGATE_STATUS_INVALID_ARGUMENT: message", 2: a value refused before the call. The
-- status's name is written here, not asked of the library: pg.load refuses a bad path before
-- any library is loaded (test.sh checks both agree).
local function invalid(message)
  return nil, "PGATE_STATUS_INVALID_ARGUMENT: " .. message, M.INVALID_ARGUMENT
end

-- The library's MAX_SHOWN_VALUE_BYTES (src/error.rs): the most bytes of a refused value an
-- error message shows.
local MAX_SHOWN_VALUE_BYTES = 160
local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

-- The length of the UTF-8 sequence of at least two bytes starting at byte `at` of `text`, or
-- nil when the bytes there are not one (a stray continuation byte, an overlong form, a
-- surrogate, a code point past U+10FFFF, a sequence cut short).
local function utf8_sequence(text, at)
  local lead = text:byte(at)
  local length, low, high = nil, 0x80, 0xBF -- the range of the second byte
  if lead >= 0xC2 and lead <= 0xDF then length = 2
  elseif lead >= 0xE0 and lead <= 0xEF then length = 3
  elseif lead >= 0xF0 and lead <= 0xF4 then length = 4
  else return nil end
  if lead == 0xE0 then low = 0xA0 elseif lead == 0xED then high = 0x9F
  elseif lead == 0xF0 then low = 0x90 elseif lead == 0xF4 then high = 0x8F end
  local second = text:byte(at + 1)
  if not second or second < low or second > high then return nil end
  for i = at + 2, at + length - 1 do
    local byte = text:byte(i)
    if not byte or byte < 0x80 or byte > 0xBF then return nil end
  end
  return length
end

-- Unicode's format characters (general category Cf, Unicode 15.1), as first and last code
-- point: the library's list (is_format in src/config.rs), which it refuses in names.
local FORMAT_CHARACTERS = {
  { 0x00AD, 0x00AD }, { 0x0600, 0x0605 }, { 0x061C, 0x061C }, { 0x06DD, 0x06DD },
  { 0x070F, 0x070F }, { 0x0890, 0x0891 }, { 0x08E2, 0x08E2 }, { 0x180E, 0x180E },
  { 0x200B, 0x200F }, { 0x202A, 0x202E }, { 0x2060, 0x2064 }, { 0x2066, 0x206F },
  { 0xFEFF, 0xFEFF }, { 0xFFF9, 0xFFFB }, { 0x110BD, 0x110BD }, { 0x110CD, 0x110CD },
  { 0x13430, 0x1343F }, { 0x1BCA0, 0x1BCA3 }, { 0x1D173, 0x1D17A }, { 0xE0001, 0xE0001 },
  { 0xE0020, 0xE007F },
}

-- Whether the code point `code` is in one of `ranges` (first and last code points).
local function in_ranges(code, ranges)
  for _, range in ipairs(ranges) do
    if code >= range[1] and code <= range[2] then
      return true
    end
  end
  return false
end

-- Whether the code point `code` is a format character (in FORMAT_CHARACTERS).
local function is_format(code)
  return in_ranges(code, FORMAT_CHARACTERS)
end

-- The characters drawn as nothing that are not all format characters, as first and last code
-- point: Unicode's Default_Ignorable_Code_Point (15.1), the library's list (DEFAULT_IGNORABLE
-- in src/config/unseen.rs), which it refuses in names with U+2800 BRAILLE PATTERN BLANK.
local DEFAULT_IGNORABLE = {
  { 0x00AD, 0x00AD }, { 0x034F, 0x034F }, { 0x061C, 0x061C }, { 0x115F, 0x1160 },
  { 0x17B4, 0x17B5 }, { 0x180B, 0x180F }, { 0x200B, 0x200F }, { 0x202A, 0x202E },
  { 0x2060, 0x206F }, { 0x3164, 0x3164 }, { 0xFE00, 0xFE0F }, { 0xFEFF, 0xFEFF },
  { 0xFFA0, 0xFFA0 }, { 0xFFF0, 0xFFF8 }, { 0x1BCA0, 0x1BCA3 }, { 0x1D173, 0x1D17A },
  { 0xE0000, 0xE0FFF },
}

-- Whether the code point `code` is drawn as nothing, as the library tells it (is_invisible):
-- in DEFAULT_IGNORABLE, or U+2800.
local function is_invisible(code)
  return code == 0x2800 or in_ranges(code, DEFAULT_IGNORABLE)
end

-- A refused text as the library shows it in an error message (Rust's {:?}): in double quotes;
-- a quote, a backslash, the characters up to U+00FF that {:?} escapes, the format characters
-- (FORMAT_CHARACTERS) and the invisible ones (is_invisible) written as it writes them (\", \\,
-- \0, \t, \u{1b}, \u{85}, \u{a0}, \u{ad}, \u{200b}, \u{202e}, \u{fe0f}, \u{2800}: lower-case
-- hex, no leading zero; the library escapes U+2800 and the Hangul fillers, which {:?} shows as
-- they are); bytes that are
-- not UTF-8 as \xNN, so the message is UTF-8; other characters as they are, those beyond
-- U+00FF that {:?} escapes too (such as a combining accent, or a space other than U+0020 and
-- U+00A0) included: tests/vectors/quoted.tsv lists where the two differ. When longer than
-- MAX_SHOWN_VALUE_BYTES, its first bytes (cut before a UTF-8 continuation byte) followed by
-- ...(N bytes), so that a huge argument never makes a huge message.
local function quoted(value)
  local head = value
  if #value > MAX_SHOWN_VALUE_BYTES then
    local cut = MAX_SHOWN_VALUE_BYTES
    while cut > 0 and value:byte(cut + 1) >= 0x80 and value:byte(cut + 1) < 0xC0 do
      cut = cut - 1
    end
    head = value:sub(1, cut)
  end
  local parts, at = { '"' }, 1
  while at <= #head do
    local byte = head:byte(at)
    local length = byte >= 0x80 and utf8_sequence(head, at)
    if length then
      local code = byte % 2 ^ (7 - length) -- the lead byte's bits, then 6 from each other byte
      for i = at + 1, at + length - 1 do
        code = code * 64 + head:byte(i) % 64
      end
      -- U+0080 to U+00A0 (C1 controls, no-break space)
      if code <= 0xA0 or is_format(code) or is_invisible(code) then
        parts[#parts + 1] = string.format("\\u{%x}", code)
      else
        parts[#parts + 1] = head:sub(at, at + length - 1)
      end
      at = at + length
    else
      local c = head:sub(at, at)
      if ESCAPES[c] then
        parts[#parts + 1] = ESCAPES[c]
      elseif byte == 0 then
        parts[#parts + 1] = "\\0"
      elseif byte < 0x20 or byte == 0x7F then
        parts[#parts + 1] = string.format("\\u{%x}", byte)
      elseif byte > 0x7F then
        parts[#parts + 1] = string.format("\\x%02x", byte)
      else
        parts[#parts + 1] = c
      end
      at = at + 1
    end
  end
  parts[#parts + 1] = '"'
  local shown = table.concat(parts)
  if #head < #value then
    shown = shown .. "...(" .. #value .. " bytes)"
  end
  return shown
end

-- A number as error messages write it: the shortest of 14 to 17 significant digits that reads
-- back as the same number (tostring keeps 14: 0.1 + 0.2 showed as 0.3).
local function number_text(x)
  if x ~= x then
    return "nan"
  end
  for digits = 14, 16 do
    local text = string.format("%." .. digits .. "g", x)
    if tonumber(text) == x then
      return text
    end
  end
  return string.format("%.17g", x)
end

-- A refused value as error messages show it: a number by number_text, a string quoted (so
-- that "" shows, and "5" is told from 5; control bytes escaped, so a newline cannot end the
-- message's line), anything else by tostring, at most MAX_SHOWN_VALUE_BYTES of it (cut before
-- a UTF-8 continuation byte) followed by ...(N bytes), as the library shortens one, or by its
-- type when its __tostring fails or returns no string (a table's __tostring is the host's
-- code, with any result).
local function shown(value)
  if type(value) == "number" then
    return number_text(value)
  elseif type(value) == "string" then
    return quoted(value)
  end
  local ok, result = pcall(tostring, value)
  local text = ok and type(result) == "string" and result or "<" .. type(value) .. ">"
  if #text <= MAX_SHOWN_VALUE_BYTES then
    return text
  end
  local cut = MAX_SHOWN_VALUE_BYTES
  while cut > 0 and text:byte(cut + 1) >= 0x80 and text:byte(cut + 1) < 0xC0 do
    cut = cut - 1
  end
  return text:sub(1, cut) .. "...(" .. #text .. " bytes)"
end

local loaded_from -- the name M.load gave ffi.load

-- The names the loader's search path is asked for when none is given. Where the library has an
-- ELF SONAME, the one it names first, libpromotion_gates_ffi.so.0.<minor> before 1.0
-- (.so.<major> from 1.0, as ffi/build.rs names it): a runtime install has that link and not
-- the development link libpromotion_gates_ffi.so, and a library of another ABI never answers
-- it; then the plain name, which ffi.load spells libpromotion_gates_ffi.so (or .dylib, .dll).
local function default_names()
  if ffi.os == "Windows" or ffi.os == "OSX" then
    return { "promotion_gates_ffi" }
  end
  local major, minor = M._VERSION:match("^(%d+)%.(%d+)%.")
  return { "libpromotion_gates_ffi.so." .. (major == "0" and "0." .. minor or major),
           "promotion_gates_ffi" }
end

-- ffi.load of the first of `names` that loads, and that name; raises every name's error.
local function load_first(names)
  local errors = {}
  for _, name in ipairs(names) do
    local ok, loaded = pcall(ffi.load, name)
    if ok then
      return loaded, name
    end
    errors[#errors + 1] = tostring(loaded)
  end
  error(table.concat(errors, "; "), 3)
end

--- Loads the shared library: `path`, else $PGATE_LIB (an empty one counts as unset), else from
--- the dynamic loader's search path (LD_LIBRARY_PATH, ld.so.conf) the name its SONAME gives,
--- libpromotion_gates_ffi.so.0.1 (the version of its ABI), then libpromotion_gates_ffi.so. Other
--- calls load it on first use. Once loaded, the library stays: `pg.load()` and `pg.load` of the
--- same name return it, another name returns nil, an error naming both, and
--- PGATE_STATUS_INVALID_ARGUMENT (gates already made belong to the first library), and so does a
--- `path` that is not a non-empty string, or holds a NUL byte (ffi.load would load the name
--- before it). A library that cannot be loaded raises ffi.load's error (one named by $PGATE_LIB
--- with the variable and its value first: `PGATE_LIB="..." could not be loaded: ...`), and one of
--- another minor version than `M._VERSION` (a leftover $PGATE_LIB, an older system library)
--- raises an error naming both versions, leaving nothing loaded.
function M.load(path)
  if path ~= nil and (type(path) ~= "string" or path == "") then
    return invalid("invalid path = " .. shown(path) .. ": a library's file name or path, "
                     .. "a non-empty string, or nil")
  elseif path ~= nil and path:find("\0", 1, true) then
    return invalid("invalid path = " .. shown(path) .. ": a file name holds no NUL byte "
                     .. "(ffi.load would load the name before it)")
  end
  if not C then
    local from_env = os.getenv("PGATE_LIB")
    if from_env == "" then
      from_env = nil -- set empty, as unset (ffi.load would look for "lib.so")
    end
    local name, loaded = path or from_env, nil
    if path then
      loaded = ffi.load(path)
    elseif from_env then
      local ok, result = pcall(ffi.load, from_env)
      if not ok then
        error("PGATE_LIB=" .. shown(from_env) .. " could not be loaded: " .. tostring(result), 2)
      end
      loaded = result
    else
      loaded, name = load_first(default_names())
    end
    local found = ffi.string(loaded.pgate_version())
    if found:match("^(%d+%.%d+)%.") ~= M._VERSION:match("^(%d+%.%d+)%.") then
      error(name .. " is promotion-gates " .. found .. ", and this module " .. M._VERSION
              .. ": load a library of version " .. M._VERSION:match("^(%d+%.%d+)%.") .. ".x", 2)
    end
    C = loaded
    loaded_from = name
  elseif path ~= nil and path ~= loaded_from then
    return invalid("invalid path = " .. shown(path) .. ": the library is already loaded from "
                     .. loaded_from .. ", and stays")
  end
  return C
end

local function lib()
  return C or M.load()
end

--- The name of a status code (PGATE_STATUS_UNKNOWN for a number the library does not use); a
--- value that is not a whole number from 0 to 2^32 - 1 returns nil, an error, and
--- PGATE_STATUS_INVALID_ARGUMENT (the FFI would wrap 2^32 + 6 to 6).
function M.status_str(status)
  if type(status) ~= "number" or not (status >= 0 and status <= 0xFFFFFFFF)
     or status % 1 ~= 0 then
    return invalid("invalid status = " .. shown(status)
                     .. ": a status code, a whole number from 0 to 2^32 - 1")
  end
  return ffi.string(lib().pgate_status_str(status))
end

function M.version()
  return ffi.string(lib().pgate_version())
end

-- Frees the error object in `err_box[0]`, if any (`err_box` may be nil).
local function drop_error(err_box)
  if err_box ~= nil and err_box[0] ~= nil then
    C.pgate_error_free(err_box[0])
    err_box[0] = nil
  end
end

-- nil, "NAME: message", status; takes ownership of `err_box[0]` (may be NULL).
local function failure(status, err_box)
  local message = M.status_str(status)
  if err_box ~= nil and err_box[0] ~= nil then
    message = message .. ": " .. ffi.string(C.pgate_error_message(err_box[0]))
  end
  drop_error(err_box)
  return nil, message, status
end

local freed -- below: the refusal of a call on a freed gate

-- Runs a cold call `fn(handle, ..., err)` on gate `gate` (its method `operation`) that
-- reports failures in an error object. The handle is read after the call's allocations: a
-- finalizer they ran may have freed the gate.
local function explained(fn, gate, operation, ...)
  local err = ffi.new("pgate_error *[1]")
  local n = select("#", ...)
  local args = { false, ... }
  args[n + 2] = err
  local handle = gate.handle
  if handle == nil then
    return freed(operation, gate)
  end
  args[1] = handle
  local status = fn(unpack(args, 1, n + 2))
  if status ~= M.OK then
    return failure(status, err)
  end
  return true
end

-- Reads a string through `fn(handle, buf, cap, len_out)`: first with `cap` bytes (1024 if
-- nil), then, while the library answers BUFFER_TOO_SMALL, with the length it asked for and
-- some slack: the text may grow between two calls (a state store's sync thread applies
-- other processes' writes at any time). `gate` is the gate read (its method `operation`),
-- its handle read after each buffer's allocation (a finalizer it ran may have freed the
-- gate), or nil for a call on no gate (`fn` then gets nil). `err_box` is the
-- pgate_error *[1] that `fn` has the library write a failure's explanation into (nil for
-- calls without one).
local function read_text(fn, gate, operation, cap, err_box)
  local len = ffi.new("size_t[1]")
  cap = cap or 1024
  for _ = 1, 8 do
    local buf = ffi.new("char[?]", cap)
    local handle = nil
    if gate ~= nil then
      handle = gate.handle
      if handle == nil then
        drop_error(err_box)
        return freed(operation, gate)
      end
    end
    local status = fn(handle, buf, cap, len)
    if status == M.OK then
      return ffi.string(buf, len[0])
    elseif status ~= M.BUFFER_TOO_SMALL then
      return failure(status, err_box)
    end
    drop_error(err_box)
    cap = tonumber(len[0]) + 4096
  end
  return nil, M.status_str(M.BUFFER_TOO_SMALL) .. ": the text kept growing", M.BUFFER_TOO_SMALL
end

-- nil, "PGATE_STATUS_INVALID_HANDLE: ...", 13: a call on a gate after gate:free().
local Gate -- the gates' metatable and methods, below

-- The refusal of a method called on a freed gate, or on something that is no gate: a method
-- called with "." instead of ":" (gate.route(id)) takes its first argument as the gate, and
-- a string has no handle either (each method tests type(self) first, as indexing a cdata
-- such as a decision raises). Only called once the handle was found missing: the calls
-- that succeed pay nothing more for it than that type test.
function freed(operation, self)
  if getmetatable(self) ~= Gate then
    return invalid("invalid gate = " .. shown(self) .. ": " .. operation .. " needs a gate "
                     .. "(call it as gate:" .. operation .. "(...), with a colon)")
  end
  return nil, M.status_str(M.INVALID_HANDLE) .. ": " .. operation .. " on a freed gate",
         M.INVALID_HANDLE
end

local int64_t, uint64_t = ffi.typeof("int64_t"), ffi.typeof("uint64_t")
local decision_t = ffi.typeof("pgate_decision")
local TWO_64 = 2 ^ 64

-- The cdata types whose every value a Lua number holds exactly: the integers narrower than 64
-- bits (every C integer type is one of these or int64_t/uint64_t: ffi.istype ignores
-- qualifiers, and char, long, size_t and the like name one of them), float and double.
local EXACT_IN_A_NUMBER = {}
for _, name in ipairs({ "int8_t", "uint8_t", "int16_t", "uint16_t", "int32_t", "uint32_t",
                        "float", "double" }) do
  EXACT_IN_A_NUMBER[#EXACT_IN_A_NUMBER + 1] = ffi.typeof(name)
end
local bool_t = ffi.typeof("bool")

-- A number given as a cdata (a count, a latency), as the value it holds: a Lua number for an
-- integer narrower than 64 bits, a float or a double; a Lua boolean for a bool. An int64_t or
-- uint64_t stays a cdata (a number would round it above 2^53), and so does anything else.
-- The checks that follow then take, or refuse, the value and never a cdata's address.
local function held_value(value)
  if type(value) ~= "cdata" then
    return value
  end
  for _, ctype in ipairs(EXACT_IN_A_NUMBER) do
    if ffi.istype(ctype, value) then
      return tonumber(value)
    end
  end
  if ffi.istype(bool_t, value) then
    return tonumber(ffi.cast("uint8_t", value)) ~= 0
  end
  return value
end

-- A whole number from 0 for a uint64_t parameter (a count, a stage, a change number), in any
-- of the forms every such argument takes: a Lua number below `limit` (2^53 where a number
-- read back from the gate must be exact, 2^64 for a count), a cdata of a narrower C integer
-- or floating type holding one (see held_value), or an int64_t (from 0) or uint64_t cdata,
-- passed on exactly as it is. The value to pass, or nil for anything else (-1LL would wrap
-- to 2^64 - 1).
local function whole_from_zero(value, limit)
  value = held_value(value)
  if type(value) == "number" then
    if value >= 0 and value < limit and value % 1 == 0 then -- false for NaN
      return value
    end
  elseif ffi.istype(uint64_t, value) or (ffi.istype(int64_t, value) and value >= 0) then
    return value
  end
  return nil
end

-- A refused value as its message shows it: an int64_t or uint64_t cdata by its digits (-2, not
-- -2LL), also through a reference (ffi.cast("int64_t &", box), whose tostring is its
-- address: read into a value first), anything else as shown() shows it.
local function refused_text(value)
  if ffi.istype(int64_t, value) then
    return (tostring(int64_t(value)):gsub("LL$", ""))
  elseif ffi.istype(uint64_t, value) then
    return (tostring(uint64_t(value)):gsub("ULL$", ""))
  end
  return shown(value)
end

-- The error every binding gives a latency that is negative, NaN, infinite or 2^64 ns or more
-- (the same status and words in C++, Go and Python; tests/vectors/latency.tsv holds them).
local function bad_latency(value)
  return invalid("invalid latency = " .. refused_text(value) .. " ns: "
                   .. "a latency must be finite, at least 0 and below 2^64 ns")
end

-- A latency in nanoseconds (a number, or a cdata of a C integer or floating type: see
-- held_value) for a uint64_t parameter, rounded to the nearest nanosecond; or nil plus the
-- error.
local function latency_ns(value)
  value = held_value(value)
  if type(value) == "number" then
    if value >= 0 and value < TWO_64 then -- false for NaN
      -- Half a nanosecond rounds up. Not floor(value + 0.5): that sum rounds
      -- 0.49999999999999994 up to 1, and an odd whole number from 2^52 on to the even one
      -- above; value - whole is exact.
      local whole = math.floor(value)
      return value - whole >= 0.5 and whole + 1 or whole
    end
    return bad_latency(value)
  end
  if ffi.istype(uint64_t, value) then
    return value
  end
  if ffi.istype(int64_t, value) then
    if value >= 0 then
      return value
    end
    return bad_latency(value)
  end
  return invalid("invalid latency = " .. refused_text(value) .. ": not a number of nanoseconds")
end
-- The nanoseconds a latency is recorded as, for the tests that read tests/vectors/latency.tsv
-- (not an API: it may change).
M._latency_ns = latency_ns

-- Whether `decision` is a pgate_decision cdata or a pointer to one that is not NULL, as
-- gate:route returns. (ffi.istype takes a pointer for the struct it points to, NULL included;
-- a NULL pointer cdata equals nil, a struct never does.)
local function is_decision(decision)
  return ffi.istype(decision_t, decision) and decision ~= nil
end

-- The ctype ids of a decision the library may write into: ffi.istype ignores qualifiers, and
-- a const one (ffi.cast("const pgate_decision *", d)) would make the call raise.
local WRITABLE_DECISION = {}
for _, form in ipairs({ "pgate_decision", "pgate_decision *", "pgate_decision &" }) do
  WRITABLE_DECISION[tonumber(ffi.typeof(form))] = true
end

local function is_writable_decision(decision)
  return type(decision) == "cdata" and WRITABLE_DECISION[tonumber(ffi.typeof(decision))] == true
         and decision ~= nil
end

-- `out`: the decision is one to write into, which a const decision is not.
local function not_a_decision(decision, out)
  local text = type(decision) == "cdata" and decision == nil and "NULL" or shown(decision)
  if out and is_decision(decision) then
    return invalid("invalid decision = " .. text .. ": const, and route writes into it")
  end
  return invalid("invalid decision = " .. text .. ": a pgate_decision from gate:route")
end

-- The error for argument `name`, whose `value` is not a string (`optional`: nor nil).
local function not_a_string(name, value, optional)
  return invalid("invalid " .. name .. " = " .. shown(value) .. ": not a string"
                   .. (optional and " or nil" or ""))
end

local function not_a_boolean(name, value)
  return invalid("invalid " .. name .. " = " .. shown(value) .. ": not true or false")
end

Gate = {}
Gate.__index = Gate

--- Creates a gate from a JSON PromotionConfig and a JSON SloConfig (either may be nil for the
--- defaults). Returns the gate, or nil, message, status. The gate is freed by the garbage
--- collector, or at once by gate:free().
function M.new(config_json, slo_json)
  if config_json ~= nil and type(config_json) ~= "string" then
    return not_a_string("config_json", config_json, true)
  elseif slo_json ~= nil and type(slo_json) ~= "string" then
    return not_a_string("slo_json", slo_json, true)
  end
  local c = lib()
  local out = ffi.new("pgate_gate *[1]")
  local err = ffi.new("pgate_error *[1]")
  local status = c.pgate_gate_new(config_json, config_json and #config_json or 0,
                                  slo_json, slo_json and #slo_json or 0, out, err)
  if status ~= M.OK then
    return failure(status, err)
  end
  local self = setmetatable({
    handle = ffi.gc(out[0], c.pgate_gate_free),
    -- Scratch for the calls whose outputs are read with no allocation between the call and
    -- the reads (a uint32_t or a bool reads as a Lua number or boolean, unboxed), so a
    -- finalizer's call on this gate, at an allocation before, cannot change them in between;
    -- the calls with outputs read otherwise (flags, read_health) allocate their own.
    recorded_buf = ffi.new("pgate_recorded[1]"),
    bool_buf = ffi.new("bool[1]"),
  }, Gate)
  return self
end

--- Frees the gate now (decisions routed by it become useless) and returns true, as the other
--- calls that change something do. Calling it twice is harmless (true again); every other
--- call on it afterwards returns nil, "PGATE_STATUS_INVALID_HANDLE: ...", 13. (A C call never yields, so no other coroutine is inside a call on the gate.)
--- When the library's free fails, that failure: nil, "PGATE_STATUS_PANIC", 14 (say), as the
--- other calls return a failing status; the gate is gone all the same (every later call is
--- refused as on a freed gate, and a second free returns true), but for a free the library
--- refused inside a log callback (nil, "PGATE_STATUS_INVALID_ARGUMENT: ...", 2), which freed
--- nothing: the gate stays as it was. A gate with a store made
--- before a fork and freed in the child fails so: the child has none of its sync threads (a
--- gate without a store has none to join; make gates after the fork: see the README, "In
--- OpenResty").
--- Called on something that is no gate (gate.free(x)): nil, "PGATE_STATUS_INVALID_ARGUMENT:
--- invalid gate = ...", 2, and nothing is freed.
function Gate:free()
  if getmetatable(self) ~= Gate then
    return freed("free", self)
  elseif self.handle ~= nil then
    local handle = ffi.gc(self.handle, nil)
    self.handle = nil
    local status = C.pgate_gate_free(handle)
    if status == M.INVALID_ARGUMENT then
      -- Refused inside a log callback (a host's own, calling into Lua): nothing was freed, and
      -- the gate stays as it was, its collector's free armed again.
      self.handle = ffi.gc(handle, C.pgate_gate_free)
      return failure(status)
    elseif status ~= M.OK then
      return failure(status)
    end
  end
  return true
end

--- Routes a request id (a Lua string: any bytes). Writes into `out` (a pgate_decision cdata,
--- to reuse across requests) or a new one; returns it, or nil, message, status. In OpenResty
--- a buffer reused across requests and kept until log_by_lua is overwritten by the requests
--- that overlap (each yield lets another run): give each request its own, or record before
--- the handler yields.
function Gate:route(id, out)
  if type(self) ~= "table" or self.handle == nil then
    return freed("route", self)
  elseif type(id) ~= "string" then
    return not_a_string("id", id)
  elseif type(out) ~= "nil" and not is_writable_decision(out) then -- a NULL cdata == nil, yet given
    return not_a_decision(out, true)
  end
  out = out or decision_t()
  -- Read now, after the allocations above: a finalizer they ran may have freed the gate.
  local handle = self.handle
  if handle == nil then
    return freed("route", self)
  end
  local status = C.pgate_route(handle, id, #id, out)
  if status ~= M.OK then
    return failure(status)
  end
  return out
end

--- Routes a request id with the forcing value the host read from the request (the value of
--- the header or cookie the config's "overrides" names; nil for none): "canary" or "stable"
--- (ASCII case ignored) force the request, any other value is ignored and counted, never an
--- error; the config's id lists win over the value. The decision's `forced` field says
--- whether and how it was forced (M.forced). As gate:route for `out` and failures.
function Gate:route_forced(id, value, out)
  if type(self) ~= "table" or self.handle == nil then
    return freed("route_forced", self)
  elseif type(id) ~= "string" then
    return not_a_string("id", id)
  elseif value ~= nil and type(value) ~= "string" then
    return not_a_string("value", value, true)
  elseif type(out) ~= "nil" and not is_writable_decision(out) then -- a NULL cdata == nil, yet given
    return not_a_decision(out, true)
  end
  out = out or decision_t()
  -- Read now, after the allocations above: a finalizer they ran may have freed the gate.
  local handle = self.handle
  if handle == nil then
    return freed("route_forced", self)
  end
  local status = C.pgate_route_forced(handle, id, #id, value, value and #value or 0, out)
  if status ~= M.OK then
    return failure(status)
  end
  return out
end

--- Records the outcome of a request routed by `decision`; returns "counted", "late",
--- "foreign" or "forced" (a forced request: counted in neither cohort), or nil, message,
--- status. `latency` is in nanoseconds: a number (rounded to a
--- whole nanosecond) or an int64_t/uint64_t cdata; one that is negative, NaN, infinite or
--- 2^64 or more gives nil, "PGATE_STATUS_INVALID_ARGUMENT: invalid latency = ...", 2.
function Gate:record(decision, success, latency)
  if type(self) ~= "table" or self.handle == nil then
    return freed("record", self)
  elseif not is_decision(decision) then
    return not_a_decision(decision)
  elseif type(success) ~= "boolean" then
    return not_a_boolean("success", success)
  end
  local ns, message, code = latency_ns(latency)
  if ns == nil then
    return nil, message, code
  end
  -- Read now, after the allocations above: a finalizer they ran may have freed the gate.
  local handle = self.handle
  if handle == nil then
    return freed("record", self)
  end
  local status = C.pgate_record(handle, decision, success, ns, self.recorded_buf)
  if status ~= M.OK then
    return failure(status)
  end
  return M.recorded[tonumber(self.recorded_buf[0])]
end

-- The body of Gate:record_abandoned and Gate:record_abandoned_as: what happened to the outcome
-- ("counted"...), false when nothing was recorded, or nil, message, status.
local function abandoned(self, operation, decision, waited)
  if type(self) ~= "table" or self.handle == nil then
    return freed(operation, self)
  end
  if not is_decision(decision) then
    return not_a_decision(decision)
  end
  local ns, message, code = latency_ns(waited)
  if ns == nil then
    return nil, message, code
  end
  -- Read now, after the allocations above: a finalizer they ran may have freed the gate.
  local handle = self.handle
  if handle == nil then
    return freed(operation, self)
  end
  local status = C.pgate_record_abandoned_as(handle, decision, ns, self.bool_buf, self.recorded_buf)
  if status ~= M.OK then
    return failure(status)
  end
  if not self.bool_buf[0] then
    return false
  end
  return M.recorded[tonumber(self.recorded_buf[0])]
end

--- Records a request routed by `decision` whose client went away before the version answered,
--- `waited` nanoseconds after it was sent there (checked as Gate:record checks a latency). A
--- wait longer than the SLO's latency_target counts as a success that missed its target,
--- timed to the wait (a lower bound), so a canary that hangs is rolled back even when every
--- client gives up first; a wait up to the target records nothing. Never a failure. Returns
--- true when recorded, false when not, or nil, message, status. Gate:record_abandoned_as also
--- says what happened to the outcome.
function Gate:record_abandoned(decision, waited)
  local as, message, code = abandoned(self, "record_abandoned", decision, waited)
  if as == nil then
    return nil, message, code
  end
  return as ~= false
end

--- Gate:record_abandoned, returning what happened to the outcome when one was recorded, as
--- Gate:record does ("counted", "late", "foreign" or "forced"), false for a wait up to the
--- SLO's latency_target (nothing recorded), or nil, message, status. For a host that counts
--- late, foreign and forced outcomes itself (see pg.metrics_prometheus_counted): a forced
--- request whose client gave up after the target is "forced".
function Gate:record_abandoned_as(decision, waited)
  return abandoned(self, "record_abandoned_as", decision, waited)
end

--- Records by id (routed again under the current snapshot); prefer Gate:record. The latency
--- is checked as Gate:record checks it. The id is routed without a forcing value: this call
--- cannot see that a header or cookie forced the request (only that an id list does), so such
--- a request's outcome would count in the cohort of its bucket; a host that routes with
--- Gate:route_forced records by id with Gate:record_by_id_forced.
function Gate:record_by_id(id, success, latency)
  if type(self) ~= "table" or self.handle == nil then
    return freed("record_by_id", self)
  elseif type(id) ~= "string" then
    return not_a_string("id", id)
  elseif type(success) ~= "boolean" then
    return not_a_boolean("success", success)
  end
  local ns, message, code = latency_ns(latency)
  if ns == nil then
    return nil, message, code
  end
  -- Read now, after the allocations above: a finalizer they ran may have freed the gate.
  local handle = self.handle
  if handle == nil then
    return freed("record_by_id", self)
  end
  local status = C.pgate_record_by_id(handle, id, #id, success, ns, self.recorded_buf)
  if status ~= M.OK then
    return failure(status)
  end
  return M.recorded[tonumber(self.recorded_buf[0])]
end

--- Gate:record_by_id for a request routed with Gate:route_forced: the id is routed again with
--- the same forcing value (nil for none; "" is a value), so an outcome the value forced is
--- "forced", in neither cohort, as Gate:record counts it with the decision. A value that
--- forces nothing is not counted again as ignored. Checked and returned as Gate:record_by_id.
function Gate:record_by_id_forced(id, value, success, latency)
  if type(self) ~= "table" or self.handle == nil then
    return freed("record_by_id_forced", self)
  elseif type(id) ~= "string" then
    return not_a_string("id", id)
  elseif value ~= nil and type(value) ~= "string" then
    return not_a_string("value", value, true)
  elseif type(success) ~= "boolean" then
    return not_a_boolean("success", success)
  end
  local ns, message, code = latency_ns(latency)
  if ns == nil then
    return nil, message, code
  end
  -- Read now, after the allocations above: a finalizer they ran may have freed the gate.
  local handle = self.handle
  if handle == nil then
    return freed("record_by_id_forced", self)
  end
  local status = C.pgate_record_by_id_forced(handle, id, #id, value, value and #value or 0,
                                             success, ns, self.recorded_buf)
  if status ~= M.OK then
    return failure(status)
  end
  return M.recorded[tonumber(self.recorded_buf[0])]
end

-- A failure of a flag-set call, which the library explains with no message: an unknown
-- flag set (one the gate no longer holds or never gave out, or one replaced while it was read)
-- is named here; any other status is given as it is.
local function flag_set_failure(status, set)
  if status ~= M.UNKNOWN_FLAG_SET then
    return failure(status)
  end
  return nil, M.status_str(status) .. ": invalid flag_set = " .. tostring(set)
           .. ": not a flag set of this gate (another gate's decision, or one replaced more "
           .. "than " .. M.FLAG_SET_GRACE_WRITES .. " writes ago)", status
end

--- The names of the flags on for a decision, as a list of Lua strings (byte order).
function Gate:flags(decision)
  if type(self) ~= "table" or self.handle == nil then
    return freed("flags", self)
  end
  if not is_decision(decision) then
    return not_a_decision(decision)
  end
  -- The call's own buffers, not the gate's: a finalizer may run at any allocation below (the
  -- table, the strings, the boxed pointer and length) and call gate:flags on this gate
  -- itself, which would overwrite shared ones between a call and the reads of what it wrote.
  local name_out, len_out = ffi.new("const char *[1]"), ffi.new("size_t[1]")
  -- Read now, after the allocations above: a finalizer they ran may have freed the gate.
  local handle = self.handle
  if handle == nil then
    return freed("flags", self)
  end
  -- The decision's flag set read once: a finalizer run at an allocation below may route into
  -- the same decision, and one list would then mix two sets' names.
  local set = decision.flag_set
  local status = C.pgate_flag_set_len(handle, set, len_out)
  if status ~= M.OK then -- the library's call writes no message
    return flag_set_failure(status, set)
  end
  local names = {}
  for i = 0, tonumber(len_out[0]) - 1 do
    -- Read again each time: the strings and the table allocate, and a finalizer that ran
    -- then may have freed the gate.
    handle = self.handle
    if handle == nil then
      return freed("flags", self)
    end
    status = C.pgate_flag_set_name(handle, set, i, name_out, len_out)
    if status ~= M.OK then
      return flag_set_failure(status, set)
    end
    -- The name points into the gate's memory, and reading the pointer and the length
    -- allocates (each is boxed), so a finalizer may free the gate, the name with it, before
    -- the copy: read the gate once more after those reads. Nothing between that read and
    -- ffi.string's copy allocates (ffi.string collects garbage only after copying).
    local name, len = name_out[0], len_out[0]
    if self.handle == nil then
      return freed("flags", self)
    end
    names[#names + 1] = ffi.string(name, len)
  end
  return names
end

-- The health in `box` (a pgate_health[1]) as a table, with its evidence line. Each field is
-- read through the box, never through a reference to its element: a reference does not keep
-- the box alive, and the reads allocate (the table, a boxed 64-bit value), so a collection
-- could free a box no longer used before the last field was read (as a tail call's caller,
-- whose frame held it, would let it).
local function health_table(box, evidence)
  return {
    stage = tonumber(box[0].stage),
    environment = M.environments[tonumber(box[0].environment)],
    traffic_percent = box[0].traffic_percent,
    canary_requests = tonumber(box[0].canary_requests),
    production_requests = tonumber(box[0].production_requests),
    canary_error_rate = box[0].canary_error_rate,
    production_error_rate = box[0].production_error_rate,
    canary_p99_ms = tonumber(box[0].canary_p99_ns) / 1e6,
    production_p99_ms = tonumber(box[0].production_p99_ns) / 1e6,
    canary_compliance = box[0].canary_compliance,
    health_score = box[0].health_score,
    recommendation = M.recommendations[tonumber(box[0].recommendation)],
    rules_fired = tonumber(box[0].rules_fired),
    sufficient_data = box[0].sufficient_data,
    evidence = evidence,
  }
end

-- Calls fn (pgate_monitor_health or pgate_read_health) once: the health table, or nil,
-- message, status. One call: a second would read another window (after a rollback, which
-- either may make, a healthy Production), so the evidence gets the room the library says
-- always suffices (longer lines are cut).
local function health_once(self, operation, fn)
  if type(self) ~= "table" or self.handle == nil then
    return freed(operation, self)
  end
  local cap = M.EVIDENCE_CAPACITY
  -- The call's own buffers, not the gate's: the reads below allocate (the struct's reference,
  -- the string, the table), and a finalizer run there may call read_health on this gate
  -- itself, which would overwrite shared ones before their fields were read.
  local evidence = ffi.new("char[?]", cap)
  local out, len = ffi.new("pgate_health[1]"), ffi.new("size_t[1]")
  -- Read now, after the allocations above: a finalizer they ran may have freed the gate.
  local handle = self.handle
  if handle == nil then
    return freed(operation, self)
  end
  local status = fn(handle, out, evidence, cap, len)
  if status ~= M.OK then
    return failure(status)
  end
  return health_table(out, ffi.string(evidence, len[0]))
end

-- Judges now (pgate_monitor_health): see health_once.
local function judged_health(self, operation)
  return health_once(self, operation, C.pgate_monitor_health)
end

--- The former name of gate:monitor_health(), kept with its meaning: it judges the canary now
--- and may roll it back. Deprecated: call gate:monitor_health(), or gate:read_health() to read.
function Gate:health()
  return judged_health(self, "health")
end

-- Runs `fn(handle, out)`, a call that writes one bool about the gate: the boolean, or nil,
-- message, status.
local function read_bool(self, operation, fn)
  if type(self) ~= "table" or self.handle == nil then
    return freed(operation, self)
  end
  local status = fn(self.handle, self.bool_buf)
  if status ~= M.OK then
    return failure(status)
  end
  return self.bool_buf[0]
end

--- Whether the version under judgement meets its SLO (false with too little data).
function Gate:check_slo()
  return read_bool(self, "check_slo", C.pgate_check_slo)
end

-- The environment's number and the share that gate:promote and gate:promote_from pass, or
-- nil, message, status.
local function promotion(environment, traffic_percent)
  local number = M.environments[environment]
  if type(number) ~= "number" then
    return invalid("invalid environment = " .. shown(environment)
                     .. ': "canary", "staging" or "production"')
  end
  if traffic_percent == nil then
    if number == M.environments.canary then -- never a default share of traffic
      return invalid('invalid traffic_percent = nil: "canary" takes a percentage from 0 to 100')
    end
    traffic_percent = 0 -- unused in Staging and Production
  elseif type(traffic_percent) ~= "number" then
    return invalid("invalid traffic_percent = " .. shown(traffic_percent) .. ": not a number")
  end
  return number, traffic_percent
end

--- Promotes to "canary" (with traffic_percent), "staging" or "production".
function Gate:promote(environment, traffic_percent)
  if type(self) ~= "table" or self.handle == nil then
    return freed("promote", self)
  end
  local number, percent, status = promotion(environment, traffic_percent)
  if number == nil then
    return nil, percent, status
  end
  return explained(C.pgate_promote, self, "promote", number, percent)
end

-- The forms a stage number, a change count and a change number take (whole_from_zero).
local BELOW_2_53 = " from 0, below 2^53, or an int64_t or uint64_t cdata from 0"

-- `stage` as a stage number to pass (gate:promote_from): a whole number from 0, below 2^53,
-- or an int64_t or uint64_t cdata from 0 (a decision's stage is a uint64_t), as
-- whole_from_zero takes it; else nil, message, status naming the value.
local function stage_number(stage)
  local value = whole_from_zero(stage, 2 ^ 53)
  if value == nil then
    return invalid("invalid stage = " .. refused_text(held_value(stage)) .. ": a stage number"
                     .. BELOW_2_53 .. " (a decision's stage)")
  end
  return value
end

--- gate:promote, made only if the gate is still in release stage `stage`: the stage read
--- before deciding (gate:state().stage, a decision's d.stage, or gate:read_health().stage,
--- the stage judged). A ramp loop calls this one: if the judge rolled the canary back after
--- the look, or another worker moved the gate, a plain gate:promote("canary", 25) from
--- Production would start a new, ungated rollout of the build just rolled back. When the gate
--- left `stage`: nil, "PGATE_STATUS_STAGE_CHANGED: the gate left stage N: ...", M.STAGE_CHANGED
--- (19), and nothing changed. `stage` is a whole number from 0, below 2^53 (a number, or a
--- cdata of a narrower C integer or floating type), or an int64_t or uint64_t cdata from 0
--- (a decision's stage is a uint64_t), the forms gate:swap_config_from's change count and
--- gate:changes_since's `after` take too.
function Gate:promote_from(stage, environment, traffic_percent)
  if type(self) ~= "table" or self.handle == nil then
    return freed("promote_from", self)
  end
  local expected, message, refusal = stage_number(stage)
  if expected == nil then
    return nil, message, refusal
  end
  local number, percent, status = promotion(environment, traffic_percent)
  if number == nil then
    return nil, percent, status
  end
  return explained(C.pgate_promote_from, self, "promote_from", expected, number, percent)
end

function Gate:rollback(reason)
  if type(self) ~= "table" or self.handle == nil then
    return freed("rollback", self)
  elseif type(reason) ~= "string" then
    return not_a_string("reason", reason)
  end
  return explained(C.pgate_rollback, self, "rollback", reason, #reason)
end

function Gate:enable_feature(name)
  if type(self) ~= "table" or self.handle == nil then
    return freed("enable_feature", self)
  elseif type(name) ~= "string" then
    return not_a_string("name", name)
  end
  return explained(C.pgate_enable_feature, self, "enable_feature", name, #name)
end

function Gate:disable_feature(name)
  if type(self) ~= "table" or self.handle == nil then
    return freed("disable_feature", self)
  elseif type(name) ~= "string" then
    return not_a_string("name", name)
  end
  return explained(C.pgate_disable_feature, self, "disable_feature", name, #name)
end

--- Whether a flag is on for the gate (as a release flag or a graduated one). A name no flag
--- can have is refused with the status gate:enable_feature refuses it with: nil,
--- "PGATE_STATUS_INVALID_FLAG: invalid name = \"a b\": not a flag name (...)", 9 (empty, over
--- 128 bytes, with whitespace, control, format or invisible characters), or the same words
--- with PGATE_STATUS_INVALID_ARGUMENT, 2 (not UTF-8).
function Gate:is_feature_enabled(name)
  if type(self) ~= "table" or self.handle == nil then
    return freed("is_feature_enabled", self)
  elseif type(name) ~= "string" then
    return not_a_string("name", name)
  end
  local status = C.pgate_is_feature_enabled(self.handle, name, #name, self.bool_buf)
  if status == M.INVALID_FLAG or status == M.INVALID_ARGUMENT then -- the call writes no message
    return nil, M.status_str(status) .. ": invalid name = " .. quoted(name) .. ": not a flag "
             .. "name (1 to 128 bytes of UTF-8, no whitespace, control, format or invisible "
             .. "characters)", status
  elseif status ~= M.OK then
    return failure(status)
  end
  return self.bool_buf[0]
end

function Gate:swap_config(json)
  if type(self) ~= "table" or self.handle == nil then
    return freed("swap_config", self)
  elseif type(json) ~= "string" then
    return not_a_string("json", json)
  end
  return explained(C.pgate_swap_config, self, "swap_config", json, #json)
end

-- A change count given to gate:swap_config_from, as the value to pass: a whole number from 0,
-- below 2^53 (as gate:change_count() returns it), or an int64_t or uint64_t cdata from 0, as
-- whole_from_zero takes it; else nil, message, status naming the value.
local function change_count_number(count)
  local value = whole_from_zero(count, 2 ^ 53)
  if value == nil then
    return invalid("invalid change_count = " .. refused_text(held_value(count))
                     .. ": a change count" .. BELOW_2_53)
  end
  return value
end

--- gate:swap_config, made only if the gate has not changed since the caller read
--- `change_count` (gate:change_count()) before the config it edited (gate:config_json()). A
--- hot reload that edits the gate's config calls this one: a plain gate:swap_config of a
--- config read before a rollback puts the rolled-back canary back, one read before
--- gate:disable_feature (a kill switch) turns the flag on again, and two reloads overwrite each
--- other. Every change moves the count: a rollback, a promotion, a flag turned on or off, a
--- config swap, an SLO swap (gate:swap_slo: no config changes, yet it counts), and another
--- worker's or process's write once read from the state store (after a lost compare-and-swap
--- too, so one this gate has not synced yet refuses the swap). Read the count first: a change
--- between the two reads then refuses the swap, never lets it through. When the gate changed:
--- nil, "PGATE_STATUS_GATE_CHANGED: the gate changed since change N (now M: ...", M.GATE_CHANGED
--- (20), and nothing changed (read both again); otherwise as gate:swap_config.
---
---   local seen = gate:change_count() -- first
---   local edited = gate:config_json():gsub('"feature_flags":%[%]', '"feature_flags":["dark_mode"]')
---   local ok, err, status = gate:swap_config_from(seen, edited)
---   if status == pg.GATE_CHANGED then --[[ changed meanwhile: read both again ]] end
function Gate:swap_config_from(change_count, json)
  if type(self) ~= "table" or self.handle == nil then
    return freed("swap_config_from", self)
  end
  local seen, message, status = change_count_number(change_count)
  if seen == nil then
    return nil, message, status
  elseif type(json) ~= "string" then
    return not_a_string("json", json)
  end
  return explained(C.pgate_swap_config_from, self, "swap_config_from", seen, json, #json)
end

function Gate:config_json()
  if type(self) ~= "table" or self.handle == nil then
    return freed("config_json", self)
  end
  return read_text(C.pgate_config_json, self, "config_json")
end

-- Names (see the repository README, "Overrides" and "Observability"): the gate's, and the
-- header and cookie the config's overrides read. PGATE_NAME_CAPACITY bytes always suffice.
cdef [[
pgate_status pgate_gate_name(const pgate_gate *gate, char *name, size_t capacity, size_t *len);
pgate_status pgate_override_names(const pgate_gate *gate, char *header, size_t header_cap,
                                  size_t *header_len, char *cookie, size_t cookie_cap,
                                  size_t *cookie_len);
]]

--- The gate's name: its config's "gate" ("default" when it names none), its key in a state
--- store and the `gate` label of its metrics (pgate_gate_name). Or nil, message, status.
function Gate:name()
  if type(self) ~= "table" or self.handle == nil then
    return freed("name", self)
  end
  return read_text(C.pgate_gate_name, self, "name", M.NAME_CAPACITY) -- always room: one call
end

--- Where the host reads a forcing value for gate:route_forced: a table {header = the
--- overrides.header name, cookie = the overrides.cookie name}, a field nil for a name the
--- config does not give; both from one config (pgate_override_names). A config swap may
--- rename them; gate:change_count() moves then. Or nil, message, status.
function Gate:override_names()
  if type(self) ~= "table" or self.handle == nil then
    return freed("override_names", self)
  end
  local cap = M.NAME_CAPACITY
  local header, cookie = ffi.new("char[?]", cap), ffi.new("char[?]", cap)
  local lens = ffi.new("size_t[2]")
  local cookie_len = lens + 1 -- a new cdata: it allocates too
  -- Read now, after the allocations above: a finalizer they ran may have freed the gate.
  local handle = self.handle
  if handle == nil then
    return freed("override_names", self)
  end
  local status = C.pgate_override_names(handle, header, cap, lens, cookie, cap, cookie_len)
  if status ~= M.OK then
    return failure(status)
  end
  return { header = lens[0] > 0 and ffi.string(header, lens[0]) or nil,
           cookie = lens[1] > 0 and ffi.string(cookie, lens[1]) or nil }
end

function Gate:rollback_history_json()
  if type(self) ~= "table" or self.handle == nil then
    return freed("rollback_history_json", self)
  end
  return read_text(C.pgate_rollback_history_json, self, "rollback_history_json")
end

-- Telemetry (see the repository README, "Observability"): the Prometheus exposition and each
-- cohort's latency histogram. Neither judges the gate (as after gate:read_health(), an
-- evaluation the record path asked for meanwhile is made after the read, and may roll back).
cdef [[
typedef struct pgate_outcome_counts {
  uint64_t late_outcomes;
  uint64_t foreign_outcomes;
  uint64_t forced_outcomes;
  uint64_t ignored_override_values;
} pgate_outcome_counts;
]]

cdef [[
pgate_status pgate_metrics_prometheus(const pgate_gate *gate, char *buf, size_t cap,
                                      size_t *len_out);
pgate_status pgate_latency_histograms_json(const pgate_gate *gate, char *buf, size_t cap,
                                           size_t *len_out);
pgate_status pgate_metrics_prometheus_gates(const pgate_gate *const *gates, size_t count,
                                            char *buf, size_t cap, size_t *len_out);
pgate_status pgate_metrics_prometheus_counted(const pgate_gate *const *gates,
                                              const pgate_outcome_counts *counts, size_t count,
                                              char *buf, size_t cap, size_t *len_out);
]]

-- The fields of a pgate_outcome_counts, in its order: the four outcome counters.
local OUTCOME_COUNTS = { "late_outcomes", "foreign_outcomes", "forced_outcomes",
                         "ignored_override_values" }

-- Why the library refused gates for one exposition, by their positions: "gates[j] and
-- gates[i] are the same gate" or "gates[i] is named "x", as gates[j] is: ...", or nil.
local function same_names(gates, n)
  local names = {}
  for i = 1, n do
    for j = 1, i - 1 do
      if gates[j] == gates[i] then
        return "gates[" .. j .. "] and gates[" .. i .. "] are the same gate"
      end
    end
    names[i] = gates[i]:name()
    for j = 1, i - 1 do
      if names[j] == names[i] then
        return string.format("gates[%d] is named %q, as gates[%d] is: their series would repeat",
                             i, names[i], j)
      end
    end
  end
end

--- The gate's Prometheus text exposition (format 0.0.4; serve it as
--- "text/plain; version=0.0.4"). Returns the text, or nil, message, status.
function Gate:metrics_prometheus()
  if type(self) ~= "table" or self.handle == nil then
    return freed("metrics_prometheus", self)
  end
  return read_text(C.pgate_metrics_prometheus, self, "metrics_prometheus", 16384)
end

-- The exposition of the gates given from `...` (`operation` in messages), with `counts` (a
-- pgate_outcome_counts[n]) in place of their own outcome counters, or their own (nil).
local function exposition(operation, counts, ...)
  local n = select("#", ...)
  local gates = { ... }
  local handles = ffi.new("const pgate_gate *[?]", n)
  for i = 1, n do
    local gate = gates[i]
    if getmetatable(gate) ~= Gate then
      return invalid("invalid gates[" .. i .. "] = " .. shown(gate) .. ": not a gate")
    elseif gate.handle == nil then
      return nil, M.status_str(M.INVALID_HANDLE) .. ": " .. operation .. " on a freed gate (gates["
                    .. i .. "])", M.INVALID_HANDLE
    end
  end
  local c = lib()
  local gone -- the position of a gate a finalizer freed during the reads' allocations
  local text, message, status = read_text(function(_, buf, cap, len)
    -- The handles, read after the buffer's allocation (nothing allocates from here on).
    for i = 1, n do
      local handle = gates[i].handle
      if handle == nil then
        gone = i
        return M.INVALID_HANDLE
      end
      handles[i - 1] = handle
    end
    if counts == nil then
      return c.pgate_metrics_prometheus_gates(handles, n, buf, cap, len)
    end
    return c.pgate_metrics_prometheus_counted(handles, counts, n, buf, cap, len)
  end, nil, nil, 16384)
  if gone ~= nil then
    return nil, M.status_str(M.INVALID_HANDLE) .. ": " .. operation .. " on a freed gate (gates["
                  .. gone .. "])", M.INVALID_HANDLE
  elseif status == M.INVALID_ARGUMENT then
    return invalid(same_names(gates, n) or message)
  end
  return text, message, status
end

--- The Prometheus text exposition of several gates (`pg.metrics_prometheus(web, api)`), as a
--- host serving one /metrics for all of them needs: each metric family once, one series per
--- gate, labelled gate="<name>". Judges nothing (as gate:read_health()). Two gates of one name
--- (gate:name()) would repeat each other's series: nil, "PGATE_STATUS_INVALID_ARGUMENT:
--- gates[2] is named "web", as gates[1] is: ...", 2 (positions count from 1), as for one gate
--- given twice.
function M.metrics_prometheus(...)
  return exposition("metrics_prometheus", nil, ...)
end

-- A count for a uint64_t field (a whole number from 0, below 2^64, given as a number or as a
-- cdata of any C integer or floating type: see held_value), or nil plus the error naming
-- `name`.
local function count_value(name, value)
  local count = whole_from_zero(value, TWO_64)
  if count ~= nil then
    return count
  end
  return invalid("invalid " .. name .. " = " .. refused_text(held_value(value))
                   .. ": a count, a whole number from 0 to 2^64 - 1")
end

-- Writes the table `entry` (named `name`: its four counts) into the pgate_outcome_counts
-- `out`; true, or nil plus the error.
local function pack_counts(out, name, entry)
  if type(entry) ~= "table" then
    return invalid("invalid " .. name .. " = " .. shown(entry) .. ": a table of the four counts "
                     .. "(late_outcomes, foreign_outcomes, forced_outcomes, "
                     .. "ignored_override_values)")
  end
  for _, field in ipairs(OUTCOME_COUNTS) do
    local value, message, status = count_value(name .. "." .. field, entry[field])
    if value == nil then
      return nil, message, status
    end
    out[field] = value
  end
  return true
end

--- pg.metrics_prometheus with the host's counts in place of the four outcome counters of each
--- gate (pgate_metrics_prometheus_counted): `counts[i]` is gates[i]'s, a table of
--- late_outcomes, foreign_outcomes, forced_outcomes and ignored_override_values (all four,
--- each a whole number from 0 to 2^64 - 1 or a uint64_t cdata); every other series is the
--- gate's own. Each nginx worker has its own gates, and so counters of its own: a scrape
--- reaching another worker would read a lower count, a counter reset to Prometheus. Count each
--- outcome once, in a lua_shared_dict (gate:record's and gate:record_abandoned_as's "late",
--- "foreign" and "forced", and each
--- forcing value gate:route_forced ignored: a decision whose forced is 0), and serve those:
---
---   local shared = ngx.shared.pgate_counts -- lua_shared_dict pgate_counts 1m;
---   local text = pg.metrics_prometheus_counted({ {
---     late_outcomes = shared:get("checkout:late") or 0,
---     foreign_outcomes = shared:get("checkout:foreign") or 0,
---     forced_outcomes = shared:get("checkout:forced") or 0,
---     ignored_override_values = shared:get("checkout:ignored") or 0,
---   } }, checkout) -- 'promotion_forced_outcomes_total{gate="checkout"} 7' when forced is 7
---
--- `counts` holds one table per gate, else nil, "PGATE_STATUS_INVALID_ARGUMENT: invalid
--- #counts = 1: one table of counts per gate (gates: 2)", 2; a count that is no count is
--- refused by name ("invalid counts[2].late_outcomes = -1: ..."), as a gate is refused by
--- pg.metrics_prometheus; the library is called with none of them.
function M.metrics_prometheus_counted(counts, ...)
  local n = select("#", ...)
  if type(counts) ~= "table" then
    return invalid("invalid counts = " .. shown(counts) .. ": a table of " .. n
                     .. " tables of counts, one per gate")
  end
  local length = table.maxn(counts)
  if length ~= n then
    return invalid("invalid #counts = " .. length .. ": one table of counts per gate (gates: "
                     .. n .. ")")
  end
  local packed = ffi.new("pgate_outcome_counts[?]", n)
  for i = 1, n do
    local ok, message, status = pack_counts(packed[i - 1], "counts[" .. i .. "]", counts[i])
    if not ok then
      return nil, message, status
    end
  end
  return exposition("metrics_prometheus_counted", packed, ...)
end

--- gate:metrics_prometheus with the host's `counts` (one table of the four counts) in place of
--- the gate's outcome counters: pg.metrics_prometheus_counted({ counts }, gate).
function Gate:metrics_prometheus_counted(counts)
  if type(self) ~= "table" or self.handle == nil then
    return freed("metrics_prometheus_counted", self)
  end
  local packed = ffi.new("pgate_outcome_counts[1]")
  local ok, message, status = pack_counts(packed[0], "counts", counts)
  if not ok then
    return nil, message, status
  end
  return exposition("metrics_prometheus_counted", packed, self)
end

--- Each cohort's latency histogram of the judged window as JSON: {"encoding":
--- "hdrhistogram-v2-deflate-base64", "unit": "microseconds", "canary": "...", "stable": "..."}.
function Gate:latency_histograms_json()
  if type(self) ~= "table" or self.handle == nil then
    return freed("latency_histograms_json", self)
  end
  return read_text(C.pgate_latency_histograms_json, self, "latency_histograms_json")
end

-- Parity and change notifications: the read-only health, the state, the SLO read and swap,
-- and the change counter with the changes (see the repository README, "Change
-- notifications"). The library never calls Lua for a change: read the counter where you like
-- (each request, a timer) and, when it moved, the changes.
cdef [[
pgate_status pgate_read_health(const pgate_gate *gate, pgate_health *out, char *evidence,
                               size_t evidence_cap, size_t *evidence_len);
pgate_status pgate_slo_json(const pgate_gate *gate, char *buf, size_t cap, size_t *len_out);
pgate_status pgate_swap_slo(const pgate_gate *gate, const char *json, size_t len,
                            pgate_error **err);
pgate_status pgate_state(const pgate_gate *gate, pgate_environment *environment,
                         double *traffic_percent, uint64_t *stage);
pgate_status pgate_change_count(const pgate_gate *gate, uint64_t *count);
pgate_status pgate_sync_now(const pgate_gate *gate, bool *asked);
pgate_status pgate_changes_json(const pgate_gate *gate, uint64_t after, char *buf, size_t cap,
                                size_t *len_out);
]]

--- Judges the canary now and returns its health (a table with the evidence line), or nil,
--- message, status. Like the Rust monitor_canary_health, it rolls a canary back when a rule
--- fired and auto_rollback_enabled; the health returned is the one judged (one call, never
--- repeated, with room for M.EVIDENCE_CAPACITY bytes of evidence).
function Gate:monitor_health()
  return judged_health(self, "monitor_health")
end

--- The canary's health over the current window, as gate:monitor_health() judges it, read
--- without side effects of its own (pgate_read_health): its judgement never rolls back and
--- leaves the window as it was, so a status location may call it on every request. A rule may
--- show as fired here; the gate acts on it at its next judgement (the record path judges by
--- itself). An evaluation the record path asked for while the read held the window is made
--- right after it, and may roll the canary back there, as the record path would have; so
--- the read is one call, never repeated (M.EVIDENCE_CAPACITY bytes of evidence).
function Gate:read_health()
  return health_once(self, "read_health", C.pgate_read_health)
end

--- Where the gate stands, read without judging: a table {environment = "canary", "staging"
--- or "production", traffic_percent = the canary share, stage = the release stage}, or nil,
--- message, status.
function Gate:state()
  if type(self) ~= "table" or self.handle == nil then
    return freed("state", self)
  end
  local env = ffi.new("pgate_environment[1]")
  local percent = ffi.new("double[1]")
  local stage = ffi.new("uint64_t[1]")
  -- Read now, after the allocations above: a finalizer they ran may have freed the gate.
  local handle = self.handle
  if handle == nil then
    return freed("state", self)
  end
  local status = C.pgate_state(handle, env, percent, stage)
  if status ~= M.OK then
    return failure(status)
  end
  return { environment = M.environments[tonumber(env[0])], traffic_percent = percent[0],
           stage = tonumber(stage[0]) }
end

--- The SLO policy the gate judges with, as JSON (an SloConfig; durations in milliseconds).
function Gate:slo_json()
  if type(self) ~= "table" or self.handle == nil then
    return freed("slo_json", self)
  end
  return read_text(C.pgate_slo_json, self, "slo_json")
end

--- Replaces the SLO policy with a JSON SloConfig (missing fields take the defaults) and keeps
--- the gate's state: its stage, environment, flags, the outcomes in the window and the
--- rollback history. The judge uses the new policy from its next evaluation. Returns true, or
--- nil, message (naming the field and value), status; the gate is then unchanged. With a
--- state store the SLO stays this process's own: set it in every worker.
function Gate:swap_slo(json)
  if type(self) ~= "table" or self.handle == nil then
    return freed("swap_slo", self)
  elseif type(json) ~= "string" then
    return not_a_string("json", json)
  end
  return explained(C.pgate_swap_slo, self, "swap_slo", json, #json)
end

--- The number of the gate's newest state change (0 before the first), as a Lua number: one
--- atomic load in the library, cheap enough for every request. When it moves,
--- gate:changes_since(n) says what changed.
function Gate:change_count()
  if type(self) ~= "table" or self.handle == nil then
    return freed("change_count", self)
  end
  local count = self.count_buf
  if count == nil then
    count = ffi.new("uint64_t[1]")
    self.count_buf = count
  end
  -- Read now, after the allocation above: a finalizer it ran may have freed the gate.
  local handle = self.handle
  if handle == nil then
    return freed("change_count", self)
  end
  local status = C.pgate_change_count(handle, count)
  if status ~= M.OK then
    return failure(status)
  end
  return tonumber(count[0])
end

--- With a state store: the gate's sync thread reads the store at once rather than at its next
--- sync_interval_ms (pgate_sync_now), for a host told by its own means that another process
--- wrote. Returns true at once, having done no I/O (asks made before that read begins are
--- merged; gate:change_count() moves when it found a change); false without a store; or nil,
--- message, status.
function Gate:sync_now()
  return read_bool(self, "sync_now", C.pgate_sync_now)
end

--- The gate's kept changes numbered above `after` (the last 64 at most), oldest first, as the
--- JSON text of pgate_changes_json (LuaJIT has no JSON decoder: decode it with lua-cjson,
--- which OpenResty bundles, if you need a table). Each change has sequence, kind ("rollback",
--- "promotion", "flags" or "config"), origin ("this_gate" or "store"), stage, from, to,
--- at_ms, flags_enabled, flags_disabled, flags_unlisted and rollback (the event, with the
--- rules that fired, or null); a gap in the sequence numbers shows changes no longer kept.
--- `after` is a whole number from 0, below 2^53, or an int64_t or uint64_t cdata from 0, as
--- gate:promote_from's stage.
function Gate:changes_since(after)
  if type(self) ~= "table" or self.handle == nil then
    return freed("changes_since", self)
  end
  local above = whole_from_zero(after, 2 ^ 53)
  if above == nil then
    return invalid("invalid after = " .. refused_text(held_value(after)) .. ": a change number"
                     .. BELOW_2_53)
  end
  return read_text(function(gate, buf, cap, len)
    return C.pgate_changes_json(gate, above, buf, cap, len)
  end, self, "changes_since")
end

-- The state store (see docs/store.md): where a document's store keeps the state, its gate's
-- name and whether its store judges every process's outcomes, read before any gate is made,
-- whether an SLO document fits a config document, and whether a gate's store judges them.
cdef [[
pgate_status pgate_fleet_judging(const pgate_gate *gate, bool *fleet_judging);
pgate_status pgate_store_location(const char *config_json, size_t config_len, char *location,
                                  size_t cap, size_t *len_out, pgate_error **err);
pgate_status pgate_document_gate_name(const char *config_json, size_t config_len, char *name,
                                      size_t cap, size_t *len_out, pgate_error **err);
pgate_status pgate_document_fleet_judging(const char *config_json, size_t config_len,
                                          bool *fleet_judging, pgate_error **err);
pgate_status pgate_document_check_slo(const char *config_json, size_t config_len,
                                      const char *slo_json, size_t slo_len, pgate_error **err);
]]

--- Whether the gate's state store sums the outcomes every process records for the judge (the
--- store's fleet_judging, on unless the document turns it off); false for a gate without a
--- store (pgate_fleet_judging). A gate keeps the store it was opened with, so the answer never
--- changes. A host that pools its workers' outcomes itself (through a lua_shared_dict, say)
--- refuses a gate that answers true: every outcome would be counted once per worker. Or nil,
--- message, status.
function Gate:fleet_judging()
  return read_bool(self, "fleet_judging", C.pgate_fleet_judging)
end

-- Runs `read(c, config_json, length, err_box)` for a call that reads a config document alone
-- (pgate_store_location, pgate_document_*): a config_json neither a string nor nil is refused
-- first; nil is the default document (length 0).
local function from_document(config_json, read)
  if config_json ~= nil and type(config_json) ~= "string" then
    return not_a_string("config_json", config_json, true)
  end
  return read(lib(), config_json, config_json and #config_json or 0,
              ffi.new("pgate_error *[1]"))
end

-- The text the C function `name` (config_json, config_len, buf, cap, len_out, err) writes for
-- a document, first into `cap` bytes (see read_text), or nil, message, status.
local function document_text(config_json, name, cap)
  return from_document(config_json, function(c, doc, length, err)
    return read_text(function(_, buf, size, len)
      return c[name](doc, length, buf, size, len, err)
    end, nil, nil, cap, err)
  end)
end

--- Where a config document's state store keeps the gate's state, read from the document
--- alone: nothing is opened or created (pgate_store_location). "sqlite:" and the file path as
--- the document writes it (a relative path is opened against the working directory of the
--- process that opens the gate: nginx's, in OpenResty), "etcd:" and the key prefix, or "" for
--- a document without a store (its gate's state lives and dies with the gate); nil is the
--- default document. A host that refuses a relative path asks before pg.new creates the file:
---
---   local at = assert(pg.store_location(CONFIG_JSON))
---   if at:find("^sqlite:[^/]") then error("store.sqlite.path must be absolute: " .. at) end
---
--- A document pg.new refuses gives its error: nil, "PGATE_STATUS_INVALID_CONFIG: invalid
--- store.sqlite.sync_interval_ms = 5: ...", 3; all but one check that depends on the SLO,
--- which this function does not take: rollback_window_seconds against the SLO's
--- evaluation_interval_ms (at most a tenth of the window), which pg.new checks for the SLO it
--- is given (and pg.document_check_slo before any gate is made). So
--- {"rollback_window_seconds": 5} is read here, and pg.new refuses it with the default SLO (a
--- 1 s interval), accepts it with an interval of 500 ms or less.
function M.store_location(config_json)
  return document_text(config_json, "pgate_store_location", 256)
end

--- The gate name of a config document (its "gate", or "default" without one), read from the
--- document alone: nothing is opened or created (pgate_document_gate_name). What gate:name()
--- answers for the gate pg.new makes from it: a host that refuses two gates of one name (they
--- would share one state in a store) asks before pg.new writes the second's state there. nil
--- is the default document; a document pg.new refuses gives its error: nil, message, status,
--- all but the window against the SLO's evaluation_interval_ms, which depends on the SLO
--- pg.new is given and pg.new checks (see store_location).
function M.document_gate_name(config_json)
  -- PGATE_NAME_CAPACITY always holds the name: one call
  return document_text(config_json, "pgate_document_gate_name", M.NAME_CAPACITY)
end

--- Whether a config document's state store sums every process's outcomes for the judge (its
--- store's fleet_judging, on unless the document turns it off; false without a store), read
--- from the document alone: nothing is opened or created (pgate_document_fleet_judging). What
--- gate:fleet_judging() answers for the gate pg.new makes from it: a host that pools its
--- workers' outcomes itself refuses the document before pg.new writes its state into the
--- store. nil is the default document; a document pg.new refuses gives its error: nil,
--- message, status, all but the window against the SLO's evaluation_interval_ms, which
--- depends on the SLO pg.new is given and pg.new checks (see store_location).
function M.document_fleet_judging(config_json)
  return from_document(config_json, function(c, doc, length, err)
    local sums = ffi.new("bool[1]")
    local status = c.pgate_document_fleet_judging(doc, length, sums, err)
    if status ~= M.OK then
      return failure(status, err)
    end
    return sums[0]
  end)
end

--- Checks an SLO document against a config document as pg.new checks the pair, read from the
--- documents alone: nothing is opened or created (pgate_document_check_slo). Both documents
--- are validated, and the SLO's evaluation_interval_ms against the config's
--- rollback_window_seconds (at most a tenth of the window), the one check store_location,
--- document_gate_name and document_fleet_judging leave out, as they take no SLO. nil is the
--- default document. Returns true, or pg.new's error for the pair: nil, message, status. A
--- host that reads its configuration before its workers make their gates (init_by_lua) asks
--- this first, so a pair pg.new would refuse fails before any gate writes its state into a
--- store:
---
---   assert(pg.document_check_slo('{"rollback_window_seconds": 3600}',
---                                '{"evaluation_interval_ms": 60000}'))  -- true
---   pg.document_check_slo('{"rollback_window_seconds": 5}')  -- the default SLO's 1 s interval:
---   -- nil, "PGATE_STATUS_INVALID_CONFIG: invalid evaluation_interval_ms = 1000: at most a
---   -- tenth of rollback_window_seconds = 5, 500 ms: ...", 3
function M.document_check_slo(config_json, slo_json)
  if (config_json == nil or type(config_json) == "string")
      and slo_json ~= nil and type(slo_json) ~= "string" then
    return not_a_string("slo_json", slo_json, true) -- after config_json's, as pg.new
  end
  return from_document(config_json, function(c, doc, length, err)
    local status = c.pgate_document_check_slo(doc, length, slo_json, slo_json and #slo_json or 0,
                                              err)
    if status ~= M.OK then
      return failure(status, err)
    end
    return true
  end)
end

return M
