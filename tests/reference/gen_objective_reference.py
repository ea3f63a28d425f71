#!/usr/bin/python3
"""gen_objective_reference.py - writes the float64 PyTorch references that
tests/students/test_objective_reference.c checks the distillation objective
against, for a tiny frozen teacher and a tiny student:

    tests/reference/objective_tiny_ref.h5   one iteration: both models, the
        batch, the teacher's bottlenecks and targets, every loss term
    tests/reference/gradients_tiny_ref.h5   every student gradient of it
    tests/reference/adamw_tiny_ref.h5       three iterations on the same batch:
        the student's parameters and EMA after three AdamW steps with
        per-module clipping
(three files, each under 300 KB)

    teacher: configs/models/tiny_ref_teacher.yaml (tiny_ref_swiglu + heads)
    student: configs/models/tiny_ref_student.yaml (tiny_ref + heads)

Run it with Debian's python (torch and h5py live there):

    /usr/bin/python3 tests/reference/gen_objective_reference.py

The files are committed; CI never runs PyTorch. Output is deterministic.
Written from DESIGN.md and students/students.h, with DINOv3's published
formulas for the parts the design names (Sinkhorn-Knopp with its global
normalisation and B, K factors; the DINO, iBOT and KoLeo losses; the
DINOv2/v3 parameter groups); AdamW and clipping are torch's own.

One iteration, with B images, G global and L local crops per image:
    teacher   vit_forward (no mask, RoPE rescale 1) on the G*B global crops ->
              CLS and the masked patch tokens -> head MLPs -> L2-normalised
              bottlenecks -> prototype layers -> Sinkhorn-Knopp (3 iterations,
              temperature 0.07) -> targets
    student   vit_forward on the global crops (iBOT mask, rescale 1.25) and the
              local crops (rescale 0.8) -> DINO head on every CLS, iBOT head on
              the masked patch tokens -> scores at temperature 0.1
    losses    DINO global: each global crop against the other teacher crops;
              DINO local: each local crop against every teacher crop; iBOT:
              masked patches, each weighted 1 / (masked patches of its crop),
              summed and divided by G*B; KoLeo on the L2-normalised CLS of each
              global crop, averaged over the crops; total with the coefficients
              of students.h's LossWeights.
    update    gradients clipped per module (backbone, DINO head, iBOT head) by
              global norm, torch.optim.AdamW with one group per tensor
              (lr * layerwise_decay^(depth + 1 - layer), * 0.2 for the patch
              embedding; weight decay on matrices only), then the EMA.

What the files hold (one flat HDF5 dataset per name, fp32):
    teacher.<name>, student.<name>   the parameters (backbone layout names;
                                     dino_head.*, ibot_head.* for the heads)
    global.images [G*B, C, 32, 32]   global.mask [G*B, Np] (1 = masked)
    local.images [L*B, C, 16, 16]    global.rope_rescale [], local.rope_rescale []
    teacher.dino_features [G*B, 16]  teacher.ibot_features [M, 12]
    targets.dino [G*B, 64]           targets.ibot [M, 48]
    loss.dino_local, loss.dino_global, loss.ibot, loss.koleo, loss.total []
    settings.*                       temperatures, weights, optimiser, per-step
                                     lr, weight_decay, ema_momentum [3]
    config.teacher.*, config.student.*   the architectures (checked against YAML)
  in gradients_tiny_ref.h5:
    grad.<name>                      d total / d student parameter (step 1)
  and in adamw_tiny_ref.h5:
    after.<name>, ema.<name>         the student after 3 steps; loss.per_step [3];
    grad_norm.per_step [3, 3]        each module's norm before clipping
Inputs (parameters, images) are rounded to 8 significant bits, so the
float64 model runs on exactly the values the C side reads in fp32.
"""
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gen_vit_reference import random_parameter, round_to_8_bits, write_file  # noqa: E402
from vit_torch import ViTConfig, tensor_layout, vit_forward  # noqa: E402


@dataclass
class Head:
    """A DINO or iBOT head (configs/models/*.yaml `dino_head:`, `ibot_head:`)."""
    layers: int
    hidden: int
    bottleneck: int
    prototypes: int


