"""vit_torch.py - the DINOv3 ViT backbone in plain PyTorch, written from
the project DESIGN.md, nn/vit.h and nn/rope.h (not from any other implementation).

It is the model the C code is checked against (gen_vit_reference.py runs it in
float64) and the model `distill bench` compares with (tools/bench_pytorch.py
runs it in float32). Parameters are a dict {name: tensor} with exactly the
names, shapes and order of vit_tensor_layout in nn/vit.c, so they travel to
and from the C side by name.

    tokens  = [CLS, reg x R, patch embeddings (masked ones -> mask_token)]
    block:  x = x + ls1 * o_proj(attention(rope(qkv(norm1(x)))))
            x = x + ls2 * ffn(norm2(x))          ffn: MLP (GELU) or SwiGLU
    output  = norm(x) over every token

Needs torch (>= 1.13) and, to read model files, PyYAML.
"""
import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ViTConfig:
    """One architecture; field names and defaults are those of configs/models/*.yaml."""
    name: str = "vit"
    patch_size: int = 16
    in_channels: int = 3
    dim: int = 384
    depth: int = 12
    num_heads: int = 6
    ffn: str = "mlp"            # "mlp" (fc1 -> GELU -> fc2) or "swiglu"
    ffn_hidden: int = 1536
    qkv_bias: bool = True       # q and v carry a bias; the key bias is held at zero
    registers: int = 4
    layerscale_init: float = 1e-5
    norm_eps: float = 1e-5
    rope_base: float = 100.0

    @property
    def head_dim(self):
        return self.dim // self.num_heads

    @property
    def ffn_first_width(self):
        """Rows of the first FFN matrix: F (MLP) or gate and up, 2F (SwiGLU)."""
        return 2 * self.ffn_hidden if self.ffn == "swiglu" else self.ffn_hidden


def load_config(path):
    """Reads a model YAML file (with `include:` chains) into a ViTConfig.
    Keys this model does not use (heads, ...) are ignored."""
    import yaml  # only needed here

    def read_mapping(file_path):
        with open(file_path) as stream:
            mapping = yaml.safe_load(stream) or {}
        if "include" in mapping:  # the included file supplies what is not written here
            base = read_mapping(os.path.join(os.path.dirname(file_path), mapping.pop("include")))
            base.update(mapping)
            mapping = base
        return mapping

    mapping = read_mapping(path)
    mapping.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    # Coerce to the field types: PyYAML reads YAML 1.1, where 1e-5 is a string.
    fields = ViTConfig.__dataclass_fields__
    config = ViTConfig(**{key: fields[key].type(value) for key, value in mapping.items() if key in fields})
    config.ffn = config.ffn.lower()
    if config.ffn not in ("mlp", "swiglu"):
        raise ValueError(f"{path}: ffn: expected mlp or swiglu, found {config.ffn}")
    if config.dim % config.num_heads or config.head_dim % 4:
        raise ValueError(f"{path}: expected dim divisible by num_heads into a head dim divisible by 4")
    return config


def tensor_layout(cfg):
    """[(name, shape)] of every parameter, in the order of nn/vit.c's layout."""
    D, F1, F = cfg.dim, cfg.ffn_first_width, cfg.ffn_hidden
    patch_in = cfg.in_channels * cfg.patch_size * cfg.patch_size
    fc1 = "gate_up_proj" if cfg.ffn == "swiglu" else "up_proj"
    layout = [
        ("embeddings.patch_embeddings.weight", (D, patch_in)),  # conv weight [D, C, P, P], flattened
        ("embeddings.patch_embeddings.bias", (D,)),
        ("embeddings.cls_token", (D,)),
    ]
    if cfg.registers > 0:
        layout.append(("embeddings.register_tokens", (cfg.registers, D)))
    layout.append(("embeddings.mask_token", (D,)))
    for i in range(cfg.depth):
        block = [
            ("norm1.weight", (D,)), ("norm1.bias", (D,)),
            ("attention.qkv_proj.weight", (3 * D, D)),  # rows: q, k, v
        ]
        if cfg.qkv_bias:
            block.append(("attention.qkv_proj.bias", (3 * D,)))
        block += [
            ("attention.o_proj.weight", (D, D)), ("attention.o_proj.bias", (D,)),
            ("layer_scale1.lambda1", (D,)),
            ("norm2.weight", (D,)), ("norm2.bias", (D,)),
            (f"mlp.{fc1}.weight", (F1, D)), (f"mlp.{fc1}.bias", (F1,)),  # SwiGLU: gate rows, then up rows
            ("mlp.down_proj.weight", (D, F)), ("mlp.down_proj.bias", (D,)),
            ("layer_scale2.lambda1", (D,)),
        ]
        layout += [(f"layer.{i}.{name}", shape) for name, shape in block]
    layout += [("norm.weight", (D,)), ("norm.bias", (D,))]
    return layout


# ---- RoPE (nn/rope.h) --------------------------------------------------------

