#!/usr/bin/env bash
# test_cuda_run.sh DISTILL - `distill run` end to end on the GPU against the
# same run on the CPU: the service tests' two-rank student (tests/service/
# configs/two_ranks.yaml: a teacher rank and a student group of 2 ranks, 3
# ranks in all, so on a machine with one GPU every rank shares it) for
# $ITERATIONS iterations with a metrics row every iteration, once with
# --backend cpu (the reference) and once per CUDA table:
#   cuda_fp32_run_matches_cpu  --backend cuda-fp32 (exact fp32 GEMMs):
#       exits 0; prints how the student group reduces on the device
#       ("in-group reductions on cuda-fp32: MPI through host memory (...)"
#       where ranks share a device, as NCCL refuses two ranks of one
#       communicator on one device; "...: NCCL" with a device per rank);
#       the same iterations logged as the CPU run, and at every one the
#       total loss and the DINO local, DINO global and iBOT terms within
#       1e-3 (relative) of the CPU's; nothing NaN (a term that is not finite
#       is written null; a NaN loss stops the run with status 75).
#       1e-3: the GPU adds in other orders than the CPU (fp32, ~1e-6 per
#       step, tests/cuda/test_cuda_student.c), the teacher's rows go over the
#       wire in bf16 (a value whose fp32 differs may round the other way),
#       and a few AdamW steps let the differences grow.
#   cuda_bf16_run_matches_cpu  --backend cuda (bf16 tensor-core GEMMs): the
#       same, within 5e-2 (test_cuda_student.c's bf16 loss terms are within
#       1e-2 after one step; the run adds steps and the bf16 wire).
# Without a device, or in a build without CUDA, each case prints
# "skipped <case>: <reason>" (the reason `distill bench --steps 0` gives
# for the backend: "no CUDA device: ..." or "this build has no CUDA
# backend ...") and the script exits 0; a probe failing for another reason
# fails the case. Prints "ok/FAIL/skipped name" per case and
# "N passed, N failed, N skipped".
set -u
distill=$1
work=$(mktemp -d /tmp/dd_cuda_run.XXXXXX)
trap 'rm -rf "$work"' EXIT
. tests/script_harness.sh
. tests/run_losses.sh
skipped=0
skip() { echo "skipped $1: $2"; skipped=$((skipped + 1)); }
finish() {
    echo "$passed passed, $failed failed, $skipped skipped"
    [ $failed -eq 0 ]
}

ITERATIONS=8
FP32_BACKEND=cuda-fp32
BF16_BACKEND=cuda
config=$work/run.yaml
printf "include: '%s/tests/service/configs/two_ranks.yaml'\nmonitor: {every: 1}\n" "$PWD" > "$config"

# available NAME: 0 when backend NAME initialises here; else 1 (no device,
# or no CUDA in the build: the reason in $why) or 2 (another failure: the
# message in $why).
available() {
    why=$("$distill" bench configs/models/tiny_s.yaml --backend "$1" --steps 0 --batch 1 --image-size 32 2>&1)
    [ $? -eq 0 ] && return 0
    why=$(printf '%s\n' "$why" | tail -n 1)
    why=${why#distill bench: }
    case $why in
        *"no CUDA device"* | *"has no CUDA backend"*) return 1 ;;
        *) return 2 ;;
    esac
}

# run NAME BACKEND: `distill run` of the config into $work/NAME; its output in $work/NAME.log
run() {
    timeout 300 "$distill" run "$config" --run-dir "$work/$1" --backend "$2" --stop-after $ITERATIONS \
        > "$work/$1.log" 2>&1
}

# The CPU reference, run once when a CUDA table is there to compare with.
reference=""
reference_run() {
    [ -n "$reference" ] && return "$reference"
    run cpu cpu
    reference=$?
    return "$reference"
}

# check CASE BACKEND TOLERANCE
check() {
    local name=$1 backend=$2 tol=$3 reductions out
    available "$backend"
    case $? in
        1) skip "$name" "$why"; return ;;
        2) fail "$name" "probing backend $backend: $why" /dev/null; return ;;
    esac
    if ! reference_run; then
        fail "$name" "the cpu run exited with status $reference" "$work/cpu.log"
        return
    fi
    run "$name" "$backend"
    local status=$?
    if [ $status -ne 0 ]; then
        fail "$name" "the $backend run exited with status $status" "$work/$name.log"
        return
    fi
    reductions=$(grep -E "^in-group reductions on $backend: (NCCL|MPI through host memory \(.+\))$" \
        "$work/$name.log")
    if [ -z "$reductions" ]; then
        fail "$name" "no line 'in-group reductions on $backend: ...'" "$work/$name.log"
        return
    fi
    if out=$(compare "$name" cpu "$tol"); then
        pass "$name ($ITERATIONS iterations, $out; $reductions)"
    else
        fail "$name" "losses against the cpu run: $out" "$work/$name.log"
    fi
}

check cuda_fp32_run_matches_cpu "$FP32_BACKEND" 1e-3
check cuda_bf16_run_matches_cpu "$BF16_BACKEND" 5e-2

finish
