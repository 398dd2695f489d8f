"""pytest-benchmark suite over the same cases as `python -m fastrnn.bench`:

    pytest bench/ --benchmark-only                      # quick grid, CPU
    pytest bench/ --benchmark-only --benchmark-group-by=param:case

Each case is benchmarked for torch.nn and for fastrnn, so the pairs sit side by side in
pytest-benchmark's table. Timings are never asserted: they are reported.
"""
import pytest
import torch

from fastrnn.bench import Case, make_layers, workloads

CASES = [
    Case("lstm", 256, 64, 128, 512),
    Case("gru", 256, 64, 128, 512),
    Case("gru_reset_after_false", 256, 64, 128, 512),
    Case("rnn", 256, 64, 128, 512),
    Case("lstm", 32, 1, 128, 512, 3, generation=True),
    Case("gru", 32, 1, 128, 512, 3, generation=True),
]


def case_id(case):
    return case.describe().replace(" ", "_")


@pytest.mark.parametrize("implementation", ["torch.nn", "fastrnn"])
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_layer(benchmark, case, mode, implementation):
    if case.generation and mode != "forward":
        pytest.skip("generation runs forward only")
    torch.manual_seed(0)
    reference, fast = make_layers(case, torch.device("cpu"), torch.float32)
    module = reference if implementation == "torch.nn" else fast
    work = workloads(case, module, torch.device("cpu"), torch.float32)
    fn = work["generate"] if case.generation else work[mode]
    benchmark.group = f"{case.describe()} {mode}"
    benchmark.pedantic(fn, rounds=5, warmup_rounds=1)
