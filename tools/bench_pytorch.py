#!/usr/bin/python3
"""bench_pytorch.py - the PyTorch side of `distill bench`: times the same ViT
backbone in float32 on the CPU, the way a practitioner would run it.

    /usr/bin/python3 tools/bench_pytorch.py --model configs/models/vits16.yaml \
        --batch 16 --image-size 224 --threads 2 --steps 5

The model is tests/reference/vit_torch.py, the PyTorch model the C ViT is
checked against (F.linear, F.layer_norm, F.conv2d patch embedding, batched
softmax(q k^T) v attention: torch 1.13 has no scaled_dot_product_attention).
It times
  (a) a training step: forward, loss = mean(output^2), backward, AdamW step;
  (b) a forward under torch.no_grad();
after `--warmup` untimed repetitions of each, and prints one line of
key=value pairs, e.g.

    pytorch model=vits16 batch=16 image_size=224 threads=2 steps=5 \
        train_images_per_s=3.1 forward_images_per_s=10.2 peak_rss_mib=2100.0

peak_rss_mib is the process's peak resident set (getrusage ru_maxrss).

With --distill PATH it first runs `PATH bench` on the same model, batch and
image size, then PyTorch, and prints the ratios side by side (a ratio taken in
one run is what counts on a shared, noisy machine):

    /usr/bin/python3 tools/bench_pytorch.py --model configs/models/vits16.yaml \
        --distill build/tools/distill

Fairness: Debian's torch runs its matmuls on OpenBLAS, which under a
hypervisor may detect only generic x86-64 kernels; like `distill` (see
nn/cpu/cpu_blas_select.c), this script then selects the kernels the CPU
supports through OPENBLAS_CORETYPE, so both sides use the same sgemm.

On a GPU (bf16, scaled_dot_product_attention, the multi-crop student step and
the teacher forward of issue 7) see tools/bench_pytorch_gpu.py, which reuses
init_params, configure_cpu_blas and run_distill_bench from here.
"""
import argparse
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model YAML file (configs/models/NAME.yaml)")
    parser.add_argument("--batch", type=int, default=16, help="images per step")
    parser.add_argument("--image-size", type=int, default=224, help="square image side in pixels")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    parser.add_argument("--steps", type=int, default=5, help="timed repetitions of each measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repetitions before timing")
    parser.add_argument("--distill", help="path of the distill executable: run its bench first and print ratios")
    args = parser.parse_args()
    if args.batch < 1 or args.steps < 1 or args.threads < 1 or args.warmup < 0:
        parser.error("expected --batch, --steps, --threads >= 1 and --warmup >= 0")
    return parser, args


def init_params(torch, cfg, layout, generator, dtype=None, requires_grad=True):
    """{name: leaf tensor} for layout [(name, shape)], initialised as
    vit_params_init does: N(0, 0.02) matrices and CLS/register tokens, zero
    biases and mask token, unit LayerNorm weights, LayerScale = layerscale_init.
    The tensors are made on the generator's device, in dtype (default float32);
    tools/bench_pytorch_gpu.py uses this for its CUDA and bf16 models."""
    dtype = dtype or torch.float32
    device = generator.device
    params = {}
    for name, shape in layout:
        leaf = name.rsplit(".", 1)[-1]
        if len(shape) == 2 or name.endswith(("cls_token", "register_tokens")):
            value = torch.randn(shape, generator=generator, device=device, dtype=dtype) * 0.02
        elif leaf == "lambda1":
            value = torch.full(shape, cfg.layerscale_init, device=device, dtype=dtype)
        elif leaf == "weight":  # LayerNorm
            value = torch.ones(shape, device=device, dtype=dtype)
        else:  # biases, mask token
            value = torch.zeros(shape, device=device, dtype=dtype)
        params[name] = value.requires_grad_(requires_grad)
    return params


