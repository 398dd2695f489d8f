"""fastrnn's CPU buffer cache (csrc/cpu/buffer_cache.h): buffers of 1 MB or more go back to
it when freed and are reused. A kernel must never depend on what a reused buffer held, the
cache must stay within its limit, and its controls must refuse bad values."""
import os
import subprocess
import sys
import threading

import pytest
import torch

import fastrnn
from fastrnn.bench import peak_memory_mb

# Large enough that the layers' outputs, saved gates and gradients come from the cache
# (T * B * 4H floats = 4 MB for the LSTM).
T, B, I, H = 32, 32, 24, 256
CELLS = [("lstm", fastrnn.LSTM, torch.nn.LSTM, {}),
         ("gru", fastrnn.GRU, torch.nn.GRU, {}),
         ("rnn", fastrnn.RNN, torch.nn.RNN, {})]


@pytest.fixture(autouse=True)
def automatic_limit():
    yield
    fastrnn.set_cpu_cache_limit(None)


LENGTHS = torch.randint(T // 2, T + 1, (B,))


def run(layer, x, packed=False):
    """Output, final state and every gradient of one forward+backward, detached; packed:
    sequences of LENGTHS (finished rows keep their state and write zeros)."""
    x = x.clone().requires_grad_(True)
    if packed:
        sequence = torch.nn.utils.rnn.pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
        out, state = layer(sequence)
        out = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)[0]
    else:
        out, state = layer(x)
    h = state[0] if isinstance(state, tuple) else state
    (out.square().sum() + h.sum()).backward()
    results = [out.detach(), h.detach(), x.grad] + [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad(set_to_none=True)
    return results


def make(cls, **extra):
    torch.manual_seed(0)
    return cls(I, H, num_layers=2, bidirectional=True, **extra)


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("name,cls,torch_cls,extra", CELLS, ids=[c[0] for c in CELLS])
def test_reused_buffers_hold_no_stale_data(name, cls, torch_cls, extra, packed):
    layer = make(cls, **extra)
    first = torch.randn(T, B, I)
    second = torch.randn(T, B, I)
    fastrnn.set_cpu_cache_limit(0)  # every buffer fresh
    fresh = run(layer, second, packed)
    fastrnn.set_cpu_cache_limit(1 << 30)
    run(layer, first, packed)  # the cache now holds buffers full of the first input's numbers
    hits = fastrnn.cpu_cache_info()["hits"]
    reused = run(layer, second, packed)
    assert fastrnn.cpu_cache_info()["hits"] > hits
    for a, b in zip(fresh, reused):
        assert torch.equal(a, b)
    # and both agree with torch.nn
    reference = run(make(torch_cls, **extra), second, packed)
    for a, b in zip(reused, reference):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_deterministic_mode_fills_buffers_with_nan_and_results_do_not_change():
    layer = make(fastrnn.LSTM)
    x = torch.randn(T, B, I)
    expected = run(layer, x)
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert torch.ops.fastrnn.cpu_empty([1 << 19], torch.float32).isnan().all()
        got = run(layer, x)
    finally:
        torch.use_deterministic_algorithms(before)
    for a, b in zip(expected, got):
        assert torch.equal(a, b)


def test_limit_is_respected_and_zero_turns_the_cache_off():
    layer = make(fastrnn.GRU)
    x = torch.randn(T, B, I)
    fastrnn.set_cpu_cache_limit(8 << 20)
    run(layer, x)
    assert 0 < fastrnn.cpu_cache_info()["cached_bytes"] <= 8 << 20
    fastrnn.set_cpu_cache_limit(0)
    assert fastrnn.cpu_cache_info()["cached_bytes"] == 0
    run(layer, x)
    assert fastrnn.cpu_cache_info()["cached_bytes"] == 0


def test_automatic_limit_keeps_what_the_largest_call_needed():
    fastrnn.set_cpu_cache_limit(None)
    layer = make(fastrnn.LSTM)
    x = torch.randn(T, B, I)
    run(layer, x)
    run(layer, x)
    info = fastrnn.cpu_cache_info()
    assert info["in_use_bytes"] == 0  # every buffer of those calls has been freed
    assert 0 < info["cached_bytes"] <= info["limit_bytes"] == 2 * info["peak_in_use_bytes"]
    hits = info["hits"]
    run(layer, x)  # the same shapes again: served from the cache
    assert fastrnn.cpu_cache_info()["hits"] > hits
    # calls of other shapes release kept buffers rather than outgrow the limit
    for batch in (B // 2, B // 4, B // 8):
        with torch.no_grad():
            out, _ = fastrnn.GRU(I, H)(torch.randn(T, batch, I))
        info = fastrnn.cpu_cache_info()
        assert info["in_use_bytes"] + info["cached_bytes"] <= info["limit_bytes"]


def test_empty_cache_releases_everything():
    run(make(fastrnn.LSTM), torch.randn(T, B, I))
    assert fastrnn.cpu_cache_info()["cached_bytes"] > 0
    fastrnn.empty_cache()
    assert fastrnn.cpu_cache_info()["cached_bytes"] == 0


@pytest.mark.parametrize("bad", [-1, 1.5, "1024", True])
def test_bad_limits_are_refused(bad):
    with pytest.raises(ValueError, match="limit_bytes"):
        fastrnn.set_cpu_cache_limit(bad)


@pytest.mark.parametrize("value", ["lots", "-5", "1.5"])
def test_bad_environment_value_is_named_at_import(value):
    env = dict(os.environ, FASTRNN_CPU_CACHE_MB=value)
    done = subprocess.run([sys.executable, "-c", "import fastrnn"], env=env,
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert "FASTRNN_CPU_CACHE_MB" in done.stderr and value in done.stderr


def test_environment_sets_the_limit():
    env = dict(os.environ, FASTRNN_CPU_CACHE_MB="0")
    code = ("import fastrnn, torch; l = fastrnn.LSTM(8, 512); l(torch.randn(64, 64, 8)); "
            "i = fastrnn.cpu_cache_info(); print(i['limit_bytes'], i['cached_bytes'])")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "0"]
    env["FASTRNN_CPU_CACHE_MB"] = "40"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    limit, cached = map(int, done.stdout.split())
    assert limit == 40 << 20 and 0 < cached <= limit


def test_outputs_from_the_cache_behave_like_any_tensor():
    out, _ = fastrnn.LSTM(I, H)(torch.randn(T, B, I))
    assert out.numel() * 4 >= 1 << 20  # from the cache
    kept = out.detach().clone()
    out = out.detach()
    out.resize_(2 * T, B, H)  # grows in place, keeping its data
    assert torch.equal(out[:T], kept)
    assert torch.equal(torch.from_numpy(out.numpy())[:T], kept)


def test_profiler_sees_the_cached_buffers():
    layer = fastrnn.LSTM(I, H)
    x = torch.randn(T, B, I)
    with torch.no_grad():
        layer(x)  # warm: the buffers come from the cache now
        peak = peak_memory_mb(lambda: layer(x), torch.device("cpu"))
    assert peak >= T * B * H * 4 / 2**20  # at least the output


def test_threads_sharing_the_cache_get_their_own_buffers():
    layer = make(fastrnn.GRU)
    inputs = [torch.randn(T, B, I) for _ in range(4)]
    with torch.no_grad():
        expected = [layer(x)[0] for x in inputs]
    got = [None] * len(inputs)

    def work(k):
        with torch.no_grad():
            for _ in range(3):
                got[k] = layer(inputs[k])[0]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for a, b in zip(expected, got):
        assert torch.equal(a, b)


def test_a_request_reuses_the_smallest_kept_block_at_most_an_eighth_larger():
    fastrnn.empty_cache()
    fastrnn.set_cpu_cache_limit(256 << 20)
    mb = 1 << 18  # float32 elements in a MB

    def allocate(megabytes):
        """(hits, misses) added by one buffer of that size, and its address."""
        before = fastrnn.cpu_cache_info()
        buffer = torch.ops.fastrnn.cpu_empty([int(megabytes * mb)], torch.float32)
        after = fastrnn.cpu_cache_info()
        return after["hits"] - before["hits"], after["misses"] - before["misses"], buffer

    # kept: blocks of 8, 8.5 and 9.5 MB
    kept = [allocate(size)[2] for size in (8, 8.5, 9.5)]
    addresses = {size: t.data_ptr() for size, t in zip((8, 8.5, 9.5), kept)}
    del kept
    assert fastrnn.cpu_cache_info()["in_use_bytes"] == 0
    hits, misses, exact = allocate(8)  # the 8 MB block, not a larger one
    assert (hits, misses) == (1, 0) and exact.data_ptr() == addresses[8]
    hits, misses, near = allocate(7.9)  # 8.5 MB is within an eighth of 7.9, 9.5 is not
    assert (hits, misses) == (1, 0) and near.data_ptr() == addresses[8.5]
    hits, misses, far = allocate(8.2)  # 9.5 MB is more than an eighth above: new memory
    assert (hits, misses) == (0, 1)
    hits, misses, larger = allocate(10)  # a smaller block never serves a larger request
    assert (hits, misses) == (0, 1)
    # in use: whole blocks (7.9 MB holds the 8.5 MB one), new ones rounded up to pages
    pages = lambda t: -(-t.numel() * 4 // 4096) * 4096  # noqa: E731
    assert fastrnn.cpu_cache_info()["in_use_bytes"] == (
        pages(exact) + int(8.5 * mb) * 4 + pages(far) + pages(larger))
