#!/usr/bin/env python3
"""Checks a JSON file with a Python expression, for the shell smoke tests.

Usage: json_check.py FILE EXPR [NAME=VALUE ...]
       json_check.py --print FILE EXPR [NAME=VALUE ...]

EXPR sees the document as `d`, each NAME as a string, `re`, and
`rows(subject)`: the summary rows of one subject. Without --print the exit status is 0 when
EXPR is true and 1 otherwise (2 when the file is not JSON). With --print the
value is printed: JSON for lists and dicts, one item per line for a list of
strings given with --lines. python3 comes with meson, so a fresh machine
that ran the install line has it (jq is not on that line).
"""
import json
import re
import sys


def main(argv):
    mode = "check"
    if argv and argv[0] in ("--print", "--lines"):
        mode = argv.pop(0)
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, expr = argv[0], argv[1]
    names = dict(arg.split("=", 1) for arg in argv[2:])
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        print(f"json_check: {path}: {e}", file=sys.stderr)
        return 2

    def rows(subject):
        return [r for r in d.get("summary", []) if r.get("subject") == subject]

    # Names go in the globals: a generator in EXPR sees only those.
    scope = {"d": d, "rows": rows, "re": re}
    scope.update(names)
    # Parenthesised, so that EXPR may span lines like a shell argument.
    value = eval("(" + expr + "\n)", scope)
    if mode == "--print":
        print(json.dumps(value, separators=(",", ":"))
              if isinstance(value, (list, dict)) else value)
        return 0
    if mode == "--lines":
        for item in value:
            print(item)
        return 0
    return 0 if value else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