def rope_tables(Hp, Wp, head_dim, base, rescale, dtype=torch.float64):
    """sin, cos [Hp*Wp, head_dim] for the patch grid (patch p = py*Wp + px).

    Patch centres normalised per axis to [-1, 1], times rescale; with
    Q = head_dim/4 periods base^(2i/(head_dim/2)), the angles are
    [2 pi y / period_i for i < Q] + [2 pi x / period_i for i < Q], tiled twice."""
    quarter = head_dim // 4
    y = (2.0 * (torch.arange(Hp, dtype=torch.float64) + 0.5) / Hp - 1.0) * rescale
    x = (2.0 * (torch.arange(Wp, dtype=torch.float64) + 0.5) / Wp - 1.0) * rescale
    periods = base ** (2.0 * torch.arange(quarter, dtype=torch.float64) / (head_dim // 2))
    coords = torch.stack(torch.meshgrid(y, x, indexing="ij"), dim=-1).reshape(Hp * Wp, 2)
    angles = 2.0 * math.pi * coords[:, :, None] / periods  # [Np, 2 (y, x), Q]
    angles = angles.reshape(Hp * Wp, 2 * quarter).tile(1, 2)  # [Np, head_dim]
    return torch.sin(angles).to(dtype), torch.cos(angles).to(dtype)


def rotate_half(x):
    """[x1, x2] -> [-x2, x1] over the last dim."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x, sin, cos):
    """x [B, H, Np, Dh] rotated by the tables sin, cos [Np, Dh]."""
    return x * cos + rotate_half(x) * sin


# ---- the model -----------------------------------------------------------------

def key_bias_mask(cfg, dtype, device=None):
    """[3D]: 1 over the q and v thirds of the fused bias, 0 over the k third."""
    mask = torch.ones(3 * cfg.dim, dtype=dtype, device=device)
    mask[cfg.dim:2 * cfg.dim] = 0
    return mask


def attention(cfg, params, prefix, h, sin, cos):
    """The attention branch of block `prefix` on h = norm1(x) [B, T, D] -> [B, T, D]."""
    B, T, D = h.shape
    H, Dh = cfg.num_heads, cfg.head_dim
    first = 1 + cfg.registers  # CLS and registers carry no RoPE
    bias = params.get(prefix + "attention.qkv_proj.bias")
    if bias is not None:
        bias = bias * key_bias_mask(cfg, h.dtype, h.device)
    qkv = F.linear(h, params[prefix + "attention.qkv_proj.weight"], bias)  # [B, T, 3D]
    q, k, v = qkv.view(B, T, 3, H, Dh).permute(2, 0, 3, 1, 4)  # each [B, H, T, Dh]
    q = torch.cat([q[:, :, :first], apply_rope(q[:, :, first:], sin, cos)], dim=2)
    k = torch.cat([k[:, :, :first], apply_rope(k[:, :, first:], sin, cos)], dim=2)
    probs = torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(Dh), dim=-1)  # [B, H, T, T]
    out = (probs @ v).transpose(1, 2).reshape(B, T, D)
    return F.linear(out, params[prefix + "attention.o_proj.weight"], params[prefix + "attention.o_proj.bias"])


def feed_forward(cfg, params, prefix, h):
    """The FFN branch of block `prefix` on h = norm2(x) [B, T, D] -> [B, T, D]."""
    if cfg.ffn == "swiglu":
        gate_up = F.linear(h, params[prefix + "mlp.gate_up_proj.weight"], params[prefix + "mlp.gate_up_proj.bias"])
        gate, up = gate_up.split(cfg.ffn_hidden, dim=-1)  # [B, T, F] each
        hidden = F.silu(gate) * up
    else:
        hidden = F.gelu(F.linear(h, params[prefix + "mlp.up_proj.weight"], params[prefix + "mlp.up_proj.bias"]))
    return F.linear(hidden, params[prefix + "mlp.down_proj.weight"], params[prefix + "mlp.down_proj.bias"])


def vit_forward(cfg, params, images, mask=None, rope_rescale=1.0):
    """images [B, C, H, W] -> normalised tokens [B, 1 + R + Np, D].

    mask [B, Np] (bool, may be None): patches replaced by the mask token."""
    B, C, Hpx, Wpx = images.shape
    D, P, eps = cfg.dim, cfg.patch_size, cfg.norm_eps
    Hp, Wp = Hpx // P, Wpx // P

    conv_weight = params["embeddings.patch_embeddings.weight"].view(D, C, P, P)
    patches = F.conv2d(images, conv_weight, params["embeddings.patch_embeddings.bias"], stride=P)
    patches = patches.flatten(2).transpose(1, 2)  # [B, Np, D], patch p = py*Wp + px
    if mask is not None:
        patches = torch.where(mask[:, :, None], params["embeddings.mask_token"], patches)
    prefix_tokens = [params["embeddings.cls_token"].expand(B, 1, D)]
    if cfg.registers > 0:
        prefix_tokens.append(params["embeddings.register_tokens"].expand(B, cfg.registers, D))
    x = torch.cat(prefix_tokens + [patches], dim=1)  # [B, T, D]

    sin, cos = rope_tables(Hp, Wp, cfg.head_dim, cfg.rope_base, rope_rescale, images.dtype)
    sin, cos = sin.to(images.device), cos.to(images.device)
    for i in range(cfg.depth):
        p = f"layer.{i}."
        h = F.layer_norm(x, (D,), params[p + "norm1.weight"], params[p + "norm1.bias"], eps)
        x = x + params[p + "layer_scale1.lambda1"] * attention(cfg, params, p, h, sin, cos)
        h = F.layer_norm(x, (D,), params[p + "norm2.weight"], params[p + "norm2.bias"], eps)
        x = x + params[p + "layer_scale2.lambda1"] * feed_forward(cfg, params, p, h)
    return F.layer_norm(x, (D,), params["norm.weight"], params["norm.bias"], eps)
