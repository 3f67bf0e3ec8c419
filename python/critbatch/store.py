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
any moment (even ``kill -9``) loses only the runs in flight; running the same spec on the same
``OUT`` again skips the finished chunks and cleans the stale temporary files. The manifest is
written (atomically too) before the first chunk of a spec runs. Files are not fsync'ed: a killed
process loses nothing, but a power cut may lose or truncate the last chunks written.

Interrupts: Ctrl-C stops the chunk in flight within a fraction of a second (see
:mod:`critbatch.sweep`); its finished runs go to ``OUT/_partial-NNNNNN.parquet`` (a name Parquet
readers skip), and a rerun runs only the rest of that chunk, then writes the whole chunk in plan
order and removes the partial file: the table equals the uninterrupted one, row for row.

Concurrency: any number of processes may run the same spec on the same ``OUT`` at once; they
share the work. A short exclusive lock (``OUT/.lock``) covers the manifest; each chunk is claimed
with an advisory lock held while it runs (the OS releases it when the process dies), on the
chunk's byte of ``OUT/.claims`` (Linux) or on a file ``OUT/.claim-NNNNNN`` (elsewhere), and a
process that finds a chunk claimed runs the others, then waits for that claim and looks again,
so every chunk is written once and none is lost. (The locks belong to an open file, as
``flock`` locks do: they exclude processes, and threads that each call :func:`run_sweep`.)
A process of an older critbatch, which claims with the files only, does not see byte claims:
run one version at a time on an ``OUT``.

Faults: a chunk that cannot be written (a full disk) leaves the finished chunks and a one-line
``OSError`` that names the file; the same command resumes. A chunk or partial file that Parquet
cannot read (truncated) is named in the error :func:`load` raises, and a rerun sets it aside as
``OUT/_corrupt-<name>`` (renamed, never deleted), warns with a :class:`StoreWarning` and runs its
runs again.

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
import errno
import json
import os
import re
import struct
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from critbatch import _validate as v
from critbatch.engines import Chunk, Executor, Progress, run_chunks
from critbatch.plan import Plan
from critbatch.results import SPEC_COLUMNS, Results, arrow_array, plan_specs
from critbatch.spec import SweepSpec, loads
from critbatch.sweep import execute

__all__ = [
    "MANIFEST",
    "StoreWarning",
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
_CLAIM_PREFIX = ".claim-"
_CLAIMS = ".claims"
_CORRUPT_PREFIX = "_corrupt-"


class StoreWarning(UserWarning):
    """A sweep directory was repaired on resume: a file Parquet cannot read was set aside."""


@dataclass(frozen=True)
class SweepSummary:
    """What :func:`run_sweep` did: chunks run now, chunks found finished, and the totals.

    Chunks that another process ran at the same time count in neither ``ran_chunks`` nor
    ``skipped_chunks``.
    """

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


def partial_path(out: Path, chunk_id: int) -> Path:
    """Return the file of the runs of chunk ``chunk_id`` that an interrupt let finish."""
    return out / f"_partial-{chunk_id:06d}.parquet"


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
        raise ValueError(
            f"{path}: unknown format {manifest.get('format')!r}, expected {FORMAT!r}"
            if isinstance(manifest, dict)
            else f"{path}: not a manifest"
        )
    return manifest


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}{_TMP_SUFFIX}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold the exclusive advisory lock of ``out`` (waiting for it; a no-op without fcntl)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(out / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _byte_locks() -> bool:
    """Whether the OS has open-file-description byte-range locks (Linux: ``F_OFD_SETLK``)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return False
    return hasattr(fcntl, "F_OFD_SETLK")


class _Claims:
    """Per-chunk advisory locks, held while this process runs the chunk.

    With open-file-description locks (Linux), a chunk's claim is a lock on its byte (the byte
    at offset chunk id) of one empty file, ``OUT/.claims``; elsewhere it is a ``flock`` on a
    file per chunk, ``OUT/.claim-NNNNNN``. Both are held by an open file, not a process, so
    they exclude other processes and other threads that each run a sweep, and the OS drops them
    when the process dies. One file for all claims spares creating a file per chunk, which on a
    busy ext4 folder measured up to a millisecond of kernel time (``perf``: the inode search
    skips inodes freed in the last minutes).
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.held: dict[int, int] = {}  # chunk id -> the descriptor holding its lock
        self.bytes = _byte_locks()
        self.claims_fd: int | None = None  # OUT/.claims, when self.bytes

    def _lock(self, chunk_id: int, *, wait: bool) -> bool:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: one process per output
            return True
        if chunk_id in self.held:
            return True
        if self.bytes:
            if self.claims_fd is None:
                self.claims_fd = os.open(self.out / _CLAIMS, os.O_RDWR | os.O_CREAT, 0o666)
            fd = self.claims_fd
        else:
            fd = os.open(self.out / f"{_CLAIM_PREFIX}{chunk_id:06d}", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if self.bytes:
                command = fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK
                fcntl.fcntl(fd, command, _byte_range(fcntl.F_WRLCK, chunk_id))
            else:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as err:
            if not self.bytes:
                os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES):  # held by another open file
                return False
            raise
        self.held[chunk_id] = fd
        return True

    def try_claim(self, chunk_id: int) -> bool:
        """Claim the chunk unless another process holds it."""
        return self._lock(chunk_id, wait=False)

    def wait(self, chunk_id: int) -> None:
        """Wait until no other process holds the chunk (and hold it)."""
        self._lock(chunk_id, wait=True)

    def release(self, chunk_id: int) -> None:
        """Let other processes claim the chunk."""
        fd = self.held.pop(chunk_id, None)
        if fd is None:
            return
        if self.bytes:
            import fcntl

            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _byte_range(fcntl.F_UNLCK, chunk_id))
        else:
            os.close(fd)  # closing the last descriptor releases the flock

    def release_all(self) -> None:
        """Release every claim this process holds."""
        for chunk_id in list(self.held):
            self.release(chunk_id)
        if self.claims_fd is not None:
            os.close(self.claims_fd)
            self.claims_fd = None


def _byte_range(kind: int, offset: int) -> bytes:
    """A C ``struct flock`` for ``fcntl``: lock ``kind`` on the one byte at ``offset``.

    The fields in order (``short l_type, l_whence; off_t l_start, l_len; pid_t l_pid``), with
    the platform's alignment; ``l_pid`` must be 0 for open-file-description locks.
    """
    return struct.pack("hhqqi", kind, os.SEEK_SET, offset, 1, 0)


def _temporaries(out: Path) -> dict[str, list[Path]]:
    """The temporary files in ``out`` (``.NAME.PID.tmp``), grouped by the NAME they were for."""
    found: dict[str, list[Path]] = {}
    with os.scandir(out) as entries:
        for e in entries:
            if e.name.startswith(".") and e.name.endswith(_TMP_SUFFIX):
                name = e.name[1 : -len(_TMP_SUFFIX)].rpartition(".")[0]
                found.setdefault(name, []).append(Path(e.path))
    return found


def _set_aside(path: Path, reason: str) -> Path:
    """Rename an unreadable file to ``_corrupt-<name>`` (``.1``, ``.2``... if taken) and warn."""
    target = path.with_name(_CORRUPT_PREFIX + path.name)
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{_CORRUPT_PREFIX}{path.name}.{n}")
    os.replace(path, target)
    warnings.warn(
        f"{path} is not a readable Parquet file ({reason}); set aside as "
        f"{target.name}, its runs run again",
        StoreWarning,
        stacklevel=4,
    )
    return target


def _parquet_rows(path: Path) -> int | None:
    """The number of rows of a Parquet file, or None when it cannot be read (truncated)."""
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
        return None


def _keys(plan: Plan, rows: Any = slice(None)) -> list[tuple[Any, ...]]:
    cells = plan.cells
    names = (
        [p.name for p in plan.problems],
        [o.name for o in plan.optimizers],
        [s.name for s in plan.schedules],
    )
    return list(
        zip(
            (names[0][i] for i in cells["problem_index"][rows]),
            (names[1][i] for i in cells["optimizer_index"][rows]),
            (names[2][i] for i in cells["schedule_index"][rows]),
            cells["batch_size"][rows].tolist(),
            cells["learning_rate"][rows].tolist(),
            cells["seed"][rows].tolist(),
            strict=True,
        )
    )


