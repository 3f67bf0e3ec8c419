"""The critbatch command: each workflow end to end, and every user error as one line on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import critbatch as cb
from critbatch import store
from critbatch.cli import main

SPEC = """
optimizers = ["sgd", "adam"]
batch_sizes = [1, 4, 16, 64]
learning_rates = [0.1, 0.3]
seeds = 2
chunk_size = 8

[problem]
kind = "nqm_power_law"
dim = 4

[target]
loss_below = 0.05
max_steps = 2000
"""


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_sweep_then_tune_fit_plot_and_report(capsys, spec_file, tmp_path):
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, "sweep", spec_file, "-o", out, "--threads", 1)
    assert code == 0
    assert "32 runs in 4 chunks" in stdout
    assert len(store.load(out)) == 32
    code, stdout, _ = run(capsys, "sweep", spec_file, "-o", out, "-q")
    assert (code, "0 run now, 4 already done" in stdout) == (0, True)
    code, stdout, _ = run(capsys, "tune", out)
    assert code == 0
    assert stdout.splitlines()[0].split()[:5] == [
        "problem",
        "optimizer",
        "schedule",
        "batch_size",
        "learning_rate",
    ]
    code, stdout, _ = run(capsys, "fit", out, "--model", "inverse", "--n-boot", 10)
    assert code == 0
    assert "== problem=nqm, optimizer=sgd, schedule=constant" in stdout
    assert "status: " in stdout
    assert "b* (" in stdout
    code, _, _ = run(capsys, "plot", out, "-o", tmp_path / "kb.png", "--n-boot", 0)
    assert code == 0
    assert (tmp_path / "kb.png").read_bytes()[:4] == b"\x89PNG"
    code, _, _ = run(capsys, "report", out, "-o", tmp_path / "r.md", "--n-boot", 0)
    assert code == 0
    text = (tmp_path / "r.md").read_text()
    assert "## Steps to target at the best learning rate" in text
    assert "![K(b) and b·K(b) per optimizer](r.png)" in text
    assert (tmp_path / "r.png").exists()
    code, _, _ = run(capsys, "report", out, "-o", tmp_path / "r.html", "--n-boot", 0)
    html = (tmp_path / "r.html").read_text()
    assert code == 0
    assert 'src="data:image/png;base64,iVBOR' in html  # the PNG is inside the page
    assert "<table>" in html


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "-o", str(out)]) == 0
    return out


def test_demo_report_states_adam_nqm_as_beyond_the_grid_and_inconclusive(demo_dir):
    text = (demo_dir / "report.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| nqm | constant | adam |"))
    assert "| above_grid |" in row or "| not_identified |" in row
    verdict = next(line for line in text.splitlines() if line.startswith("nqm / constant:"))
    adam = verdict[verdict.index("adam:") :].split("; momentum:")[0]
    assert ": inconclusive (" in adam
    assert "supports the claim" not in adam


def test_cli_and_python_give_identical_fits_on_the_demo(capsys, demo_dir):
    from critbatch.fit import fit

    results = demo_dir / "results"
    code, stdout, _ = run(capsys, "fit", results, "--json", "--n-boot", 50, "--seed", 3)
    assert code == 0
    printed = json.loads(stdout)
    python = fit(results, n_boot=50, seed=3, cache=False)
    assert printed["by"] == ["problem", "optimizer", "schedule"]
    assert [tuple(f["group"]) for f in printed["fits"]] == list(python)
    for entry, result in zip(printed["fits"], python.values(), strict=True):
        expected = result.to_dict(arrays=False)
        for name in (
            "status",
            "critical_batch_size",
            "interval",
            "bootstrap_interval",
            "params",
            "estimate",
            "reasons",
        ):
            assert entry[name] == expected[name], name
    code, stdout, _ = run(capsys, "fit", results, "--csv", "--n-boot", 50, "--seed", 3)
    assert stdout.splitlines()[0].startswith("problem,optimizer,schedule,model,status,")
    assert len(stdout.splitlines()) == 1 + len(python)
    # the fits are kept beside the results and reused
    assert list((results / "_fits").glob("mccandlish-*.json"))


def test_fit_reads_a_csv_table(capsys, tmp_path):
    b = np.repeat([2.0, 4, 8, 16, 32, 64, 128], 2)
    table = tmp_path / "runs.csv"
    pd.DataFrame({"batch_size": b, "steps": 40 * (1 + 16 / b)}).to_csv(table, index=False)
    code, stdout, _ = run(capsys, "fit", table, "--n-boot", 0)
    assert code == 0
    assert "status: identified" in stdout
    assert "b* (" in stdout


def test_a_partial_sweep_is_refused_unless_allowed_and_then_warned(capsys, spec_file, tmp_path):
    out = tmp_path / "out"
    assert run(capsys, "sweep", spec_file, "-o", out, "-q")[0] == 0
    (out / "chunk-000003.parquet").unlink()
    for command in (["fit", out, "--n-boot", 0], ["tune", out]):
        code, _, err = run(capsys, *command)
        assert code == 1
        assert "holds 3 of 4 chunks" in err
        assert "--allow-partial" in err
        code, _stdout, err = run(capsys, *command, "--allow-partial")
        assert code == 0, err
        assert err.count("\n") == 1
        assert err.startswith("critbatch: warning: ")
        assert "partial sweep: 3 of 4 chunks" in err


def test_extend_through_the_cli(capsys, spec_file, tmp_path):
    out = tmp_path / "out"
    assert run(capsys, "sweep", spec_file, "-o", out, "-q")[0] == 0
    bigger = tmp_path / "bigger.toml"
    bigger.write_text(SPEC.replace("seeds = 2", "seeds = 3"))
    code, _, err = run(capsys, "sweep", bigger, "-o", out, "-q")
    assert code == 1
    assert "holds a different sweep" in err
    code, _, _ = run(capsys, "sweep", bigger, "-o", out, "-q", "--extend")
    assert code == 0
    assert len(store.load(out)) == 48


ERRORS = [
    pytest.param(
        lambda d: ["sweep", d / "missing.toml", "-o", d / "o"],
        "cannot read the spec",
        id="missing spec file",
    ),
    pytest.param(
        lambda d: ["sweep", write(d, SPEC + "colour = 1\n"), "-o", d / "o"],
        "colour: unknown key",
        id="unknown key",
    ),
    pytest.param(
        lambda d: ["sweep", write(d, "x = [\n"), "-o", d / "o"], "not valid TOML", id="broken TOML"
    ),
    pytest.param(
        lambda d: ["sweep", write(d, SPEC.replace("dim = 4", "dim = 0")), "-o", d / "o"],
        "problem: dim must be a positive integer",
        id="bad problem argument",
    ),
    pytest.param(
        lambda d: ["sweep", write(d, SPEC), "-o", write(d, "", "file.txt")],
        "exists and is not a directory",
        id="output is a file",
    ),
    pytest.param(
        lambda d: ["sweep", write(d, SPEC), "-o", d, "--threads", "0"],
        "threads must be a positive integer",
        id="zero threads",
    ),
    pytest.param(
        lambda d: ["fit", d / "nowhere"], "does not exist", id="fit on a missing directory"
    ),
    pytest.param(
        lambda d: ["report", d, "-o", d / "r.md"],
        "is not a critbatch sweep",
        id="report on a non-sweep",
    ),
    pytest.param(
        lambda d: ["tune", d], "is not a critbatch sweep directory", id="tune on a non-sweep"
    ),
]


def write(directory: Path, text: str, name: str = "bad.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("argv", "message"), ERRORS)
def test_user_errors_are_one_line_on_stderr_and_a_nonzero_exit(capsys, tmp_path, argv, message):
    code, stdout, err = run(capsys, *argv(tmp_path))
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("critbatch: error: ")
    assert message in err
    assert "Traceback" not in err + stdout


def test_report_suffix_is_checked(capsys, spec_file, tmp_path):
    out = tmp_path / "out"
    run(capsys, "sweep", spec_file, "-o", out, "-q")
    code, _, err = run(capsys, "report", out, "-o", tmp_path / "r.txt")
    assert (code, err.strip()) == (
        1,
        f"critbatch: error: report path must end in .md or .html, got {str(tmp_path / 'r.txt')!r}",
    )


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["sweep"], id="missing spec"),
        pytest.param(["sweep", "s.toml", "-o", "o", "--engine", "spark"], id="unknown engine"),
        pytest.param(["frobnicate"], id="unknown command"),
        pytest.param(["fit", "o", "--model", "cubic"], id="unknown model"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.count("\n") == 1
    assert err.startswith("critbatch: error: ")


def test_the_module_runs_as_a_program_without_traceback(tmp_path):
    env_path = str(Path(cb.__file__).parents[1])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "critbatch.cli",
            "sweep",
            str(tmp_path / "x"),
            "-o",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": ""},
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("critbatch: error: ")
    assert proc.stderr.count("\n") == 1


def test_demo_prints_its_spec_which_is_a_valid_spec(capsys):
    from critbatch.spec import loads

    code, stdout, _ = run(capsys, "demo", "--print-spec")
    assert code == 0
    spec = loads(stdout)
    assert {p.kind for p in spec.problems} == {"nqm_power_law", "least_squares"}
    assert [o.kind for o in spec.optimizers] == ["sgd", "heavy_ball", "adam"]


# ---------------------------------------------------------------------------------------------
# validate, --set, --dry-run, schema, --version, defaults in --help


def test_version_is_the_cargo_version(capsys):
    import tomllib

    cargo = tomllib.loads((Path(__file__).parents[1] / "Cargo.toml").read_text())
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"critbatch {cargo['package']['version']}"
    assert cb.__version__ == cargo["package"]["version"]


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        pytest.param(["sweep", "--help"], "(default: local)", id="sweep engine"),
        pytest.param(["fit", "--help"], "(default: 200)", id="fit bootstrap resamples"),
        pytest.param(["demo", "--help"], "(default: critbatch-demo)", id="demo directory"),
    ],
)
def test_help_shows_defaults(capsys, argv, shown):
    with pytest.raises(SystemExit):
        main(argv)
    text = " ".join(capsys.readouterr().out.split())
    assert shown in text
    assert "(default: None)" not in text
    assert "(default: False)" not in text


def test_validate_prints_the_grid_and_writes_nothing(capsys, spec_file, tmp_path):
    code, stdout, _ = run(capsys, "validate", spec_file)
    assert code == 0
    assert "valid spec 'sweep': 32 runs = 1 problem (nqm) x 2 optimizers (sgd, adam)" in stdout
    assert "4 chunks of up to 8 runs; budget 2000 steps per run" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


def test_set_overrides_reach_the_validated_spec(capsys, spec_file):
    code, stdout, _ = run(
        capsys,
        "validate",
        spec_file,
        "--set",
        "target.max_steps=500",
        "--set",
        "batch_sizes=[2, 8]",
        "--set",
        "problem.dim=6",
        "--set",
        "optimizers[1]={kind = 'adam', amsgrad = true}",
        "--print-spec",
    )
    assert code == 0
    from critbatch.spec import loads

    spec = loads(stdout)
    assert (spec.target.max_steps, spec.batch_sizes) == (500, (2, 8))
    assert spec.problems[0].params["dim"] == 6
    assert spec.optimizers[1].amsgrad


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            ["target.max_step=5"],
            "target.max_step: unknown key; did you mean 'max_steps'?",
            id="misspelt key gets a suggestion",
        ),
        pytest.param(
            ["optimizers=['sgd', 'adma']"],
            "optimizers[1]: unknown optimizer 'adma'",
            id="misspelt optimizer name",
        ),
        pytest.param(
            ["problem.kind=nqm_powerlaw"],
            "did you mean 'nqm_power_law'?",
            id="misspelt problem kind",
        ),
        pytest.param(["max_steps"], "--set: max_steps: expected KEY=VALUE", id="no equals sign"),
        pytest.param(
            ["optimizers[5]=1"],
            "index out of range: the list has 2 item(s)",
            id="index past the list",
        ),
        pytest.param(["seeds.x=1"], "seeds is not a table", id="path through a number"),
    ],
)
def test_bad_overrides_are_one_line_errors(capsys, spec_file, overrides, message):
    argv = ["validate", spec_file]
    for o in overrides:
        argv += ["--set", o]
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert err.count("\n") == 1
    assert message in err


def test_sweep_with_overrides_runs_the_reduced_grid(capsys, spec_file, tmp_path):
    out = tmp_path / "out"
    code, stdout, _ = run(
        capsys,
        "sweep",
        spec_file,
        "-o",
        out,
        "-q",
        "--threads",
        1,
        "--set",
        "seeds=1",
        "--set",
        "batch_sizes=[1, 4]",
    )
    assert code == 0
    assert "8 runs in 1 chunks" in stdout
    assert store.spec_of(out).seeds == (0,)


def test_dry_run_prints_size_and_estimate_and_writes_nothing(capsys, spec_file, tmp_path):
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, "sweep", spec_file, "-o", out, "--dry-run", "--threads", 2)
    assert code == 0
    assert not out.exists()
    assert "32 runs in 4 chunks of up to 8 runs; budget 2000 steps per run" in stdout
    assert "nothing stored yet" in stdout
    assert "estimated time: at most" in stdout
    assert "on 2 core threads" in stdout
    assert run(capsys, "sweep", spec_file, "-o", out, "-q", "--set", "seeds=1")[0] == 0
    code, stdout, _ = run(capsys, "sweep", spec_file, "-o", out, "--dry-run", "--set", "seeds=1")
    assert "2 of 2 chunks already stored; the sweep resumes there" in stdout
    code, stdout, _ = run(capsys, "sweep", spec_file, "-o", out, "--dry-run")
    assert "it holds a different spec" in stdout


def test_schema_command_prints_the_committed_schema(capsys):
    code, stdout, _ = run(capsys, "schema")
    assert code == 0
    assert stdout == (Path(__file__).parents[1] / "docs" / "spec.schema.json").read_text()


def test_a_fit_cached_by_another_version_is_not_reused(demo_dir, monkeypatch):
    import critbatch
    from critbatch.fit import fit

    results = demo_dir / "results"
    fit(results, n_boot=0)
    before = set((results / "_fits").glob("*.json"))
    fit(results, n_boot=0)  # the same code: the cached fits
    assert set((results / "_fits").glob("*.json")) == before
    monkeypatch.setattr(critbatch, "__version__", "0.0.0-other")
    fit(results, n_boot=0)
    assert len(set((results / "_fits").glob("*.json")) - before) == 1
