#!/usr/bin/env python3
"""Counts test results of one meson build: prints 'PASSED FAILED SKIPPED'.

meson's testlog.json has one line per test(); for gtest binaries
(protocol: 'gtest') the per-case results are in testlog.junit.xml, so a gtest
binary counts as its cases. A binary that died before writing its cases
counts as one failure.
"""
import json
import sys
import xml.etree.ElementTree as ET

build = sys.argv[1]
passed = failed = skipped = 0

cases = {}  # meson test name -> (passed, failed, skipped)
try:
    root = ET.parse(f"{build}/meson-logs/testlog.junit.xml").getroot()
    for suite in root.iter("testsuite"):
        name = suite.attrib.get("name", "")
        # "shmports.shmports:core / core_base.StatusTest" -> "shmports:core / core_base"
        if not name.startswith("shmports.") or name.count(".") < 2:
            continue
        test_name = name[len("shmports."):].rsplit(".", 1)[0]
        p, f, s = cases.get(test_name, (0, 0, 0))
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                f += 1
            elif case.find("skipped") is not None:
                s += 1
            else:
                p += 1
        cases[test_name] = (p, f, s)
except (OSError, ET.ParseError):
    pass

try:
    lines = open(f"{build}/meson-logs/testlog.json").read().splitlines()
except OSError:
    lines = []
for line in lines:
    t = json.loads(line)
    result = t.get("result", "")
    ok = result in ("OK", "EXPECTEDFAIL")
    if t["name"] in cases and sum(cases[t["name"]]) > 0:
        p, f, s = cases[t["name"]]
        if not ok and f == 0:
            f = 1  # Crashed or timed out after its last case.
        passed, failed, skipped = passed + p, failed + f, skipped + s
    elif ok:
        passed += 1
    elif result == "SKIP":
        skipped += 1
    else:
        failed += 1
print(passed, failed, skipped)
