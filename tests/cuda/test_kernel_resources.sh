#!/usr/bin/env bash
# test_kernel_resources.sh NVCC FLAGS... -- SOURCES... - what ptxas gives
# each kernel of the CUDA backend, for every architecture the build makes
# machine code for (sm_80, sm_90): the sources compiled again with
# `-Xptxas -v`, one line per kernel (registers, static shared memory, stack
# frame, spills), then one case per architecture asserting that no kernel
# spills registers to local memory or needs a stack frame: on a GPU either
# turns register traffic into memory traffic in the inner loops, a
# slowdown no test that compares results would see, and nothing the CUDA
# emulator can model. The build warns of the same (-warn-spills); this
# makes it fail. Prints "ok/FAIL name" per case and "N passed, N failed".
set -u
flags=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do flags+=("$1"); shift; done
shift
work=$(mktemp -d /tmp/dd_resources.XXXXXX)
trap 'rm -rf "$work"' EXIT
. tests/script_harness.sh

# compile SOURCE: its ptxas report into $work/<name>.log; two at a time
compile() {
    local name
    name=$(basename "$1" .cu)
    "${flags[@]}" -Xptxas -v -c "$1" -o "$work/$name.o" > "$work/$name.log" 2>&1 ||
        echo "nvcc failed on $1" >> "$work/$name.log"
}
running=0
for source in "$@"; do
    compile "$source" &
    running=$((running + 1))
    if [ $running -ge 2 ]; then wait -n; running=$((running - 1)); fi
done
wait

# One line per (architecture, kernel): arch registers smem stack spill_stores spill_loads name
cat "$work"/*.log | awk '
    /nvcc failed/ { print "error", $0; next }
    /Compiling entry function/ { match($0, /function .[^'"'"']*/); name = substr($0, RSTART + 10, RLENGTH - 10);
                                  match($0, /for .sm_[0-9]+/); arch = substr($0, RSTART + 5, RLENGTH - 5); next }
    /bytes stack frame/ { stack = $1; stores = $5; loads = $9; next }
    /Used [0-9]+ registers/ { match($0, /Used [0-9]+/); regs = substr($0, RSTART + 5, RLENGTH - 5);
                              smem = 0; if (match($0, /[0-9]+ bytes smem/)) smem = substr($0, RSTART, RLENGTH - 11) + 0;
                              if (name != "") print arch, regs, smem, stack, stores, loads, name; name = "" }
' > "$work/kernels.txt"

if grep -q '^error' "$work/kernels.txt"; then
    fail "backend_compiles_with_ptxas_reports" "nvcc failed" "$work/kernels.txt"
    finish
    exit
fi
for arch in $(awk '{ print $1 }' "$work/kernels.txt" | sort -u); do
    count=$(awk -v a="$arch" '$1 == a' "$work/kernels.txt" | wc -l)
    echo "  $arch: $count kernels; registers, static shared memory, stack frame, spilled stores/loads (bytes):"
    awk -v a="$arch" '$1 == a' "$work/kernels.txt" | sort -k2,2nr | c++filt |
        awk '{ printf "    %3d regs %6d smem %4d stack %4d/%d spill  ", $2, $3, $4, $5, $6;
               $1 = $2 = $3 = $4 = $5 = $6 = ""; sub(/^ +/, ""); print }'
    bad=$(awk -v a="$arch" '$1 == a && ($4 > 0 || $5 > 0 || $6 > 0)' "$work/kernels.txt" | wc -l)
    most=$(awk -v a="$arch" '$1 == a && $2 > m { m = $2 } END { print m + 0 }' "$work/kernels.txt")
    if [ "$count" -gt 0 ] && [ "$bad" -eq 0 ]; then
        pass "no_kernel_spills_on_$arch ($count kernels, at most $most registers)"
    else
        awk -v a="$arch" '$1 == a && ($4 > 0 || $5 > 0 || $6 > 0)' "$work/kernels.txt" | c++filt > "$work/bad.txt"
        fail "no_kernel_spills_on_$arch" "$bad of $count kernels have a stack frame or spill" "$work/bad.txt"
    fi
done
[ -s "$work/kernels.txt" ] || fail "ptxas_reported_kernels" "no kernel in the ptxas reports" "$work/kernels.txt"
finish
