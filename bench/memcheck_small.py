"""A small forward+backward through every CUDA operator, for compute-sanitizer memcheck
(bench/device_check.sh runs it with PYTORCH_NO_CUDA_MEMORY_CACHING=1): every cell and form,
bidirectional, projections, packed input with unsorted lengths, an empty batch, in float32,
float64, float16 and bfloat16. Prints "memcheck_small: done" at the end, so a run that never
got there cannot pass for a clean one."""
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn

assert fastrnn.build_info()["cuda"], "fastrnn was built without its CUDA kernels"


def layers():
    yield fastrnn.LSTM(8, 16, 2, bidirectional=True, proj_size=4)
    yield fastrnn.LSTM(8, 16)
    yield fastrnn.GRU(8, 16, bidirectional=True)
    yield fastrnn.GRU(8, 16, reset_after=False)
    yield fastrnn.RNN(8, 16, nonlinearity="relu")
    yield fastrnn.RNN(8, 19, bidirectional=True)  # odd width


for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
    for layer in layers():
        layer = layer.to(device="cuda", dtype=dtype)
        x = torch.randn(7, 3, 8, device="cuda", dtype=dtype, requires_grad=True)
        out, _ = layer(x)
        out.float().sum().backward()
        packed = pack_padded_sequence(x, torch.tensor([7, 2, 4]), enforce_sorted=False)
        out, _ = layer(packed)
        out.data.float().sum().backward()
        empty = torch.randn(5, 0, 8, device="cuda", dtype=dtype, requires_grad=True)
        out, _ = layer(empty)
        out.float().sum().backward()
    torch.cuda.synchronize()
    print(f"memcheck_small: {dtype} ok", flush=True)
print("memcheck_small: done", flush=True)
