"""Durable, resumable sweep results: a directory of Parquet files and a manifest.

Layout of an output directory ``OUT``::

    OUT/_manifest.json          the spec(s) as TOML, their hashes, chunk size and count, version
    OUT/chunk-000000.parquet    one file per finished chunk of runs, in plan order
    OUT/chunk-000001.parquet
    ...

The directory is a plain Parquet dataset: ``pandas.read_parquet(OUT)`` reads every run (readers
skip names starting with ``_`` or ``.``, which is why the manifest is ``_manifest.json``).

Durability: a chunk is written to a hidden temporary file in ``OUT`` and renamed into place with
:func:`os.replace`, which is atomic, so a chunk file is either complete or absent. A sweep killed at
any moment (even ``kill -9``) loses only the chunks in flight; running the same spec on the same
``OUT`` again skips the finished chunks and cleans the stale temporary files. An advisory lock
(``OUT/.lock``, released by the OS when the process dies) keeps two sweeps from writing together.
The manifest is written (atomically too) before the first chunk of a spec runs. Files are not
fsync'ed: a killed process loses nothing, but a power cut may lose the last chunks written.

Extending: a different spec on an existing ``OUT`` is refused unless ``extend=True``, which accepts
it only as a superset of the latest one. Runs are keyed by (problem, optimizer, schedule,
batch size, learning rate, seed); every key of the old grid must be in the new one, problems,
optimizers and schedules kept under the same name must be unchanged, and the target, sweep seed,
backend, device and trajectory setting must be equal. Only the new keys run; they form a new
*generation* of chunks, numbered after the existing ones. Caveat: a run's random stream depends on
its ``run_index``, its position in its own generation's grid, so an extended sweep does not hold
bit-for-bit the rows a fresh sweep of the new spec would (same distribution, other draws); the
``run_index`` column records each run's index within the grid of the spec that ran it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from critbatch import _validate as v
from critbatch.engines import Chunk, Executor, Progress, run_chunks
from critbatch.plan import Plan
from critbatch.results import SPEC_COLUMNS, Results, plan_specs
from critbatch.spec import SweepSpec, loads
from critbatch.sweep import execute

__all__ = [
    "MANIFEST",
    "SweepSummary",
    "check_extension",
    "load",
    "load_frame",
    "progress_counts",
    "read_manifest",
    "run_sweep",
    "spec_of",
]

MANIFEST = "_manifest.json"
FORMAT = "critbatch-sweep/1"
KEY_COLUMNS = ("problem", "optimizer", "schedule", "batch_size", "learning_rate", "seed")
_TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class SweepSummary:
    """What :func:`run_sweep` did: chunks run now, chunks found finished, and the totals."""

    out: Path
    n_runs: int
    n_chunks: int
    ran_chunks: int
    skipped_chunks: int
    wall_time: float
    generation: int


def chunk_path(out: Path, chunk_id: int) -> Path:
    """Return the file of chunk ``chunk_id``."""
    return out / f"chunk-{chunk_id:06d}.parquet"


def read_manifest(out: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``OUT/_manifest.json``; raise ValueError when ``out`` is not a sweep directory."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        raise ValueError(f"{os.fspath(out)!r} is not a critbatch sweep directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown format {manifest.get('format')!r}, expected {FORMAT!r}"
                         if isinstance(manifest, dict) else f"{path}: not a manifest")
    return manifest


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}{_TMP_SUFFIX}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``out`` (POSIX; a no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(out / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"another sweep is writing to {os.fspath(out)!r}") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _clean_temporaries(out: Path) -> int:
    stale = [p for p in out.iterdir() if p.name.startswith(".") and p.name.endswith(_TMP_SUFFIX)]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def _keys(plan: Plan, rows: Any = slice(None)) -> list[tuple[Any, ...]]:
    cells = plan.cells
    names = ([p.name for p in plan.problems], [o.name for o in plan.optimizers],
             [s.name for s in plan.schedules])
    return list(zip(
        (names[0][i] for i in cells["problem_index"][rows]),
        (names[1][i] for i in cells["optimizer_index"][rows]),
        (names[2][i] for i in cells["schedule_index"][rows]),
        cells["batch_size"][rows].tolist(),
        cells["learning_rate"][rows].tolist(),
        cells["seed"][rows].tolist(), strict=True))


def _generation_rows(spec: SweepSpec, plan: Plan, previous: SweepSpec | None) -> np.ndarray:
    """Rows of ``plan`` this generation runs: all of them, or those whose key is new."""
    if previous is None:
        return np.arange(len(plan))
    old = set(_keys(previous.to_plan()))
    return np.array([i for i, k in enumerate(_keys(plan)) if k not in old], dtype=np.int64)


def _chunks(rows: np.ndarray, chunk_size: int, first: int) -> list[Chunk]:
    return [(first + j, rows[i:i + chunk_size])
            for j, i in enumerate(range(0, rows.size, chunk_size))]


def check_extension(old: SweepSpec, new: SweepSpec) -> None:
    """Raise ValueError unless ``new`` only adds runs to ``old`` (see the module docstring)."""
    for attr in ("target", "seed", "backend", "device", "trajectory_every"):
        if getattr(old, attr) != getattr(new, attr):
            raise ValueError(f"--extend only adds runs, but {attr} changed from "
                             f"{getattr(old, attr)!r} to {getattr(new, attr)!r}")
    for label, a, b in (("problem", old.problems, new.problems),
                        ("optimizer", old.optimizers, new.optimizers),
                        ("schedule", old.schedules, new.schedules)):
        new_by_name = {x.name: x for x in b}
        for x in a:
            if x.name not in new_by_name:
                raise ValueError(f"--extend only adds runs, but {label} {x.name!r} is gone")
            if new_by_name[x.name] != x:
                raise ValueError(f"--extend only adds runs, but {label} {x.name!r} changed")
    for label in ("batch_sizes", "learning_rates", "seeds"):
        gone = sorted(set(getattr(old, label)) - set(getattr(new, label)))
        if gone:
            raise ValueError(f"--extend only adds runs, but {label} drops {gone}")


def run_sweep(
    spec: SweepSpec,
    out: str | os.PathLike[str],
    *,
    engine: str = "local",
    address: str | None = None,
    threads: int | None = None,
    extend: bool = False,
    progress: bool | TextIO = False,
    executor: Executor = execute,
) -> SweepSummary:
    """Run ``spec`` into the sweep directory ``out``, resuming whatever is already there.

    Args:
        spec: the sweep (:func:`critbatch.spec.load_spec` or :func:`critbatch.spec.sweep_spec`).
        out: the output directory (created if missing).
        engine: ``"local"`` or ``"ray"`` (:func:`critbatch.engines.run_chunks`).
        address: the Ray cluster address (``None``: a local Ray).
        threads: core threads per chunk; never changes results.
        extend: accept a spec that adds runs to the one in ``out`` (see the module docstring).
        progress: print a progress line to stderr (``True``) or to the given stream.
        executor: the function that runs a sub-plan (``critbatch.sweep.execute``).

    Returns:
        A :class:`SweepSummary`.

    Raises:
        ValueError: ``out`` holds another sweep (without ``extend``), the extension is not a
            superset, ``out`` is not a sweep directory, or another process is writing to it.

    Example:
        >>> import tempfile, critbatch as cb
        >>> from critbatch.spec import sweep_spec, problem
        >>> spec = sweep_spec(problem("nqm_power_law", dim=4), ["sgd"], [1, 2, 4], [0.5], 2,
        ...                   cb.targets.target(loss_below=0.5, max_steps=200), chunk_size=4)
        >>> out = tempfile.mkdtemp()
        >>> run_sweep(spec, out).ran_chunks, run_sweep(spec, out).skipped_chunks
        (2, 2)
        >>> len(load(out))
        6

    """
    if not isinstance(spec, SweepSpec):
        raise TypeError(f"spec must be a critbatch.spec.SweepSpec, got {type(spec).__name__}")
    if threads is not None:
        threads = v.threads("threads", threads)
    t0 = time.perf_counter()
    out_path = Path(out)
    if out_path.exists() and not out_path.is_dir():
        raise ValueError(f"output {os.fspath(out)!r} exists and is not a directory")
    out_path.mkdir(parents=True, exist_ok=True)
    with _locked(out_path):
        _clean_temporaries(out_path)
        manifest, generation = _prepare_manifest(spec, out_path, extend=extend)
        specs = [loads(g["spec_toml"], file=f"{MANIFEST}[generations][{i}]")
                 for i, g in enumerate(manifest["generations"])]
        todo: list[tuple[Plan, SweepSpec, list[Chunk]]] = []
        n_runs = n_done = skipped = total_chunks = 0
        for i, (gen, gspec) in enumerate(zip(manifest["generations"], specs, strict=True)):
            plan = gspec.to_plan()
            rows = _generation_rows(gspec, plan, specs[i - 1] if i else None)
            chunks = _chunks(rows, gen["chunk_size"], gen["first_chunk"])
            if len(chunks) != gen["n_chunks"] or rows.size != gen["n_runs"]:
                raise ValueError(f"{out_path / MANIFEST}: generation {i} records "
                                 f"{gen['n_chunks']} chunks of {gen['n_runs']} runs, but its spec "
                                 f"gives {len(chunks)} of {rows.size}")
            missing = []
            for chunk_id, chunk_rows in chunks:
                if _finished(out_path, chunk_id, chunk_rows.size):
                    skipped += 1
                    n_done += chunk_rows.size
                else:
                    missing.append((chunk_id, chunk_rows))
            n_runs += rows.size
            total_chunks += len(chunks)
            if missing:
                todo.append((plan, gspec, missing))
        bar = None
        if progress:
            bar = Progress(n_runs, done=n_done, stream=None if progress is True else progress)
        ran = 0
        for plan, gspec, missing in todo:
            def store(chunk_id: int, res: Results, gspec: SweepSpec = gspec) -> None:
                nonlocal ran
                _write_chunk(out_path, chunk_id, res, gspec)
                ran += 1
                if bar is not None:
                    bar.advance(len(res))

            run_chunks(plan, missing, store, engine=engine, address=address,
                       backend=gspec.backend, device=gspec.device, threads=threads,
                       executor=executor)
        if bar is not None:
            bar.finish()
    return SweepSummary(out_path, n_runs, total_chunks, ran, skipped,
                        time.perf_counter() - t0, generation)


def _prepare_manifest(spec: SweepSpec, out: Path, *, extend: bool) -> tuple[dict[str, Any], int]:
    """Read or create the manifest; append a generation when extending. Return it and the index."""
    digest = spec.hash()
    from critbatch import __version__

    if not (out / MANIFEST).exists():
        leftovers = [p.name for p in out.iterdir() if not p.name.startswith(".")]
        if leftovers:
            raise ValueError(f"output {os.fspath(out)!r} is not empty and holds no sweep "
                             f"(found {leftovers[:3]}); choose a new or empty directory")
        manifest: dict[str, Any] = {"format": FORMAT, "generations": []}
        previous: SweepSpec | None = None
    else:
        manifest = read_manifest(out)
        hashes = [g["spec_hash"] for g in manifest["generations"]]
        if digest in hashes:
            return manifest, hashes.index(digest)
        previous = loads(manifest["generations"][-1]["spec_toml"], file=f"{out / MANIFEST}")
        if not extend:
            raise ValueError(
                f"{os.fspath(out)!r} holds a different sweep (spec hash {hashes[-1][:12]}, this "
                f"spec {digest[:12]}); use a new output directory, or --extend to add runs")
        check_extension(previous, spec)
    plan = spec.to_plan()
    rows = _generation_rows(spec, plan, previous)
    first = sum(g["n_chunks"] for g in manifest["generations"])
    manifest["generations"].append({
        "spec_hash": digest,
        "spec_toml": spec.to_toml(),
        "chunk_size": spec.chunk_size,
        "first_chunk": first,
        "n_chunks": len(_chunks(rows, spec.chunk_size, first)),
        "n_runs": int(rows.size),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "critbatch_version": __version__,
    })
    latest = manifest["generations"][-1]
    manifest.update({
        "critbatch_version": __version__,
        "spec_hash": digest,
        "spec_toml": latest["spec_toml"],
        "spec": spec.to_dict(),
        "chunk_size": spec.chunk_size,
        "n_chunks": sum(g["n_chunks"] for g in manifest["generations"]),
        "n_runs": sum(g["n_runs"] for g in manifest["generations"]),
    })
    _write_json_atomic(out / MANIFEST, manifest)
    return manifest, len(manifest["generations"]) - 1


def _finished(out: Path, chunk_id: int, n_rows: int) -> bool:
    path = chunk_path(out, chunk_id)
    if not path.exists():
        return False
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(path).metadata.num_rows
    if rows != n_rows:
        raise ValueError(f"{path} holds {rows} runs, expected {n_rows}: the directory was "
                         "changed by something else than critbatch; remove that file to rerun it")
    return True


def _write_chunk(out: Path, chunk_id: int, res: Results, spec: SweepSpec) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = res.to_arrow()
    if spec.trajectory_every:
        table = table.append_column("trajectory", pa.array(
            [np.asarray(t, dtype=np.float64) for t in res.trajectories],
            type=pa.list_(pa.float64())))
    table = table.replace_schema_metadata({"critbatch.spec_hash": spec.hash(),
                                           "critbatch.chunk": str(chunk_id)})
    final = chunk_path(out, chunk_id)
    tmp = out / f".{final.name}.{os.getpid()}{_TMP_SUFFIX}"
    pq.write_table(table, tmp)
    os.replace(tmp, final)


def _chunk_files(out: Path, manifest: dict[str, Any], allow_partial: bool) -> list[Path]:
    total = sum(g["n_chunks"] for g in manifest["generations"])
    files = [chunk_path(out, i) for i in range(total)]
    present = [f for f in files if f.exists()]
    if len(present) < total and not allow_partial:
        raise ValueError(f"{os.fspath(out)!r} holds {len(present)} of {total} chunks; run the "
                         "sweep again to finish it, or pass allow_partial=True")
    return present


def _read_table(out: str | os.PathLike[str], allow_partial: bool) -> tuple[Any, dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_path = Path(out)
    manifest = read_manifest(out_path)
    files = _chunk_files(out_path, manifest, allow_partial)
    if not files:
        raise ValueError(f"{os.fspath(out)!r} holds no finished chunk yet")
    table = pa.concat_tables([pq.read_table(f) for f in files])
    return table.replace_schema_metadata(None), manifest


def load_frame(out: str | os.PathLike[str], *, allow_partial: bool = False) -> Any:
    """Read a sweep directory as a pandas DataFrame (one row per run, in chunk order).

    Raises:
        ValueError: ``out`` is not a sweep directory, or chunks are missing and not
            ``allow_partial``.

    """
    table, _ = _read_table(out, allow_partial)
    return table.to_pandas()


def load(out: str | os.PathLike[str], *, allow_partial: bool = False) -> Results:
    """Read a sweep directory as :class:`critbatch.results.Results` (specs from its latest spec).

    Args:
        out: the directory :func:`run_sweep` wrote.
        allow_partial: read an unfinished sweep instead of raising.

    Returns:
        The runs in chunk order, which is plan order for a sweep that was never extended.

    Raises:
        ValueError: ``out`` is not a sweep directory, or chunks are missing.

    """
    table, manifest = _read_table(out, allow_partial)
    columns: dict[str, np.ndarray] = {}
    trajectories: list[np.ndarray] = []
    for name in table.column_names:
        column = table.column(name)
        if name == "trajectory":
            trajectories = [np.asarray(x, dtype=np.float64) for x in column.to_pylist()]
        elif name in SPEC_COLUMNS[1:4]:
            columns[name] = np.asarray(column.to_pylist(), dtype=object)
        else:
            columns[name] = column.to_numpy()
    spec = loads(manifest["generations"][-1]["spec_toml"], file=f"{out}/{MANIFEST}")
    return Results(columns, trajectories, {**plan_specs(spec.to_plan()), "spec": spec})


def spec_of(out: str | os.PathLike[str]) -> SweepSpec:
    """Return the latest spec stored in a sweep directory."""
    manifest = read_manifest(out)
    return loads(manifest["generations"][-1]["spec_toml"], file=f"{os.fspath(out)}/{MANIFEST}")


def progress_counts(out: str | os.PathLike[str]) -> tuple[int, int]:
    """Count ``(finished chunks, total chunks)`` of a sweep directory."""
    manifest = read_manifest(out)
    total = sum(g["n_chunks"] for g in manifest["generations"])
    return sum(chunk_path(Path(out), i).exists() for i in range(total)), total
