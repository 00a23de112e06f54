#!/usr/bin/env python3
"""Fails when two modules of a crate import each other, directly or through a longer cycle.

Usage: scripts/check-module-cycles.py [CRATE_SRC_DIR ...]   (default: every crates/*/src)

What counts as an import: module A depends on module B when A's source names a path into B —
`crate::x::y`, `super::y`, `self::y` or `Self`-free relative paths in a `use` — resolved to the
longest path that is a module file of the crate. A module's edges to its own submodules (declaring
and re-exporting its children) are structure, not imports, and are not counted; edges up to an
ancestor (a child using `super::Thing`) are. Test-only files count like any other.

Why a script rather than a crate: the check needs only the module tree and the paths written in
the source, which a few regular expressions read reliably in this code base (no macros build paths).
"""

import re
import sys
from pathlib import Path

PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+|::\{)")
MOD_DECL = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*;", re.M)
PATH_ATTR = re.compile(r"#\[path\s*=\s*\"([^\"]+)\"\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;")
COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
STRING = re.compile(r'"(?:\\.|[^"\\])*"')


def module_files(src: Path):
    """Maps each module path (tuple of names, () for the crate root) to its file."""
    modules = {}

    def visit(path: tuple, file: Path):
        modules[path] = file
        text = file.read_text()
        own_dir = file.parent if file.name in ("lib.rs", "main.rs", "mod.rs") else file.with_suffix("")
        explicit = {name: file.parent / rel for rel, name in PATH_ATTR.findall(text)}
        for name in MOD_DECL.findall(text):
            if name in explicit:
                child = explicit[name]
            elif (own_dir / f"{name}.rs").is_file():
                child = own_dir / f"{name}.rs"
            else:
                child = own_dir / name / "mod.rs"
            if child.is_file():
                visit(path + (name,), child)

    root = src / "lib.rs" if (src / "lib.rs").is_file() else src / "main.rs"
    visit((), root)
    return modules


def expand_use(tree: str):
    """`a::{b, c::{d, e as f}}` -> [a::b, a::c::d, a::c::e], as lists of names."""
    tree = re.sub(r"\s*(::|\{|\}|,)\s*", r"\1", " ".join(tree.split()))
    out = []

    def walk(prefix: list, text: str):
        depth, start, parts = 0, 0, []
        for i, ch in enumerate(text):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(text[start:i])
                start = i + 1
        parts.append(text[start:])
        for part in filter(None, parts):
            if "{" in part:
                head, _, rest = part.partition("{")
                names = [n for n in head.split("::") if n]
                walk(prefix + names, rest[: rest.rfind("}")])
            else:
                names = [n for n in part.split(" as ")[0].strip().split("::") if n]
                out.append(prefix + names)

    walk([], tree)
    return out


USE = re.compile(r"\buse\s+([^;]+);")


def referenced_paths(text: str):
    """Every `crate::`, `super::` and `self::` path in the code, `use` trees expanded."""
    text = STRING.sub('""', COMMENT.sub("", text))
    for tree in USE.findall(text):
        for names in expand_use(tree):
            if names and names[0] in ("crate", "super", "self"):
                names = [n for n in names if re.fullmatch(r"[A-Za-z_]\w*", n)]
                yield names[0], names[1:]
    for head, tail in PATH.findall(USE.sub("", text)):
        names = [n for n in tail.split("::") if n and n != "{"]
        if names:
            yield head, names


def resolve(current: tuple, head: str, names: list, modules: dict):
    """The longest module path a reference names, or None."""
    if head == "crate":
        base = ()
    elif head == "self":
        base = current
    else:
        base = current
        while names and names[0] == "super":
            names = names[1:]
            base = base[:-1]
        base = base[:-1]
    best = None
    candidate = base
    if candidate in modules:
        best = candidate
    for name in names:
        candidate = candidate + (name,)
        if candidate in modules:
            best = candidate
        else:
            break
    return best


def cycles(src: Path):
    modules = module_files(src)
    edges = {m: set() for m in modules}
    for module, file in modules.items():
        for head, names in referenced_paths(file.read_text()):
            target = resolve(module, head, list(names), modules)
            if target is None or target == module or target[: len(module)] == module:
                continue
            edges[module].add(target)
    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    sys.setrecursionlimit(10000)
    for v in modules:
        if v not in index:
            connect(v)
    return modules, edges, found


def name(module: tuple) -> str:
    return "crate::" + "::".join(module) if module else "crate"


def main() -> int:
    roots = [Path(a) for a in sys.argv[1:]] or sorted(Path(__file__).resolve().parent.parent.glob("crates/*/src"))
    failed = False
    for src in roots:
        modules, edges, found = cycles(src)
        print(f"{src}: {len(modules)} modules, {sum(len(e) for e in edges.values())} imports, {len(found)} cycles")
        for component in found:
            failed = True
            members = sorted(component)
            print("  cycle: " + " <-> ".join(name(m) for m in members))
            for m in members:
                inside = sorted(name(t) for t in edges[m] if t in component)
                print(f"    {name(m)} imports {', '.join(inside)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