# The numbers of configs/models/tiny_ref_teacher.yaml and tiny_ref_student.yaml.
TEACHER = ViTConfig(name="tiny_ref_teacher", patch_size=8, in_channels=3, dim=32, depth=2, num_heads=2,
                    ffn="swiglu", ffn_hidden=48, qkv_bias=False, registers=4, norm_eps=1e-5, rope_base=100.0)
TEACHER_HEADS = {"dino_head": Head(3, 48, 16, 64), "ibot_head": Head(3, 48, 12, 48)}
STUDENT = ViTConfig(name="tiny_ref_student", patch_size=8, in_channels=3, dim=32, depth=2, num_heads=2,
                    ffn="mlp", ffn_hidden=64, qkv_bias=True, registers=4, norm_eps=1e-5, rope_base=100.0)
STUDENT_HEADS = {"dino_head": Head(3, 32, 16, 64), "ibot_head": Head(2, 32, 12, 48)}

IMAGES, GLOBAL_CROPS, LOCAL_CROPS = 3, 2, 3          # B, G, L
GLOBAL_SIZE, LOCAL_SIZE = 32, 16                     # px: 4 x 4 and 2 x 2 patches
GLOBAL_RESCALE, LOCAL_RESCALE = 1.25, 0.8            # the student's RoPE rescales
MASKED_CROPS = {0: 5, 3: 1, 4: 8}                    # global crop row -> masked patches (of 16)
STUDENT_TEMPERATURE, TEACHER_TEMPERATURE, SINKHORN_ITERATIONS = 0.1, 0.07, 3
WEIGHTS = {"dino_local": 1.0, "dino_global": 1.0, "ibot": 1.0, "koleo": 0.1}
OPTIMIZER = {"beta1": 0.9, "beta2": 0.999,
             # eps well above the fp32 noise of small gradients, so that the
             # first steps (m / sqrt(v) = sign(g)) compare smoothly
             "eps": 1e-5,
             "layerwise_decay": 0.9, "patch_embed_lr_multiplier": 0.2,
             # between the modules' gradient norms at step 1 (8.2, 10.9, 9.6):
             # the DINO head is clipped, the others are not (checked below)
             "clip_grad_norm": 10.0}
STEPS = {"lr": [0.01, 0.02, 0.015], "weight_decay": [0.04, 0.1, 0.07], "ema_momentum": [0.9, 0.6, 0.8]}
NORM_EPS, KOLEO_EPS = 1e-12, 1e-8


# ---- layout and parameters ------------------------------------------------------

def head_layout(prefix, head, in_dim):
    """[(name, shape)] of a head, in students/heads.c's order."""
    layout, width = [], in_dim
    for i in range(head.layers):
        out = head.bottleneck if i == head.layers - 1 else head.hidden
        layout += [(f"{prefix}.mlp.{i}.weight", (out, width)), (f"{prefix}.mlp.{i}.bias", (out,))]
        width = out
    return layout + [(f"{prefix}.prototypes.weight", (head.prototypes, head.bottleneck))]


def model_layout(cfg, heads):
    """The backbone, then the DINO head, then the iBOT head (students/model.c)."""
    return (tensor_layout(cfg) + head_layout("dino_head", heads["dino_head"], cfg.dim)
            + head_layout("ibot_head", heads["ibot_head"], cfg.dim))


def make_params(rng, cfg, heads, requires_grad):
    return {name: torch.tensor(random_parameter(rng, name, shape, cfg), requires_grad=requires_grad)
            for name, shape in model_layout(cfg, heads)}


def module_of(name):
    return name.split(".")[0] if name.startswith(("dino_head.", "ibot_head.")) else "backbone"


def decays(name):
    """Matrices decay; biases, norms, LayerScale and tokens do not."""
    return name.endswith(".weight") and "norm" not in name


def lr_multiplier(cfg, name):
    """DINOv2/v3 layer-wise decay (embeddings layer 0, block i layer i + 1, the
    rest depth + 1) and the patch embedding's multiplier."""
    if name.startswith("embeddings."):
        layer = 0
    elif name.startswith("layer."):
        layer = int(name.split(".")[1]) + 1
    else:
        layer = cfg.depth + 1
    multiplier = OPTIMIZER["layerwise_decay"] ** (cfg.depth + 1 - layer)
    if name.startswith("embeddings.patch_embeddings."):
        multiplier *= OPTIMIZER["patch_embed_lr_multiplier"]
    return multiplier


