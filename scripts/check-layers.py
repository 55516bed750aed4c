#!/usr/bin/env python3
"""Checks that the top-level modules of src/ form layers: no module depends,
directly or through others, on a module that depends on it.

A dependency is any `crate::NAME` path in a module's code outside its
`#[cfg(test)]` blocks, comments and string literals (lexed in one pass, so
that `"https://..."` hides nothing), grouped imports included
(`use crate::{a, b::{c}}` depends on `a` and `b`). src/lib.rs and
src/main.rs are not modules of their own.

Prints the modules in layer order (each uses only those above it) and exits
0, or prints every cycle and exits 1.

    scripts/check-layers.py [SRC_DIR]
"""

import pathlib
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments_and_strings(text: str) -> str:
    """Rust source with its comments removed and every string, byte string,
    raw string and char literal emptied, lexed in one pass: a `//` inside a
    string (`"https://..."`) is no comment, and a quote inside a comment
    starts no string. Lifetimes (`'a`) are kept."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c == "/" and nxt == "*":
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:]) and not _ident_char(text, i - 1):
            hashes = len(re.match(r"r(#*)", text[i:]).group(1))
            end = text.find('"' + "#" * hashes, i + 2 + hashes)
            out.append('""')
            i = n if end < 0 else end + 1 + hashes
        elif c == "b" and nxt in "\"'" and not _ident_char(text, i - 1):
            i += 1
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^'\\])'", text[i:])
            if m:
                out.append("' '")
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _ident_char(text: str, k: int) -> bool:
    return k >= 0 and (text[k].isalnum() or text[k] == "_")


def strip_cfg_test(text: str) -> str:
    """Removes each item that follows `#[cfg(test)]` (to its closing brace,
    or its semicolon)."""
    out = []
    i = 0
    while True:
        j = text.find("#[cfg(test)]", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        k = j + len("#[cfg(test)]")
        depth = 0
        while k < len(text):
            c = text[k]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    k += 1
                    break
            elif c == ";" and depth == 0:
                k += 1
                break
            k += 1
        i = k


def top_names_of_group(group: str) -> set:
    """The first segment of each path in the body of `crate::{...}`."""
    names = set()
    depth = 0
    start = True
    for tok in re.findall(IDENT + r"|[{},]|::", group):
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
        elif tok == ",":
            if depth == 0:
                start = True
        elif tok == "::":
            pass
        elif start and depth == 0:
            names.add(tok)
            start = False
    return names


def matching_brace(text: str, open_at: int) -> int:
    depth = 0
    for k in range(open_at, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return k
    return len(text)


def dependencies(text: str) -> set:
    deps = set()
    for m in re.finditer(r"\bcrate\s*::\s*(\{|" + IDENT + ")", text):
        if m.group(1) == "{":
            end = matching_brace(text, m.start(1))
            deps |= top_names_of_group(text[m.start(1) + 1 : end])
        else:
            deps.add(m.group(1))
    return deps


def modules(src: pathlib.Path) -> dict:
    deps = {}
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src)
        if rel.parts[0] in ("lib.rs", "main.rs", "bin"):
            continue
        name = rel.parts[0].removesuffix(".rs")
        text = strip_cfg_test(strip_comments_and_strings(path.read_text()))
        deps.setdefault(name, set()).update(dependencies(text))
    for name, d in deps.items():
        d.discard(name)
        d.intersection_update(deps.keys())
    return deps


def cycles(deps: dict) -> list:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(deps[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(deps):
        if v not in index:
            visit(v)
    return out


def layers(deps: dict) -> list:
    placed, order = set(), []
    while len(placed) < len(deps):
        layer = sorted(v for v in deps if v not in placed and deps[v] <= placed)
        order.append(layer)
        placed.update(layer)
    return order


def main() -> int:
    src = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    deps = modules(src)
    found = cycles(deps)
    if found:
        for comp in found:
            print("cycle among: " + ", ".join(comp))
            for v in comp:
                inside = sorted(deps[v] & set(comp))
                print(f"  {v} -> {', '.join(inside)}")
        return 1
    for n, layer in enumerate(layers(deps)):
        print(f"{n}: {' '.join(layer)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
