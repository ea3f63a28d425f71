# check_jsonl.py METRICS.jsonl GROUP... - every line of a metrics.jsonl is a
# JSON object with the fields and types of docs/metrics.md; every group
# named has records, with iterations increasing and counters not falling.
import json, sys

NUMBER = (int, float)
ALL = ["time", "iteration", "iterations_total", "ranks", "images_per_second", "iteration_seconds",
       "busy_seconds", "idle_seconds", "busy_fraction", "eta_seconds", "images_total",
       "busy_seconds_total", "idle_seconds_total", "data_errors_total", "imbalance", "balancer_moves_total"]
STUDENT = ["bytes_received", "loss", "dino_local", "dino_global", "ibot", "koleo", "lr", "bytes_received_total"]
TEACHER = ["bytes_sent", "bytes_sent_total", "teacher_heads_random"]
COUNTERS = ["images_total", "busy_seconds_total", "idle_seconds_total", "data_errors_total", "balancer_moves_total"]

path, groups = sys.argv[1], sys.argv[2:]
last = {}
with open(path) as f:
    for n, line in enumerate(f, 1):
        r = json.loads(line)
        where = f"{path}:{n}"
        assert isinstance(r.get("group"), str), f"{where}: group is not a string"
        assert r.get("role") in ("teacher", "student"), f"{where}: role {r.get('role')!r}"
        mine, other = (TEACHER, STUDENT) if r["role"] == "teacher" else (STUDENT, TEACHER)
        expected = set(["group", "role"] + ALL + STUDENT + TEACHER)
        assert set(r) == expected, f"{where}: fields {sorted(set(r) ^ expected)} differ"
        for k in ALL + mine:
            assert isinstance(r[k], NUMBER) and not isinstance(r[k], bool), f"{where}: {k} = {r[k]!r} is not a number"
            assert r[k] >= 0, f"{where}: {k} = {r[k]} is negative"
        for k in other:
            assert r[k] is None, f"{where}: {k} should be null for a {r['role']}"
        assert 0 <= r["busy_fraction"] <= 1, f"{where}: busy_fraction {r['busy_fraction']}"
        prev = last.get(r["group"])
        if prev:
            assert r["iteration"] > prev["iteration"], f"{where}: iteration did not increase"
            for k in COUNTERS:
                assert r[k] >= prev[k], f"{where}: counter {k} fell"
        last[r["group"]] = r
missing = [g for g in groups if g not in last]
assert not missing, f"no records of {missing} (found {sorted(last)})"
print(f"{n} records, groups {sorted(last)}")
