"""A Python host of an installed promotion-gates wheel: ``route.py GATE PERCENT ID`` routes one
request on a canary of PERCENT % and prints "canary BUCKET" or "stable BUCKET", then where the
library was loaded from."""

import sys

import promotion_gates


def main(gate_name: str, percent: str, request_id: str) -> None:
    config = {"gate": gate_name, "environment": {"canary": {"traffic_percent": float(percent)}}}
    with promotion_gates.Gate(config) as gate:
        decision = gate.route(request_id)
    print("canary" if decision.is_canary else "stable", decision.bucket)
    print(promotion_gates.library_path(), file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:])