def _generation_rows(spec: SweepSpec, plan: Plan, previous: SweepSpec | None) -> np.ndarray:
    """Rows of ``plan`` this generation runs: all of them, or those whose key is new."""
    if previous is None:
        return np.arange(len(plan))
    old = set(_keys(previous.to_plan()))
    return np.array([i for i, k in enumerate(_keys(plan)) if k not in old], dtype=np.int64)


def _chunks(rows: np.ndarray, chunk_size: int, first: int) -> list[Chunk]:
    return [
        (first + j, rows[i : i + chunk_size]) for j, i in enumerate(range(0, rows.size, chunk_size))
    ]


def check_extension(old: SweepSpec, new: SweepSpec) -> None:
    """Raise ValueError unless ``new`` only adds runs to ``old`` (see the module docstring)."""
    for attr in (
        "target",
        "seed",
        "backend",
        "device",
        "trajectory_every",
        "trajectory_metrics",
        "dtype",
        "precision",
        "mode",
        "common_random_numbers",
        "weight_averaging",
    ):
        if getattr(old, attr) != getattr(new, attr):
            raise ValueError(
                f"--extend only adds runs, but {attr} changed from "
                f"{getattr(old, attr)!r} to {getattr(new, attr)!r}"
            )
    if (old.search or new.search) and not (old.search and old.search.extended_by(new.search)):
        raise ValueError(
            "--extend only adds runs, but the search changed in more than its number of "
            "trials (a larger budget of the same space, method and seed adds trials)"
        )
    for label, a, b in (
        ("problem", old.problems, new.problems),
        ("optimizer", old.optimizers, new.optimizers),
        ("schedule", old.schedules, new.schedules),
    ):
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
        progress: print a progress line, counting every run as it finishes, to stderr
            (``True``) or to the given stream.
        executor: the function that runs a sub-plan (``critbatch.sweep.execute``).

    Returns:
        A :class:`SweepSummary`.

    Raises:
        ValueError: ``out`` holds another sweep (without ``extend``), the extension is not a
            superset, or ``out`` is not a sweep directory.
        OSError: a chunk could not be written (a full disk): one line naming the file; the
            chunks written before are kept and the same call resumes.
        critbatch.SweepInterrupted: on Ctrl-C, once the finished runs of the chunk in flight
            are kept (``OUT/_partial-NNNNNN.parquet``); the same call resumes.

    Another process running the same spec on ``out`` at the same time shares the chunks with
    this one (see the module docstring); a warning (:class:`StoreWarning`) says when an
    unreadable file was set aside.

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
    spec_plan = spec.to_plan()
    with _locked(out_path):
        temporaries = _temporaries(out_path)
        for p in temporaries.pop(MANIFEST, []):
            p.unlink(missing_ok=True)
        manifest, generation = _prepare_manifest(spec, spec_plan, out_path, extend=extend)
    digest = spec.hash()
    specs = [  # the given spec where it is the generation's (no second validation of its plan)
        spec
        if g["spec_hash"] == digest
        else loads(g["spec_toml"], file=f"{MANIFEST}[generations][{i}]")
        for i, g in enumerate(manifest["generations"])
    ]
    writer = _Writer(out_path, temporaries)
    todo: list[tuple[Plan, SweepSpec, dict[int, np.ndarray], list[Chunk]]] = []
    n_runs = skipped = total_chunks = 0
    for i, (gen, gspec) in enumerate(zip(manifest["generations"], specs, strict=True)):
        plan = spec_plan if gspec is spec else gspec.to_plan()
        rows = _generation_rows(gspec, plan, specs[i - 1] if i else None)
        chunks = _chunks(rows, gen["chunk_size"], gen["first_chunk"])
        if len(chunks) != gen["n_chunks"] or rows.size != gen["n_runs"]:
            raise ValueError(
                f"{out_path / MANIFEST}: generation {i} records "
                f"{gen['n_chunks']} chunks of {gen['n_runs']} runs, but its spec "
                f"gives {len(chunks)} of {rows.size}"
            )
        missing = []
        for chunk_id, chunk_rows in chunks:
            if _finished(out_path, chunk_id, chunk_rows.size):
                skipped += 1
                writer.done += chunk_rows.size
            else:
                missing.append((chunk_id, chunk_rows))
                writer.counted[chunk_id] = _partial_rows(out_path, chunk_id)
                writer.done += writer.counted[chunk_id]
        n_runs += rows.size
        total_chunks += len(chunks)
        if missing:
            todo.append((plan, gspec, dict(chunks), missing))
    if progress:
        writer.bar = Progress(
            n_runs, done=writer.done, stream=None if progress is True else progress
        )
    try:
        while todo:
            busy: list[tuple[Plan, SweepSpec, dict[int, np.ndarray], list[Chunk]]] = []
            for plan, gspec, full, missing in todo:
                elsewhere: list[Chunk] = []
                run_chunks(
                    plan,
                    missing,
                    writer.on_done(plan, gspec, full),
                    engine=engine,
                    address=address,
                    backend=gspec.backend,
                    device=gspec.device,
                    threads=threads,
                    executor=executor,
                    claim=writer.claim(plan, gspec, elsewhere),
                    on_interrupt=writer.on_interrupt(plan, gspec, full),
                    progress=writer.advance,
                )
                if elsewhere:
                    busy.append((plan, gspec, full, elsewhere))
            # Chunks another process is running: wait for it, then look again (it may have
            # been interrupted, and left the chunk or part of it to run).
            for *_, elsewhere in busy:
                for chunk_id, _rows in elsewhere:
                    writer.claims.wait(chunk_id)
                    writer.claims.release(chunk_id)
            todo = busy
    finally:
        writer.claims.release_all()
        if writer.bar is not None:
            writer.bar.finish()  # ends the line on a terminal, also before an error's message
    with _locked(out_path):
        _clean_finished(out_path, total_chunks)
    return SweepSummary(
        out_path, n_runs, total_chunks, writer.ran, skipped, time.perf_counter() - t0, generation
    )


