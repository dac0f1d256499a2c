# PyTorch side of `npm run bench:synthesis`: the StyleGAN2 generator exactly as rosinality's
# model.py computes it on the CPU (the default fused modulated conv: a per-sample modulated and
# demodulated weight, grouped conv over the batch; conv_transpose2d + Blur for the up-convs), with
# op/upfirdn2d.py's native fallback (`upfirdn2d_native`) and op/fused_act.py's CPU leaky ReLU,
# since the CUDA extensions are not built here. Written from that code for this benchmark.
#
#   /usr/bin/python3 bench/synthesis_peer.py --weights W.safetensors --threads 2
# reads the generator weights, `wplus` [N, n_latent, D] and `R` (the image cotangent) from one
# safetensors file, prints "ready <json>", then serves one command per stdin line so bench/synthesis.ts
# can interleave its runs with ours:
#   fwd            synthesis (no_grad, randomize_noise=False): prints the wall time in seconds
#   fwdbwd         forward + backward of sum(image * R) to w+: prints the wall time
#   dump <path>    writes the image then d/dw+ (float32, raw little-endian) to <path>: prints "ok"
import argparse
import json
import math
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# ---------- op/ fallbacks ----------
def upfirdn2d_native(x, kernel, up, down, pad0, pad1):
    """Zero-insertion upsample, pad (negative crops), correlation with the flipped kernel, subsample."""
    _, channel, in_h, in_w = x.shape
    x = x.reshape(-1, in_h, in_w, 1)
    kh, kw = kernel.shape
    out = x.view(-1, in_h, 1, in_w, 1, 1)
    out = F.pad(out, [0, 0, 0, up - 1, 0, 0, 0, up - 1])
    out = out.view(-1, in_h * up, in_w * up, 1)
    out = F.pad(out, [0, 0, max(pad0, 0), max(pad1, 0), max(pad0, 0), max(pad1, 0)])
    out = out[:, max(-pad0, 0): out.shape[1] - max(-pad1, 0), max(-pad0, 0): out.shape[2] - max(-pad1, 0), :]
    out = out.permute(0, 3, 1, 2)
    out = out.reshape([-1, 1, in_h * up + pad0 + pad1, in_w * up + pad0 + pad1])
    out = F.conv2d(out, torch.flip(kernel, [0, 1]).view(1, 1, kh, kw))
    out = out.reshape(-1, 1, in_h * up + pad0 + pad1 - kh + 1, in_w * up + pad0 + pad1 - kw + 1)
    out = out.permute(0, 2, 3, 1)[:, ::down, ::down, :]
    out_h = (in_h * up + pad0 + pad1 - kh + down) // down
    out_w = (in_w * up + pad0 + pad1 - kw + down) // down
    return out.reshape(-1, channel, out_h, out_w)


def fused_leaky_relu(x, bias):
    rest = [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(1, bias.shape[0], *rest), negative_slope=0.2) * math.sqrt(2)


# ---------- model.py modules ----------
class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    def __init__(self, in_dim, out_dim, bias_init=0.0, lr_mul=1.0, activation=False):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_dim, in_dim))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x):
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)


class Blur(nn.Module):
    def __init__(self, k, pad):
        super().__init__()
        self.register_buffer("kernel", torch.zeros(k, k))
        self.pad = pad

    def forward(self, x):
        return upfirdn2d_native(x, self.kernel, 1, 1, *self.pad)


class Upsample(nn.Module):
    def __init__(self, k, factor=2):
        super().__init__()
        self.register_buffer("kernel", torch.zeros(k, k))
        p = k - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)
        self.factor = factor

    def forward(self, x):
        return upfirdn2d_native(x, self.kernel, self.factor, 1, *self.pad)


