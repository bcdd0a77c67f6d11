"""The twins of diffuse's two denoisers (src/models/fcUnet.ts, src/models/unet.ts), built from a run
record's model configuration. Module paths are diffuse's weight names with dots: `down1/block0/conv1/kernel`
is `down1.block0.conv1.weight`, so a state_dict is what `diffuse export --safetensors` writes.

A conditional model (its configuration's `classes` > 0) takes labels: forward(x, t_frac, labels) with
labels [b] class indices (integers, or floats holding them), the index `classes` meaning "no class",
and labels=None "no class" for every image (classifier-free guidance's unconditional half). The FC net
takes the label's one-hot of classes + 1 beside t/T in its input; the U-net adds a learned vector per
class, `classes_emb` (an nn.Embedding of classes + 1 rows, as lucidrains' denoising-diffusion-pytorch
names it), to the time embedding before the SiLU that feeds its blocks."""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def class_labels(labels, batch, classes, device):
    """[b] long class indices for the models: None is "no class" (the index `classes`) for all; floats are rounded down as diffuse's int cast; anything outside 0..classes is refused."""
    if labels is None:
        return torch.full((batch,), classes, dtype=torch.long, device=device)
    labels = torch.as_tensor(labels, device=device)
    if labels.shape != (batch,):
        raise ValueError(f"labels have shape {tuple(labels.shape)}, the batch needs ({batch},)")
    labels = labels.long()
    if batch and (labels.min() < 0 or labels.max() > classes):
        raise ValueError(f"labels must be class indices 0..{classes - 1}, or {classes} for no class")
    return labels


class FcUnet(nn.Module):
    """The seed's fully connected U-net: [x, t/T(, one-hot label)] → w → w/2 → w/4 → w/2 → w → pixels, GELU then LayerNorm, U residuals."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.classes = classes = config.get("classes", 0)  # records before version 5 have none
        pixels = config["height"] * config["imageWidth"] * config["channels"]
        w = config["width"]
        # the image, t/T, and a conditional net's label one-hot (its last column: no class)
        widths = [(pixels + 1 + (classes + 1 if classes > 0 else 0), w), (w, w // 2), (w // 2, w // 4), (w // 4, w // 2), (w // 2, w), (w, pixels)]
        self.layers = nn.ModuleDict({name: nn.Linear(i, o) for name, (i, o) in zip(["in", "down1", "down2", "up1", "up2", "out"], widths)})
        self.norms = nn.ModuleDict({f"norm{i}": nn.LayerNorm(n, eps=1e-5) for i, n in enumerate([w, w // 2, w // 4, w // 2, w])})

    def state_names(self):
        """state_dict names as diffuse's (dots for slashes)."""
        return {k: k.split(".", 1)[1] for k in self.state_dict()}

    def forward(self, x, t_frac, labels=None):
        """x: [b, pixels] (HWC flattened, as diffuse); t_frac: [b] t/T; labels: [b] classes of a conditional net (None: no class)."""
        L, N = self.layers, self.norms
        act = lambda h, i: N[f"norm{i}"](F.gelu(h))
        parts = [x, t_frac[:, None]]
        if self.classes > 0:
            parts.append(F.one_hot(class_labels(labels, x.shape[0], self.classes, x.device), self.classes + 1).to(x.dtype))
        elif labels is not None:
            raise ValueError("labels given to an unconditional model")
        o0 = L["in"](torch.cat(parts, 1))
        o1 = L["down1"](act(o0, 0))
        o2 = L["down2"](act(o1, 1))
        u1 = L["up1"](act(o2, 2) + o2)
        u2 = L["up2"](act(u1, 3) + o1)
        return L["out"](act(u2, 4) + o0)


def timestep_embedding(steps, dim):
    """Ho et al.'s sinusoids of t in steps: sines, then cosines (angles in float64, as tfjs-cpu)."""
    half = dim // 2
    freqs = torch.from_numpy(np.exp((-math.log(10000) * np.arange(half)) / max(1, half - 1)).astype(np.float32))
    angles = (steps[:, None] * freqs[None, :].to(steps.device)).double()
    return torch.cat([angles.sin(), angles.cos()], 1).float()


