#!/usr/bin/env bash
# run_all.sh - the whole test suite, as CI runs it:
#   1. the release build (./build) with every test;
#   2. an AddressSanitizer + UndefinedBehaviorSanitizer build (./build-sanitize)
#      with every test again; this build has the CUDA backend on the CUDA
#      emulator (-Demulate_cuda=true, nn/cuda/emulator), so the CUDA tests,
#      which skip in ./build without a GPU, run here: the backend's kernels
#      on the CPU, every access bounds-checked;
# then one closing line "N passed, N failed, N skipped" summing the test cases
# of every test program in both builds. Exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

# OpenMP threads that spin while waiting starve everything else on a small
# shared machine (tests run two at a time); waiting threads sleep instead.
export OMP_WAIT_POLICY=passive

status=0
meson test -C build --print-errorlogs --num-processes 2 || status=1

if [ ! -f build-sanitize/build.ninja ]; then
    meson setup build-sanitize --buildtype=debug -Db_sanitize=address,undefined \
        -Db_lundef=false -Dcuda=disabled -Demulate_cuda=true >/dev/null || status=1
else
    meson configure build-sanitize -Dcuda=disabled -Demulate_cuda=true >/dev/null || status=1
fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp
ninja -C build-sanitize >/dev/null || { echo "sanitizer build failed"; ninja -C build-sanitize; status=1; }
meson test -C build-sanitize --print-errorlogs --num-processes 2 --timeout-multiplier 4 || status=1

python3 tests/count_cases.py build/meson-logs/testlog.json build-sanitize/meson-logs/testlog.json || status=1
exit $status