class _Writer:
    """The store's side of the engines' callbacks: claims, partial chunks, files, progress."""

    def __init__(self, out: Path, temporaries: dict[str, list[Path]]) -> None:
        self.out = out
        self.claims = _Claims(out)
        # Temporary files found at the start, by the file they were for: a chunk's are stale
        # once this process holds its claim (a later one is left to _clean_finished). One scan
        # per sweep: a scan per chunk grew with the folder (1.2 ms a chunk at 1,000 chunks).
        self.temporaries = temporaries
        self.partials: dict[int, Any] = {}  # chunk id -> the partial table read when claimed
        self.ran = 0
        self.done = 0  # runs finished, in chunks written or partial files
        self.counted: dict[int, int] = {}  # chunk id -> its runs counted in `done` so far
        self.live = 0  # runs finished in the chunks in flight
        self.bar: Progress | None = None
        # The local engine stores a chunk in its own thread while the next one runs.
        self.counting = threading.Lock()
        self.specs: dict[int, dict[str, str]] = {}  # id(spec) -> its file metadata

    def metadata(self, spec: SweepSpec, chunk_id: int) -> dict[str, str]:
        """The key-value metadata of a chunk's file (the spec's part made once per sweep)."""
        # The spec travels with every file, so that a chunk copied out of its folder still
        # says what produced it (any Parquet reader shows the key-value metadata).
        if id(spec) not in self.specs:
            self.specs[id(spec)] = {
                "critbatch.spec_hash": spec.hash(),
                "critbatch.spec_toml": spec.to_toml(),
                "critbatch.version": _version(),
            }
        return {**self.specs[id(spec)], "critbatch.chunk": str(chunk_id)}

    def advance(self, runs: int) -> None:
        with self.counting:
            self.live += runs
            self._show()

    def _complete(self, chunk_id: int, size: int) -> None:
        with self.counting:
            self.done += size - self.counted.pop(chunk_id, 0)
            self._show()

    def _show(self) -> None:
        if self.bar is not None and self.done + self.live > self.bar.done:
            self.bar.advance(self.done + self.live - self.bar.done)

    def claim(self, plan: Plan, spec: SweepSpec, elsewhere: list[Chunk]) -> Any:
        def claim(chunk_id: int, rows: np.ndarray) -> np.ndarray | None:
            if not self.claims.try_claim(chunk_id):
                elsewhere.append((chunk_id, rows))
                return None
            try:
                remaining = self._prepare(plan, spec, chunk_id, rows)
            except BaseException:
                self.claims.release(chunk_id)
                raise
            if remaining is None:
                self.claims.release(chunk_id)
            return remaining

        return claim

    def _prepare(
        self, plan: Plan, spec: SweepSpec, chunk_id: int, rows: np.ndarray
    ) -> np.ndarray | None:
        """With the chunk claimed: the rows still to run, or None when there are none."""
        final = chunk_path(self.out, chunk_id)
        for name in (final.name, partial_path(self.out, chunk_id).name):
            for p in self.temporaries.pop(name, []):
                p.unlink(missing_ok=True)
        if final.exists():
            n = _parquet_rows(final)
            if n is not None:
                _check_rows(final, n, rows.size)
                self._complete(chunk_id, rows.size)  # by another process
                return None
            _set_aside(final, "truncated or corrupt")
        partial = _read_partial(self.out, chunk_id, spec, plan.cells["run_index"][rows])
        if partial is None:
            return rows
        kept = set(partial.column("run_index").to_pylist())
        remaining = rows[[int(r) not in kept for r in plan.cells["run_index"][rows]]]
        self.partials[chunk_id] = partial
        if remaining.size == 0:  # the interrupt came after the chunk's last run
            self._write(plan, spec, chunk_id, rows, None)
            return None
        return remaining

    def on_done(self, plan: Plan, spec: SweepSpec, full: dict[int, np.ndarray]) -> Any:
        def on_done(chunk_id: int, res: Results) -> None:
            with self.counting:
                self.live = max(0, self.live - len(res))
            self._write(plan, spec, chunk_id, full[chunk_id], res)

        return on_done

    def _write(
        self, plan: Plan, spec: SweepSpec, chunk_id: int, rows: np.ndarray, res: Results | None
    ) -> None:
        table = self._chunk_table(spec, chunk_id, res, plan.cells["run_index"][rows])
        _write_table(self.out, chunk_path(self.out, chunk_id), table, self.metadata(spec, chunk_id))
        partial_path(self.out, chunk_id).unlink(missing_ok=True)
        self.ran += 1
        self.claims.release(chunk_id)
        self._complete(chunk_id, rows.size)

    def _chunk_table(
        self,
        spec: SweepSpec,
        chunk_id: int,
        res: Results | None,
        run_index: np.ndarray,
        *,
        complete: bool = True,
    ) -> Any:
        """The runs of ``res`` and of the chunk's partial file (read when claimed), in order."""
        parts = [] if res is None else [(_to_table(res, spec), res["run_index"])]
        partial = self.partials.pop(chunk_id, None)
        if partial is not None:
            parts.insert(0, (partial, partial.column("run_index").to_numpy()))
        return _in_order(parts, run_index, complete=complete)

    def on_interrupt(self, plan: Plan, spec: SweepSpec, full: dict[int, np.ndarray]) -> Any:
        def on_interrupt(chunk_id: int, finished: Results) -> None:
            """Keep the runs Ctrl-C let finish; a failure to write them only loses them."""
            try:
                run_index = plan.cells["run_index"][full[chunk_id]]
                table = self._chunk_table(spec, chunk_id, finished, run_index, complete=False)
                _write_table(
                    self.out, partial_path(self.out, chunk_id), table, self.metadata(spec, chunk_id)
                )
            except OSError as err:
                warnings.warn(
                    f"the {len(finished)} runs finished in chunk {chunk_id} before the "
                    f"interrupt could not be kept: {err}",
                    StoreWarning,
                    stacklevel=2,
                )
            finally:
                self.claims.release(chunk_id)

        return on_interrupt


