#!/usr/bin/env bash
# test_gpu_bundle.sh BUILD_DIR - tools/gpu_bundle.sh packs a CUDA build and
# runs its GPU checks from the tarball alone:
#   bundle_runs_without_the_build  `make` packs the binaries and their
#       libraries; `check` (DD_CHECK_QUICK=1: tests only) unpacks them with
#       LD_LIBRARY_PATH cleared, finds no missing library, and the CUDA op
#       (model and objective), student-step and wire-op tests exit 0 from the bundle (here they print their
#       skipped lines: no device; on a GPU node they compare with the CPU);
#       the bundle holds none of CUDA's libraries (the node's are used).
# Skipped, with the reason, when BUILD_DIR is not a CUDA build.
set -u
build=$1
name=bundle_runs_without_the_build
if ! ldd "$build/tools/distill" 2>/dev/null | grep -q libcudart; then
    echo "skipped $name: $build is not a CUDA build (configure with -Dcuda=enabled)"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
problems=""
tools/gpu_bundle.sh make "$build" "$work/bundle.tar.xz" >"$work/make.log" 2>&1 || problems="$problems make failed;"
tar -tJf "$work/bundle.tar.xz" >"$work/contents" 2>/dev/null || problems="$problems unreadable tarball;"
grep -Eq 'dd-bundle/lib/libyaml' "$work/contents" || problems="$problems no libyaml in the bundle;"
grep -Eq 'lib(cudart|cublas|nccl)' "$work/contents" && problems="$problems CUDA libraries bundled;"
DD_CHECK_QUICK=1 env -u LD_LIBRARY_PATH tools/gpu_bundle.sh check "$work/bundle.tar.xz" "$work/logs" >"$work/check.log" 2>&1 ||
    problems="$problems check failed;"
for step in missing_libraries cuda_ops cuda_objective_ops cuda_student cuda_wire_ops; do
    grep -Eq "^$step +exit +0 " "$work/logs/summary.txt" 2>/dev/null || problems="$problems step $step did not exit 0;"
done
grep -q 'not found' "$work/logs/missing_libraries.log" 2>/dev/null && problems="$problems a library is missing;"
grep -Eq '^(ok|skipped) ' "$work/logs/cuda_ops.log" 2>/dev/null || problems="$problems cuda_ops printed no case;"
if [ -z "$problems" ]; then
    echo "ok $name ($(tail -1 "$work/make.log"))"
    echo "1 passed, 0 failed, 0 skipped"
else
    echo "FAIL $name:$problems"
    cat "$work/make.log" "$work/check.log" "$work/logs/summary.txt" 2>/dev/null
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi
