#!/usr/bin/env python3
"""Writes routing.json, the routing test vectors every language's tests read.

The expected values come from the formula alone (Python's hashlib and integers), never from
the Rust code, so that a test against these vectors checks the implementation rather than
itself. Standard library only; the output is the same byte for byte on every run.

    python3 tests/vectors/generate.py           # rewrite routing.json
    python3 tests/vectors/generate.py --check   # exit 1 if routing.json is not up to date
"""

import hashlib
import json
import math
import pathlib
import sys

FORMAT_VERSION = 1
BUCKETS = 10_000_000
BUCKETS_PER_PERCENT = 100_000.0
OUTPUT = pathlib.Path(__file__).with_name("routing.json")

FORMULA = [
    "salt_block = SHA-256(salt) || 32 zero bytes                 (exactly one 64-byte block)",
    "digest     = SHA-256(salt_block || request_id)",
    "x          = first 8 bytes of digest, read as a big-endian u64",
    "bucket     = floor(x * 10_000_000 / 2^64)                    (0 ..= 9_999_999)",
    "threshold  = round_half_away_from_zero(traffic_percent * 100_000)   (0 ..= 10_000_000)",
    "canary     = bucket < threshold",
]

RULES = {
    "salt": (
        "The UTF-8 bytes of the string. It is the config's `salt`, or its `gate` when no salt "
        "is set (the default gate is \"default\"). Every salt here is 1 to 128 bytes without "
        "whitespace or control characters, as configs require."
    ),
    "request_id": (
        "Each vector has exactly one of `id`, `id_hex` and `id_rule`. `id`: the UTF-8 bytes of "
        "the string. `id_hex`: the bytes written in lower-case hex, often not valid UTF-8. "
        "`id_rule` {\"repeat\": s, \"length\": n}: the UTF-8 bytes of s written end to end as "
        "often as needed and cut to exactly n bytes; the cut may split a multi-byte character, "
        "so pass the result on as bytes."
    ),
    "traffic_percent": (
        "A JSON number read as an IEEE-754 double. threshold = the double product "
        "traffic_percent * 100000.0, rounded to the nearest integer with ties away from zero, "
        "clamped to 0 ..= 10000000. The numbers are written in their shortest round-trip form."
    ),
    "expected": (
        "`bucket` and `threshold` as defined above, `is_canary` = bucket < threshold, and "
        "`digest_prefix`: x (the first 8 digest bytes) in hex, to find where a failing "
        "implementation goes wrong."
    ),
    "overridden": (
        "Each vector routes as expected through a gate without overrides and again through a "
        "gate whose config also holds the header's `overridden.overrides` section (a header, a "
        "cookie and id lists that name none of the vectors' ids, so routing takes the override "
        "path): once with no forcing value, once with the forcing value "
        "`overridden.ignored_value` (UTF-8 bytes), which forces nothing: it is ignored (and "
        "counted as ignored). Both give the vector's `bucket`, `threshold` and `is_canary`, and a decision not forced "
        "(forced none)."
    ),
}

# The override section of the `overridden` rule: its ids are none of the vectors' ids (the
# generator checks), and the ignored value is neither `canary` nor `stable` in any case.
OVERRIDDEN = {
    "overrides": {"header": "X-Canary", "cookie": "canary",
                  "canary_ids": ["listed-canary-1", "listed-canary-2"],
                  "stable_ids": ["listed-stable-1"]},
    "ignored_value": "maybe",
}

PERCENTS = [0.0, 0.00001, 0.001, 0.01, 0.1, 1.0, 5.0, 12.345678, 25.0, 50.0, 99.99999, 100.0]

SALT_128 = ("eu-west-1/checkout/v2:" * 6)[:128]
SALTS = ["default", "checkout", "a", SALT_128, "café-☕-gate", "search/v2:eu-west-1"]

UUID = "3f2b8c1e-9d4a-4e6b-8f7a-1c2d3e4f5a6b"

# Ids found by a one-off scan of "probe-0", "probe-1", ... under the salt "default": each
# lands in the bucket named, just below or at the threshold of a fixed percentage. The
# generator recomputes every bucket and refuses to write if one of these does not hold.
PROBES = [
    ("probe-9405825", 0, [0.0, 0.00001]),
    ("probe-13748353", 1, [0.00001]),
    ("probe-6002340", 99, [0.001]),
    ("probe-7125311", 100, [0.001]),
    ("probe-3758246", 2_499_999, [25.0]),
    ("probe-17866070", 2_500_000, [25.0]),
    ("probe-36415801", 4_999_999, [50.0]),
    ("probe-7670623", 5_000_000, [50.0]),
    ("probe-21543356", 9_999_998, [99.99999]),
    ("probe-7149125", 9_999_999, [99.99999, 100.0]),
]


def salt_block(salt: bytes) -> bytes:
    return hashlib.sha256(salt).digest() + bytes(32)


def digest_prefix(salt: bytes, request_id: bytes) -> int:
    digest = hashlib.sha256(salt_block(salt) + request_id).digest()
    return int.from_bytes(digest[:8], "big")


def bucket_of(salt: bytes, request_id: bytes) -> int:
    return digest_prefix(salt, request_id) * BUCKETS >> 64


def threshold_for_percent(percent: float) -> int:
    assert 0.0 <= percent <= 100.0, percent
    scaled = percent * BUCKETS_PER_PERCENT
    whole = math.floor(scaled)
    # For a non-negative double below 2^52, scaled - floor(scaled) is exact.
    if scaled - whole >= 0.5:
        whole += 1
    return min(max(whole, 0), BUCKETS)


