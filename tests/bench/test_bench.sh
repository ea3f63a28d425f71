#!/usr/bin/env bash
# test_bench.sh DISTILL PYTHON3 - `distill bench` on a tiny model on the CPU:
# --only forward times the forward alone and allocates less than the default
# run, --only train the training step alone, --steps 0 reports the memory of
# a run without allocating it, bad values are usage errors (exit 2),
# --compare-epilogues times a cuda backend both ways (skipped without one); then
# tools/bench_pytorch_gpu.py on the CPU runs `distill bench --only ...` and
# reads its 'bench' line. Prints "ok/FAIL name" per case and "N passed, N failed".
set -u
distill=$1
python=$2
model=configs/models/tiny_teacher.yaml
work=$(mktemp -d /tmp/dd_bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
. tests/script_harness.sh

# bench MODE_ARGS...: runs a one-step bench of the tiny teacher into $work/<name>.log
bench() {
    local name=$1
    shift
    "$distill" bench $model --batch 2 --image-size 32 --steps 1 --warmup 0 "$@" > "$work/$name.log" 2>&1
}
# field LOG KEY: the value of KEY=... on the 'bench' line of LOG (empty when absent)
field() { sed -n 's/^bench .* '"$2"'=\([^ ]*\).*/\1/p' "$1"; }
# memory_mib LOG: the total of the memory line, in MiB
memory_mib() { sed -n 's/^  memory: \([0-9.]*\) MiB .*/\1/p' "$1"; }
has() { grep -q "$2" "$1"; }

bench both && bench forward --only forward && bench train --only train
both=$work/both.log forward=$work/forward.log train=$work/train.log

# 1. the default run times both and reports both
if has "$both" '^  training step ' && has "$both" '^  forward  ' &&
   [ -n "$(field "$both" train_images_per_s)" ] && [ -n "$(field "$both" forward_images_per_s)" ] &&
   [ "$(field "$both" only)" = both ]; then
    pass "default_times_training_step_and_forward"
else
    fail "default_times_training_step_and_forward" "missing a line or field" "$both"
fi

# 2. --only forward: the forward line and fields, no training line or fields
if has "$forward" '^  forward  ' && ! has "$forward" 'training step' &&
   [ -n "$(field "$forward" forward_images_per_s)" ] && [ -z "$(field "$forward" train_images_per_s)" ] &&
   [ "$(field "$forward" only)" = forward ] && ! has "$forward" 'gradients'; then
    pass "only_forward_times_the_forward_alone"
else
    fail "only_forward_times_the_forward_alone" "a training line or field, or no forward line" "$forward"
fi

# 3. --only train: the training line and fields, no forward line or fields
if has "$train" '^  training step ' && ! has "$train" '^  forward  ' &&
   [ -n "$(field "$train" train_images_per_s)" ] && [ -z "$(field "$train" forward_images_per_s)" ] &&
   [ "$(field "$train" only)" = train ] && ! has "$train" 'forward activations'; then
    pass "only_train_times_the_training_step_alone"
else
    fail "only_train_times_the_training_step_alone" "a forward line or field, or no training line" "$train"
fi

# 4. forward-only allocates less than training-only, which allocates less than both;
#    both = train + the forward activations (the parameters and images are shared)
b_both=$(field "$both" backend_bytes) b_forward=$(field "$forward" backend_bytes) b_train=$(field "$train" backend_bytes)
m_both=$(memory_mib "$both") m_forward=$(memory_mib "$forward")
forward_activations=$(sed -n 's/.* + forward activations \([0-9.]*\) MiB .*/\1/p' "$both")
if [ -n "$b_both" ] && [ -n "$b_forward" ] && [ -n "$b_train" ] && [ -n "$m_both" ] && [ -n "$m_forward" ] &&
   [ "$b_forward" -lt "$b_train" ] && [ "$b_train" -lt "$b_both" ] &&
   awk -v f="$m_forward" -v b="$m_both" 'BEGIN { exit !(f < b) }' &&
   awk -v d="$((b_both - b_train))" -v a="$forward_activations" \
       'BEGIN { exit !(d / 1048576 - a < 0.05 && a - d / 1048576 < 0.05) }'; then
    pass "only_forward_allocates_less ($b_forward < $b_train < $b_both bytes; $m_forward < $m_both MiB)"
else
    fail "only_forward_allocates_less" "bytes forward '$b_forward' train '$b_train' both '$b_both'" "$forward"
fi

# 5. --steps 0 prints what a run would allocate, the same bytes as the run, and times nothing
if bench plan --only forward --steps 0 && has "$work/plan.log" 'nothing allocated' &&
   [ "$(field "$work/plan.log" backend_bytes)" = "$b_forward" ] && ! has "$work/plan.log" '^  forward  '; then
    pass "steps_0_reports_the_memory_without_a_run"
else
    fail "steps_0_reports_the_memory_without_a_run" "expected backend_bytes=$b_forward, no timing" "$work/plan.log"
fi

# 6. usage errors: exit 2 and a message naming the option and what it accepts
bench bad_only --only backward
status=$?
if [ $status -eq 2 ] && has "$work/bad_only.log" "expected train or forward for --only, found 'backward'"; then
    pass "bad_only_value_is_a_usage_error"
else
    fail "bad_only_value_is_a_usage_error" "exit status $status" "$work/bad_only.log"
fi
bench bad_size --image-size 36
status=$?
if [ $status -eq 2 ] && has "$work/bad_size.log" "multiple of tiny_teacher's patch size 8, found 36"; then
    pass "image_size_off_the_patch_grid_is_a_usage_error"
else
    fail "image_size_off_the_patch_grid_is_a_usage_error" "exit status $status" "$work/bad_size.log"
fi
bench bad_compare --compare-epilogues
status=$?
if [ $status -eq 2 ] && has "$work/bad_compare.log" "compare-epilogues weighs the cuBLASLt epilogues of the cuda backends; --backend is cpu"; then
    pass "compare_epilogues_on_the_cpu_is_a_usage_error"
else
    fail "compare_epilogues_on_the_cpu_is_a_usage_error" "exit status $status" "$work/bad_compare.log"
fi

# 7. --compare-epilogues on the cuda backend: each timed part a second time with the
#    cuBLASLt epilogues off, its line and its ratio (a real GPU, or the CUDA emulator's
#    build; elsewhere the backend's reason)
log=$work/compare.log
if bench compare --backend cuda --compare-epilogues; then
    train_ratio=$(field "$log" train_epilogue_speedup) forward_ratio=$(field "$log" forward_epilogue_speedup)
    if has "$log" '^  training step, epilogues off .* fused runs [0-9.]*x as fast' &&
       has "$log" '^  forward, epilogues off .* fused runs [0-9.]*x as fast' &&
       awk -v t="$train_ratio" -v f="$forward_ratio" 'BEGIN { exit !(t > 0 && f > 0) }'; then
        pass "compare_epilogues_times_both_ways (ratios: train $train_ratio, forward $forward_ratio)"
    else
        fail "compare_epilogues_times_both_ways" "missing a line or a ratio" "$log"
    fi
elif has "$log" 'no CUDA\|CUDA device\|no device'; then
    echo "skipped compare_epilogues_times_both_ways: $(grep -m1 'distill bench' "$log")"
else
    fail "compare_epilogues_times_both_ways" "distill bench failed" "$log"
fi

# 8. tools/bench_pytorch_gpu.py on the CPU: each workload runs distill bench --only
#    and composes its figures from the 'bench' lines
#    (with the first of PYTHON3 and /usr/bin/python3, Debian's torch, that has torch and PyYAML)
log=$work/pytorch.log
for candidate in "$python" /usr/bin/python3 ""; do
    [ -n "$candidate" ] && "$candidate" -c 'import torch, yaml' > /dev/null 2>&1 && break
done
python=$candidate
if [ -z "$python" ]; then
    echo "skipped bench_pytorch_gpu_runs_distill_bench_only: no python3 with torch and yaml"
elif timeout 100 "$python" tools/bench_pytorch_gpu.py --device cpu --threads 1 --student configs/models/tiny_l.yaml \
        --teacher $model --global-size 32 --local-size 16 --teacher-size 32 --student-batch 2 \
        --teacher-batch 2 --steps 1 --warmup 0 --ceiling-size 128 --ceiling-reps 2 \
        --distill "$distill" > "$log" 2>&1 &&
     [ "$(grep -c '^distill bench .* --only train' "$log")" -eq 2 ] &&
     [ "$(grep -c '^distill bench .* --only forward' "$log")" -eq 1 ] &&
     [ "$(grep -c '^bench .* only=train' "$log")" -eq 2 ] && [ "$(grep -c '^bench .* only=forward' "$log")" -eq 1 ] &&
     has "$log" '^  distill student-step: .* images/s' && has "$log" '^  distill teacher-forward: .* images/s' &&
     tail -n 1 "$log" | "$python" -c 'import json, sys; d = json.load(sys.stdin)["distill"]
assert d["student-step"]["images_per_s"] > 0 and d["teacher-forward"]["images_per_s"] > 0, d'; then
    pass "bench_pytorch_gpu_runs_distill_bench_only"
else
    fail "bench_pytorch_gpu_runs_distill_bench_only" "see the log" "$log"
fi

finish