def _prepare_manifest(
    spec: SweepSpec, plan: Plan, out: Path, *, extend: bool
) -> tuple[dict[str, Any], int]:
    """Read or create the manifest; append a generation when extending. Return it and the index.

    ``plan`` is ``spec.to_plan()``, made once by the caller.
    """
    digest = spec.hash()
    from critbatch import __version__

    if not (out / MANIFEST).exists():
        leftovers = [p.name for p in out.iterdir() if not p.name.startswith(".")]
        if leftovers:
            raise ValueError(
                f"output {os.fspath(out)!r} is not empty and holds no sweep "
                f"(found {leftovers[:3]}); choose a new or empty directory"
            )
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
                f"spec {digest[:12]}); use a new output directory, or --extend to add runs"
            )
        check_extension(previous, spec)
    rows = _generation_rows(spec, plan, previous)
    first = sum(g["n_chunks"] for g in manifest["generations"])
    manifest["generations"].append(
        {
            "spec_hash": digest,
            "spec_toml": spec.to_toml(),
            "chunk_size": spec.chunk_size,
            "first_chunk": first,
            "n_chunks": len(_chunks(rows, spec.chunk_size, first)),
            "n_runs": int(rows.size),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "critbatch_version": __version__,
        }
    )
    latest = manifest["generations"][-1]
    manifest.update(
        {
            "critbatch_version": __version__,
            "spec_hash": digest,
            "spec_toml": latest["spec_toml"],
            "spec": spec.to_dict(),
            "chunk_size": spec.chunk_size,
            "n_chunks": sum(g["n_chunks"] for g in manifest["generations"]),
            "n_runs": sum(g["n_runs"] for g in manifest["generations"]),
        }
    )
    _write_json_atomic(out / MANIFEST, manifest)
    return manifest, len(manifest["generations"]) - 1