def space_to_depth(x, block=2):
    """Each block x block square of pixels becomes one pixel with block^2 x the channels, ordered (dy, dx, c) as diffuse's NHWC version (not pixel_unshuffle's (c, dy, dx))."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // block, block, w // block, block).permute(0, 3, 5, 1, 2, 4).reshape(b, block * block * c, h // block, w // block)


def depth_to_space(x, block):
    """The inverse of space_to_depth."""
    b, cc, h, w = x.shape
    c = cc // (block * block)
    return x.reshape(b, block, block, c, h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, c, h * block, w * block)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, tdim, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(tdim, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, time_silu):
        h = self.conv1(F.silu(self.norm1(x))) + self.time(time_silu)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.skip is None else self.skip(x))


class Attention(nn.Module):
    """x + out(MHA(GroupNorm(x))): q, k, v without bias, softmax(q kᵀ/√d) v per head."""

    def __init__(self, c, groups, heads):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, c, eps=1e-5)
        self.q, self.k, self.v = (nn.Linear(c, c, bias=False) for _ in range(3))
        self.out = nn.Linear(c, c)

    def forward(self, x):
        b, c, h, w = x.shape
        n, heads, d = h * w, self.heads, c // self.heads
        rows = self.norm(x).flatten(2).transpose(1, 2)

        def split(t):
            return t.reshape(b, n, heads, d).transpose(1, 2).reshape(b * heads, n, d)

        q, k, v = split(self.q(rows)), split(self.k(rows)), split(self.v(rows))
        weights = torch.softmax(torch.bmm(q, k.transpose(1, 2)) * (1 / math.sqrt(d)), -1)
        mixed = torch.bmm(weights, v).reshape(b, heads, n, d).transpose(1, 2).reshape(b, n, c)
        return x + self.out(mixed).transpose(1, 2).reshape(b, c, h, w)


class ConvUnet(nn.Module):
    """diffuse's convolutional U-net with attention (lucidrains' layout)."""

    def __init__(self, config):
        super().__init__()
        self.config = c = config
        base, mults, groups, heads, tdim = c["baseChannels"], c["channelMults"], c["groups"], c["heads"], 4 * c["baseChannels"]
        blocks, attention = c["blocksPerStage"], c["attentionResolutions"]
        self.time = nn.ModuleDict({"dense1": nn.Linear(base, tdim), "dense2": nn.Linear(tdim, tdim)})
        self.classes = classes = c.get("classes", 0)  # records before version 5 have none
        if classes > 0:
            # diffuse's class/embedding: a row per class, the last "no class"; drawn U(-1, 1) as diffuse draws it (fan-in 1)
            self.classes_emb = nn.Embedding(classes + 1, tdim)
            nn.init.uniform_(self.classes_emb.weight, -1, 1)
        self.patch = patch = c.get("patchSize", 1)  # records before version 4 have none
        self.init = nn.Conv2d(c["channels"] * patch * patch, base, 3, padding=1)
        ch, res, skips = base, c["height"] // patch, []
        for stage, m in enumerate(mults):
            d = nn.ModuleDict()
            for i in range(blocks):
                d[f"block{i}"] = ResBlock(ch, base * m, tdim, groups)
                ch = base * m
                if res in attention:
                    d[f"attn{i}"] = Attention(ch, groups, heads)
                skips.append(ch)
            if stage < len(mults) - 1:
                d["downsample"] = nn.Conv2d(4 * ch, ch, 1)
                res //= 2
            setattr(self, f"down{stage}", d)
        mid = base * mults[-1]
        self.mid = nn.ModuleDict({"block1": ResBlock(ch, mid, tdim, groups), "attn": Attention(mid, groups, heads), "block2": ResBlock(mid, mid, tdim, groups)})
        ch = mid
        for stage in reversed(range(len(mults))):
            u = nn.ModuleDict()
            for i in range(blocks):
                u[f"block{i}"] = ResBlock(ch + skips.pop(), base * mults[stage], tdim, groups)
                ch = base * mults[stage]
                if res in attention:
                    u[f"attn{i}"] = Attention(ch, groups, heads)
            if stage > 0:
                u["upsample"] = nn.Conv2d(ch, ch, 3, padding=1)
                res *= 2
            setattr(self, f"up{stage}", u)
        self.final = nn.ModuleDict({"block": ResBlock(ch + base, base, tdim, groups)})
        out = nn.ModuleDict()
        if c["outputNorm"]:
            out["norm"] = nn.GroupNorm(groups, base, eps=1e-5)
        out["conv"] = nn.Conv2d(base, c["channels"] * patch * patch, 3, padding=1)
        self.out = out

    def state_names(self):
        return {k: k for k in self.state_dict()}

    def forward(self, x, t_frac, labels=None):
        """x: [b, pixels] (HWC flattened, as diffuse); t_frac: [b] t/T; labels: [b] classes of a conditional net (None: no class). Returns [b, pixels]."""
        c = self.config
        size, channels = c["height"], c["channels"]
        x = x.reshape(-1, size, size, channels).permute(0, 3, 1, 2)
        time = timestep_embedding(t_frac * 1000, c["baseChannels"])
        time = self.time["dense2"](F.silu(self.time["dense1"](time)))
        if self.classes > 0:
            time = time + self.classes_emb(class_labels(labels, x.shape[0], self.classes, x.device))
        elif labels is not None:
            raise ValueError("labels given to an unconditional model")
        time = F.silu(time)
        patch = self.patch
        h = self.init(space_to_depth(x, patch) if patch > 1 else x)
        initial, skips = h, []
        for stage in range(len(c["channelMults"])):
            d = getattr(self, f"down{stage}")
            for i in range(c["blocksPerStage"]):
                h = d[f"block{i}"](h, time)
                if f"attn{i}" in d:
                    h = d[f"attn{i}"](h)
                skips.append(h)
            if "downsample" in d:
                h = d["downsample"](space_to_depth(h))
        h = self.mid["block2"](self.mid["attn"](self.mid["block1"](h, time)), time)
        for stage in reversed(range(len(c["channelMults"]))):
            u = getattr(self, f"up{stage}")
            for i in range(c["blocksPerStage"]):
                h = u[f"block{i}"](torch.cat([h, skips.pop()], 1), time)
                if f"attn{i}" in u:
                    h = u[f"attn{i}"](h)
            if "upsample" in u:
                h = u["upsample"](F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.final["block"](torch.cat([h, initial], 1), time)
        if "norm" in self.out:
            h = F.silu(self.out["norm"](h))
        out = self.out["conv"](h)
        return (depth_to_space(out, patch) if patch > 1 else out).permute(0, 2, 3, 1).reshape(x.shape[0], -1)


def build(model_config):
    """The twin a run record's `model` describes."""
    if model_config["kind"] == "fc-unet":
        return FcUnet(model_config)
    if model_config["kind"] == "unet":
        return ConvUnet(model_config)
    raise ValueError(f"unknown model kind {model_config['kind']!r}")


def torch_key(model, diffuse_dotted):
    """The model's state_dict key for a file's tensor name (the FC twin groups its layers and norms)."""
    if isinstance(model, FcUnet):
        return ("norms." if diffuse_dotted.startswith("norm") else "layers.") + diffuse_dotted
    return diffuse_dotted


def load_state(model, tensors, prefix=""):
    """Loads the file's tensors named prefix + diffuse name into the model (every parameter must be there)."""
    state = {}
    for key, p in model.state_dict().items():
        name = key.split(".", 1)[1] if isinstance(model, FcUnet) else key
        a = tensors[prefix + name]
        if tuple(a.shape) != tuple(p.shape):
            raise ValueError(f"{prefix + name}: shape {a.shape}, the model needs {tuple(p.shape)}")
        state[key] = torch.from_numpy(np.ascontiguousarray(a))
    model.load_state_dict(state)


def state_tensors(model, prefix=""):
    """The model's parameters as the file's tensors: {prefix + diffuse name (dotted): float32 array}."""
    out = {}
    for key, p in model.state_dict().items():
        name = key.split(".", 1)[1] if isinstance(model, FcUnet) else key
        out[prefix + name] = p.detach().cpu().numpy().astype(np.float32)
    return out
