#!/usr/bin/python3
"""gen_vit_reference.py - writes the float64 PyTorch references that
tests/reference/test_vit_reference.c checks the C ViT against:

    tests/reference/vit_tiny_ref.h5          (configs/models/tiny_ref.yaml)
    tests/reference/vit_tiny_ref_swiglu.h5   (configs/models/tiny_ref_swiglu.yaml)

Run it with Debian's python (torch and h5py live there):

    /usr/bin/python3 tests/reference/gen_vit_reference.py

The files are committed; CI never runs PyTorch. Output is deterministic (fixed
seeds, one thread, no timestamps in the files), so rerunning it on an
unchanged model gives byte-identical files.

What one file holds (one flat HDF5 dataset per name, fp32):
    <layout name>              every parameter, names/shapes of nn/vit.c's layout
    grad.<layout name>         d loss / d parameter
    crop_a.images [B, C, 32, 48]   crop_a.mask [B, Np] (1 = masked)
    crop_a.rope_rescale []     crop_a.dout [B, T, D] (= R1)   crop_a.output [B, T, D]
    crop_b.*                   the same batch at 16 x 16 px, no mask (multi-crop)
    loss []                    sum(out_a * R1) + sum(out_b * R2)
    config.<field> []          the architecture the file was made for
Everything is computed in float64. Parameters, images and R are rounded to 8
significant bits first, so the float64 model runs on exactly the values the
C side reads back in fp32 (and the files compress well).
"""
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vit_torch import ViTConfig, key_bias_mask, tensor_layout, vit_forward  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# The same numbers as configs/models/tiny_ref.yaml and tiny_ref_swiglu.yaml
# (the C test reads those files and compares them with config.* below).
MODELS = [
    ("vit_tiny_ref.h5", 1, ViTConfig(name="tiny_ref", patch_size=8, in_channels=3, dim=32, depth=2,
                                     num_heads=2, ffn="mlp", ffn_hidden=64, qkv_bias=True,
                                     registers=4, norm_eps=1e-5, rope_base=100.0)),
    ("vit_tiny_ref_swiglu.h5", 2, ViTConfig(name="tiny_ref_swiglu", patch_size=8, in_channels=3, dim=32,
                                            depth=2, num_heads=2, ffn="swiglu", ffn_hidden=48,
                                            qkv_bias=False, registers=4, norm_eps=1e-5, rope_base=100.0)),
]

BATCH = 2
CROP_A = (32, 48)   # non-square: a 4 x 6 patch grid, masked
CROP_B = (16, 16)   # the second crop size of the same step, unmasked
RESCALE_A, RESCALE_B = 1.3, 0.8


def round_to_8_bits(values):
    """Rounds to 8 significant bits: exactly representable in fp32 (and compressible)."""
    mantissa, exponent = np.frexp(values)
    return np.ldexp(np.round(mantissa * 256.0) / 256.0, exponent)


def random_parameter(rng, name, shape, cfg):
    """Non-trivial values so that every parameter influences the output."""
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "lambda1":                          # LayerScale: 0.5, not 1e-5
        values = 0.5 + 0.1 * rng.standard_normal(shape)
    elif "norm" in name and leaf == "weight":      # LayerNorm gains around 1
        values = 1.0 + 0.2 * rng.standard_normal(shape)
    elif leaf == "bias":                           # non-zero biases (LayerNorm ones too)
        values = 0.1 * rng.standard_normal(shape)
    elif "token" in name:                          # CLS, registers, mask token
        values = rng.standard_normal(shape)
    else:                                          # matrices: unit gain per row
        values = rng.standard_normal(shape) / np.sqrt(shape[1])
    if name.endswith("qkv_proj.bias"):             # the key bias is held at zero
        values = values * key_bias_mask(cfg, torch.float64).numpy()
    return round_to_8_bits(values)


