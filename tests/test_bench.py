"""The benchmark command (fastrnn.bench) on tiny cases: what it measures and reports, not how
fast anything is (timings are never asserted)."""
import json
import math

import pytest

from fastrnn import bench

TINY = ["--seq", "6", "--batch", "3", "--input", "4", "--hidden", "8", "--repeats", "2",
        "--warmup", "0"]
HAVE_ORT = bench.onnx_runtime_available()


def test_table_json_and_spread(tmp_path, capsys):
    path = tmp_path / "results.json"
    results = bench.run(["--cells", "lstm,gru", *TINY, "--json", str(path), "--onnx", "off"])
    assert [(r.case.cell, r.mode) for r in results] == [
        ("lstm", "forward"), ("lstm", "forward+backward"),
        ("gru", "forward"), ("gru", "forward+backward")]
    for r in results:
        assert r.torch_range[0] <= r.torch_ms <= r.torch_range[1]
        assert r.fastrnn_range[0] <= r.fastrnn_ms <= r.fastrnn_range[1]
        assert r.fastrnn_gflops > 0 and math.isnan(r.onnx_ms)
    printed = capsys.readouterr().out
    assert "fastrnn ms (min-max)" in printed and "% of peak" in printed
    assert "ONNX Runtime" not in printed
    assert "family" in printed and "kernels" in printed  # the machine and SIMD levels named
    saved = json.loads(path.read_text())
    assert len(saved["results"]) == 4 and saved["gemm_peak_gflops"] > 0


def test_bidirectional_alone_sets_the_case():
    results = bench.run(["--cells", "rnn", "--bidirectional", "--seq", "4", "--batch", "2",
                         "--repeats", "1", "--warmup", "0", "--modes", "forward",
                         "--onnx", "off"])
    assert [r.case.bidirectional for r in results] == [True]
    assert results[0].case.hidden == 512  # the other sizes keep their defaults


def test_unknown_cell_and_mode_are_named():
    with pytest.raises(SystemExit, match="unknown cell 'lstn'"):
        bench.run(["--cells", "lstn", *TINY])
    with pytest.raises(SystemExit):
        bench.run(["--cells", "lstm", "--modes", "backwards", *TINY])


def test_onnx_on_without_onnxruntime_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(bench, "onnx_runtime_available", lambda: False)
    with pytest.raises(SystemExit):
        bench.run(["--cells", "gru", *TINY, "--onnx", "on"])
    assert "onnxruntime" in capsys.readouterr().err


@pytest.mark.skipif(not HAVE_ORT, reason="needs onnxruntime and onnx (fastrnn[onnx])")
def test_onnx_runtime_times_the_inference_cases(capsys):
    results = bench.run(["--cells", "lstm,gru", *TINY, "--layers", "2", "--bidirectional",
                         "--onnx", "on"])
    timed = {(r.case.cell, r.mode): r.onnx_ms for r in results}
    assert all(timed[(cell, "forward")] > 0 for cell in ("lstm", "gru"))
    assert all(math.isnan(timed[(cell, "forward+backward")]) for cell in ("lstm", "gru"))
    assert "vs ORT" in capsys.readouterr().out


@pytest.mark.skipif(not HAVE_ORT, reason="needs onnxruntime and onnx (fastrnn[onnx])")
def test_onnx_runtime_generation_and_packed_cases():
    import torch
    generation = bench.Case("lstm", 3, 1, 4, 8, 2, generation=True)
    packed = bench.Case("gru", 6, 3, 4, 8, packed=True)
    cpu = torch.device("cpu")
    (generate,) = bench.run_case(generation, cpu, torch.float32, 2, 0, bench.MODES, True)
    assert generate.mode == "generate" and generate.onnx_ms > 0
    for r in bench.run_case(packed, cpu, torch.float32, 2, 0, bench.MODES, True):
        assert math.isnan(r.onnx_ms)  # ORT does not run packed input here: shown as n/a


def test_generation_reports_the_weights_read_bound(capsys):
    import torch
    case = bench.Case("gru", 3, 1, 4, 8, 2, generation=True)
    (result,) = bench.run_case(case, torch.device("cpu"), torch.float32, 2, 0, bench.MODES)
    assert result.mode == "generate" and 0 < result.read_bound_ms < math.inf
    table = bench.format_table([result], "title", peak_gflops=100.0)
    assert f"of read ({result.read_bound_ms:.3f})" in table


def test_layernorm_cells_run_against_the_users_loops(capsys):
    results = bench.run(["--cells", "layernorm_lstm,layernorm_gru", *TINY, "--modes",
                         "forward+backward"])
    assert [(r.case.cell, r.case.baseline) for r in results] == [
        (cell, baseline) for cell in ("layernorm_lstm", "layernorm_gru")
        for baseline in bench.LOOP_BASELINES]
    assert all(math.isnan(r.onnx_ms) for r in results)  # a loop is no layer ORT runs
    printed = capsys.readouterr().out
    assert "baseline ms (min-max)" in printed and "vs compiled step loop" in printed


def test_cell_loop_is_the_layers_mathematics():
    import torch

    import fastrnn
    from fastrnn.cell_loops import CellLoop
    torch.manual_seed(0)
    for layer in (fastrnn.LayerNormLSTM(4, 5, num_layers=2, bidirectional=True),
                  fastrnn.LayerNormGRU(4, 5, reset_after=False), fastrnn.LayerNormGRU(4, 5)):
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        x = torch.randn(6, 3, 4)
        torch.testing.assert_close(CellLoop(layer)(x)[0], layer(x)[0], atol=1e-5, rtol=1e-4)
    with pytest.raises(TypeError, match="wraps a fastrnn.LayerNormLSTM or LayerNormGRU"):
        CellLoop(fastrnn.LSTM(4, 5))
