#!/usr/bin/env python3
"""Fails when a function in crates/ runs past 120 lines (its signature to its closing brace), or
when code allows clippy's `too_many_arguments`.

A function that long does several things; it becomes named steps. Arguments that travel together
become a type. Comments, strings and char literals are left out when braces are counted, so a
`{` inside them does not count.

Usage: function-length.py [LIMIT]   (default 120)
"""

import pathlib
import re
import sys

FN = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)")
LITERALS = re.compile(r'//[^\n]*|r(#*)".*?"\1|b?"(?:\\.|[^"\\])*"|' + r"b?'(?:\\.|[^'\\])'")


def code_only(line: str) -> str:
    return LITERALS.sub('""', line)


def long_functions(path: pathlib.Path, limit: int):
    lines = path.read_text().splitlines()
    for start, line in enumerate(lines):
        found = FN.match(line)
        if not found:
            continue
        depth, opened = 0, False
        for end in range(start, len(lines)):
            code = code_only(lines[end])
            if not opened and code.rstrip().endswith(";"):
                break  # a declaration without a body (a trait's)
            for char in code:
                if char == "{":
                    depth, opened = depth + 1, True
                elif char == "}":
                    depth -= 1
            if opened and depth <= 0:
                length = end - start + 1
                if length > limit:
                    yield found.group(1), start + 1, length
                break


def main() -> int:
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 120
    root = pathlib.Path(__file__).resolve().parent.parent
    failures = [
        f"{path.relative_to(root)}:{line}: `{name}` is {length} lines (at most {limit})"
        for path in sorted((root / "crates").rglob("*.rs"))
        if "target" not in path.parts
        for name, line, length in long_functions(path, limit)
    ]
    failures += [
        f"{path.relative_to(root)}: allows too_many_arguments; group the arguments into a type"
        for path in sorted((root / "crates").rglob("*.rs"))
        if "too_many_arguments" in path.read_text()
    ]
    for failure in failures:
        print(failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