def random_batch(rng, cfg, size, masked):
    """images [B, C, H, W], mask [B, Np] (bool) or None, R [B, T, D]."""
    H, W = size
    Np = (H // cfg.patch_size) * (W // cfg.patch_size)
    T = 1 + cfg.registers + Np
    images = round_to_8_bits(rng.standard_normal((BATCH, cfg.in_channels, H, W)))
    mask = None
    if masked:  # some patches of each image, never none or all
        mask = rng.random_sample((BATCH, Np)) < 0.4
        mask[:, 0], mask[:, 1] = True, False
    dout = round_to_8_bits(rng.standard_normal((BATCH, T, cfg.dim)))
    return images, mask, dout


def make_reference(cfg, seed):
    """All tensors of one reference file, {name: float64 array}."""
    rng = np.random.RandomState(seed)  # frozen stream: same numbers on every NumPy
    layout = tensor_layout(cfg)
    params = {name: torch.tensor(random_parameter(rng, name, shape, cfg), requires_grad=True)
              for name, shape in layout}
    crops = {"crop_a": (CROP_A, RESCALE_A, True), "crop_b": (CROP_B, RESCALE_B, False)}

    tensors, loss = {}, 0.0
    for crop, (size, rescale, masked) in crops.items():
        images, mask, dout = random_batch(rng, cfg, size, masked)
        mask_tensor = torch.tensor(mask) if mask is not None else None
        out = vit_forward(cfg, params, torch.tensor(images), mask_tensor, rescale)
        loss = loss + (out * torch.tensor(dout)).sum()
        tensors[f"{crop}.images"] = images
        if mask is not None:
            tensors[f"{crop}.mask"] = mask.astype(np.float64)
        tensors[f"{crop}.rope_rescale"] = np.float64(rescale)
        tensors[f"{crop}.dout"] = dout
        tensors[f"{crop}.output"] = out.detach().numpy()
    loss.backward()

    tensors["loss"] = loss.detach().numpy()
    for name, _ in layout:
        tensors[name] = params[name].detach().numpy()
        tensors["grad." + name] = params[name].grad.numpy()
    config_fields = {"patch_size": cfg.patch_size, "in_channels": cfg.in_channels, "dim": cfg.dim,
                     "depth": cfg.depth, "num_heads": cfg.num_heads, "ffn_hidden": cfg.ffn_hidden,
                     "ffn_swiglu": cfg.ffn == "swiglu", "qkv_bias": cfg.qkv_bias,
                     "registers": cfg.registers, "norm_eps": cfg.norm_eps, "rope_base": cfg.rope_base}
    for field, value in config_fields.items():
        tensors["config." + field] = np.float64(value)
    return tensors


def write_file(path, tensors):
    """One flat fp32 dataset per name; compressed where that is allowed (not scalars)."""
    temp_path = path + ".tmp"
    # HDF5 1.10 file format (compact headers, no per-dataset chunk B-tree:
    # half the size of the 1.8 format here) and no timestamp on the root group.
    access = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    access.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    creation = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    creation.set_obj_track_times(False)
    file_id = h5py.h5f.create(temp_path.encode(), h5py.h5f.ACC_TRUNC, fcpl=creation, fapl=access)
    with h5py.File(file_id) as f:
        for name in sorted(tensors):
            data = np.asarray(tensors[name], dtype=np.float32)
            options = {"compression": "gzip", "compression_opts": 9, "shuffle": True} if data.ndim else {}
            f.create_dataset(name, data=data, track_times=False, **options)
    os.replace(temp_path, path)


def main():
    torch.set_num_threads(1)  # one summation order: reproducible to the last bit
    for filename, seed, cfg in MODELS:
        path = os.path.join(HERE, filename)
        tensors = make_reference(cfg, seed)
        write_file(path, tensors)
        print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path) / 1024:.1f} KiB, "
              f"loss {float(tensors['loss']):.6f}")


if __name__ == "__main__":
    main()
