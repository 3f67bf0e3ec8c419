"""Sampled mutation testing of the package and the Rust core.

Run it in a *separate* checkout (a git worktree of HEAD): it edits the sources in place, one
mutant at a time, and restores each file after its run.

    python benches/mutants.py python --total 100 --seed 0 --out mutants-python.json
    python benches/mutants.py rust --total 40 --seed 0 --out mutants-rust.json

Python mutants are generated from the ``ast``: comparison swaps (``<`` to ``<=``, ``==`` to
``!=``, ...), arithmetic swaps, constant changes (0 and 1 swapped, n to n + 1, True and False),
``and``/``or`` swaps, removed ``not``, negated ``if``/``while`` tests, ``return x`` to ``return
None`` and deleted statements. Each is applied to the file as text (the mutated expression is
put back in parentheses, a deleted statement becomes ``pass``), and the module's mapped test
files run with a timeout: a failing run kills the mutant, a passing one lets it survive, a run
past the timeout counts as killed-by-timeout (reported apart).

Rust mutants are text-level operator and constant swaps in the non-test part of ``rust/*.rs``
and ``rust/problems/*.rs`` (``py.rs``, the bindings, is not built by ``cargo test`` and is left
out); ``cargo test --lib`` runs each. A mutant that does not compile is not a mutant of the
behaviour: it is recorded as ``unviable`` and excluded from the score.

The score is killed / (total - unviable - equivalent), where ``--equivalent FILE`` names the
mutants (by id) judged equivalent by reading them; they are listed in the JSON with the reason.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Module (glob relative to python/critbatch) -> the test files that cover it.
PYTHON_MAP: dict[str, list[str]] = {
    "fit/*.py": ["tests/test_fit.py"],
    "spec.py": ["tests/test_spec.py", "tests/test_spec_keys.py"],
    "plan.py": ["tests/test_limits.py"],
    "store.py": ["tests/test_store.py"],
    "tuning.py": ["tests/test_tuning.py"],
    "search.py": ["tests/test_search.py"],
    "problems.py": ["tests/test_sweep.py", "tests/test_reference.py"],
    "schedules.py": ["tests/test_sweep.py", "tests/test_reference.py"],
    "targets.py": ["tests/test_sweep.py", "tests/test_reference.py"],
    "optimizers.py": ["tests/test_sweep.py", "tests/test_reference.py"],
    "reference/*.py": ["tests/test_reference.py", "tests/test_reference_agreement.py"],
}
#: Extra test files appended to every mapped run (the tests written to kill earlier survivors).
EXTRA_TESTS = ["tests/test_mutant_kills.py"]

RUST_FILES = ["rust/*.rs", "rust/problems/*.rs"]
RUST_EXCLUDE = {"rust/py.rs", "rust/lib.rs"}

CMP_SWAPS = {
    ast.Lt: [ast.LtE, ast.Gt],
    ast.LtE: [ast.Lt, ast.Gt],
    ast.Gt: [ast.GtE, ast.Lt],
    ast.GtE: [ast.Gt, ast.Lt],
    ast.Eq: [ast.NotEq],
    ast.NotEq: [ast.Eq],
    ast.Is: [ast.IsNot],
    ast.IsNot: [ast.Is],
    ast.In: [ast.NotIn],
    ast.NotIn: [ast.In],
}
BIN_SWAPS = {
    ast.Add: [ast.Sub],
    ast.Sub: [ast.Add],
    ast.Mult: [ast.Div],
    ast.Div: [ast.Mult],
    ast.FloorDiv: [ast.Div],
    ast.Pow: [ast.Mult],
    ast.Mod: [ast.FloorDiv],
}


@dataclass
class Mutant:
    id: str
    file: str
    line: int
    kind: str
    description: str
    # Text replacement: (start_line, start_col, end_line, end_col) 1-based lines, 0-based cols.
    span: tuple[int, int, int, int]
    replacement: str
    status: str = "pending"
    seconds: float = 0.0
    note: str = ""


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """Ids of nodes inside annotations, docstrings and ``__all__`` (not mutated)."""
    skip: set[int] = set()

    def mark(node: ast.AST | None) -> None:
        if node is not None:
            for sub in ast.walk(node):
                skip.add(id(sub))

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            mark(node.returns)
            for a in node.args.args + node.args.kwonlyargs + node.args.posonlyargs:
                mark(a.annotation)
            for a in (node.args.vararg, node.args.kwarg):
                if a is not None:
                    mark(a.annotation)
        if isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                mark(body[0])
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            mark(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            mark(node)
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("TypeVar"):
            mark(node)
    return skip


def _expr_mutants(node: ast.AST) -> list[tuple[str, str, ast.AST]]:
    """(kind, description, mutated copy) for one expression node."""
    out: list[tuple[str, str, ast.AST]] = []
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            for new in CMP_SWAPS.get(type(op), []):
                m = copy.deepcopy(node)
                m.ops[i] = new()
                out.append(("compare", f"{type(op).__name__} -> {new.__name__}", m))
    elif isinstance(node, ast.BinOp):
        for new in BIN_SWAPS.get(type(node.op), []):
            m = copy.deepcopy(node)
            m.op = new()
            out.append(("arith", f"{type(node.op).__name__} -> {new.__name__}", m))
    elif isinstance(node, ast.BoolOp):
        m = copy.deepcopy(node)
        m.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        out.append(("boolop", f"{type(node.op).__name__} -> {type(m.op).__name__}", m))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        out.append(("negation", "not x -> x", copy.deepcopy(node.operand)))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        out.append(("arith", "-x -> x", copy.deepcopy(node.operand)))
    elif isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool):
            out.append(("constant", f"{v} -> {not v}", ast.Constant(not v)))
        elif isinstance(v, int):
            new = {0: 1, 1: 0}.get(v, v + 1)
            out.append(("constant", f"{v} -> {new}", ast.Constant(new)))
        elif isinstance(v, float):
            new = 1.0 if v == 0.0 else (0.0 if v == 1.0 else v * 2.0)
            out.append(("constant", f"{v!r} -> {new!r}", ast.Constant(new)))
    return out


def python_sites(path: Path, rel: str) -> list[Mutant]:
    src = path.read_text()
    tree = ast.parse(src)
    skip = _annotation_nodes(tree)
    lines = src.splitlines()
    out: list[Mutant] = []

    def add(node: ast.AST, kind: str, desc: str, text: str, span=None) -> None:
        span = span or (node.lineno, node.col_offset, node.end_lineno, node.end_col_offset)
        out.append(Mutant("", rel, node.lineno, kind, desc, span, text))

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.expr) and hasattr(node, "lineno"):
            # Constants inside f-strings / string formatting are not behaviour worth sampling.
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                continue
            for kind, desc, mutated in _expr_mutants(node):
                add(node, kind, desc, "(" + ast.unparse(mutated) + ")")
        if isinstance(node, (ast.If, ast.While)):
            t = node.test
            add(t, "negation", "negate condition", "(not (" + ast.unparse(t) + "))")
        if isinstance(node, ast.Return) and node.value is not None:
            v = node.value
            if not (isinstance(v, ast.Constant) and v.value is None):
                add(v, "return", "return x -> return None", "(None)")
        if isinstance(node, (ast.Expr, ast.Assign, ast.AugAssign, ast.Raise, ast.AnnAssign)):
            if isinstance(node, ast.AnnAssign) and node.value is None:
                continue
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue
            line = lines[node.lineno - 1]
            indent = len(line) - len(line.lstrip())
            end_line = lines[node.end_lineno - 1]
            # Only whole-line statements (not `x = 1; y = 2`, not after a colon).
            if node.col_offset != indent or end_line[node.end_col_offset :].strip() not in ("",):
                if not end_line[node.end_col_offset :].lstrip().startswith("#"):
                    continue
            add(node, "delete", "delete statement", "pass")
    for i, m in enumerate(sorted(out, key=lambda m: (m.span, m.description))):
        m.id = f"{rel}:{m.line}:{i}"
    return out


def apply_text(src: str, span: tuple[int, int, int, int], replacement: str) -> str:
    lines = src.splitlines(keepends=True)
    sl, sc, el, ec = span
    offsets = [0]
    for ln in lines:
        offsets.append(offsets[-1] + len(ln))

    # ast columns are UTF-8 byte offsets; convert on the affected lines.
    def pos(line: int, col: int) -> int:
        text = lines[line - 1].encode()
        return offsets[line - 1] + len(text[:col].decode())

    return src[: pos(sl, sc)] + replacement + src[pos(el, ec) :]


# --- Rust -------------------------------------------------------------------------------------

RUST_OPS = [
    (r"(?<![<=!>-])<(?![<=])", ["<=", ">"], "compare"),
    (r"(?<![<=!>-])<=", ["<", ">"], "compare"),
    (r"(?<![<=!>-])>(?![>=])", [">=", "<"], "compare"),
    (r"(?<![<=!>-])>=", [">", "<"], "compare"),
    (r"==", ["!="], "compare"),
    (r"!=", ["=="], "compare"),
    (r"&&", ["||"], "boolop"),
    (r"\|\|", ["&&"], "boolop"),
    (r"(?<=\s)\+(?=\s)", ["-"], "arith"),
    (r"(?<=\s)-(?=\s)", ["+"], "arith"),
    (r"(?<=\s)\*(?=\s)", ["/"], "arith"),
    (r"(?<=\s)/(?=\s)", ["*"], "arith"),
    (r"\+=", ["-="], "arith"),
    (r"-=", ["+="], "arith"),
    (r"\*=", ["/="], "arith"),
    (r"(?<![\w.])0\.0(?![\w.])", ["1.0"], "constant"),
    (r"(?<![\w.])1\.0(?![\w.])", ["0.0"], "constant"),
    (r"(?<![\w.])0(?![\w.])", ["1"], "constant"),
    (r"(?<![\w.])1(?![\w.])", ["0", "2"], "constant"),
    (r"(?<![\w.])2(?![\w.])", ["3"], "constant"),
]


def _rust_code_lines(src: str) -> list[tuple[int, str]]:
    """(1-based line, text) of the non-test, non-comment code of a Rust file."""
    out = []
    in_tests = False
    for i, line in enumerate(src.splitlines(), 1):
        s = line.strip()
        if s.startswith("#[cfg(test)]"):
            in_tests = True
        if in_tests:
            continue
        if s.startswith("//") or s.startswith("#[") or s.startswith("use ") or not s:
            continue
        if "debug_assert" in s or s.startswith("///"):
            continue
        out.append((i, line))
    return out


def rust_sites(path: Path, rel: str) -> list[Mutant]:
    src = path.read_text()
    out: list[Mutant] = []
    for lineno, line in _rust_code_lines(src):
        code = line.split("//", 1)[0]
        # Skip string literals and generic-heavy lines (arrows, turbofish, lifetimes, type paths).
        if '"' in code or "->" in code or "=>" in code or "::<" in code:
            masked = re.sub(r'"[^"]*"', lambda m: " " * len(m.group()), code)
        else:
            masked = code
        for pat, news, kind in RUST_OPS:
            for m in re.finditer(pat, masked):
                s, e = m.start(), m.end()
                before = masked[max(0, s - 2) : s]
                after = masked[e : e + 2]
                if (
                    kind == "compare"
                    and m.group() in "<>"
                    and ("->" in masked[s - 1 : e + 1] or "=>" in masked[s - 1 : e + 1])
                ):
                    continue
                if kind == "compare" and m.group() in ("<", ">"):
                    # Generics: `Vec<f64>`, `Option<...>`: a letter right before `<` with no space.
                    if (
                        s > 0
                        and (masked[s - 1].isalnum() or masked[s - 1] in "_&")
                        and m.group() == "<"
                    ):
                        continue
                    if (
                        m.group() == ">"
                        and s > 0
                        and (masked[s - 1].isalnum() or masked[s - 1] in ">)]_")
                        and (e >= len(masked) or masked[e] in " ,;)>{(:")
                    ):
                        if not (s > 0 and masked[s - 1] == " "):
                            continue
                if m.group() == "||" and (
                    masked[e : e + 2] == " {" or masked[max(0, s - 1) : s] in ("(", "=")
                ):
                    continue  # a closure `|| { ... }`, not a boolean or
                if (
                    kind == "constant"
                    and re.search(r"; *$", masked[:s])
                    and masked[e : e + 1] == "]"
                ):
                    continue  # an array length `[f64; 2]`
                for new in news:
                    out.append(
                        Mutant(
                            "",
                            rel,
                            lineno,
                            kind,
                            f"{m.group()} -> {new} in `{line.strip()[:90]}`",
                            (lineno, s, lineno, e),
                            new,
                        )
                    )
                del before, after
    for i, m in enumerate(out):
        m.id = f"{rel}:{m.line}:{i}"
    return out


def apply_rust(src: str, span, replacement: str) -> str:
    lines = src.splitlines(keepends=True)
    sl, sc, _, ec = span
    line = lines[sl - 1]
    lines[sl - 1] = line[:sc] + replacement + line[ec:]
    return "".join(lines)


# --- Running ----------------------------------------------------------------------------------


def run_tests(cmd: list[str], timeout: float, env: dict[str, str]) -> tuple[str, float, str]:
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - t0, ""
    dt = time.monotonic() - t0
    tail = (p.stdout + p.stderr)[-400:]
    if p.returncode == 0:
        return "survived", dt, tail
    if "Timeout" in p.stdout + p.stderr:
        return "timeout", dt, tail
    return "killed", dt, tail


def python_tests_for(rel: str) -> list[str]:
    for pattern, tests in PYTHON_MAP.items():
        if Path(rel).match(pattern) or rel == pattern:
            extra = [t for t in EXTRA_TESTS if (ROOT / t).exists()]
            return tests + extra
    raise KeyError(rel)


def make_coverage(out: Path, env: dict[str, str]) -> None:
    """Run every mapped test file once under ``benches/mutcov.py`` into ``out``."""
    tests = sorted(
        {t for ts in PYTHON_MAP.values() for t in ts}
        | {t for t in EXTRA_TESTS if (ROOT / t).exists()}
    )
    benches = str(ROOT / "benches")
    cov_env = dict(
        env,
        MUTCOV_ROOT=str(ROOT),
        MUTCOV_OUT=str(out.resolve()),
        PYTHONPATH=os.pathsep.join(filter(None, [benches, env.get("PYTHONPATH")])),
    )
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "mutcov", *tests],
        cwd=ROOT,
        env=cov_env,
        check=True,
    )


def covering_tests(cov: dict, m: Mutant) -> list[str] | None:
    """Node ids of the mapped tests that execute a line of the mutant (None: run the files).

    ``cov`` is the per-test line map that ``benches/mutcov.py`` writes. A line run only outside
    any test (module level, at import) falls back to the whole mapped files; a line no test
    runs gives an empty list: the mutant survives without a run.
    """
    files = python_tests_for(m.file)
    lines = set(range(m.span[0], m.span[2] + 1))
    hits = [
        t
        for t, f in cov.items()
        if t != "<outside>" and t.split("::")[0] in files and lines & set(f.get(m.file, ()))
    ]
    if not hits and lines & set(cov.get("<outside>", {}).get(m.file, ())):
        return None
    return hits


def sample(sites_by_file: dict[str, list[Mutant]], total: int, seed: int) -> list[Mutant]:
    """Proportional allocation over files (at least one each), then a seeded sample in each."""
    rng = random.Random(seed)
    n_all = sum(len(v) for v in sites_by_file.values())
    chosen: list[Mutant] = []
    for rel in sorted(sites_by_file):
        sites = sites_by_file[rel]
        if not sites:
            continue
        k = max(1, round(total * len(sites) / n_all))
        chosen += rng.sample(sites, min(k, len(sites)))
    # A random order, so that a run cut short is still a uniform subsample.
    rng.shuffle(chosen)
    return chosen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("group", choices=["python", "rust"])
    ap.add_argument("--total", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--out", type=Path, default=Path("mutants.json"))
    ap.add_argument("--only", nargs="*", help="run only these mutant ids (re-checks)")
    ap.add_argument("--equivalent", type=Path, help="JSON {id: reason} of equivalent mutants")
    ap.add_argument("--shard", default="0/1", help="i/n: run every n-th mutant from the i-th")
    ap.add_argument(
        "--test-timeout",
        type=float,
        default=30.0,
        help="per-test limit (pytest-timeout): a test hung by a mutant fails",
    )
    ap.add_argument(
        "--coverage",
        type=Path,
        help="per-test line map from benches/mutcov.py: run only the covering tests",
    )
    ap.add_argument("--list", action="store_true", help="print the sample and exit")
    args = ap.parse_args()

    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    sites: dict[str, list[Mutant]] = {}
    if args.group == "python":
        pkg = ROOT / "python" / "critbatch"
        for pattern in PYTHON_MAP:
            for p in sorted(pkg.glob(pattern)):
                rel = str(p.relative_to(ROOT))
                sites[rel] = python_sites(p, rel)
    else:
        for pattern in RUST_FILES:
            for p in sorted(ROOT.glob(pattern)):
                rel = str(p.relative_to(ROOT))
                if rel not in RUST_EXCLUDE:
                    sites[rel] = rust_sites(p, rel)
    chosen = sample(sites, args.total, args.seed)
    if args.only:
        allm = {m.id: m for v in sites.values() for m in v}
        chosen = [allm[i] for i in args.only]
    i, n = map(int, args.shard.split("/"))
    chosen = chosen[i::n]
    if args.list:
        for m in chosen:
            print(m.id, m.kind, m.description)
        return 0
    equivalent = json.loads(args.equivalent.read_text()) if args.equivalent else {}
    if args.coverage and not args.coverage.exists():
        make_coverage(args.coverage, env)
    cov = json.loads(args.coverage.read_text()) if args.coverage else None

    results: list[Mutant] = []
    for n, m in enumerate(chosen, 1):
        path = ROOT / m.file
        original = path.read_text()
        try:
            if args.group == "python":
                mutated = apply_text(original, m.span, m.replacement)
                try:
                    ast.parse(mutated)
                except SyntaxError as e:
                    m.status, m.note = "unviable", f"syntax error: {e}"
                    results.append(m)
                    continue
                tests = python_tests_for(m.file)
                if cov is not None:
                    hits = covering_tests(cov, m)
                    extras = [t for t in EXTRA_TESTS if (ROOT / t).exists()]
                    if hits == [] and not extras:
                        m.status, m.note = "survived", "no mapped test executes the line"
                        results.append(m)
                        print(
                            f"[{n}/{len(chosen)}] {m.status:9s} (not run) {m.id} {m.description}",
                            flush=True,
                        )
                        continue
                    if hits is not None:
                        # The extra tests are not in the line map: they always run.
                        tests = extras + hits
                path.write_text(mutated)
                cmd = [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-x",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "--no-header",
                    f"--timeout={args.test_timeout:g}",
                    *tests,
                ]
                m.status, m.seconds, m.note = run_tests(cmd, args.timeout, env)
            else:
                path.write_text(apply_rust(original, m.span, m.replacement))
                build = subprocess.run(
                    ["cargo", "test", "--lib", "--no-run", "--quiet"],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                )
                if build.returncode != 0:
                    m.status, m.note = "unviable", "does not compile"
                else:
                    m.status, m.seconds, m.note = run_tests(
                        ["cargo", "test", "--lib", "--quiet"], args.timeout, env
                    )
        finally:
            path.write_text(original)
        if m.id in equivalent and m.status == "survived":
            m.status, m.note = "equivalent", equivalent[m.id]
        results.append(m)
        print(
            f"[{n}/{len(chosen)}] {m.status:9s} {m.seconds:6.1f}s {m.id} {m.description}",
            flush=True,
        )
        args.out.write_text(json.dumps(summary(results), indent=1))
    s = summary(results)
    args.out.write_text(json.dumps(s, indent=1))
    print(json.dumps({k: v for k, v in s.items() if k != "mutants"}, indent=1))
    return 0


def summary(results: list[Mutant]) -> dict:
    count = {
        k: sum(m.status == k for m in results)
        for k in ("killed", "timeout", "survived", "unviable", "equivalent")
    }
    denom = count["killed"] + count["timeout"] + count["survived"]
    return {
        **count,
        "total": len(results),
        "score": (count["killed"] + count["timeout"]) / denom if denom else None,
        "survivors": [m.id + " " + m.description for m in results if m.status == "survived"],
        "mutants": [asdict(m) for m in results],
    }


if __name__ == "__main__":
    sys.exit(main())
