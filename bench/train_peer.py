# PyTorch side of `npm run bench:train`: one HairCLIP training step (wty-ustc/HairCLIP
# mapper/training/coach.py) on the CPU, written from the official modules for this benchmark:
#   G        rosinality model.py (bench/synthesis_peer.py: the fused modulated conv, native
#            upfirdn2d), randomize_noise=False, input_is_latent
#   mapper   HairMapper (latent_mappers.py): 3 SubHairMappers x 5 ModulationModules
#   CLIP     OpenAI clip/model.py VisionTransformer (ViT-B/32) + logit_scale
#   ArcFace  TreB1eN Backbone(112, 50, 'ir_se') as criteria/id_loss.py uses it
#   parser   criteria/parse_related_loss/unet.py (feature_scale 4, 19 classes)
# The step computes the same loss terms as the TypeScript step graph for a sample with a
# hairstyle text and a colour text (bench/train.ts): identity, two CLIP text losses (one CLIP pass
# of x_hat: Upsample(7) + AvgPool2d(32), raw [-1, 1], as CLIPLoss), the reference-hairstyle image
# loss and the reference-colour Lab loss (weight 0 for this sample, computed as the TS graph
# does), background, latent L2; one parser pass per image gives both masks; then backward and a
# Ranger 20.4.11 update of the mapper.
#
#   /usr/bin/python3 bench/train_peer.py --weights W.safetensors --threads 2
# prints "ready <json>", then one command per stdin line:
#   step          forward + backward + optimiser step: prints the wall time in seconds
#   dump <path>   losses (9 floats: the 8 terms then the total) and the gradient of every mapper
#                 parameter in key order (float32, raw) at the current parameters; prints "ok"
#   rss           peak resident set size (KB)
import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synthesis_peer import Generator, read_safetensors  # noqa: E402


# ---------- CLIP ViT (openai/CLIP clip/model.py) ----------
class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads)
        self.ln_1 = nn.LayerNorm(d)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(d, 4 * d))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * d, d))
        self.ln_2 = nn.LayerNorm(d)

    def forward(self, x):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, d, layers, heads):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(d, heads) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class VisionTransformer(nn.Module):
    def __init__(self, res, patch, width, layers, heads, out):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((res // patch) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, out))

    def forward(self, x):
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.ln_pre(x).permute(1, 0, 2)
        x = self.transformer(x).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class ClipVisual(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.visual = VisionTransformer(cfg["imageResolution"], cfg["visionPatchSize"], cfg["visionWidth"], cfg["visionLayers"], cfg["visionHeads"], cfg["embedDim"])
        self.logit_scale = nn.Parameter(torch.zeros([]))


# ---------- IR-SE50 (TreB1eN model_irse.py) ----------
class SEModule(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // r, 1, bias=False)
        self.fc2 = nn.Conv2d(c // r, c, 1, bias=False)

    def forward(self, x):
        a = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(a))))


class BottleneckIRSE(nn.Module):
    def __init__(self, cin, depth, stride):
        super().__init__()
        if cin == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(cin, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(cin), nn.Conv2d(cin, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth), SEModule(depth, 16))

    def forward(self, x):
        return self.res_layer(x) + self.shortcut_layer(x)


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(0.6), nn.Flatten(), nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512, affine=True))
        units = []
        for cin, depth, n in [(64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3)]:
            units.append(BottleneckIRSE(cin, depth, 2))
            units += [BottleneckIRSE(depth, depth, 1) for _ in range(n - 1)]
        self.body = nn.Sequential(*units)

    def forward(self, x):
        x = self.output_layer(self.body(self.input_layer(x)))
        return x / torch.norm(x, 2, 1, True)


# ---------- parser (unet.py) ----------
class UnetConv2(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, x):
        return self.conv2(self.conv1(x))


class UnetUp(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = UnetConv2(cin, cout)
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)

    def forward(self, skip, deeper):
        up = self.up(deeper)
        p = (up.shape[2] - skip.shape[2]) // 2
        return self.conv(torch.cat([F.pad(skip, [p, p, p, p]), up], 1))