# ---- heads, Sinkhorn-Knopp, losses -----------------------------------------------

def head_bottleneck(params, prefix, head, x):
    """The MLP half: x [N, D] -> L2-normalised bottleneck [N, bottleneck]."""
    for i in range(head.layers):
        x = F.linear(x, params[f"{prefix}.mlp.{i}.weight"], params[f"{prefix}.mlp.{i}.bias"])
        if i < head.layers - 1:
            x = F.gelu(x)
    return F.normalize(x, p=2, dim=-1, eps=NORM_EPS)


def head_scores(params, prefix, features):
    """The prototype half: [N, bottleneck] -> [N, prototypes]."""
    return F.linear(features, params[f"{prefix}.prototypes.weight"])


def sinkhorn_knopp(scores, temperature, iterations):
    """DINOv3's centering on one rank: Q = exp(scores / T)^T [K, B], total
    normalised to 1, then rows to 1/K and columns to 1/B per iteration."""
    Q = torch.exp(scores / temperature).t()
    K, B = Q.shape
    Q = Q / Q.sum()
    for _ in range(iterations):
        Q = Q / Q.sum(dim=1, keepdim=True) / K
        Q = Q / Q.sum(dim=0, keepdim=True) / B
    return (Q * B).t()


def cross_entropy(student_scores, targets):
    """Per row: - sum_k t_k log softmax(s / T_student)_k."""
    return -(targets * F.log_softmax(student_scores / STUDENT_TEMPERATURE, dim=-1)).sum(dim=-1)


def koleo(cls):
    """KoLeo of one crop's CLS tokens [B, D]: -mean log(distance to the nearest other + eps)."""
    x = F.normalize(cls, p=2, dim=-1, eps=KOLEO_EPS)
    dots = x @ x.t() - 3.0 * torch.eye(x.shape[0], dtype=x.dtype)   # never the row itself
    nearest = dots.argmax(dim=1)
    distance = F.pairwise_distance(x, x[nearest], p=2, eps=KOLEO_EPS)
    return -torch.log(distance + KOLEO_EPS).mean()


def loss_coefficients():
    global_terms = GLOBAL_CROPS * (GLOBAL_CROPS - 1)
    local_terms = GLOBAL_CROPS * LOCAL_CROPS
    return {"dino_local": WEIGHTS["dino_local"] * local_terms / (global_terms + local_terms),
            "dino_global": WEIGHTS["dino_global"] * global_terms / (global_terms + local_terms),
            "ibot": WEIGHTS["ibot"], "koleo": WEIGHTS["koleo"] * GLOBAL_CROPS}


# ---- one iteration -----------------------------------------------------------------

def teacher_targets(params, batch):
    """The frozen teacher's bottlenecks and the targets they give."""
    with torch.no_grad():
        out = vit_forward(TEACHER, params, batch["global"], None, 1.0)
        patches = out[:, 1 + TEACHER.registers:][batch["mask"]]           # [M, D], crop row by row
        dino = head_bottleneck(params, "dino_head", TEACHER_HEADS["dino_head"], out[:, 0])
        ibot = head_bottleneck(params, "ibot_head", TEACHER_HEADS["ibot_head"], patches)
        return {"dino_features": dino, "ibot_features": ibot,
                "dino": sinkhorn_knopp(head_scores(params, "dino_head", dino), TEACHER_TEMPERATURE,
                                       SINKHORN_ITERATIONS),
                "ibot": sinkhorn_knopp(head_scores(params, "ibot_head", ibot), TEACHER_TEMPERATURE,
                                       SINKHORN_ITERATIONS)}