def _check_rows(path: Path, rows: int, expected: int) -> None:
    if rows != expected:
        raise ValueError(
            f"{path} holds {rows} runs, expected {expected}: the directory was "
            "changed by something else than critbatch; remove that file to rerun it"
        )


def _finished(out: Path, chunk_id: int, n_rows: int) -> bool:
    """Whether the chunk's file is there and readable (a truncated one is not finished)."""
    path = chunk_path(out, chunk_id)
    if not path.exists():
        return False
    rows = _parquet_rows(path)
    if rows is None:
        return False
    _check_rows(path, rows, n_rows)
    return True


def _partial_rows(out: Path, chunk_id: int) -> int:
    path = partial_path(out, chunk_id)
    return (_parquet_rows(path) or 0) if path.exists() else 0


def _read_partial(out: Path, chunk_id: int, spec: SweepSpec, run_index: np.ndarray) -> Any:
    """The partial table of a chunk, or None; set aside one that is unreadable or foreign."""
    import pyarrow.parquet as pq

    path = partial_path(out, chunk_id)
    if not path.exists():
        return None
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as err:
        _set_aside(path, f"{type(err).__name__}: {' '.join(str(err).split())}")
        return None
    meta = table.schema.metadata or {}
    ri = table.column("run_index").to_numpy() if "run_index" in table.column_names else None
    if (
        meta.get(b"critbatch.spec_hash") != spec.hash().encode()
        or ri is None
        or len(set(ri.tolist())) != ri.size
        or not np.isin(ri, run_index).all()
    ):
        _set_aside(path, "not runs of this chunk")
        return None
    return table.replace_schema_metadata(None)


def _to_table(res: Results, spec: SweepSpec) -> Any:
    """The runs as an Arrow table for a chunk file: string columns as dictionary arrays."""
    table = res.to_arrow(dictionary=True)
    if not spec.trajectory_every:
        return table
    for metric, name, paths in (
        ("loss", "trajectory", res.trajectories),
        ("grad_norm", "grad_norm_trajectory", res.grad_norm_trajectories),
    ):
        if metric in spec.trajectory_metrics:
            table = table.append_column(name, _float_lists(paths))
    return table