class ModulatedConv2d(nn.Module):
    def __init__(self, cin, cout, k, style_dim, demodulate=True, upsample=False, blur=4):
        super().__init__()
        self.cin, self.cout, self.k = cin, cout, k
        self.upsample, self.demodulate = upsample, demodulate
        if upsample:
            p = (blur - 2) - (k - 1)
            self.blur = Blur(blur, ((p + 1) // 2 + 1, p // 2 + 1))
        self.scale = 1 / math.sqrt(cin * k * k)
        self.padding = k // 2
        self.weight = nn.Parameter(torch.zeros(1, cout, cin, k, k))
        self.modulation = EqualLinear(style_dim, cin, bias_init=1)

    def forward(self, x, style):
        batch, cin, h, w = x.shape
        style = self.modulation(style).view(batch, 1, cin, 1, 1)
        weight = self.scale * self.weight * style
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.view(batch, self.cout, 1, 1, 1)
        weight = weight.view(batch * self.cout, cin, self.k, self.k)
        if self.upsample:
            x = x.view(1, batch * cin, h, w)
            weight = weight.view(batch, self.cout, cin, self.k, self.k).transpose(1, 2)
            weight = weight.reshape(batch * cin, self.cout, self.k, self.k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=batch)
            out = out.view(batch, self.cout, out.shape[2], out.shape[3])
            return self.blur(out)
        x = x.view(1, batch * cin, h, w)
        out = F.conv2d(x, weight, padding=self.padding, groups=batch)
        return out.view(batch, self.cout, out.shape[2], out.shape[3])


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image, noise):
        return image + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input = nn.Parameter(torch.zeros(1, c, 4, 4))

    def forward(self, batch):
        return self.input.repeat(batch, 1, 1, 1)


class FusedLeakyReLU(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        return fused_leaky_relu(x, self.bias)


class StyledConv(nn.Module):
    def __init__(self, cin, cout, k, style_dim, upsample=False, blur=4):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, k, style_dim, upsample=upsample, blur=blur)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(cout)

    def forward(self, x, style, noise):
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    def __init__(self, cin, style_dim, upsample=True, blur=4):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur)
        self.conv = ModulatedConv2d(cin, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class Generator(nn.Module):
    def __init__(self, size, style_dim, n_mlp, channels, blur=4, lr_mlp=0.01):
        super().__init__()
        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)])
        self.input = ConstantInput(channels[4])
        self.conv1 = StyledConv(channels[4], channels[4], 3, style_dim)
        self.to_rgb1 = ToRGB(channels[4], style_dim, upsample=False)
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.convs, self.to_rgbs, self.noises = nn.ModuleList(), nn.ModuleList(), nn.Module()
        cin = channels[4]
        for i in range(3, self.log_size + 1):
            cout = channels[2 ** i]
            self.convs.append(StyledConv(cin, cout, 3, style_dim, upsample=True, blur=blur))
            self.convs.append(StyledConv(cout, cout, 3, style_dim))
            self.to_rgbs.append(ToRGB(cout, style_dim, blur=blur))
            cin = cout
        for k in range(self.num_layers):
            r = 2 ** ((k + 5) // 2)
            self.noises.register_buffer(f"noise_{k}", torch.zeros(1, 1, r, r))
        self.n_latent = self.log_size * 2 - 2

    def forward(self, latent):
        """Generator.forward([latent], input_is_latent=True, randomize_noise=False) for w+ input."""
        noise = [getattr(self.noises, f"noise_{k}") for k in range(self.num_layers)]
        out = self.input(latent.shape[0])
        out = self.conv1(out, latent[:, 0], noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for c1, c2, n1, n2, rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs):
            out = c1(out, latent[:, i], n1)
            out = c2(out, latent[:, i + 1], n2)
            skip = rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip


# ---------- I/O ----------
def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for k, v in header.items():
        assert v["dtype"] == "F32", k
        b, e = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data, dtype="<f4", count=(e - b) // 4, offset=base + b).copy()).reshape(v["shape"])
    return out, meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    tensors, meta = read_safetensors(a.weights)
    cfg = json.loads(meta["config"])
    wplus = tensors.pop("wplus")
    R = tensors.pop("R")
    g = Generator(cfg["size"], cfg["styleDim"], cfg["nMlp"], {int(k): v for k, v in cfg["channels"].items()}, cfg["blurSize"], cfg["lrMlp"])
    g.load_state_dict(tensors, strict=True)
    g.eval()
    del tensors

    def fwd():
        with torch.no_grad():
            return g(wplus)

    wr = wplus.clone().requires_grad_(True)

    def fwdbwd():
        wr.grad = None
        img = g(wr)
        (img * R).sum().backward()
        return img.detach(), wr.grad

    print("ready " + json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] in ("fwd", "fwdbwd"):
            t0 = time.perf_counter()
            (fwd if cmd[0] == "fwd" else fwdbwd)()
            print(f"{time.perf_counter() - t0:.6f}", flush=True)
        elif cmd[0] == "dump":
            img, grad = fwdbwd()
            with open(cmd[1], "wb") as f:
                f.write(img.numpy().astype("<f4").tobytes())
                f.write(grad.numpy().astype("<f4").tobytes())
            print("ok", flush=True)
        elif cmd[0] == "rss":
            print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
        else:
            print(f"error unknown command {cmd[0]}", flush=True)


if __name__ == "__main__":
    main()
