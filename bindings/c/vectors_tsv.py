#!/usr/bin/env python3
"""Converts tests/vectors/routing.json into a line format that C and Lua read without a JSON
parser. The first line holds the header's `overridden` rule, three tab-separated fields,

    overridden  overrides  ignored_value

`overrides` the section as one line of JSON, `ignored_value` the forcing value as text. Then
one vector a line, seven tab-separated fields,

    name  salt  id_hex  traffic_percent  bucket  threshold  is_canary

`id_hex` is the request id's bytes in lower-case hex (empty for the empty id), after expanding
`id` (UTF-8) and `id_rule` (`repeat` written end to end, cut to `length` bytes) as the file's
header states. `traffic_percent` is Python's repr of the double (shortest round-trip form), so
strtod reads back the same double. `is_canary` is 1 or 0. Standard library only.

Usage: vectors_tsv.py routing.json > routing.tsv
"""

import json
import sys


def id_bytes(vector):
    kinds = [k for k in ("id", "id_hex", "id_rule") if k in vector]
    if len(kinds) != 1:
        raise ValueError(f"{vector['name']}: exactly one of id, id_hex, id_rule expected")
    if "id" in vector:
        return vector["id"].encode("utf-8")
    if "id_hex" in vector:
        return bytes.fromhex(vector["id_hex"])
    rule = vector["id_rule"]
    unit = rule["repeat"].encode("utf-8")
    length = rule["length"]
    return (unit * (length // len(unit) + 1))[:length]


def field(text):
    if any(c in text for c in "\t\n\r"):
        raise ValueError(f"field {text!r} holds a tab or newline")
    return text


def main(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if doc["header"]["format_version"] != 1:
        raise ValueError("unknown format_version")
    out = sys.stdout.buffer
    overridden = doc["header"]["overridden"]
    overrides = json.dumps(overridden["overrides"], ensure_ascii=False, separators=(",", ":"))
    row = ["overridden", field(overrides), field(overridden["ignored_value"])]
    out.write("\t".join(row).encode("utf-8") + b"\n")
    for v in doc["vectors"]:
        row = [
            field(v["name"]),
            field(v["salt"]),
            id_bytes(v).hex(),
            repr(float(v["traffic_percent"])),
            str(v["bucket"]),
            str(v["threshold"]),
            "1" if v["is_canary"] else "0",
        ]
        out.write("\t".join(row).encode("utf-8") + b"\n")
    print(f"{len(doc['vectors'])} vectors", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
