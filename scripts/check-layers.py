#!/usr/bin/env python3
"""Checks that the modules of src/ form layers: no unit depends, directly or
through others, on a unit that depends on it. A top-level module is a unit;
the public children of a folder module are units of their own
(`google::gcs`, `aws::s3`). Between the two wings: nothing in `google`
uses `aws`, and `aws` uses `google` only for `google::identity`.

A dependency is any `crate::NAME` path in a module's code outside its
`#[cfg(test)]` blocks (and files named `tests.rs`, the `#[cfg(test)] mod
tests;` of their parent), comments and string literals (lexed in one pass, so
that `"https://..."` hides nothing), grouped imports included
(`use crate::{a, b::{c}}` depends on `a` and `b`). src/lib.rs and
src/main.rs are not modules of their own.

Statuses and error codes are chosen in src/http/error.rs alone: no other
file's code (tests left out as above) names `Code::…` or an `AppError`
variant or constructor (`AppError::NotFound`, `AppError::bad_request`);
elsewhere a typed error becomes an `AppError` by `AppError::from`, `.into()`
or `?`.

Prints the modules in layer order (each uses only those above it) and exits
0, or prints every cycle, every use across the wings and every status chosen
outside src/http/error.rs, and exits 1.

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
    starts no string. Lifetimes (`'a`) are kept, and so is every line break
    (what is left stays on its line)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c == "/" and nxt == "*":
            start, depth, i = i, 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            out.append("\n" * text.count("\n", start, i))
        elif c == "r" and re.match(r'r#*"', text[i:]) and not _ident_char(text, i - 1):
            hashes = len(re.match(r"r(#*)", text[i:]).group(1))
            end = text.find('"' + "#" * hashes, i + 2 + hashes)
            start, i = i, n if end < 0 else end + 1 + hashes
            out.append('""' + "\n" * text.count("\n", start, i))
        elif c == "b" and nxt in "\"'" and not _ident_char(text, i - 1):
            i += 1
        elif c == '"':
            start, i = i, i + 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""' + "\n" * text.count("\n", start, i))
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
    or its semicolon), keeping its line breaks."""
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
        out.append("\n" * text.count("\n", j, k))
        i = k


def use_paths(tokens: list, k: int, prefix: tuple, out: list) -> int:
    """Reads one use-tree from tokens[k:] after `crate::`, appending each
    path's first two segments (prefix included) to out; returns the index
    after it."""
    path = list(prefix)
    while k < len(tokens):
        tok = tokens[k]
        if tok == "{":
            k += 1
            while k < len(tokens) and tokens[k] != "}":
                if tokens[k] == ",":
                    k += 1
                    continue
                k = use_paths(tokens, k, tuple(path), out)
            return k + 1
        if tok in ("}", ","):
            break
        if tok not in ("::", "self"):
            path.append(tok)
        k += 1
    if path:
        out.append(tuple(path[:2]))
    return k


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
    """The paths `crate::a::b...` a module's code names, as (a, b) or (a,)
    (grouped imports `use crate::{a, b::{c, d}}` included)."""
    deps = set()
    for m in re.finditer(r"\bcrate\s*::\s*(\{|" + IDENT + ")", text):
        if m.group(1) == "{":
            end = matching_brace(text, m.start(1))
            tokens = re.findall(IDENT + r"|[{},]|::", text[m.start(1) : end + 1])
            found = []
            use_paths(tokens, 0, (), found)
            deps |= {p for p in found if p}
        else:
            rest = re.match(r"\s*::\s*(" + IDENT + ")", text[m.end(1) :])
            deps.add((m.group(1), rest.group(1)) if rest else (m.group(1),))
    return deps


def private_children(mod_rs: pathlib.Path) -> set:
    """The children a folder module declares without `pub` (`mod x;`): they
    belong to the folder's own unit."""
    text = strip_comments_and_strings(mod_rs.read_text()) if mod_rs.exists() else ""
    return set(re.findall(r"(?m)^\s*mod\s+(" + IDENT + r")\s*;", text))


def modules(src: pathlib.Path) -> dict:
    """The units of src/ and what each uses. A top-level module is a unit;
    a folder module's public children are units of their own
    (`google::gcs`), its private ones belong to it."""
    files = {}
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src)
        if rel.parts[0] in ("lib.rs", "main.rs", "bin") or rel.name == "tests.rs":
            continue
        top = rel.parts[0].removesuffix(".rs")
        unit = top
        if len(rel.parts) > 1 and rel.parts[1] != "mod.rs":
            child = rel.parts[1].removesuffix(".rs")
            if child not in private_children(src / top / "mod.rs"):
                unit = f"{top}::{child}"
        files[path] = unit
    deps = {unit: set() for unit in files.values()}
    for path, unit in files.items():
        text = strip_cfg_test(strip_comments_and_strings(path.read_text()))
        for p in dependencies(text):
            if len(p) > 1 and f"{p[0]}::{p[1]}" in deps:
                deps[unit].add(f"{p[0]}::{p[1]}")
            elif p[0] in deps:
                deps[unit].add(p[0])
    for unit, d in deps.items():
        d.discard(unit)
    return deps


# The two wings: the Google wing never uses the AWS wing, and the AWS wing
# uses the Google wing only for the ID token it presents to STS.
WING_RULES = [
    ("google", "aws", set()),
    ("aws", "google", {"google::identity"}),
]


def wing_violations(deps: dict) -> list:
    out = []
    for wing, other, allowed in WING_RULES:
        for unit, d in sorted(deps.items()):
            if unit != wing and not unit.startswith(wing + "::"):
                continue
            for dep in sorted(d):
                if (dep == other or dep.startswith(other + "::")) and dep not in allowed:
                    out.append(f"{unit} -> {dep}")
    return out


# The one file that chooses statuses and error codes, and what choosing one
# looks like: a `Code::…`, or an `AppError::…` other than `AppError::from`.
ERROR_MAP = "http/error.rs"
CHOOSES_STATUS = re.compile(
    r"\bCode\s*::\s*(?:" + IDENT + r"|\*|\{)|\bAppError\s*::\s*(?!from\b)" + IDENT
)


def status_choices(src: pathlib.Path) -> list:
    """Every place outside src/http/error.rs whose code (tests left out)
    names a `Code` or an `AppError` variant or constructor, as
    `path:line: text`."""
    out = []
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src).as_posix()
        if rel == ERROR_MAP or path.name == "tests.rs":
            continue
        text = strip_cfg_test(strip_comments_and_strings(path.read_text()))
        for m in CHOOSES_STATUS.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            out.append(f"{rel}:{line}: {m.group(0)}")
    return out


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
    crossing = wing_violations(deps)
    if crossing:
        for line in crossing:
            print("between the wings: " + line)
        return 1
    chosen = status_choices(src)
    if chosen:
        for line in chosen:
            print(f"a status chosen outside src/{ERROR_MAP}: {line}")
        return 1
    for n, layer in enumerate(layers(deps)):
        print(f"{n}: {' '.join(layer)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
