# PyTorch side of `npm run bench:ops`: the same conv ([1,512,64,64] input, 3x3 512->512 conv,
# padding 1) on the CPU — forward, input-gradient, weight-gradient (the aten kernel autograd
# calls, one gradient at a time) and forward+backward (conv2d + .backward).
#
#   /usr/bin/python3 bench/ops_peer.py --threads 2 --runs 7     one JSON object with the timings
#   /usr/bin/python3 bench/ops_peer.py --threads 2 --serve      line protocol used by bench/ops.ts:
#       prints "ready <json info>", then for each line "<pass>" on stdin runs that pass once and
#       prints its wall time in seconds, so the caller can interleave our runs with PyTorch's.
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def make_passes(N, C, H, W, O, k, pad):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, C, H, W, generator=g)
    w = torch.randn(O, C, k, k, generator=g) * (2.0 / (C * k * k)) ** 0.5
    with torch.no_grad():
        gy = torch.randn(F.conv2d(x, w, padding=pad).shape, generator=g)
    args = dict(bias_sizes=None, stride=[1, 1], padding=[pad, pad], dilation=[1, 1], transposed=False,
                output_padding=[0, 0], groups=1)
    xr = x.clone().requires_grad_(True)
    wr = w.clone().requires_grad_(True)

    def fwd():
        with torch.no_grad():
            F.conv2d(x, w, padding=pad)

    def grad_input():
        torch.ops.aten.convolution_backward(gy, x, w, output_mask=[True, False, False], **args)

    def grad_weight():
        torch.ops.aten.convolution_backward(gy, x, w, output_mask=[False, True, False], **args)

    def fwd_bwd():
        xr.grad = None
        wr.grad = None
        F.conv2d(xr, wr, padding=pad).backward(gy)

    return {"fwd": fwd, "grad_input": grad_input, "grad_weight": grad_weight, "fwd_bwd": fwd_bwd}


def once(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: PyTorch's default)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--shape", default="1,512,64,64,512,3,1", help="N,C,H,W,O,k,padding")
    p.add_argument("--serve", action="store_true")
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    passes = make_passes(*(int(v) for v in a.shape.split(",")))
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "mkldnn": torch.backends.mkldnn.is_available()}
    if a.serve:
        print("ready " + json.dumps(info), flush=True)
        for line in sys.stdin:
            name = line.strip()
            if not name:
                continue
            if name not in passes:
                print(f"error unknown pass {name!r}", flush=True)
                continue
            print(f"{once(passes[name]):.9f}", flush=True)
        return
    out = dict(info)
    for name, fn in passes.items():
        for _ in range(a.warmup):
            fn()
        times = [once(fn) for _ in range(a.runs)]
        out[name] = {"median": statistics.median(times), "min": min(times), "times": times}
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
