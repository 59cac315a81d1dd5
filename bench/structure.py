"""The house's structure, counted from its imports: ``python -m bench.structure``.

A *room* is a package directly under ``shengtu`` (``tasks/``) or a module beside them
(``db.py``). An arrow is one module importing another (imports made inside functions
included: they tie the code as much as the ones at the top). The counts:

- arrows between rooms, and those that run back up: the arrows of a room that lie on a
  circle of rooms, which no order of floors can point downwards;
- import circles between modules (strongly connected sets of more than one module);
- the five largest modules (lines) and the five longest functions (lines).

Type-only imports (under ``if TYPE_CHECKING:``) are left out: they do not run.
"""

from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "shengtu"


@dataclass
class House:
    modules: dict[str, Path] = field(default_factory=dict)
    arrows: set[tuple[str, str]] = field(default_factory=set)
    functions: list[tuple[int, str]] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, here: str, is_package: bool) -> Iterable[str]:
    """Every module name an import in ``tree`` may name (a ``from m import n`` names m.n
    too, in case n is a module); type-only imports left out."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _type_checking(node):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                drop = node.level - (1 if is_package else 0)
                base = base[: len(base) - drop] if drop else base
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target
            for alias in node.names:
                yield f"{target}.{alias.name}"


def read(root: Path = ROOT) -> House:
    house = House()
    trees: dict[str, tuple[ast.AST, bool]] = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        name = module_name(path, root)
        house.modules[name] = path
        text = path.read_text(encoding="utf-8")
        house.lines[name] = text.count("\n") + (not text.endswith("\n"))
        tree = ast.parse(text)
        trees[name] = (tree, path.name == "__init__.py")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                house.functions.append((length, f"{name}:{node.name}"))
    for name, (tree, is_package) in trees.items():
        for target in _imports(tree, name, is_package):
            if target in house.modules and target != name:
                house.arrows.add((name, target))
    return house


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def strongly_connected(nodes: Iterable[str], edges: set[tuple[str, str]]) -> list[set[str]]:
    """Tarjan's strongly connected components, iteratively."""
    out: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        out[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[set[str]] = []
    counter = 0
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(sorted(out[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    found.append(component)
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(out[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def floors(nodes: set[str], edges: set[tuple[str, str]]) -> list[str]:
    """An order of ``nodes`` from the top floor down with few arrows pointing up: Eades,
    Lin and Smyth's greedy heuristic (sinks to the bottom, sources to the top, else the node
    with the most arrows out over in)."""
    left = set(nodes)
    live = {(a, b) for a, b in edges if a in left and b in left}
    top: list[str] = []
    bottom: list[str] = []
    while left:
        outs = {n: 0 for n in left}
        ins = {n: 0 for n in left}
        for a, b in live:
            outs[a] += 1
            ins[b] += 1
        sinks = sorted(n for n in left if outs[n] == 0)
        sources = sorted(n for n in left if ins[n] == 0 and outs[n] > 0)
        if sinks:
            chosen, bottom = sinks, sinks + bottom
        elif sources:
            chosen, top = sources, top + sources
        else:
            best = max(sorted(left), key=lambda n: outs[n] - ins[n])
            chosen, top = [best], [*top, best]
        left -= set(chosen)
        live = {(a, b) for a, b in live if a in left and b in left}
    return top + bottom


def report(house: House) -> str:
    rooms = {room(m) for m in house.modules}
    room_arrows = {(room(a), room(b)) for a, b in house.arrows if room(a) != room(b)}
    room_circles = [c for c in strongly_connected(rooms, room_arrows) if len(c) > 1]
    in_circle = {r: i for i, c in enumerate(room_circles) for r in c}
    back_up = sorted(
        (a, b) for a, b in room_arrows if a in in_circle and in_circle.get(b) == in_circle[a]
    )
    order = {r: i for i, r in enumerate(floors(rooms, room_arrows))}
    upward = [(a, b) for a, b in room_arrows if order[a] > order[b]]
    module_circles = [c for c in strongly_connected(house.modules, house.arrows) if len(c) > 1]
    lines = [
        f"modules: {len(house.modules)}, rooms: {len(rooms)}",
        f"arrows between modules: {len(house.arrows)}, between rooms: {len(room_arrows)}",
        f"room arrows that run back up (on a circle of rooms): {len(back_up)}",
        f"room arrows that point up in the best order of floors found: {len(upward)}",
        f"circles of rooms: {len(room_circles)}",
    ]
    lines += [f"  {' ⇄ '.join(sorted(c))}" for c in room_circles]
    lines.append(f"import circles between modules: {len(module_circles)}")
    lines += [f"  {' ⇄ '.join(sorted(c))}" for c in module_circles]
    lines.append("largest modules (lines):")
    biggest = sorted(house.lines.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    lines += [f"  {n:5d}  {m}" for m, n in biggest]
    lines.append("longest functions (lines):")
    lines += [f"  {n:5d}  {f}" for n, f in sorted(house.functions, key=lambda x: (-x[0], x[1]))[:5]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrows", action="store_true", help="list the arrows that run back up")
    parser.add_argument(
        "--root",
        type=Path,
        default=ROOT,
        help="the folder that holds shengtu/ (another checkout's src, to count it before)",
    )
    args = parser.parse_args()
    house = read(args.root)
    print(report(house))
    if args.arrows:
        rooms = {room(m) for m in house.modules}
        room_arrows = {(room(a), room(b)) for a, b in house.arrows if room(a) != room(b)}
        for circle in strongly_connected(rooms, room_arrows):
            if len(circle) < 2:
                continue
            for a, b in sorted(house.arrows):
                if room(a) != room(b) and room(a) in circle and room(b) in circle:
                    print(f"  {a} -> {b}")


if __name__ == "__main__":
    main()