class Unet(nn.Module):
    def __init__(self, f=(16, 32, 64, 128, 256), n_classes=19):
        super().__init__()
        self.conv1, self.conv2 = UnetConv2(3, f[0]), UnetConv2(f[0], f[1])
        self.conv3, self.conv4 = UnetConv2(f[1], f[2]), UnetConv2(f[2], f[3])
        self.center = UnetConv2(f[3], f[4])
        self.up_concat4, self.up_concat3 = UnetUp(f[4], f[3]), UnetUp(f[3], f[2])
        self.up_concat2, self.up_concat1 = UnetUp(f[2], f[1]), UnetUp(f[1], f[0])
        self.final = nn.Conv2d(f[0], n_classes, 1)

    def forward(self, x):
        c1 = self.conv1(x)
        c2 = self.conv2(F.max_pool2d(c1, 2))
        c3 = self.conv3(F.max_pool2d(c2, 2))
        c4 = self.conv4(F.max_pool2d(c3, 2))
        c = self.center(F.max_pool2d(c4, 2))
        return self.final(self.up_concat1(c1, self.up_concat2(c2, self.up_concat3(c3, self.up_concat4(c4, c)))))


# ---------- HairMapper (latent_mappers.py) ----------
class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


def mlp(d, e):
    return nn.Sequential(nn.Linear(e, d), nn.LayerNorm([d]), nn.LeakyReLU(), nn.Linear(d, d))


class ModulationModule(nn.Module):
    def __init__(self, layernum, d, e):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.norm = nn.LayerNorm([layernum, d], elementwise_affine=False)
        self.gamma_function = mlp(d, e)
        self.beta_function = mlp(d, e)
        self.leakyrelu = nn.LeakyReLU()

    def forward(self, x, embedding, cut_flag):
        x = self.norm(self.fc(x))
        if cut_flag == 1:
            return x
        gamma = self.gamma_function(embedding.float())
        beta = self.beta_function(embedding.float())
        return self.leakyrelu(x * (1 + gamma) + beta)


class SubHairMapper(nn.Module):
    def __init__(self, layernum, d, e):
        super().__init__()
        self.pixelnorm = PixelNorm()
        self.modulation_module_list = nn.ModuleList([ModulationModule(layernum, d, e) for _ in range(5)])

    def forward(self, x, embedding, cut_flag=0):
        x = self.pixelnorm(x)
        for m in self.modulation_module_list:
            x = m(x, embedding, cut_flag)
        return x


class HairMapper(nn.Module):
    def __init__(self, n_latent, d, e):
        super().__init__()
        self.course_mapping = SubHairMapper(4, d, e)
        self.medium_mapping = SubHairMapper(4, d, e)
        self.fine_mapping = SubHairMapper(n_latent - 8, d, e)

    def forward(self, x, e_hair, e_color):
        L = x.shape[1]
        eh = e_hair.unsqueeze(1).repeat(1, L, 1)
        ec = e_color.unsqueeze(1).repeat(1, L, 1)
        return torch.cat([self.course_mapping(x[:, :4], eh[:, :4]), self.medium_mapping(x[:, 4:8], eh[:, 4:8]),
                          self.fine_mapping(x[:, 8:], ec[:, 8:])], dim=1)