def _float_lists(values: list[np.ndarray]) -> Any:
    """A ``list<double>`` column of 1-D arrays, concatenated once instead of row by row."""
    import pyarrow as pa

    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum([np.size(x) for x in values], out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError(
            f"the trajectories of one chunk hold {offsets[-1]} values, more than a Parquet "
            "list column of one file takes (2**31 - 1); use a smaller chunk_size"
        )
    flat = np.concatenate([np.ravel(x) for x in values] or [np.zeros(0)], dtype=np.float64)
    return pa.ListArray.from_arrays(arrow_array(offsets.astype(np.int32)), arrow_array(flat))


def _plain_strings(table: Any) -> Any:
    """``table`` with its dictionary (string) columns decoded to plain strings."""
    import pyarrow as pa

    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(f.type.value_type))
    return table


def _in_order(
    parts: list[tuple[Any, np.ndarray]], run_index: np.ndarray, *, complete: bool = True
) -> Any:
    """Stack tables of runs of one chunk in the chunk's order (``run_index``, plan order).

    ``parts`` pairs each table with its ``run_index`` column as numpy (taken from the results,
    not from the table: pyarrow's conversion to numpy imports pandas, half a second).
    """
    import pyarrow as pa

    # A partial file reads back with plain strings: decode the fresh table's to match it.
    tables = [t for t, _ in parts]
    table = pa.concat_tables([_plain_strings(t) for t in tables]) if len(tables) > 1 else tables[0]
    ri = np.concatenate([np.asarray(r, dtype=np.int64) for _, r in parts])
    if np.array_equal(ri, run_index):
        return table  # one table in plan order: the usual case, nothing to move
    # The position of each row's run in the chunk, vectorized (a dict of 10,000 Python ints per
    # chunk cost a tenth of the sweep layer's time on tiny runs; benches/bench_sweep_overhead.py).
    order = np.argsort(run_index, kind="stable")
    where = order[np.minimum(np.searchsorted(run_index, ri, sorter=order), run_index.size - 1)]
    if not np.array_equal(run_index[where], ri):
        raise ValueError("a table holds runs that are not in the chunk")  # pragma: no cover
    if complete and not np.array_equal(np.sort(where), np.arange(run_index.size)):
        raise ValueError(
            f"the runs of a chunk do not cover it once ({where.size} rows for "
            f"{run_index.size} runs)"
        )  # pragma: no cover - internal invariant
    return table.take(arrow_array(np.argsort(where, kind="stable")))


def _version() -> str:
    from critbatch import __version__

    return __version__


def _write_table(out: Path, final: Path, table: Any, metadata: dict[str, str]) -> None:
    """Write ``table`` with ``metadata`` to ``final`` atomically (a temporary file renamed in).

    Raises:
        OSError: with a one-line message naming the file (the disk is full, say); the
            temporary file is removed, the finished chunks stay, and a rerun resumes.

    """
    tmp = out / f".{final.name}.{os.getpid()}{_TMP_SUFFIX}"
    try:
        _write_parquet(tmp, table, metadata)
        os.replace(tmp, final)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        reason = " ".join((err.strerror or str(err)).split())
        raise OSError(
            err.errno,
            f"could not write {final} ({reason}); the chunks written "
            "before are kept: fix the cause and run the same sweep again to resume",
        ) from err


def _writer_adds_metadata() -> bool:
    """Whether pyarrow's ParquetWriter adds key-value metadata to an open file (pyarrow >= 17)."""
    import pyarrow.parquet as pq

    return hasattr(pq.ParquetWriter, "add_key_value_metadata")


