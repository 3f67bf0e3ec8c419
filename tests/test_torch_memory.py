"""Memory budgets of the torch backend: fixed caps on the CPU, shares of a GPU's free memory.

No GPU is needed: the free memory of a CUDA device is passed in, or torch's CUDA memory queries
are replaced by fakes that report a chosen figure.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import critbatch as cb  # noqa: E402
from critbatch import problems as pb  # noqa: E402
from critbatch.torch import memory  # noqa: E402
from critbatch.torch.problems import BLOCK_ELEMENTS, build  # noqa: E402
from critbatch.torch.runner import NETWORK_STATE_COPIES, _chunk_limit, run_plan  # noqa: E402
from tests.conftest import Err  # noqa: E402

GIB = 1 << 30
CUDA = torch.device("cuda")  # a device name only: nothing here touches a GPU


@pytest.fixture
def fake_cuda(monkeypatch):
    """CUDA memory queries that report 10 GiB free to the driver and 2 GiB cached by torch."""
    calls = []

    def mem_get_info(device=None):
        calls.append(device)
        return 10 * GIB, 80 * GIB

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 3 * GIB)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1 * GIB)
    return calls


@pytest.mark.parametrize(
    ("device", "budget", "dtype", "free", "expected"),
    [
        ("cpu", "intermediate", torch.float64, None, 1 << 22),
        ("cpu", "state", torch.float32, None, 1 << 25),
        ("cpu", "activations", torch.float32, 123 * GIB, 1 << 26),  # free is ignored off CUDA
        ("meta", "state", torch.float64, None, 1 << 25),  # other devices: the CPU caps
        ("cuda", "intermediate", torch.float64, 16 * GIB, GIB // 8),  # 1/16 of 16 GiB, 8 B each
        ("cuda", "state", torch.float32, 16 * GIB, GIB),  # 1/4 of 16 GiB, 4 B each
        ("cuda", "activations", torch.bfloat16, 16 * GIB, GIB),  # 1/8 of 16 GiB, 2 B each
        ("cuda:3", "state", torch.int64, 139 * GIB, 139 * GIB // 32),
        ("cuda", "state", torch.float64, 0, memory.MIN_ELEMENTS),  # a full device: the floor
        ("cuda", "weights", torch.float64, GIB, Err("budget must be one of 'intermediate'")),
        ("cuda", "state", torch.float64, -1, Err("free must be a number of bytes >= 0, got -1")),
    ],
)
def test_elements(device, budget, dtype, free, expected):
    if isinstance(expected, Err):
        with expected.raises():
            memory.elements(device, budget, dtype, free=free)
    else:
        assert memory.elements(device, budget, dtype, free=free) == expected


def test_free_memory_counts_torchs_unused_cache(fake_cuda):
    assert memory.free_bytes("cuda:1") == 12 * GIB  # 10 free + (3 reserved - 1 allocated)
    assert fake_cuda == [torch.device("cuda:1")]


def test_a_cuda_budget_is_measured_when_no_figure_is_given(fake_cuda):
    assert memory.elements("cuda", "state", torch.float64) == 12 * GIB // 4 // 8
    assert len(fake_cuda) == 1


def test_free_memory_is_only_read_from_cuda():
    with Err("free_bytes reads a CUDA device's memory, got device 'cpu'").raises():
        memory.free_bytes("cpu")


def test_a_network_chunk_holds_what_the_state_budget_allows():
    # 2,410 parameters; drawn with replacement, so no permutations bound the chunk too
    net = pb.network("mlp", "digits", model_kwargs={"hidden": [32]}, sampling="with_replacement")
    per_run = NETWORK_STATE_COPIES * net.dim
    assert _chunk_limit(net, 10**6, torch.device("cpu"), torch.float32) == (1 << 25) // per_run
    free = 8 * GIB
    runs = _chunk_limit(net, 10**6, CUDA, torch.float32, free=free)
    assert runs == (free // 4 // 4) // per_run
    averaged = _chunk_limit(net, 10**6, CUDA, torch.float32, averaging=True, free=free)
    assert averaged == (free // 4 // 4) // (per_run + net.dim)  # one more vector per run
    assert _chunk_limit(net, 100, CUDA, torch.float32, free=free) == 100  # max_runs still caps


def test_shuffle_permutations_are_bounded_per_device():
    ls = pb.least_squares(*_data(n=1024), sampling="shuffle")
    assert _chunk_limit(ls, 10**6, torch.device("cpu"), torch.float64) == (1 << 22) // 1024
    assert _chunk_limit(ls, 10**6, CUDA, torch.float64, free=GIB) == (GIB // 4 // 8) // 1024
    with_replacement = pb.least_squares(*_data(n=1024), sampling="with_replacement")
    assert _chunk_limit(with_replacement, 10**6, CUDA, torch.float64, free=0) == 10**6


def test_a_cpu_finite_sum_keeps_the_documented_block_cap():
    problem = build(pb.least_squares(*_data(n=64)), "cpu", torch.float64)
    assert problem.block_elements == BLOCK_ELEMENTS == memory.CPU_ELEMENTS["intermediate"]


def test_build_sizes_a_finite_sums_blocks_from_the_memory_budget(monkeypatch):
    asked = []

    def elements(device, budget, dtype, *, free=None):
        asked.append((str(device), budget, dtype))
        return 12345

    monkeypatch.setattr(memory, "elements", elements)
    problem = build(pb.least_squares(*_data(n=64)), "cpu", torch.float32)
    assert problem.block_elements == 12345
    assert asked == [("cpu", "intermediate", torch.float32)]


def _data(n):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 3)), rng.standard_normal(n)


def test_results_do_not_depend_on_the_block_size(monkeypatch):
    # a block's size only regroups the sums over samples: the same runs, to rounding
    problem = pb.least_squares(*_data(n=200), sampling="with_replacement")
    plan = cb.make_plan(problem, "sgd", [8, 64], [0.05], 3, cb.targets.target(loss_below=0.6))
    whole = run_plan(plan)
    monkeypatch.setitem(memory.CPU_ELEMENTS, "intermediate", 64)  # blocks of a few samples
    assert build(problem, "cpu", torch.float64).block_elements == 64
    small = run_plan(plan)
    assert small["steps"].tolist() == whole["steps"].tolist()
    np.testing.assert_allclose(small["final_loss"], whole["final_loss"], rtol=1e-12)
