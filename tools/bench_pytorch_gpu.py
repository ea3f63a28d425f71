#!/usr/bin/python3
"""bench_pytorch_gpu.py - the PyTorch side of the GPU goals of issue 7: the
same ViTs as `distill` in PyTorch 2 (bf16, scaled_dot_product_attention) on
the same GPU, against a bf16 matmul ceiling measured in the same run.

    python3 tools/bench_pytorch_gpu.py --distill build/tools/distill

(python3: one with PyTorch >= 2 and PyYAML; docs/cuda.md, "Measuring on a
GPU", has the whole sequence and what each step prints.)

Workloads (--workload, default both, run one after the other):
  student-step     the student's training step: per image 2 global crops of
                   256 px and 8 local crops of 112 px (--global-crops,
                   --global-size, --local-crops, --local-size), a forward of
                   each crop size, loss = mean(output^2), backward, AdamW;
                   float32 master weights under bf16 autocast
                   (--student, default configs/models/vitl16.yaml);
  teacher-forward  the frozen teacher's forward at 256 px (--teacher-size)
                   under torch.inference_mode, bf16 weights
                   (--teacher, default configs/models/vit7b16.yaml).
Both are the backbone alone (no DINO/iBOT heads), as `distill bench` times.

The model is tests/reference/vit_torch.py (the model the C ViT is checked
against; parameters built by tools/bench_pytorch.py's init_params) with two
changes made here at run time, without touching the reference file:
attention goes through torch.nn.functional.scaled_dot_product_attention
(RoPE tables cast to the compute dtype), and the RoPE tables are built once
per grid on the device instead of on the host at every forward. Torch
without scaled_dot_product_attention (Debian's 1.13) keeps the reference's
explicit softmax(q k^T / sqrt(d)) v, and the script says so. --compile wraps
the forward in torch.compile (PyTorch >= 2).

FLOPs are counted as `distill` counts them (2 per multiply-add): the forward
of one crop is nn/vit.c's vit_forward_flops (ported below), a training step
is 3 forwards (schedule/cost_model.h). The ceiling is the median TFLOP/s of
an N x N x N torch.matmul in the compute dtype (--ceiling-size, default 8192
on a GPU), measured before and after the workloads; the higher counts.
MFU = achieved TFLOP/s / ceiling.

With --distill PATH, `PATH bench --backend cuda|cpu` runs first on the same
models, batches and crop sizes, and the script prints distill/PyTorch ratios
of images/s and distill's MFU against the same bf16 ceiling (--distill-steps
sets its timed steps when its fp32 backend is slow). The student runs are
`--only train` and the teacher run `--only forward`, which allocates the
parameters and forward activations alone (4 B per parameter, not a training
step's 16: the 7B teacher fits on an 80 GB GPU). `distill bench` times one
crop size per run, so the student step is composed from two runs (the
global crops at their size, then the local crops at theirs); each of the two
includes one AdamW update, so the composed step counts AdamW twice: replace
the composition when `distill bench` learns the multi-crop step. A failed
run (of either side, out of memory say) is printed and recorded, and the
rest goes on.

The last line printed is one JSON object with every figure.

On the CPU (test the script without a GPU; Debian's torch 1.13, float32):

    /usr/bin/python3 tools/bench_pytorch_gpu.py --device cpu --threads 2 \\
        --student configs/models/tiny_l.yaml --teacher configs/models/tiny_teacher.yaml \\
        --global-size 32 --local-size 16 --teacher-size 32 --student-batch 4 \\
        --teacher-batch 4 --steps 2 --warmup 1 --distill build/tools/distill
"""
import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "reference"))

from bench_pytorch import configure_cpu_blas, init_params, run_distill_bench  # noqa: E402