def expand_rule(rule: dict) -> bytes:
    unit = rule["repeat"].encode("utf-8")
    length = rule["length"]
    return (unit * (length // len(unit) + 1))[:length]


def rule(repeat: str, length: int) -> dict:
    return {"id_rule": {"repeat": repeat, "length": length}}


def id_bytes(spec: dict) -> bytes:
    if "id" in spec:
        return spec["id"].encode("utf-8")
    if "id_hex" in spec:
        return bytes.fromhex(spec["id_hex"])
    return expand_rule(spec["id_rule"])


def text_of_length(n: int) -> str:
    """An ASCII id of exactly n bytes that says its own length."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    text = f"len{n}-" + alphabet * (n // len(alphabet) + 1)
    return text[:n]


def percent_for_threshold(threshold: int) -> float:
    """The shortest percentage whose threshold is exactly `threshold`."""
    percent = float(f"{threshold / BUCKETS_PER_PERCENT:.5f}")
    assert threshold_for_percent(percent) == threshold, (threshold, percent)
    return percent


def percent_label(percent: float) -> str:
    """A percentage as vector names write it: 25, 1e-05, 99.99999."""
    text = repr(percent)
    return text[:-2] if text.endswith(".0") else text


def first_canary(salt: str, prefix: str, percent: float) -> str:
    """The first id prefix0, prefix1, ... that a gate at `percent` sends to the canary."""
    threshold = threshold_for_percent(percent)
    i = 0
    while bucket_of(salt.encode("utf-8"), f"{prefix}{i}".encode("utf-8")) >= threshold:
        i += 1
    return f"{prefix}{i}"


class Vectors:
    def __init__(self):
        self.items = []
        self.names = set()

    def add(self, name: str, salt: str, spec: dict, percent: float) -> dict:
        assert name not in self.names, f"duplicate vector name {name}"
        encoded_salt = salt.encode("utf-8")
        assert 1 <= len(encoded_salt) <= 128 and not any(c.isspace() for c in salt), salt
        self.names.add(name)
        request_id = id_bytes(spec)
        bucket = bucket_of(encoded_salt, request_id)
        threshold = threshold_for_percent(percent)
        vector = {"name": name, "salt": salt, **spec, "traffic_percent": percent,
                  "bucket": bucket, "threshold": threshold, "is_canary": bucket < threshold,
                  "digest_prefix": f"{digest_prefix(encoded_salt, request_id):016x}"}
        self.items.append(vector)
        return vector


def build_vectors() -> list:
    v = Vectors()

    # SHA-256 padding edges: the id follows the 64-byte salt block, so ids of 55 bytes fit one
    # more block with their padding, 56..63 need two, 64 fills a block exactly, and so on.
    for length in [0, 1, 54, 55, 56, 63, 64, 65, 119, 120]:
        for salt, percent in [("default", 25.0), ("checkout", 50.0)]:
            v.add(f"length-{length:03}-{salt}-{percent_label(percent)}", salt,
                  {"id": text_of_length(length)}, percent)

    for salt, percent in [("default", 5.0), ("checkout", 12.345678), ("a", 50.0)]:
        v.add(f"uuid-{salt}-{percent_label(percent)}", salt, {"id": UUID}, percent)

    # Kilobyte ids written as rules ("ü" cut at an odd length ends in half a character), ids
    # that are not UTF-8 (lone and truncated sequences, a surrogate, an overlong form, NUL),
    # and multi-byte UTF-8 ids.
    for name, spec, salt, percent in [
        ("rule-1000-bytes-abc", rule("abc", 1000), "default", 25.0),
        ("rule-1024-bytes-digits", rule("0123456789", 1024), SALT_128, 99.99999),
        ("rule-4096-bytes-user-42", rule("user-42/", 4096), "checkout", 50.0),
        ("rule-1023-bytes-half-u-umlaut", rule("ü", 1023), "café-☕-gate", 50.0),
        ("rule-3000-bytes-cjk", rule("用户", 3000), "search/v2:eu-west-1", 12.345678),
        ("bytes-ff", {"id_hex": "ff"}, "default", 50.0),
        ("bytes-fffe00", {"id_hex": "fffe00"}, "checkout", 50.0),
        ("bytes-lone-lead-c3", {"id_hex": "c3"}, "default", 25.0),
        ("bytes-lone-continuation-80", {"id_hex": "80"}, "a", 50.0),
        ("bytes-nul", {"id_hex": "00"}, "default", 50.0),
        ("bytes-surrogate-eda080", {"id_hex": "eda080"}, "search/v2:eu-west-1", 50.0),
        ("bytes-overlong-c0af", {"id_hex": "c0af"}, "café-☕-gate", 25.0),
        ("bytes-deadbeef", {"id_hex": "deadbeef"}, SALT_128, 5.0),
        ("bytes-64-bytes-00-to-3f", {"id_hex": bytes(range(64)).hex()}, "default", 50.0),
        ("bytes-56-bytes-ff", {"id_hex": "ff" * 56}, "checkout", 99.99999),
        ("utf8-u-umlaut", {"id": "ü"}, "default", 50.0),
        ("utf8-cjk", {"id": "用户-42"}, "checkout", 50.0),
        ("utf8-emoji", {"id": "😀-session"}, "default", 25.0),
        ("utf8-greek-german", {"id": "Ωmega-straße"}, "café-☕-gate", 50.0),
        ("utf8-combining", {"id": "nai\u0308ve-cafe\u0301"}, "a", 12.345678),
    ]:
        v.add(name, salt, spec, percent)

    for i, salt in enumerate(SALTS):
        v.add(f"salt-{i}-{len(salt.encode('utf-8'))}-bytes", salt,
              {"id": "user-12345-session"}, 50.0)

    for salt, request_id in [("default", "user-session-123"), ("checkout", "user-7")]:
        for percent in PERCENTS:
            name = f"sweep-{request_id}-{salt}-{percent_label(percent)}"
            v.add(name, salt, {"id": request_id}, percent)

    # Canaries at small percentages, found by a short search at generation time.
    for percent in [0.001, 0.01, 0.1, 1.0]:
        request_id = first_canary("default", "user-", percent)
        name = f"small-canary-{percent_label(percent)}"
        vector = v.add(name, "default", {"id": request_id}, percent)
        assert vector["is_canary"]

    # Fixed percentages with ids just below and exactly at their thresholds.
    for request_id, bucket, percents in PROBES:
        for percent in percents:
            vector = v.add(f"probe-bucket-{bucket}-at-{percent_label(percent)}", "default",
                           {"id": request_id}, percent)
            assert vector["bucket"] == bucket, (request_id, vector["bucket"], bucket)

    # Rounding of the threshold: ties go away from zero (5e-06 -> 0.5 -> 1, where ties to even
    # would give 0), and the product is a double (3.5e-05 * 100000.0 = 3.4999999999999996 -> 3,
    # where decimal arithmetic would give 4).
    for percent, request_id, threshold in [
        (5e-06, "probe-9405825", 1),
        (2.5e-05, "probe-13748353", 3),
        (3.5e-05, "probe-13748353", 3),
    ]:
        name = f"rounding-{percent_label(percent)}"
        vector = v.add(name, "default", {"id": request_id}, percent)
        assert vector["threshold"] == threshold and vector["is_canary"], vector

    # Percentages fitted to an id's bucket: bucket == threshold - 1 (canary) and
    # bucket == threshold (stable), for ids of every kind.
    for label, salt, spec in [
        ("uuid", "default", {"id": UUID}),
        ("empty", "checkout", {"id": ""}),
        ("length-64", "a", {"id": text_of_length(64)}),
        ("bytes-ff", SALT_128, {"id_hex": "ff"}),
        ("rule-4096", "search/v2:eu-west-1", rule("user-42/", 4096)),
        ("emoji", "café-☕-gate", {"id": "😀-session"}),
    ]:
        bucket = bucket_of(salt.encode("utf-8"), id_bytes(spec))
        assert 0 < bucket < BUCKETS - 1
        below = v.add(f"edge-{label}-canary", salt, spec, percent_for_threshold(bucket + 1))
        at = v.add(f"edge-{label}-stable", salt, spec, percent_for_threshold(bucket))
        assert below["is_canary"] and not at["is_canary"]

    return v.items


def salt_known_answers() -> list:
    answers = []
    for salt in ["default", "checkout", "café-☕-gate"]:
        block = salt_block(salt.encode("utf-8"))
        answers.append({"salt": salt, "salt_sha256": block[:32].hex(),
                        "salt_block_sha256": hashlib.sha256(block).hexdigest()})
    return answers


def render() -> str:
    vectors = build_vectors()
    assert 60 <= len(vectors) <= 120, len(vectors)
    overrides = OVERRIDDEN["overrides"]
    listed = {i.encode("utf-8") for i in overrides["canary_ids"] + overrides["stable_ids"]}
    assert not listed & {id_bytes(v) for v in vectors}, "a vector's id is listed"
    assert OVERRIDDEN["ignored_value"].lower() not in ("canary", "stable")
    header = {
        "format_version": FORMAT_VERSION,
        "description": "Routing decisions of promotion-gates, computed from the formula alone "
                       "by tests/vectors/generate.py. Do not edit by hand.",
        "formula": FORMULA,
        "rules": RULES,
        "overridden": OVERRIDDEN,
        "salt_block_sha256": salt_known_answers(),
    }
    header_text = json.dumps(header, indent=2, ensure_ascii=False)
    lines = ",\n".join("    " + json.dumps(v, ensure_ascii=False) for v in vectors)
    return f'{{\n  "header": {header_text.replace(chr(10), chr(10) + "  ")},\n' \
           f'  "vectors": [\n{lines}\n  ]\n}}\n'


def main() -> int:
    text = render()
    json.loads(text)  # the hand-joined layout must still be JSON
    if sys.argv[1:] == ["--check"]:
        if OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is stale: run {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8", newline="\n")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
