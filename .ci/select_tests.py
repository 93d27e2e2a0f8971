#!/usr/bin/env python3
"""Prints the thread-only tests of a configured build: one line with the
ninja targets to build, one line with the test names. A thread-only test is
in suite 'threads' or has a name ending in '_threads' (TSan cannot follow
forked children, so only these run under it)."""
import json
import os
import subprocess
import sys

build = sys.argv[1]
tests = json.loads(subprocess.check_output(["meson", "introspect", "--tests", build]))
chosen = [t for t in tests
          if "shmports:threads" in t.get("suite", []) or t["name"].endswith("_threads")]
targets = sorted({os.path.relpath(t["cmd"][0], os.path.abspath(build)) for t in chosen})
print(" ".join(targets))
print(" ".join(t["name"] for t in chosen))
