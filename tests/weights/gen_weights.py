#!/usr/bin/python3
"""gen_weights.py - writes the small weight files tests/weights/test_weights.c
imports and exports, and the PyTorch outputs it compares with.

Run it with Debian's python (torch and h5py live there; no `safetensors` or
`transformers` package is needed, the safetensors format is written here):

    /usr/bin/python3 tests/weights/gen_weights.py

The files are committed; CI never runs PyTorch. Output is deterministic.

Two models of DINOv3's Hugging Face structure (DINOv3ViTModel: embeddings,
layer.N.attention.{q,k,v,o}_proj, layer_scaleK.lambda1, mlp.*, norm) and of
the original structure (facebookresearch/dinov3: patch_embed, blocks.N.attn.qkv
with its bias mask, lsK.gamma, storage_tokens, rope_embed.periods) are written
below as torch modules, each with its own forward. One set of random weights
fills both; their state_dict()s give the files. The outputs of the two
modules and of tests/reference/vit_torch.py (the project's layout) must agree,
which checks the name mapping on this side before the C side is checked.

    tiny_ref_hf/model.safetensors + config.json          F32, one file
    tiny_ref_original.safetensors                        F32, original names
                                                         (non-zero stored key bias, masked)
    tiny_ref_swiglu_hf/model-0000{1,2}-of-00002.safetensors
        + model.safetensors.index.json + config.json     BF16, two shards
    tiny_ref_swiglu_original.safetensors                 F16, original names
    tiny_ref_heads.safetensors                           DINO + iBOT heads of tiny_ref,
                                                         DINOv3 names under "teacher."
    NAME_expected.h5                                     images, mask, outputs (float64
                                                         forward, stored fp32)
    dtypes.safetensors                                   the same values in F32, F16,
                                                         BF16, F64, and torch's own
                                                         F16/BF16 roundings of them

Every weight is rounded to 8 significant bits and tiny magnitudes are set to
zero, so that F32, F16 and BF16 files hold exactly the same values.

To check an exported folder by hand (not in CI):
    /usr/bin/python3 tests/weights/gen_weights.py --check-export OUT_DIR NAME
loads OUT_DIR/model.safetensors + config.json into the Hugging Face-structured
module and compares its forward with NAME_expected.h5.
"""
import json
import math
import os
import struct
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
from vit_torch import ViTConfig, tensor_layout, vit_forward  # noqa: E402

# The same numbers as configs/models/tiny_ref.yaml and tiny_ref_swiglu.yaml.
MODELS = {
    "tiny_ref": (11, ViTConfig(name="tiny_ref", patch_size=8, in_channels=3, dim=32, depth=2, num_heads=2,
                               ffn="mlp", ffn_hidden=64, qkv_bias=True, registers=4)),
    "tiny_ref_swiglu": (12, ViTConfig(name="tiny_ref_swiglu", patch_size=8, in_channels=3, dim=32, depth=2,
                                      num_heads=2, ffn="swiglu", ffn_hidden=48, qkv_bias=False, registers=4)),
}
HEADS = {"dino_head": (3, 64, 32, 128), "ibot_head": (3, 64, 24, 96)}  # layers, hidden, bottleneck, prototypes
BATCH, IMAGE = 2, (32, 48)


# ---- Hugging Face structure (DINOv3ViTModel) ---------------------------------------

def rope_sin_cos(cfg, Hp, Wp):
    """sin, cos [Hp*Wp, head_dim], as DINOv3ViTRopePositionEmbedding computes them."""
    head_dim = cfg.dim // cfg.num_heads
    inv_freq = 1 / cfg.rope_base ** torch.arange(0, 1, 4 / head_dim, dtype=torch.float64)
    coords_h = torch.arange(0.5, Hp, dtype=torch.float64) / Hp
    coords_w = torch.arange(0.5, Wp, dtype=torch.float64) / Wp
    coords = torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"), dim=-1).flatten(0, 1)
    coords = 2.0 * coords - 1.0
    angles = (2 * math.pi * coords[:, :, None] * inv_freq[None, None, :]).flatten(1, 2).tile(2)
    return torch.sin(angles), torch.cos(angles)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rope_attention(q, k, v, sin, cos, prefix):
    """q, k, v [B, H, T, Dh]; RoPE on the tokens after the prefix tokens."""
    def rotate(x):
        return torch.cat([x[:, :, :prefix], x[:, :, prefix:] * cos + rotate_half(x[:, :, prefix:]) * sin], dim=2)
    q, k = rotate(q), rotate(k)
    probs = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1)
    return probs @ v


class HFEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, cfg.registers, cfg.dim))
        self.patch_embeddings = nn.Conv2d(cfg.in_channels, cfg.dim, cfg.patch_size, stride=cfg.patch_size)

    def forward(self, images, mask):
        patches = self.patch_embeddings(images).flatten(2).transpose(1, 2)
        if mask is not None:
            patches = torch.where(mask.unsqueeze(-1), self.mask_token, patches)
        B = images.shape[0]
        return torch.cat([self.cls_token.expand(B, -1, -1), self.register_tokens.expand(B, -1, -1), patches], dim=1)


class HFAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.heads = cfg.num_heads
        self.q_proj = nn.Linear(cfg.dim, cfg.dim, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.v_proj = nn.Linear(cfg.dim, cfg.dim, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, x, sin, cos, prefix):
        B, T, D = x.shape
        split = lambda t: t.view(B, T, self.heads, D // self.heads).transpose(1, 2)  # noqa: E731
        out = rope_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)), sin, cos, prefix)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, D))


class HFLayerScale(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.lambda1 = nn.Parameter(torch.ones(cfg.dim))


class HFMLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gated = cfg.ffn == "swiglu"
        if self.gated:
            self.gate_proj = nn.Linear(cfg.dim, cfg.ffn_hidden)
        self.up_proj = nn.Linear(cfg.dim, cfg.ffn_hidden)
        self.down_proj = nn.Linear(cfg.ffn_hidden, cfg.dim)

    def forward(self, x):
        if self.gated:
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        return self.down_proj(F.gelu(self.up_proj(x)))


class HFLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.attention = HFAttention(cfg)
        self.layer_scale1 = HFLayerScale(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.mlp = HFMLP(cfg)
        self.layer_scale2 = HFLayerScale(cfg)

    def forward(self, x, sin, cos, prefix):
        x = x + self.layer_scale1.lambda1 * self.attention(self.norm1(x), sin, cos, prefix)
        return x + self.layer_scale2.lambda1 * self.mlp(self.norm2(x))


class HFModel(nn.Module):
    """The module structure (hence the state_dict names) of DINOv3ViTModel."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embeddings = HFEmbeddings(cfg)
        self.layer = nn.ModuleList([HFLayer(cfg) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)

    def forward(self, images, mask=None):
        cfg = self.cfg
        x = self.embeddings(images, mask)
        sin, cos = rope_sin_cos(cfg, images.shape[2] // cfg.patch_size, images.shape[3] // cfg.patch_size)
        for layer in self.layer:
            x = layer(x, sin.to(x.dtype), cos.to(x.dtype), 1 + cfg.registers)
        return self.norm(x)


def hf_config(cfg):
    """config.json of DINOv3ViTConfig for cfg."""
    gated = cfg.ffn == "swiglu"
    return {
        "architectures": ["DINOv3ViTModel"], "model_type": "dinov3_vit",
        "hidden_size": cfg.dim, "num_hidden_layers": cfg.depth, "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.ffn_hidden, "use_gated_mlp": gated, "hidden_act": "silu" if gated else "gelu",
        "patch_size": cfg.patch_size, "num_channels": cfg.in_channels, "image_size": 64,
        "num_register_tokens": cfg.registers, "layerscale_value": cfg.layerscale_init,
        "layer_norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_base,
        "query_bias": cfg.qkv_bias, "key_bias": False, "value_bias": cfg.qkv_bias,
        "proj_bias": True, "mlp_bias": True,
    }


# ---- original structure (facebookresearch/dinov3) ------------------------------------

class OriginalAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=cfg.qkv_bias)
        if cfg.qkv_bias:  # LinearKMaskedBias: the key third of the bias is multiplied by 0
            mask = torch.ones(3 * cfg.dim)
            mask[cfg.dim:2 * cfg.dim] = 0
            self.qkv.register_buffer("bias_mask", mask)
        self.proj = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, x, sin, cos, prefix):
        B, T, D = x.shape
        bias = self.qkv.bias * self.qkv.bias_mask.to(x.dtype) if self.qkv.bias is not None else None
        qkv = F.linear(x, self.qkv.weight, bias).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        out = rope_attention(qkv[0], qkv[1], qkv[2], sin, cos, prefix)
        return self.proj(out.transpose(1, 2).reshape(B, T, D))


class LayerScale(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(cfg.dim))


class OriginalMlp(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gated = cfg.ffn == "swiglu"
        if self.gated:  # SwiGLUFFN: w1 gate, w2 up, w3 down
            self.w1 = nn.Linear(cfg.dim, cfg.ffn_hidden)
            self.w2 = nn.Linear(cfg.dim, cfg.ffn_hidden)
            self.w3 = nn.Linear(cfg.ffn_hidden, cfg.dim)
        else:
            self.fc1 = nn.Linear(cfg.dim, cfg.ffn_hidden)
            self.fc2 = nn.Linear(cfg.ffn_hidden, cfg.dim)

    def forward(self, x):
        if self.gated:
            return self.w3(F.silu(self.w1(x)) * self.w2(x))
        return self.fc2(F.gelu(self.fc1(x)))


class OriginalBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.attn = OriginalAttention(cfg)
        self.ls1 = LayerScale(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.mlp = OriginalMlp(cfg)
        self.ls2 = LayerScale(cfg)

    def forward(self, x, sin, cos, prefix):
        x = x + self.ls1.gamma * self.attn(self.norm1(x), sin, cos, prefix)
        return x + self.ls2.gamma * self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_channels, cfg.dim, cfg.patch_size, stride=cfg.patch_size)


class RopeEmbed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        head_dim = cfg.dim // cfg.num_heads
        self.register_buffer("periods", cfg.rope_base ** (2 * torch.arange(head_dim // 4, dtype=torch.float64) / (head_dim // 2)))


class OriginalModel(nn.Module):
    """The module structure of dinov3's DinoVisionTransformer (the parts a
    distilled model has)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.storage_tokens = nn.Parameter(torch.zeros(1, cfg.registers, cfg.dim))
        self.mask_token = nn.Parameter(torch.zeros(1, cfg.dim))
        self.patch_embed = PatchEmbed(cfg)
        self.rope_embed = RopeEmbed(cfg)
        self.blocks = nn.ModuleList([OriginalBlock(cfg) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)

    def forward(self, images, mask=None):
        cfg = self.cfg
        x = self.patch_embed.proj(images).flatten(2).transpose(1, 2)
        if mask is not None:
            x = torch.where(mask.unsqueeze(-1), self.mask_token.unsqueeze(0), x)
        B = images.shape[0]
        x = torch.cat([self.cls_token.expand(B, -1, -1), self.storage_tokens.expand(B, -1, -1), x], dim=1)
        Hp, Wp = images.shape[2] // cfg.patch_size, images.shape[3] // cfg.patch_size
        # periods -> angles, the dinov3 way (coords / period instead of coords * inv_freq)
        coords_h = torch.arange(0.5, Hp, dtype=torch.float64) / Hp
        coords_w = torch.arange(0.5, Wp, dtype=torch.float64) / Wp
        coords = 2.0 * torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"), dim=-1).flatten(0, 1) - 1.0
        angles = (2 * math.pi * coords[:, :, None] / self.rope_embed.periods.double()[None, None, :]).flatten(1, 2).tile(2)
        sin, cos = torch.sin(angles).to(x.dtype), torch.cos(angles).to(x.dtype)
        for block in self.blocks:
            x = block(x, sin, cos, 1 + cfg.registers)
        return self.norm(x)


# ---- weights -----------------------------------------------------------------------------

def round_weights(values):
    """8 significant bits, |x| < 2^-12 -> 0: exact in F32, F16 and BF16."""
    mantissa, exponent = np.frexp(values)
    rounded = np.ldexp(np.round(mantissa * 256.0) / 256.0, exponent)
    rounded[np.abs(rounded) < 2.0 ** -12] = 0.0
    return rounded


def random_weights(rng, cfg):
    """{project layout name: float64 array}, non-trivial everywhere."""
    weights = {}
    for name, shape in tensor_layout(cfg):
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "lambda1":
            values = 0.5 + 0.1 * rng.standard_normal(shape)
        elif "norm" in name and leaf == "weight":
            values = 1.0 + 0.2 * rng.standard_normal(shape)
        elif leaf == "bias":
            values = 0.1 * rng.standard_normal(shape)
        elif "token" in name:
            values = rng.standard_normal(shape)
        else:
            values = rng.standard_normal(shape) / np.sqrt(shape[1])
        if name.endswith("qkv_proj.bias"):  # the project holds the key third at zero
            values[cfg.dim:2 * cfg.dim] = 0.0
        weights[name] = round_weights(values)
    return weights


def fill_hf(model, cfg, w):
    """Copies project-layout weights into the HF-structured module."""
    D, Fh = cfg.dim, cfg.ffn_hidden
    sd = {"embeddings.patch_embeddings.weight": w["embeddings.patch_embeddings.weight"].reshape(
              D, cfg.in_channels, cfg.patch_size, cfg.patch_size),
          "embeddings.patch_embeddings.bias": w["embeddings.patch_embeddings.bias"],
          "embeddings.cls_token": w["embeddings.cls_token"].reshape(1, 1, D),
          "embeddings.mask_token": w["embeddings.mask_token"].reshape(1, 1, D),
          "embeddings.register_tokens": w["embeddings.register_tokens"][None],
          "norm.weight": w["norm.weight"], "norm.bias": w["norm.bias"]}
    for i in range(cfg.depth):
        p = f"layer.{i}."
        for same in ["norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "attention.o_proj.weight",
                     "attention.o_proj.bias", "layer_scale1.lambda1", "layer_scale2.lambda1",
                     "mlp.down_proj.weight", "mlp.down_proj.bias"]:
            sd[p + same] = w[p + same]
        qkv = w[p + "attention.qkv_proj.weight"]
        for j, part in enumerate("qkv"):
            sd[p + f"attention.{part}_proj.weight"] = qkv[j * D:(j + 1) * D]
        if cfg.qkv_bias:
            sd[p + "attention.q_proj.bias"] = w[p + "attention.qkv_proj.bias"][:D]
            sd[p + "attention.v_proj.bias"] = w[p + "attention.qkv_proj.bias"][2 * D:]
        if cfg.ffn == "swiglu":
            for leaf in ["weight", "bias"]:
                gate_up = w[p + "mlp.gate_up_proj." + leaf]
                sd[p + "mlp.gate_proj." + leaf], sd[p + "mlp.up_proj." + leaf] = gate_up[:Fh], gate_up[Fh:]
        else:
            for leaf in ["weight", "bias"]:
                sd[p + "mlp.up_proj." + leaf] = w[p + "mlp.up_proj." + leaf]
    model.load_state_dict({k: torch.tensor(v) for k, v in sd.items()}, strict=True)


def fill_original(model, cfg, hf_state, rng):
    """The same weights in the original structure, from the HF module's state;
    the stored key bias is random (the bias mask removes it)."""
    D = cfg.dim
    sd = {"cls_token": hf_state["embeddings.cls_token"], "storage_tokens": hf_state["embeddings.register_tokens"],
          "mask_token": hf_state["embeddings.mask_token"].reshape(1, D),
          "patch_embed.proj.weight": hf_state["embeddings.patch_embeddings.weight"],
          "patch_embed.proj.bias": hf_state["embeddings.patch_embeddings.bias"],
          "rope_embed.periods": model.rope_embed.periods,
          "norm.weight": hf_state["norm.weight"], "norm.bias": hf_state["norm.bias"]}
    renames = {"norm1": "norm1", "norm2": "norm2", "attention.o_proj": "attn.proj",
               "layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma"}
    if cfg.ffn == "swiglu":
        renames.update({"mlp.gate_proj": "mlp.w1", "mlp.up_proj": "mlp.w2", "mlp.down_proj": "mlp.w3"})
    else:
        renames.update({"mlp.up_proj": "mlp.fc1", "mlp.down_proj": "mlp.fc2"})
    for i in range(cfg.depth):
        hf, orig = f"layer.{i}.", f"blocks.{i}."
        for name, value in hf_state.items():
            if name.startswith(hf):
                rest = name[len(hf):]
                for old, new in renames.items():
                    if rest.startswith(old):
                        sd[orig + new + rest[len(old):]] = value
        sd[orig + "attn.qkv.weight"] = torch.cat([hf_state[hf + f"attention.{x}_proj.weight"] for x in "qkv"])
        if cfg.qkv_bias:
            key_bias = torch.tensor(round_weights(rng.standard_normal(D)))
            sd[orig + "attn.qkv.bias"] = torch.cat([hf_state[hf + "attention.q_proj.bias"], key_bias,
                                                    hf_state[hf + "attention.v_proj.bias"]])
            sd[orig + "attn.qkv.bias_mask"] = model.blocks[i].attn.qkv.bias_mask
    model.load_state_dict(sd, strict=True)


def random_heads(rng, dim):
    """{name: array} of both heads in DINOv3's DINOHead names."""
    heads = {}
    for head, (layers, hidden, bottleneck, prototypes) in HEADS.items():
        width_in = dim
        for j in range(layers):
            width = bottleneck if j == layers - 1 else hidden
            heads[f"{head}.mlp.{2 * j}.weight"] = round_weights(rng.standard_normal((width, width_in)) / np.sqrt(width_in))
            heads[f"{head}.mlp.{2 * j}.bias"] = round_weights(0.1 * rng.standard_normal(width))
            width_in = width
        heads[f"{head}.last_layer.weight"] = round_weights(rng.standard_normal((prototypes, bottleneck)))
    return heads


# ---- files -------------------------------------------------------------------------------

def to_bytes(value, dtype):
    """Little-endian bytes of value (a tensor or array) in a safetensors dtype;
    torch does the F16 and BF16 rounding."""
    t = torch.as_tensor(value).to(torch.float64)
    if dtype == "F16":
        return t.to(torch.float16).numpy().astype("<f2").tobytes()
    if dtype == "BF16":
        return t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype("<f4" if dtype == "F32" else "<f8").tobytes()


def write_safetensors(path, tensors, dtype="F32"):
    """tensors {name: value} or {name: (value, dtype)} -> path, in sorted name order."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        value, kind = tensors[name] if isinstance(tensors[name], tuple) else (tensors[name], dtype)
        blob = to_bytes(value, kind)
        shape = list(value.shape)
        header[name] = {"dtype": kind, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    os.replace(path + ".tmp", path)


def write_sharded(folder, tensors, dtype, shards):
    """tensors split into `shards` files + model.safetensors.index.json."""
    names = sorted(tensors)
    weight_map, total = {}, 0
    for s in range(shards):
        shard_name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = names[s * len(names) // shards:(s + 1) * len(names) // shards]
        write_safetensors(os.path.join(folder, shard_name), {n: tensors[n] for n in part}, dtype)
        weight_map.update({n: shard_name for n in part})
        total += sum(len(to_bytes(tensors[n], dtype)) for n in part)
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
        f.write("\n")


def write_h5(path, tensors):
    """One flat fp32 dataset per name, without timestamps (byte-identical reruns)."""
    access = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    access.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    creation = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    creation.set_obj_track_times(False)
    file_id = h5py.h5f.create((path + ".tmp").encode(), h5py.h5f.ACC_TRUNC, fcpl=creation, fapl=access)
    with h5py.File(file_id) as f:
        for name in sorted(tensors):
            data = np.asarray(tensors[name], dtype=np.float32)
            options = {"compression": "gzip", "compression_opts": 9, "shuffle": True} if data.ndim else {}
            f.create_dataset(name, data=data, track_times=False, **options)
    os.replace(path + ".tmp", path)


def write_config(folder, cfg):
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(hf_config(cfg), f, indent=2)
        f.write("\n")


def forward_all(cfg, weights, images, mask):
    """Outputs of the HF module, the original module and vit_torch on the same
    weights (float64); they must agree."""
    rng = np.random.RandomState(1000)
    hf = HFModel(cfg).double()
    fill_hf(hf, cfg, weights)
    original = OriginalModel(cfg).double()
    fill_original(original, cfg, hf.state_dict(), rng)
    params = {k: torch.tensor(v) for k, v in weights.items()}
    outputs = {}
    for key, m in (("output", None), ("output_masked", mask)):
        a = hf(images, m)
        b = original(images, m)
        c = vit_forward(cfg, params, images, m)
        for other, label in ((b, "original"), (c, "vit_torch")):
            error = (a - other).abs().max().item() / a.abs().max().item()
            assert error < 1e-12, f"{cfg.name}: HF and {label} forwards differ by {error}"
        outputs[key] = a.detach()
    return hf, original, outputs


def make_model_files(name, seed, cfg):
    rng = np.random.RandomState(seed)
    weights = random_weights(rng, cfg)
    Hp, Wp = IMAGE[0] // cfg.patch_size, IMAGE[1] // cfg.patch_size
    images = torch.tensor(round_weights(rng.standard_normal((BATCH, cfg.in_channels) + IMAGE)))
    mask = torch.tensor(rng.random_sample((BATCH, Hp * Wp)) < 0.4)
    mask[:, 0], mask[:, 1] = True, False
    hf, original, outputs = forward_all(cfg, weights, images, mask)
    hf_state = {k: v.detach() for k, v in hf.state_dict().items()}
    original_state = {k: v.detach() for k, v in original.state_dict().items()}

    folder = os.path.join(HERE, f"{name}_hf")
    os.makedirs(folder, exist_ok=True)
    write_config(folder, cfg)
    if cfg.ffn == "swiglu":
        write_sharded(folder, hf_state, "BF16", 2)
        write_safetensors(os.path.join(HERE, f"{name}_original.safetensors"), original_state, "F16")
    else:
        write_safetensors(os.path.join(folder, "model.safetensors"), hf_state, "F32")
        write_safetensors(os.path.join(HERE, f"{name}_original.safetensors"), original_state, "F32")
    write_h5(os.path.join(HERE, f"{name}_expected.h5"),
             {"images": images.numpy(), "mask": mask.numpy().astype(np.float64),
              "output": outputs["output"].numpy(), "output_masked": outputs["output_masked"].numpy()})
    if name == "tiny_ref":
        heads = random_heads(rng, cfg.dim)
        write_safetensors(os.path.join(HERE, "tiny_ref_heads.safetensors"),
                          {"teacher." + k: v for k, v in heads.items()}, "F32")


def make_dtype_file():
    values = np.array([0.0, -0.0, 1.0, -2.5, 3.140625, 65504.0, 65519.0, 65520.0, 1e-8, 5.960464477539063e-08,
                       2.0 ** -14, 6.0e-5, 1.0009765625, 1.00048828125, 1.00146484375, 1.0078125, 1.00390625,
                       1.01171875, 3e38, 1e30, -1e-30, np.inf, -np.inf, np.nan, 0.1, -0.3, 123.456, 7e-6])
    t = torch.tensor(values, dtype=torch.float32)
    tensors = {"f32": (t, "F32"), "f16": (t, "F16"), "bf16": (t, "BF16"), "f64": (torch.tensor(values), "F64"),
               "f16_as_f32": (t.to(torch.float16).to(torch.float32), "F32"),
               "bf16_as_f32": (t.to(torch.bfloat16).to(torch.float32), "F32")}
    write_safetensors(os.path.join(HERE, "dtypes.safetensors"), tensors)


def check_export(folder, name):
    """By hand: an exported folder, loaded by the HF-structured module, gives the reference output."""
    _, cfg = MODELS[name]
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    for key, value in hf_config(cfg).items():
        if key != "image_size":
            assert config[key] == value or (isinstance(value, float) and abs(config[key] - value) <= 1e-6 * abs(value)), \
                f"config.json: {key} is {config[key]}, expected {value}"
    with open(os.path.join(folder, "model.safetensors"), "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    state = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        state[key] = torch.tensor(np.frombuffer(data[8 + n + begin:8 + n + end], dtype="<f4").reshape(info["shape"]).copy())
    model = HFModel(cfg)
    model.load_state_dict(state, strict=True)
    with h5py.File(os.path.join(HERE, f"{name}_expected.h5"), "r") as f:
        images = torch.tensor(f["images"][...])
        mask = torch.tensor(f["mask"][...] != 0)
        expected = {"output": f["output"][...], "output_masked": f["output_masked"][...]}
    with torch.no_grad():
        for key, m in (("output", None), ("output_masked", mask)):
            out = model(images, m).numpy()
            error = np.abs(out - expected[key]).max() / np.abs(expected[key]).max()
            print(f"{folder}: {key}: relative error {error:.3g} (fp32 PyTorch vs float64 reference)")
            assert error < 1e-4


def main():
    torch.set_num_threads(1)
    if len(sys.argv) == 4 and sys.argv[1] == "--check-export":
        check_export(sys.argv[2], sys.argv[3])
        return
    for name, (seed, cfg) in MODELS.items():
        make_model_files(name, seed, cfg)
    make_dtype_file()
    for root, _, files in os.walk(HERE):
        for file in sorted(files):
            if file.endswith((".safetensors", ".h5", ".json")):
                path = os.path.join(root, file)
                print(f"{os.path.relpath(path, HERE)}: {os.path.getsize(path) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
