#!/usr/bin/env python3
"""count_cases.py - sums the closing "N passed, N failed, N skipped" lines that
every test program prints, over the meson test logs given, and prints the
total as one line. A test program that crashed before its closing line
counts as one failed case. Exits 1 if anything failed."""
import json
import re
import sys

CLOSING = re.compile(r"^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$", re.M)

passed = failed = skipped = 0
for path in sys.argv[1:]:
    with open(path) as log:
        for line in log:
            test = json.loads(line)
            matches = CLOSING.findall(test.get("stdout", ""))
            if matches:
                p, f, s = matches[-1]
                passed += int(p)
                failed += int(f)
                skipped += int(s or 0)
            if test.get("result") != "OK" and (not matches or int(matches[-1][1]) == 0):
                failed += 1  # crashed, timed out, or exited non-zero without saying why
                print(f"{path}: {test.get('name')}: {test.get('result')}", file=sys.stderr)
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
