"""A Python host of an installed promotion-gates wheel: ``route.py GATE PERCENT ID`` routes one
request on a canary of PERCENT % and prints "canary BUCKET" or "stable BUCKET", then on
standard error the name or path the package loaded the library by (``library_path()``) and
the file the process mapped (``/proc/self/maps``: the file a name given to the system loader
resolved to, which packaging/test.sh compares with the one it expects)."""

import sys

import promotion_gates


def mapped_library() -> str:
    """The path of the promotion-gates library this process mapped, or "none"."""
    with open("/proc/self/maps", encoding="utf-8", errors="surrogateescape") as maps:
        for line in maps:
            fields = line.rstrip("\n").split(maxsplit=5)
            if len(fields) == 6 and "libpromotion_gates_ffi" in fields[5].rsplit("/", 1)[-1]:
                return fields[5]
    return "none"


def main(gate_name: str, percent: str, request_id: str) -> None:
    config = {"gate": gate_name, "environment": {"canary": {"traffic_percent": float(percent)}}}
    with promotion_gates.Gate(config) as gate:
        decision = gate.route(request_id)
    print("canary" if decision.is_canary else "stable", decision.bucket)
    print(promotion_gates.library_path(), file=sys.stderr)
    print(mapped_library(), file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:])