# ---------- Ranger 20.4.11 (RAdam + Lookahead + gradient centralisation) ----------
class Ranger(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, alpha=0.5, k=6, N_sma_threshhold=5, betas=(0.95, 0.999), eps=1e-5, weight_decay=0):
        super().__init__(params, dict(lr=lr, alpha=alpha, k=k, step_counter=0, betas=betas, N_sma_threshhold=N_sma_threshhold, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                st = self.state[p]
                if not st:
                    st["step"] = 0
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_sq"] = torch.zeros_like(p)
                    st["slow_buffer"] = p.detach().clone()
                if grad.dim() > 1:
                    grad = grad - grad.mean(dim=tuple(range(1, grad.dim())), keepdim=True)
                b1, b2 = group["betas"]
                st["step"] += 1
                t = st["step"]
                st["exp_avg_sq"].mul_(b2).addcmul_(grad, grad, value=1 - b2)
                st["exp_avg"].mul_(b1).add_(grad, alpha=1 - b1)
                b2t = b2 ** t
                n_max = 2 / (1 - b2) - 1
                n_sma = n_max - 2 * t * b2t / (1 - b2t)
                if n_sma > group["N_sma_threshhold"]:
                    ss = math.sqrt((1 - b2t) * (n_sma - 4) / (n_max - 4) * (n_sma - 2) / n_sma * n_max / (n_max - 2)) / (1 - b1 ** t)
                    p.addcdiv_(st["exp_avg"], st["exp_avg_sq"].sqrt().add_(group["eps"]), value=-ss * group["lr"])
                else:
                    p.add_(st["exp_avg"], alpha=-group["lr"] / (1 - b1 ** t))
                if t % group["k"] == 0:
                    st["slow_buffer"].add_(p - st["slow_buffer"], alpha=group["alpha"])
                    p.copy_(st["slow_buffer"])


# ---------- losses (coach.py calc_loss and criteria/*) ----------
M_XYZ = torch.tensor([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])


def img_to_lab(img):
    rgb = (img + 1) / 2
    xyz = torch.einsum("ck,nkhw->nchw", M_XYZ, rgb) / M_XYZ.sum(1).view(1, 3, 1, 1)

    def f(t):
        cube = t > 0.008856
        return torch.where(cube, torch.where(cube, t, torch.ones_like(t)) ** (1 / 3), 7.787 * t + 0.137931)

    X, Y, Z = xyz[:, 0:1], xyz[:, 1:2], xyz[:, 2:3]
    L = torch.where(Y > 0.008856, 116 * f(Y) - 16, 903.3 * Y)
    return torch.cat([L, 500 * (f(X) - f(Y)), 200 * (f(Y) - f(Z))], 1)


def hair_avg(lab, mask):
    s = (lab * mask).sum(2, keepdim=True).sum(3, keepdim=True)
    m = mask.sum(2, keepdim=True).sum(3, keepdim=True)
    return s / torch.where(m == 0, torch.ones_like(m), m)


MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    tensors, meta = read_safetensors(a.weights)
    cfg = json.loads(meta["config"])
    take = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731
    g = Generator(cfg["g"]["size"], cfg["g"]["styleDim"], cfg["g"]["nMlp"], {int(k): v for k, v in cfg["g"]["channels"].items()}, cfg["g"]["blurSize"], cfg["g"]["lrMlp"])
    g.load_state_dict(take("g."), strict=True)
    clip = ClipVisual(cfg["clip"])
    clip.load_state_dict(take("clip."), strict=True)
    def load(m, sd):
        # BatchNorm's int64 num_batches_tracked buffers are not sent (unused in eval mode)
        r = m.load_state_dict(sd, strict=False)
        assert not r.unexpected_keys and all(k.endswith("num_batches_tracked") for k in r.missing_keys), r
    arc = Backbone()
    load(arc, take("arc."))
    parser = Unet()
    load(parser, take("parse."))
    L, D = tensors["w"].shape[1], tensors["w"].shape[2]
    mapper = HairMapper(L, D, tensors["e_hair"].shape[1])
    mapper_sd = take("mapper.")
    mapper.load_state_dict(mapper_sd, strict=True)
    keys = list(json.loads(meta["mapper_keys"]))
    for m in (g, clip, arc, parser, mapper):
        m.eval()
    for m in (g, clip, arc, parser):
        for p in m.parameters():
            p.requires_grad_(False)
    w, e_hair, e_color, lw, lab_ref = tensors["w"], tensors["e_hair"], tensors["e_color"], tensors["lambdas"], tensors["lab_color_ref"]
    S = cfg["g"]["size"]
    psize = cfg["parserSize"]
    opt = Ranger(mapper.parameters(), lr=0.0005)
    named = dict(mapper.named_parameters())

    def masks(img):
        logits = parser(F.adaptive_avg_pool2d(img, (psize, psize)))
        labels = torch.max(logits, 1)[1].unsqueeze(1)
        hair = F.adaptive_avg_pool2d((labels == 13).float(), (S, S))
        return hair, F.adaptive_avg_pool2d((labels != 13).float(), (S, S))

    def id_feats(img):
        x = F.adaptive_avg_pool2d(img, (256, 256)) if img.shape[2] != 256 else img
        return arc(F.adaptive_avg_pool2d(x[:, :, 35:223, 32:220], (112, 112)))

    def clip_cos(feat, text):
        return (clip.logit_scale.exp() * F.cosine_similarity(feat, text, dim=-1)) / 100

    def losses():
        with torch.no_grad():
            x = g(w)
            hair_x, bg_x = masks(x)
            f_x = id_feats(x)
        w_hat = w + 0.1 * mapper(w, e_hair, e_color)
        x_hat = g(w_hat)
        with torch.no_grad():
            hair_xh, bg_xh = masks(x_hat)
        t = {}
        t["loss_id"] = (1 - (id_feats(x_hat) * f_x).sum(1)).mean()
        img224 = nn.AvgPool2d(kernel_size=S // 32)(nn.Upsample(scale_factor=7)(x_hat))
        feat = clip.visual(img224)
        t["loss_text_hairstyle"] = (1 - clip_cos(feat, e_hair)).mean()
        t["loss_text_color"] = (1 - clip_cos(feat, e_color)).mean()
        emb_in = (F.adaptive_avg_pool2d(x_hat * hair_xh, (224, 224)) * 0.5 + 0.5 - MEAN) / STD
        t["loss_img_hairstyle"] = (1 - F.cosine_similarity(clip.visual(emb_in), e_hair, dim=-1)).mean()
        avg_xh = hair_avg(img_to_lab(x_hat), hair_xh).view(-1, 3)
        t["loss_img_color"] = (lab_ref - avg_xh).abs().mean()
        t["loss_maintain_color_for_hairstyle"] = torch.zeros([])  # not built for a colour sample
        m = ((bg_x + bg_xh) == 2).float()
        t["loss_background"] = F.mse_loss(x * m, x_hat * m)
        t["loss_l2_latent"] = F.mse_loss(w_hat, w)
        names = ["loss_id", "loss_text_hairstyle", "loss_text_color", "loss_img_hairstyle", "loss_img_color",
                 "loss_maintain_color_for_hairstyle", "loss_background", "loss_l2_latent"]
        total = sum(lw[i] * t[n] for i, n in enumerate(names))
        return [t[n] for n in names], total

    def step(update=True):
        opt.zero_grad(set_to_none=True)
        terms, total = losses()
        total.backward()
        if update:
            opt.step()
        return terms, total

    print("ready " + json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "step":
            t0 = time.perf_counter()
            step()
            print(f"{time.perf_counter() - t0:.6f}", flush=True)
        elif cmd[0] in ("dump", "dumpnoid"):
            # the loss terms, the total and every mapper gradient of one step without an update;
            # dumpnoid: the same with the identity term's weight set to 0 (see bench/train.ts)
            saved = lw[0].item()
            if cmd[0] == "dumpnoid":
                lw[0] = 0
            terms, total = step(update=False)
            lw[0] = saved
            with open(cmd[1], "wb") as f:
                f.write(torch.stack([*[x.detach().float() for x in terms], total.detach().float()]).numpy().astype("<f4").tobytes())
                for k in keys:
                    gr = named[k[len("mapper."):]].grad
                    f.write((gr if gr is not None else torch.zeros_like(named[k[len("mapper."):]])).numpy().astype("<f4").tobytes())
            print("ok", flush=True)
        elif cmd[0] == "profile":
            with torch.autograd.profiler.profile() as prof:
                step(update=False)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15), file=sys.stderr, flush=True)
            print("ok", flush=True)
        elif cmd[0] == "rss":
            print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
        else:
            print(f"error unknown command {cmd[0]}", flush=True)


if __name__ == "__main__":
    main()
