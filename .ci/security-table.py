#!/usr/bin/env python3
"""The README's table of bad inputs names a test in each row; every one must exist.

A row whose test was renamed or removed would otherwise keep promising a behaviour nothing checks.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SECTION = "### Bad input and what happens"
MIN_ROWS = 40

readme = (ROOT / "README.md").read_text()
start = readme.find(SECTION)
if start < 0:
    sys.exit(f"README.md: no section {SECTION!r}")
body = readme[start + len(SECTION):]
next_heading = re.search(r"^#{2,3} ", body, re.M)
if next_heading:
    body = body[: next_heading.start()]

rows = [line for line in body.splitlines() if line.startswith("| ") and "`" in line.split("|")[-2]]
problems = []
for line in rows:
    cell = line.split("|")[-2]
    found = re.fullmatch(r"\s*`([a-z0-9_]+)` \(([^)]+)\)\s*", cell)
    if not found:
        problems.append(f"a row's test cell is not `name` (path): {cell.strip()}")
        continue
    name, path = found.groups()
    source = ROOT / path
    if not source.is_file():
        problems.append(f"{path}: no such file (test {name})")
    elif not re.search(rf"\bfn {name}\b", source.read_text()):
        problems.append(f"{path}: no test named {name}")
if len(rows) < MIN_ROWS:
    problems.append(f"the table has {len(rows)} rows; it should list at least {MIN_ROWS} kinds of bad input")
for problem in problems:
    print(f"README.md {SECTION!r}: {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