def student_losses(params, batch, targets):
    """Every loss term of one iteration, and the total."""
    B, G, L, R = IMAGES, GLOBAL_CROPS, LOCAL_CROPS, STUDENT.registers
    out_global = vit_forward(STUDENT, params, batch["global"], batch["mask"], GLOBAL_RESCALE)
    out_local = vit_forward(STUDENT, params, batch["local"], None, LOCAL_RESCALE)
    dino_head, ibot_head = STUDENT_HEADS["dino_head"], STUDENT_HEADS["ibot_head"]
    cls_global, cls_local = out_global[:, 0], out_local[:, 0]
    scores_global = head_scores(params, "dino_head", head_bottleneck(params, "dino_head", dino_head, cls_global))
    scores_local = head_scores(params, "dino_head", head_bottleneck(params, "dino_head", dino_head, cls_local))
    patches = out_global[:, 1 + R:][batch["mask"]]
    scores_ibot = head_scores(params, "ibot_head", head_bottleneck(params, "ibot_head", ibot_head, patches))

    K = scores_global.shape[-1]
    sg, sl, t = scores_global.view(G, B, K), scores_local.view(L, B, K), targets["dino"].view(G, B, K)
    dino_global = sum(cross_entropy(sg[s], t[u]).sum() for s in range(G) for u in range(G) if s != u)
    dino_local = sum(cross_entropy(sl[s], t[u]).sum() for s in range(L) for u in range(G))
    per_crop = batch["mask"].sum(dim=1).clamp(min=1).to(torch.float64)         # [G*B]
    weight = (1.0 / per_crop)[:, None].expand_as(batch["mask"])[batch["mask"]]    # [M]
    terms = {"dino_global": dino_global / (B * G * (G - 1)), "dino_local": dino_local / (B * L * G),
             "ibot": (cross_entropy(scores_ibot, targets["ibot"]) * weight).sum() / (G * B),
             "koleo": sum(koleo(c) for c in cls_global.view(G, B, -1)) / G}
    c = loss_coefficients()
    terms["total"] = sum(c[name] * terms[name] for name in c)
    return terms


