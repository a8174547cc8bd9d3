#!/usr/bin/env python3
"""Writes the named seeds of operation_sequences (fuzz/seeds/operation_sequences/<name>):
   python3 fuzz/operation_sequences_seeds.py
Each seed is an `Input` of fuzz_targets/operation_sequences.rs encoded as arbitrary 1.5's
derive reads it: an integer is its little-endian bytes, a bool one byte (its low bit), an
enum's variant a u32 tag t read as (t * count) >> 32, a Vec a true byte before each element
and a false one after the last (the last field, `ops`, ends with the input instead). A new
operation kind changes the count of kinds, so every tag: add it to OPS (and COUNTS) in the
order of the enum, then run this again. Run the seeds as .ci/fuzz does to check they still
earn their promotions.
"""
import os
import struct
COUNTS = {"Op": 23, "Edit": 12, "SloEdit": 5, "Forcing": 4, "Percent": 2, "Name": 2}
OPS = ["Route", "Record", "RecordForged", "RecordById", "Traffic", "Promote", "Rollback",
       "Enable", "Disable", "IsEnabled", "SwapConfig", "MonitorHealth", "CheckSlo",
       "RouteForced", "RecordByIdForced", "RecordAbandoned", "RouteRaw", "RecordRaw",
       "PromoteFrom", "SwapConfigFrom", "SwapSlo", "ReadHealth", "Metrics"]
def tag(enum, i):
    n = COUNTS[enum]
    t = ((2 * i + 1) << 32) // (2 * n)
    assert (t * n) >> 32 == i
    return struct.pack("<I", t)
u8 = lambda v: bytes([v])
u16 = lambda v: struct.pack("<H", v)
u64 = lambda v: struct.pack("<Q", v)
b = lambda v: bytes([1 if v else 0])
def vec(items):  # items: list of encoded bytes
    return b"".join(b"\x01" + x for x in items) + b"\x00"
def op(name, *fields):
    return tag("Op", OPS.index(name)) + b"".join(fields)
def whole(p): return tag("Percent", 0) + u8(p)
def pool(i): return tag("Name", 0) + u8(i)
def forcing(kind, arg=0):
    k = ["Absent", "Canary", "Stable", "Raw"].index(kind)
    if kind == "Absent": return tag("Forcing", 0)
    if kind == "Raw": return tag("Forcing", 3) + vec([u8(x) for x in arg])
    return tag("Forcing", k) + u8(arg)
def overrides(header, cookie, canary, stable):
    return tag("Edit", 11) + b(header) + b(cookie) + vec([u8(x) for x in canary]) + vec([u8(x) for x in stable])
def slo_edit(kind, v):
    k = ["MinSamples", "LatencyTargetMs", "MaxErrorRate", "EvaluationIntervalMs"].index(kind)
    enc = {0: u8, 1: u16, 2: lambda x: struct.pack("<d", x), 3: u16}[k]
    return tag("SloEdit", k) + enc(v)
def inp(start, ops):  # the last field: elements each after a true, to the end
    return u8(start) + b"".join(b"\x01" + o for o in ops)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "operation_sequences")
ok_traffic = op("Traffic", u8(200), b(True), u16(1))
bad_traffic = op("Traffic", u8(200), b(False), u16(1))
seeds = {
  "promoted_to_staging": inp(10, [ok_traffic, op("Promote", u8(1), whole(0))]),
  "promoted_to_production": inp(10, [ok_traffic, op("Promote", u8(1), whole(0)), ok_traffic,
                                     op("Promote", u8(2), whole(0))]),
  "flag_turned_on_after_a_failing_stage": inp(50, [op("Traffic", u8(40), b(True), u16(1)),
      op("Traffic", u8(6), b(False), u16(1)), op("Enable", pool(1))]),
  "refused_promotion_rolled_back": inp(50, [op("Traffic", u8(40), b(True), u16(1)),
      op("Traffic", u8(6), b(False), u16(1)), op("Promote", u8(1), whole(0))]),
  "overrides_forced": inp(10, [
      op("SwapConfig", overrides(True, False, [1, 2], [3])),
      op("RouteForced", u8(1), forcing("Absent")),
      op("RouteForced", u8(3), forcing("Canary", 0)),
      op("RouteForced", u8(5), forcing("Canary", 0b101)),
      op("RouteForced", u8(6), forcing("Stable", 0)),
      op("RouteForced", u8(7), forcing("Raw", b"beta")),
      op("Record", u8(2), b(True), u16(1)),
      op("RecordByIdForced", u8(5), forcing("Canary", 0), b(True), u16(1)),
      op("RecordByIdForced", u8(1), forcing("Absent"), b(False), u16(1)),
      op("RecordByIdForced", u8(9), forcing("Raw", b"x"), b(True), u16(1)),
      op("RecordAbandoned", u8(1), u16(500)),
      op("RecordAbandoned", u8(3), u16(50)),
      op("RecordAbandoned", u8(2), u16(100)),
      op("ReadHealth"),
      op("Metrics", u64(1), u64(2), u64(3), u64(1 << 60)),
  ]),
  "from_writes": inp(10, [ok_traffic,
      op("PromoteFrom", u8(1), u8(1), whole(0)),
      op("SwapConfigFrom", u8(1), tag("Edit", 8) + b(True)),
      op("SwapConfigFrom", u8(0), tag("Edit", 8) + b(True)),
      op("PromoteFrom", u8(0), u8(1), whole(0)),
      op("Metrics", u64(0), u64(0), u64(0), u64(0)),
  ]),
  "metrics_after_rollback": inp(10, [ok_traffic,
      op("Metrics", u64(0), u64(0), u64(0), u64(0)),
      op("Rollback", pool(0)),
      op("Metrics", u64(0), u64(0), u64(0), u64(0)),
      op("Metrics", u64(0), u64(0), u64(0), u64(0)),
      op("Promote", u8(0), whole(20)),
      op("Rollback", tag("Name", 1) + vec([u8(x) for x in b"bad\ndeploy\x1b[0m"])),
  ]),
  "slo_swap_and_raw_records": inp(10, [ok_traffic,
      op("SwapSlo", slo_edit("MinSamples", 10)),
      op("SwapSlo", slo_edit("LatencyTargetMs", 50)),
      op("SwapSlo", slo_edit("MinSamples", 1)),
      op("RouteRaw", vec([u8(x) for x in b"a\nb\xff\"\\'\x00\xe2\x80\x8b"])),
      op("RouteRaw", vec([u8(x) for x in ("\u00e9" * 100).encode()])),
      op("RecordRaw", vec([u8(x) for x in b"r\r\t"]), b(True), u64(2**64 - 1)),
      op("RecordRaw", vec([]), b(False), u64(0)),
      op("ReadHealth"),
      op("Metrics", u64(0), u64(0), u64(0), u64(0)),
  ]),
}
for name, data in seeds.items():
    open(os.path.join(OUT, name), "wb").write(data)
    print(name, len(data))