WORKLOADS = ("student-step", "teacher-forward")


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=WORKLOADS + ("both",), default="both")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--dtype", choices=("bf16", "fp32"),
                        help="compute dtype: bf16 (default on a GPU) or fp32 (default on the CPU)")
    parser.add_argument("--student", default=os.path.join(REPO, "configs/models/vitl16.yaml"),
                        help="student model YAML (default configs/models/vitl16.yaml)")
    parser.add_argument("--teacher", default=os.path.join(REPO, "configs/models/vit7b16.yaml"),
                        help="teacher model YAML (default configs/models/vit7b16.yaml)")
    parser.add_argument("--student-batch", type=int, default=32, help="images per student step (default 32)")
    parser.add_argument("--teacher-batch", type=int, default=64, help="images per teacher forward (default 64)")
    parser.add_argument("--global-crops", type=int, default=2)
    parser.add_argument("--global-size", type=int, default=256)
    parser.add_argument("--local-crops", type=int, default=8)
    parser.add_argument("--local-size", type=int, default=112)
    parser.add_argument("--teacher-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10, help="timed steps; the median counts (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--compile", nargs="?", const="default", metavar="MODE",
                        help="torch.compile the forward (mode: default, reduce-overhead, max-autotune)")
    parser.add_argument("--ceiling-size", type=int,
                        help="N of the N x N x N ceiling matmul (default 8192 on a GPU, 2048 on the CPU)")
    parser.add_argument("--ceiling-reps", type=int, default=10, help="timed ceiling samples (default 10)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (--device cpu)")
    parser.add_argument("--distill", help="path of the distill executable: run its bench too and print ratios")
    parser.add_argument("--distill-steps", type=int,
                        help="timed steps of each distill bench run (default --steps, at most 31)")
    args = parser.parse_args()
    if min(args.student_batch, args.teacher_batch, args.steps, args.ceiling_reps, args.threads) < 1 \
            or args.warmup < 0 or min(args.global_crops, args.local_crops) < 0:
        parser.error("expected batches, --steps, --ceiling-reps, --threads >= 1, --warmup and crop counts >= 0")
    if args.compile and args.warmup < 1:
        parser.error("--compile needs --warmup >= 1 (the first call compiles)")
    args.distill_steps = min(args.steps if args.distill_steps is None else args.distill_steps, 31)
    if args.distill_steps < 1:
        parser.error("expected --distill-steps >= 1")
    args.on_gpu = not args.device.startswith("cpu")
    args.dtype = args.dtype or ("bf16" if args.on_gpu else "fp32")
    args.ceiling_size = args.ceiling_size or (8192 if args.on_gpu else 2048)
    args.workloads = WORKLOADS if args.workload == "both" else (args.workload,)
    return parser, args


# ---- FLOPs, counted as distill counts them -------------------------------------

def vit_forward_flops(cfg, size):
    """FLOPs (2 per multiply-add) of one forward of one size x size crop:
    nn/vit.c's vit_forward_flops, line for line (`distill info` prints it)."""
    P, D = cfg.patch_size, cfg.dim
    Np = (size // P) * (size // P)
    T = 1 + cfg.registers + Np
    F, F1 = cfg.ffn_hidden, cfg.ffn_first_width
    patch = 2.0 * Np * cfg.in_channels * P * P * D
    block = (2.0 * T * D * (3 * D)     # qkv
             + 2.0 * 2.0 * T * T * D   # q k^T and probs v
             + 2.0 * T * D * D         # o_proj
             + 2.0 * T * D * F1        # fc1 (or gate and up)
             + 2.0 * T * F * D)        # fc2
    return patch + cfg.depth * block


# ---- the model: tests/reference/vit_torch.py with SDPA and cached RoPE ---------

def adapt_reference_model(torch, vit_torch, device):
    """Points vit_torch.vit_forward at scaled_dot_product_attention (when torch
    has it) and at RoPE tables made once on `device`. Returns a description of
    the attention used and warm(cfg, sizes, image_dtype, param_dtype), which
    fills the caches ahead, so that torch.compile traces lookups only."""
    import torch.nn.functional as F

    tables = {}
    reference_rope_tables = vit_torch.rope_tables

    def rope_tables_on_device(Hp, Wp, head_dim, base, rescale, dtype=torch.float64):
        key = (Hp, Wp, head_dim, base, rescale, dtype)
        if key not in tables:
            tables[key] = tuple(t.to(device) for t in reference_rope_tables(Hp, Wp, head_dim, base, rescale, dtype))
        return tables[key]

    key_bias_masks = {}

    def warm(cfg, sizes, image_dtype, param_dtype):
        for size in sizes:
            side = size // cfg.patch_size
            rope_tables_on_device(side, side, cfg.head_dim, cfg.rope_base, 1.0, image_dtype)
        key = (cfg.dim, param_dtype, device)
        if key not in key_bias_masks:
            key_bias_masks[key] = vit_torch.key_bias_mask(cfg, param_dtype, device)

    vit_torch.rope_tables = rope_tables_on_device
    if not hasattr(F, "scaled_dot_product_attention"):
        return "explicit softmax(q k^T / sqrt(d)) v (tests/reference/vit_torch.py)", warm

    def sdpa_attention(cfg, params, prefix, h, sin, cos):
        """vit_torch.attention with scaled_dot_product_attention."""
        B, T, D = h.shape
        H, Dh = cfg.num_heads, cfg.head_dim
        first = 1 + cfg.registers  # CLS and registers carry no RoPE
        bias = params.get(prefix + "attention.qkv_proj.bias")
        if bias is not None:
            key = (cfg.dim, bias.dtype, bias.device)
            if key not in key_bias_masks:
                key_bias_masks[key] = vit_torch.key_bias_mask(cfg, bias.dtype, bias.device)
            bias = bias * key_bias_masks[key]
        qkv = F.linear(h, params[prefix + "attention.qkv_proj.weight"], bias)  # [B, T, 3D]
        q, k, v = qkv.view(B, T, 3, H, Dh).permute(2, 0, 3, 1, 4)  # each [B, H, T, Dh]
        sin, cos = sin.to(q.dtype), cos.to(q.dtype)
        q = torch.cat([q[:, :, :first], vit_torch.apply_rope(q[:, :, first:], sin, cos)], dim=2)
        k = torch.cat([k[:, :, :first], vit_torch.apply_rope(k[:, :, first:], sin, cos)], dim=2)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, D)
        return F.linear(out, params[prefix + "attention.o_proj.weight"], params[prefix + "attention.o_proj.bias"])

    vit_torch.attention = sdpa_attention
    return "torch.nn.functional.scaled_dot_product_attention", warm


# ---- timing ----------------------------------------------------------------------

class Clock:
    """Wall-clock seconds of work on a device: synchronises before and after."""

    def __init__(self, torch, device):
        self.torch, self.device = torch, device

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def median_seconds(self, function, warmup, steps, inner=1):
        """Median over `steps` samples of seconds per call (each sample times
        `inner` calls), after `warmup` untimed calls."""
        for _ in range(warmup):
            function()
        samples = []
        for _ in range(steps):
            self.sync()
            start = time.perf_counter()
            for _ in range(inner):
                function()
            self.sync()
            samples.append((time.perf_counter() - start) / inner)
        return statistics.median(samples)


def matmul_ceiling_tflops(torch, clock, device, dtype, n, reps):
    """Median TFLOP/s of an n x n x n torch.matmul in dtype."""
    generator = torch.Generator(device=device).manual_seed(1)
    a = torch.randn(n, n, generator=generator, device=device, dtype=dtype)
    b = torch.randn(n, n, generator=generator, device=device, dtype=dtype)
    c = torch.empty(n, n, device=device, dtype=dtype)
    seconds = clock.median_seconds(lambda: torch.matmul(a, b, out=c), warmup=3, steps=reps,
                                   inner=10 if device.type == "cuda" else 1)
    return 2.0 * n ** 3 / seconds * 1e-12


def reset_peak_memory(torch, device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(torch, device):
    """Peak memory the workload allocated on the GPU, or the process's peak
    resident set on the CPU (ru_maxrss, KiB on Linux)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


# ---- the workloads -----------------------------------------------------------------

def make_forward(torch, vit_torch, cfg, params, compile_mode, warm, crops):
    """vit_forward on these parameters (compiled when compile_mode), with the
    RoPE and key-bias caches filled for the batches `crops`."""
    warm(cfg, sorted({images.shape[-1] for images in crops}), crops[0].dtype,
         next(iter(params.values())).dtype)

    def forward(images):
        return vit_torch.vit_forward(cfg, params, images)
    return torch.compile(forward, mode=compile_mode) if compile_mode else forward


def adamw(torch, params, device):
    """AdamW as a practitioner runs it: fused on a GPU where torch has it."""
    if device.type == "cuda":
        try:
            return torch.optim.AdamW(params, lr=1e-4, weight_decay=0.04, fused=True), "fused"
        except (TypeError, RuntimeError):
            pass
    return torch.optim.AdamW(params, lr=1e-4, weight_decay=0.04), "default"


def student_step(torch, vit_torch, warm, args, clock, device, dtype):
    cfg = vit_torch.load_config(args.student)
    for size in (args.global_size, args.local_size):
        if size % cfg.patch_size:
            raise SystemExit(f"crop size {size} is not a multiple of {cfg.name}'s patch size {cfg.patch_size}")
    generator = torch.Generator(device=device).manual_seed(0)
    params = init_params(torch, cfg, vit_torch.tensor_layout(cfg), generator)  # float32 master weights
    optimizer, optimizer_kind = adamw(torch, list(params.values()), device)
    crops = [torch.randn(args.student_batch * count, cfg.in_channels, size, size, generator=generator, device=device)
             for count, size in ((args.global_crops, args.global_size), (args.local_crops, args.local_size)) if count]
    forward = make_forward(torch, vit_torch, cfg, params, args.compile, warm, crops)
    autocast = dtype != torch.float32

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=dtype) if autocast else contextlib.nullcontext():
            loss = sum(forward(images).float().pow(2).mean() for images in crops)
        loss.backward()
        optimizer.step()

    reset_peak_memory(torch, device)
    seconds = clock.median_seconds(step, args.warmup, args.steps)
    flops_per_image = 3.0 * (args.global_crops * vit_forward_flops(cfg, args.global_size) +
                             args.local_crops * vit_forward_flops(cfg, args.local_size))
    return {
        "model": cfg.name, "batch": args.student_batch,
        "crops": f"{args.global_crops}x{args.global_size}px+{args.local_crops}x{args.local_size}px",
        "precision": "fp32 weights, bf16 autocast" if autocast else "fp32", "adamw": optimizer_kind,
        "step_s": seconds, "images_per_s": args.student_batch / seconds,
        "gflop_per_image": flops_per_image * 1e-9,
        "tflops": flops_per_image * args.student_batch / seconds * 1e-12,
        "peak_memory_gib": peak_memory_gib(torch, device),
    }


def teacher_forward(torch, vit_torch, warm, args, clock, device, dtype):
    cfg = vit_torch.load_config(args.teacher)
    if args.teacher_size % cfg.patch_size:
        raise SystemExit(f"--teacher-size {args.teacher_size} is not a multiple of the patch size {cfg.patch_size}")
    generator = torch.Generator(device=device).manual_seed(0)
    params = init_params(torch, cfg, vit_torch.tensor_layout(cfg), generator, dtype=dtype, requires_grad=False)
    images = torch.randn(args.teacher_batch, cfg.in_channels, args.teacher_size, args.teacher_size,
                         generator=generator, device=device, dtype=dtype)
    forward = make_forward(torch, vit_torch, cfg, params, args.compile, warm, [images])

    def run():
        with torch.inference_mode():
            forward(images)

    reset_peak_memory(torch, device)
    seconds = clock.median_seconds(run, args.warmup, args.steps)
    flops_per_image = vit_forward_flops(cfg, args.teacher_size)
    return {
        "model": cfg.name, "batch": args.teacher_batch, "crops": f"1x{args.teacher_size}px",
        "precision": f"{'bf16' if dtype != torch.float32 else 'fp32'} weights, inference_mode",
        "step_s": seconds, "images_per_s": args.teacher_batch / seconds,
        "gflop_per_image": flops_per_image * 1e-9,
        "tflops": flops_per_image * args.teacher_batch / seconds * 1e-12,
        "peak_memory_gib": peak_memory_gib(torch, device),
    }


# ---- distill bench -------------------------------------------------------------------

# what each workload times: `distill bench --only ...`
DISTILL_ONLY = {"student-step": "train", "teacher-forward": "forward"}


def distill_runs(args):
    """{workload: [(model, crops per run, crop size)]}: the `distill bench` runs
    that make up each workload (each --only DISTILL_ONLY[workload])."""
    runs = {}
    if "student-step" in args.workloads:
        runs["student-step"] = [(args.student, args.student_batch * count, size)
                                for count, size in ((args.global_crops, args.global_size),
                                                    (args.local_crops, args.local_size)) if count]
    if "teacher-forward" in args.workloads:
        runs["teacher-forward"] = [(args.teacher, args.teacher_batch, args.teacher_size)]
    return runs


def run_distill(args):
    """Runs `distill bench` for each workload; {workload: figures or error}."""
    backend = "cuda" if args.on_gpu else "cpu"
    results = {}
    for workload, runs in distill_runs(args).items():
        benches = []
        only = DISTILL_ONLY[workload]
        for model, crops, size in runs:
            print(f"distill bench {os.path.relpath(model, REPO)} --backend {backend} --batch {crops} "
                  f"--image-size {size} --only {only}", flush=True)
            try:
                benches.append(run_distill_bench(args.distill, model, crops, size, args.distill_steps,
                                                 args.warmup, backend=backend, only=only))
            except subprocess.CalledProcessError as failure:
                message = (failure.stderr or failure.stdout or "").strip().splitlines()
                message = message[-1] if message else f"exit status {failure.returncode}"
                print(f"  distill bench failed: {message}")
                benches = None
                results[workload] = {"error": message}
                break
        if benches is None:
            continue
        if workload == "student-step":
            # seconds of one step = sum over crop sizes of the training step on that size's crops
            seconds = sum(crops / float(bench["train_images_per_s"]) for (_, crops, _), bench in zip(runs, benches))
            batch = args.student_batch
        else:
            seconds = args.teacher_batch / float(benches[0]["forward_images_per_s"])
            batch = args.teacher_batch
        results[workload] = {"step_s": seconds, "images_per_s": batch / seconds,
                             "composed_from": len(benches), "bench": benches}
    return results


# ---- main ------------------------------------------------------------------------------

def main():
    parser, args = parse_arguments()
    if not args.on_gpu:
        configure_cpu_blas(args.threads)
    ours = run_distill(args) if args.distill else {}

    import torch
    import vit_torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    attention, warm = adapt_reference_model(torch, vit_torch, device)
    if "explicit" in attention:
        print(f"note: torch {torch.__version__} has no scaled_dot_product_attention; "
              f"attention is the {attention}")
    if args.compile and not hasattr(torch, "compile"):
        parser.error(f"--compile: torch {torch.__version__} has no torch.compile")
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    clock = Clock(torch, device)
    dtype_name = "bf16" if dtype == torch.bfloat16 else "fp32"

    print(f"pytorch {torch.__version__} on {device_name}: {dtype_name}, attention {attention}, "
          f"compile {args.compile or 'off'}", flush=True)
    ceilings = [matmul_ceiling_tflops(torch, clock, device, dtype, args.ceiling_size, args.ceiling_reps)]
    results = {}
    for workload in args.workloads:
        run = student_step if workload == "student-step" else teacher_forward
        try:
            results[workload] = run(torch, vit_torch, warm, args, clock, device, dtype)
        except RuntimeError as failure:  # out of memory, above all: say so and go on
            results[workload] = {"error": str(failure).strip().splitlines()[0]}
        if device.type == "cuda":
            torch.cuda.empty_cache()
    ceilings.append(matmul_ceiling_tflops(torch, clock, device, dtype, args.ceiling_size, args.ceiling_reps))
    ceiling = max(ceilings)  # measured before and after, so a busy spell does not lower it

    n = args.ceiling_size
    print(f"  {dtype_name} matmul ceiling ({n}x{n}x{n}): {ceiling:.4g} TFLOP/s "
          f"(before {ceilings[0]:.4g}, after {ceilings[1]:.4g})")
    for workload, r in results.items():
        if "error" in r:
            print(f"  {workload:15s} failed: {r['error']}")
            continue
        r["mfu"] = r["tflops"] / ceiling
        print(f"  {workload:15s} {r['model']}, batch {r['batch']}, {r['crops']}, {r['precision']}: "
              f"{r['gflop_per_image']:.4g} GFLOP per image")
        print(f"  {'':15s} {r['step_s']:.4f} s  {r['images_per_s']:.4g} images/s  {r['tflops']:.4g} TFLOP/s  "
              f"{100 * r['mfu']:.1f}% MFU  peak {'GPU memory' if device.type == 'cuda' else 'RSS'} "
              f"{r['peak_memory_gib']:.2f} GiB")

    ratios = {}
    for workload, mine in ours.items():
        if "error" in mine:
            print(f"  distill {workload}: not measured (distill bench failed: {mine['error']})")
            continue
        theirs = results[workload]
        how = (f"composed from {mine['composed_from']} single-crop-size runs of distill bench, "
               f"AdamW counted once per run" if mine["composed_from"] > 1 else "distill bench")
        line = f"  distill {workload}: {mine['images_per_s']:.4g} images/s"
        if "error" not in theirs:  # the FLOPs per image are the same on both sides
            mine["tflops"] = theirs["gflop_per_image"] * 1e-3 * mine["images_per_s"]
            mine["mfu"] = mine["tflops"] / ceiling
            ratios[workload] = mine["images_per_s"] / theirs["images_per_s"]
            line += f"  {mine['tflops']:.4g} TFLOP/s  {100 * mine['mfu']:.1f}% of the {dtype_name} ceiling above"
        print(f"{line} ({how}; backend {mine['bench'][0].get('backend', '?')})")
        if workload in ratios:
            print(f"ratio distill/pytorch {workload}: {ratios[workload]:.3f}x images/s")

    print(json.dumps({
        "device": device_name, "torch": torch.__version__, "dtype": dtype_name, "attention": attention,
        "compile": args.compile, "ceiling_tflops": ceiling, "ceiling_tflops_samples": ceilings,
        "ceiling_size": n, "steps": args.steps, "warmup": args.warmup, "distill_steps": args.distill_steps,
        "pytorch": results, "distill": ours, "ratio_distill_over_pytorch_images_per_s": ratios,
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