def make_batch(rng):
    B, G, L = IMAGES, GLOBAL_CROPS, LOCAL_CROPS
    Np = (GLOBAL_SIZE // STUDENT.patch_size) ** 2
    mask = np.zeros((G * B, Np), dtype=bool)
    for row, count in MASKED_CROPS.items():
        mask[row, rng.permutation(Np)[:count]] = True
    return {"global": torch.tensor(round_to_8_bits(rng.standard_normal((G * B, 3, GLOBAL_SIZE, GLOBAL_SIZE)))),
            "local": torch.tensor(round_to_8_bits(rng.standard_normal((L * B, 3, LOCAL_SIZE, LOCAL_SIZE)))),
            "mask": torch.tensor(mask)}


def make_references():
    rng = np.random.RandomState(2025)   # frozen stream: the same numbers on every NumPy
    teacher = make_params(rng, TEACHER, TEACHER_HEADS, requires_grad=False)
    student = make_params(rng, STUDENT, STUDENT_HEADS, requires_grad=True)
    batch = make_batch(rng)
    layout = model_layout(STUDENT, STUDENT_HEADS)
    objective, gradients, adamw = {}, {}, {}
    for name, value in teacher.items():
        objective["teacher." + name] = value.numpy()
    for name, value in student.items():
        objective["student." + name] = value.detach().numpy().copy()
    objective["global.images"] = batch["global"].numpy()
    objective["global.mask"] = batch["mask"].numpy().astype(np.float64)
    objective["local.images"] = batch["local"].numpy()
    objective["global.rope_rescale"] = np.float64(GLOBAL_RESCALE)
    objective["local.rope_rescale"] = np.float64(LOCAL_RESCALE)

    targets = teacher_targets(teacher, batch)
    for name in ("dino_features", "ibot_features"):
        objective["teacher." + name] = targets[name].numpy()
    objective["targets.dino"], objective["targets.ibot"] = targets["dino"].numpy(), targets["ibot"].numpy()

    groups = [{"params": [student[name]], "name": name, "multiplier": lr_multiplier(STUDENT, name),
               "decays": decays(name)} for name, _ in layout]
    optimizer = torch.optim.AdamW(groups, lr=0.0, betas=(OPTIMIZER["beta1"], OPTIMIZER["beta2"]),
                                  eps=OPTIMIZER["eps"], weight_decay=0.0)
    ema = {name: value.detach().clone() for name, value in student.items()}
    modules = ["backbone", "dino_head", "ibot_head"]
    losses, norms = [], []
    for step in range(len(STEPS["lr"])):
        optimizer.zero_grad()
        terms = student_losses(student, batch, targets)
        terms["total"].backward()
        if step == 0:
            for name, value in terms.items():
                objective["loss." + name] = value.detach().numpy()
            for name, _ in layout:
                gradients["grad." + name] = student[name].grad.numpy().copy()
        losses.append(float(terms["total"]))
        norms.append([float(torch.nn.utils.clip_grad_norm_(
            [student[n] for n, _ in layout if module_of(n) == m], OPTIMIZER["clip_grad_norm"])) for m in modules])
        for group in optimizer.param_groups:
            group["lr"] = STEPS["lr"][step] * group["multiplier"]
            group["weight_decay"] = STEPS["weight_decay"][step] if group["decays"] else 0.0
        optimizer.step()
        momentum = STEPS["ema_momentum"][step]
        with torch.no_grad():
            for name, value in student.items():
                ema[name].mul_(momentum).add_(value, alpha=1.0 - momentum)
    clipped = [norm > OPTIMIZER["clip_grad_norm"] for norm in norms[0]]
    assert any(clipped) and not all(clipped), f"module norms {norms[0]}: choose a clip that splits them"

    for name, _ in layout:
        adamw["after." + name] = student[name].detach().numpy()
        adamw["ema." + name] = ema[name].numpy()
    adamw["loss.per_step"] = np.array(losses)
    adamw["grad_norm.per_step"] = np.array(norms)

    settings = {"student_temperature": STUDENT_TEMPERATURE, "teacher_temperature": TEACHER_TEMPERATURE,
                "sinkhorn_iterations": SINKHORN_ITERATIONS, "images": IMAGES, "global_crops": GLOBAL_CROPS,
                "local_crops": LOCAL_CROPS, "global_size": GLOBAL_SIZE, "local_size": LOCAL_SIZE}
    settings.update({"weight." + name: value for name, value in WEIGHTS.items()})
    settings.update({"optimizer." + name: value for name, value in OPTIMIZER.items()})
    for name, value in settings.items():
        objective["settings." + name] = np.float64(value)
    for name, values in STEPS.items():
        objective["settings.step." + name] = np.array(values)
    for role, cfg, heads in (("teacher", TEACHER, TEACHER_HEADS), ("student", STUDENT, STUDENT_HEADS)):
        fields = {"patch_size": cfg.patch_size, "dim": cfg.dim, "depth": cfg.depth, "num_heads": cfg.num_heads,
                  "ffn_hidden": cfg.ffn_hidden, "ffn_swiglu": cfg.ffn == "swiglu", "qkv_bias": cfg.qkv_bias,
                  "registers": cfg.registers}
        for head_name, head in heads.items():
            fields.update({f"{head_name}.{key}": getattr(head, key)
                           for key in ("layers", "hidden", "bottleneck", "prototypes")})
        for field, value in fields.items():
            objective[f"config.{role}.{field}"] = np.float64(value)
    return objective, gradients, adamw, norms, losses


def main():
    torch.set_num_threads(1)  # one summation order: reproducible to the last bit
    objective, gradients, adamw, norms, losses = make_references()
    for filename, tensors in (("objective_tiny_ref.h5", objective), ("gradients_tiny_ref.h5", gradients),
                              ("adamw_tiny_ref.h5", adamw)):
        path = os.path.join(HERE, filename)
        write_file(path, tensors)
        print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path) / 1024:.1f} KiB")
    terms = ", ".join(f"{name} {float(objective['loss.' + name]):.6f}"
                      for name in ("dino_local", "dino_global", "ibot", "koleo", "total"))
    print(f"step 1: {terms}; masked patches {objective['targets.ibot'].shape[0]}")
    print("module gradient norms per step (backbone, dino, ibot):",
          "; ".join(" ".join(f"{n:.4f}" for n in step) for step in norms))
    print("total loss per step:", " ".join(f"{loss:.6f}" for loss in losses))


if __name__ == "__main__":
    main()
