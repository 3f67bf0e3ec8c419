"""Ctrl-C: a sweep stops within a fraction of a second, keeps its finished runs, and resumes.

Each test starts a sweep in a subprocess whose progress goes to a pseudo-terminal, sends SIGINT
as soon as the progress shows some but not all runs of the (single) chunk finished, and checks:

* the process exits long before the work left would have taken (a 10 s timeout; measured on the
  development machine: 0.10 s from the signal to the exit for ``critbatch.sweep``, 0.23 s for the
  CLI, which also writes the kept runs; about 2 s of work were left);
* few runs finished after the signal: at most 2 per core thread (a run of 0.3 s in flight can
  finish in the 50 ms before the core sees the flag, and the progress shown lags by up to 0.1 s);
  without a responsive interrupt all 16 would have;
* the kept runs are exactly the uninterrupted ones, and a rerun gives the uninterrupted table.

The progress shown between the first and the last run of one chunk is itself the test that
progress is reported per run, not per chunk.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

import critbatch as cb
from critbatch import spec as S
from critbatch import store

THREADS = 2
RUNS = 16
#: About 0.3 s per run (70 ns per step of a 4-coordinate NQM), 2.4 s for the chunk on 2 threads.
STEPS = 4_000_000
ARGS = (
    cb.problems.nqm_power_law(4),
    "sgd",
    [1, 2, 4, 8],
    [0.01],
    4,
    cb.targets.target(loss_below=-1.0, max_steps=STEPS, check_every=1000),
)
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(
        [str(Path(cb.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
    ),
}


def table(res):
    df = res if isinstance(res, pd.DataFrame) else res.to_pandas()
    return df.drop(columns="wall_time").reset_index(drop=True)


def interrupt_at_progress(command, pattern):
    """Run ``command`` with stderr on a pty; SIGINT it once ``pattern`` shows 0 < k < RUNS.

    Returns the exit status, k at the signal, and the seconds from the signal to the exit.
    """
    master, slave = pty.openpty()
    # a terminal of 0 columns (a fresh pty's) would get an empty tqdm bar
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(command, stderr=slave, stdout=subprocess.DEVNULL, env=ENV)
    os.close(slave)
    seen, text, sent = 0, "", None
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None:
            assert time.monotonic() < deadline, f"no progress within 60 s: {text[-300:]!r}"
            ready, _, _ = select.select([master], [], [], 0.01)
            if ready:
                try:
                    text += os.read(master, 4096).decode(errors="replace")
                except OSError:  # the child closed the terminal
                    pass
                counts = [int(k) for k in re.findall(pattern, text)]
                seen = max(counts, default=0)
            if sent is None and 0 < seen < RUNS:
                proc.send_signal(signal.SIGINT)
                sent, at_signal = time.monotonic(), seen
            if sent is not None:
                # the bound the issue asks for is 2 s; 10 s leaves room for a loaded machine
                assert time.monotonic() - sent < 10, "the sweep did not stop within 10 s"
        assert sent is not None, f"the sweep ended before it could be interrupted: {text!r}"
        return proc.returncode, at_signal, time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


PYTHON_SCRIPT = textwrap.dedent("""
    import sys
    import critbatch as cb
    from tests.test_interrupts import ARGS, THREADS

    try:
        cb.sweep(*ARGS, threads=THREADS, progress=True)
    except cb.SweepInterrupted as err:
        err.partial.to_pandas().to_parquet(sys.argv[1])
        sys.exit(130)
""")


def test_ctrl_c_stops_critbatch_sweep_and_keeps_the_finished_runs(tmp_path):
    kept_file = tmp_path / "kept.parquet"
    env_root = str(Path(__file__).parents[1])
    rc, at_signal, _seconds = interrupt_at_progress(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {env_root!r})\n" + PYTHON_SCRIPT,
            str(kept_file),
        ],
        r"(\d+)/16 \[",
    )  # tqdm: " 3/16 [00:01<..."
    assert rc == 130
    kept = pd.read_parquet(kept_file)
    assert at_signal <= len(kept) <= at_signal + 2 * THREADS < RUNS
    plan = cb.make_plan(*ARGS)
    whole = table(cb.execute(plan, threads=THREADS))
    rows = kept["run_index"].to_numpy().astype(np.int64)  # run_index is the plan row here
    pd.testing.assert_frame_equal(
        table(kept), whole.iloc[rows].reset_index(drop=True), check_dtype=False
    )
    # the rest of the plan completes the table
    rest = np.setdiff1d(np.arange(len(plan)), rows)
    resumed = pd.concat([table(kept), table(cb.execute(plan.subset(rest), threads=THREADS))])
    resumed = resumed.sort_values("run_index").reset_index(drop=True)
    pd.testing.assert_frame_equal(resumed, whole, check_dtype=False)


def test_ctrl_c_stops_the_cli_and_a_rerun_resumes_to_the_uninterrupted_table(tmp_path):
    spec = S.sweep_spec(
        S.problem("nqm_power_law", dim=4), "sgd", [1, 2, 4, 8], [0.01], 4, ARGS[-1], chunk_size=RUNS
    )
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(spec.to_toml())
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "critbatch.cli",
        "sweep",
        str(spec_file),
        "-o",
        str(out),
        "--threads",
        str(THREADS),
    ]
    rc, at_signal, _seconds = interrupt_at_progress(command, r"sweep: (\d+)/16 runs")
    assert rc == 130
    assert not store.chunk_path(out, 0).exists()
    kept = pd.read_parquet(store.partial_path(out, 0))
    assert at_signal <= len(kept) <= at_signal + 2 * THREADS < RUNS
    done = subprocess.run(
        [*command, "--quiet"], env=ENV, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert not store.partial_path(out, 0).exists()
    whole = table(cb.execute(spec.to_plan(), threads=THREADS))
    pd.testing.assert_frame_equal(table(store.load(out)), whole, check_dtype=False)
    pd.testing.assert_frame_equal(table(pd.read_parquet(out)), whole, check_dtype=False)


CONCURRENT_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import critbatch as cb
    from critbatch import spec as S, store

    def slow(plan, **kwargs):
        time.sleep(0.2)
        return cb.execute(plan, **kwargs)

    summary = store.run_sweep(S.load_spec(sys.argv[1]), sys.argv[2], executor=slow, threads=1)
    print(json.dumps({"ran": summary.ran_chunks, "skipped": summary.skipped_chunks}))
""")


def test_two_sweeps_on_one_output_share_the_chunks(tmp_path):
    spec = S.sweep_spec(
        S.problem("nqm_power_law", dim=4),
        ["sgd", "adam"],
        [1, 4, 16],
        [0.1, 0.3],
        2,
        cb.targets.target(loss_below=0.3, max_steps=300),
        chunk_size=3,
    )  # 8 chunks of 0.2 s or more each
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(spec.to_toml())
    out = tmp_path / "out"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_SCRIPT, str(spec_file), str(out)],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    summaries = [json.loads(stdout) for stdout, _ in results]
    # every chunk was written once, by one of the two
    assert sum(s["ran"] for s in summaries) == 8
    whole = table(cb.execute(spec.to_plan(), threads=1))
    pd.testing.assert_frame_equal(table(store.load(out)), whole, check_dtype=False)
    assert not [
        p.name
        for p in out.iterdir()
        if p.name.startswith((".claim-", "_partial")) or p.name.endswith(".tmp")
    ]
