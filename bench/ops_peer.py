# PyTorch side of `npm run bench:ops`: the same conv ([1,512,64,64] input, 3x3 512->512 conv,
# padding 1) forward, input-gradient, weight-gradient and forward+backward on the CPU, timed as
# bench/common.ts does (warm-up, then the median of several runs). Prints one JSON object.
# Run with Debian's python3-torch: /usr/bin/python3 bench/ops_peer.py --threads 2 --runs 7
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def timed(fn, warmup, runs):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times), "min": min(times), "times": times}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: PyTorch's default)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--shape", default="1,512,64,64,512,3,1", help="N,C,H,W,O,k,padding")
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    N, C, H, W, O, k, pad = (int(v) for v in a.shape.split(","))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, C, H, W, generator=g)
    w = torch.randn(O, C, k, k, generator=g) * (2.0 / (C * k * k)) ** 0.5
    y = F.conv2d(x, w, padding=pad)
    gy = torch.randn(y.shape, generator=g)
    args = dict(bias_sizes=None, stride=[1, 1], padding=[pad, pad], dilation=[1, 1], transposed=False,
                output_padding=[0, 0], groups=1)

    def fwd():
        with torch.no_grad():
            F.conv2d(x, w, padding=pad)

    # the kernels autograd calls, one gradient at a time
    def grad_input():
        torch.ops.aten.convolution_backward(gy, x, w, output_mask=[True, False, False], **args)

    def grad_weight():
        torch.ops.aten.convolution_backward(gy, x, w, output_mask=[False, True, False], **args)

    xr = x.clone().requires_grad_(True)
    wr = w.clone().requires_grad_(True)

    def fwd_bwd():
        xr.grad = None
        wr.grad = None
        F.conv2d(xr, wr, padding=pad).backward(gy)

    out = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "fwd": timed(fwd, a.warmup, a.runs),
        "grad_input": timed(grad_input, a.warmup, a.runs),
        "grad_weight": timed(grad_weight, a.warmup, a.runs),
        "fwd_bwd": timed(fwd_bwd, a.warmup, a.runs),
    }
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
