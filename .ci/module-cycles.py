#!/usr/bin/env python3
"""Fails when the modules of any crate import each other in a circle.

A module is one source file (an inline `#[cfg(test)] mod tests` is a module of its own). An edge A -> B is any `crate::…` or `super::…` path in A (a `use`
or a path in code, tests included) that names an item of B. Paths into a parent module that only
re-exports (`pub use child::Item`) are followed to the child, so re-exports make no edges of
their own. `mod x;` declarations are not edges: a parent owning a child is not an import.

Usage: module-cycles.py [CRATE_SRC_DIR ...]   (default: every crates/*/src and tests/support)
"""

import pathlib
import re
import sys

PATH = re.compile(r"\b(crate|super)((?:::\s*[A-Za-z_][A-Za-z0-9_]*)+)")
# `use` groups: `use crate::a::{b, c::d}`
USE_GROUP = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^{}]*)\}")
PUB_USE = re.compile(r"\bpub(?:\([^)]*\))?\s+use\s+(?:self::)?([A-Za-z_][A-Za-z0-9_]*)::(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)")
INLINE_TESTS = re.compile(r"#\[cfg\(test\)\]\s*mod\s+([a-z_]+)\s*\{")
# One pass, so `//` inside a string is not a comment and quotes inside comments do not count.
TOKENS = re.compile(
    r'//[^\n]*|/\*.*?\*/|r(#*)".*?"\1|b?"(?:\\.|[^"\\])*"|' + r"b?'(?:\\.|[^'\\])'",
    re.S,
)


def strip_literals(text: str) -> str:
    """Code without comments, strings or char literals (lifetimes stay: they hold no paths)."""
    return TOKENS.sub(lambda m: '""' if m.group().endswith(('"', "'")) else "", text)


def module_path(src: pathlib.Path, file: pathlib.Path) -> tuple[str, ...]:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def crate_modules(src: pathlib.Path) -> dict[tuple[str, ...], str]:
    modules = {}
    for file in src.rglob("*.rs"):
        text = strip_literals(file.read_text())
        # Binaries are crates of their own; lib.rs is the crate root.
        if file.name == "main.rs" and (src / "lib.rs").exists():
            continue
        if file.parent.name == "bin":
            continue
        path = module_path(src, file)
        # An inline `#[cfg(test)] mod tests { … }` (last in the file, by habit) is a module of
        # its own: tests may set up with higher-level modules without the file depending on them.
        inline = INLINE_TESTS.search(text)
        if inline:
            modules[path + (inline.group(1),)] = text[inline.end():]
            text = text[: inline.start()]
        modules[path] = text
    return modules


def reexports(text: str) -> dict[str, str]:
    """Item name -> child module it is re-exported from."""
    names = {}
    for child, items in PUB_USE.findall(text):
        for item in items.strip("{}").split(","):
            item = item.strip().split(" as ")[-1].strip()
            if item and item != "self":
                names[item] = child
    return names


def resolve(modules, exports, segments):
    """The module a path names (the longest module prefix, through re-exports)."""
    target = ()
    for i in range(len(segments), -1, -1):
        if tuple(segments[:i]) in modules:
            target = tuple(segments[:i])
            rest = segments[i:]
            break
    # An item re-exported by a parent lives in the child it came from.
    while rest and rest[0] in exports.get(target, {}):
        child = target + (exports[target][rest[0]],)
        if child not in modules:
            break
        target, rest = child, rest[1:]
    return target


def absolute(kind, tail, here):
    segments = [s.strip() for s in tail.split("::") if s.strip()]
    if kind == "crate":
        return segments
    # `super` in a file module is its parent; in a mod.rs, the parent of its folder.
    base = list(here[:-1])
    while segments and segments[0] == "super":
        base = base[:-1]
        segments = segments[1:]
    return base + segments


def edges_of(modules):
    exports = {m: reexports(t) for m, t in modules.items()}
    edges = {m: set() for m in modules}
    for here, text in modules.items():
        # A glob import of the parent (`use super::*` in tests) adds no edge worth checking.
        text = re.sub(r"\bsuper::\*", "", text)
        paths = []
        for kind, prefix, group in USE_GROUP.findall(text):
            for item in group.split(","):
                item = item.strip().split(" as ")[0].strip()
                if item and item != "self":
                    paths.append((kind, prefix + "::" + item))
                elif item == "self":
                    paths.append((kind, prefix))
        for kind, tail in PATH.findall(text):
            paths.append((kind, tail))
        for kind, tail in paths:
            segments = absolute(kind, tail, here)
            target = resolve(modules, exports, segments)
            if target != here and target != ():
                edges[here].add(target)
            elif target == () and here != ():
                # A path to the crate root counts only for items the root defines itself.
                first = segments[0] if segments else ""
                if first and first not in exports.get((), {}):
                    edges[here].add(())
    return edges


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return found


def name(module):
    return "crate::" + "::".join(module) if module else "crate"


def main():
    roots = [pathlib.Path(a) for a in sys.argv[1:]] or [
        *sorted(pathlib.Path("crates").glob("*/src")),
        pathlib.Path("tests/support"),
    ]
    failed = False
    for src in roots:
        modules = crate_modules(src)
        edges = edges_of(modules)
        for component in cycles(edges):
            failed = True
            members = set(component)
            print(f"{src}: modules import each other in a circle:")
            for module in sorted(component):
                inside = sorted(name(t) for t in edges[module] if t in members)
                print(f"  {name(module)} -> {', '.join(inside)}")
    if failed:
        sys.exit(1)
    print(f"no module circles in {len(roots)} crate(s)")


if __name__ == "__main__":
    main()