def best_openblas_core():
    """The OPENBLAS_CORETYPE matching this CPU's vector units, or None."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return None
    if "avx512f" in flags and "avx512bw" in flags:
        return "SkylakeX"
    if "avx2" in flags and "fma" in flags:
        return "Haswell"
    return None


def configure_cpu_blas(threads):
    """Sets the BLAS thread count and kernels in the environment. Torch's BLAS
    (OpenBLAS on Debian) reads them when it is loaded, so this must run
    before `import torch`."""
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)
    core = best_openblas_core()
    if core and "OPENBLAS_CORETYPE" not in os.environ:
        os.environ["OPENBLAS_CORETYPE"] = core


def run_distill_bench(distill, model, batch, image_size, steps, warmup, backend=None, only=None, echo=True):
    """Runs `distill bench` (--only train|forward when only; echoing its output
    when echo); returns the key=value figures of its machine-readable 'bench'
    line, which leaves out the fields of what the run did not time."""
    command = [distill, "bench", model, "--batch", str(batch), "--image-size", str(image_size),
               "--steps", str(steps), "--warmup", str(warmup)]
    if backend:
        command += ["--backend", backend]
    if only:
        command += ["--only", only]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    if echo:
        sys.stdout.write(output)
    line = next(line for line in output.splitlines() if line.startswith("bench "))
    return dict(field.split("=", 1) for field in line.split()[1:])


def time_repeated(function, warmup, steps):
    """Seconds per call of function(), after warmup untimed calls."""
    for _ in range(warmup):
        function()
    start = time.perf_counter()
    for _ in range(steps):
        function()
    return (time.perf_counter() - start) / steps


def main():
    parser, args = parse_arguments()
    configure_cpu_blas(args.threads)
    ours = (run_distill_bench(args.distill, args.model, args.batch, args.image_size, args.steps, args.warmup)
            if args.distill else None)
    import torch
    sys.path.insert(0, os.path.join(REPO, "tests", "reference"))
    from vit_torch import load_config, tensor_layout, vit_forward

    cfg = load_config(args.model)
    if args.image_size % cfg.patch_size:
        parser.error(f"--image-size {args.image_size} is not a multiple of the patch size {cfg.patch_size}")
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    params = init_params(torch, cfg, tensor_layout(cfg), generator)
    optimizer = torch.optim.AdamW(params.values(), lr=1e-4, weight_decay=0.04)
    images = torch.randn(args.batch, cfg.in_channels, args.image_size, args.image_size, generator=generator)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss = vit_forward(cfg, params, images).pow(2).mean()
        loss.backward()
        optimizer.step()

    def forward_only():
        with torch.no_grad():
            vit_forward(cfg, params, images)

    train_seconds = time_repeated(train_step, args.warmup, args.steps)
    forward_seconds = time_repeated(forward_only, args.warmup, args.steps)
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # ru_maxrss is KiB on Linux

    print(f"pytorch model={cfg.name} batch={args.batch} image_size={args.image_size} "
          f"threads={args.threads} steps={args.steps} torch={torch.__version__} "
          f"train_step_s={train_seconds:.4f} forward_s={forward_seconds:.4f} "
          f"train_images_per_s={args.batch / train_seconds:.3f} "
          f"forward_images_per_s={args.batch / forward_seconds:.3f} "
          f"peak_rss_mib={peak_rss_mib:.1f}")
    if ours:
        train_ratio = float(ours["train_images_per_s"]) * train_seconds / args.batch
        forward_ratio = float(ours["forward_images_per_s"]) * forward_seconds / args.batch
        memory_ratio = float(ours["peak_rss_mib"]) / peak_rss_mib
        print(f"ratio distill/pytorch: training step {train_ratio:.2f}x images/s, "
              f"forward {forward_ratio:.2f}x images/s, peak memory {memory_ratio:.2f}x "
              f"(distill training step at {100 * float(ours['train_gflops']) / float(ours['sgemm_gflops']):.1f}% "
              f"of the sgemm ceiling)")


if __name__ == "__main__":
    main()