def _write_parquet(path: Path, table: Any, metadata: dict[str, str]) -> None:
    """Write ``table`` to ``path`` as plain Parquet, ``metadata`` as the file's key-value pairs.

    The string columns come as dictionary arrays, which the writer stores as they are (a
    dictionary page and the codes) instead of hashing every row's string, and the file keeps
    no Arrow schema: readers given one would rebuild dictionary (categorical) columns, readers
    without one read plain strings, and every other column type (uint64, int64, float64,
    bool, list of float64) reads back the same. pyarrow before 17 cannot add the metadata
    without the Arrow schema, so there the strings are decoded first and the schema kept.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Dictionary pages only for the string columns (spec names, stop reasons): the numeric ones
    # are mostly distinct, and trying them cost a quarter of the write of a 10,000-run chunk
    # (median 5.2 -> 3.7 ms, and a file 10 % smaller; benches/bench_sweep_overhead.py's grid).
    strings = [
        f.name for f in table.schema if pa.types.is_dictionary(f.type) or pa.types.is_string(f.type)
    ]
    if not _writer_adds_metadata():
        table = _plain_strings(table).replace_schema_metadata(metadata)
        pq.write_table(table, path, use_dictionary=strings)
        return
    with pq.ParquetWriter(path, table.schema, store_schema=False, use_dictionary=strings) as w:
        w.write_table(table)
        w.add_key_value_metadata(metadata)


_LEFTOVER = re.compile(
    r"^(?:\.claim-(\d{6})|\.(?:chunk|_partial)-(\d{6})\.parquet\.\d+\.tmp"
    r"|_partial-(\d{6})\.parquet)$"
)


def _clean_finished(out: Path, total: int) -> None:
    """Once chunks ``0..total-1`` are written, drop their claims and stale leftovers.

    Leftovers are what killed processes left (temporaries, partial files); the files of chunks
    that a concurrent extension of the sweep added are not touched.
    """
    if not all(chunk_path(out, i).exists() for i in range(total)):
        return
    for p in out.iterdir():
        match = _LEFTOVER.match(p.name)
        if match and int(next(g for g in match.groups() if g is not None)) < total:
            p.unlink(missing_ok=True)


def _chunk_files(out: Path, manifest: dict[str, Any], allow_partial: bool) -> list[Path]:
    total = sum(g["n_chunks"] for g in manifest["generations"])
    files = [chunk_path(out, i) for i in range(total)]
    present = [f for f in files if f.exists()]
    if len(present) < total:
        if not allow_partial:
            raise ValueError(
                f"{os.fspath(out)!r} holds {len(present)} of {total} chunks; run "
                "the sweep again to finish it, or read it partially "
                "(allow_partial=True, --allow-partial)"
            )
        warnings.warn(
            f"{os.fspath(out)!r} is a partial sweep: {len(present)} of {total} chunks "
            "finished; the missing runs are absent, not failed",
            StoreWarning,
            stacklevel=4,
        )
    return present


def _read_table(out: str | os.PathLike[str], allow_partial: bool) -> tuple[Any, dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_path = Path(out)
    manifest = read_manifest(out_path)
    files = _chunk_files(out_path, manifest, allow_partial)
    if not files:
        raise ValueError(f"{os.fspath(out)!r} holds no finished chunk yet")
    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f))
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise ValueError(
                f"{f} is not a readable Parquet file ({' '.join(str(err).split())});"
                " run the sweep again to set it aside and redo its runs"
            ) from None
    table = pa.concat_tables(tables)
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
    trajectories: dict[str, list[np.ndarray]] = {"trajectory": [], "grad_norm_trajectory": []}
    for name in table.column_names:
        column = table.column(name)
        if name in trajectories:
            trajectories[name] = [np.asarray(x, dtype=np.float64) for x in column.to_pylist()]
        elif name in SPEC_COLUMNS[1:4]:
            columns[name] = np.asarray(column.to_pylist(), dtype=object)
        else:
            columns[name] = column.to_numpy()
    spec = loads(manifest["generations"][-1]["spec_toml"], file=f"{out}/{MANIFEST}")
    return Results(
        columns,
        trajectories["trajectory"],
        {**plan_specs(spec.to_plan()), "spec": spec},
        trajectories["grad_norm_trajectory"],
    )


def spec_of(out: str | os.PathLike[str]) -> SweepSpec:
    """Return the latest spec stored in a sweep directory."""
    manifest = read_manifest(out)
    return loads(manifest["generations"][-1]["spec_toml"], file=f"{os.fspath(out)}/{MANIFEST}")


def progress_counts(out: str | os.PathLike[str]) -> tuple[int, int]:
    """Count ``(finished chunks, total chunks)`` of a sweep directory."""
    manifest = read_manifest(out)
    total = sum(g["n_chunks"] for g in manifest["generations"])
    return sum(chunk_path(Path(out), i).exists() for i in range(total)), total
