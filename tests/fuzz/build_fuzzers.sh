#!/bin/sh
# build_fuzzers.sh - builds the libFuzzer targets of tests/fuzz with clang into
# OUT (default /tmp/dd-fuzz): OUT/fuzz_safetensors and OUT/fuzz_safetensors_index.
# The parser sources are compiled with -fsanitize=fuzzer,address,undefined;
# the rest of nn/ comes from a CUDA-less debug meson build in OUT/base.
# Not part of CI. Usage: tests/fuzz/build_fuzzers.sh [OUT]   (from the source root)
set -eu
OUT=${1:-/tmp/dd-fuzz}
CC=${CC:-clang-14}
mkdir -p "$OUT"
[ -f "$OUT/base/build.ninja" ] || meson setup "$OUT/base" -Dcuda=disabled -Dbuildtype=debug >/dev/null
ninja -C "$OUT/base" nn/libnn.a >/dev/null
FLAGS="-g -O1 -std=c17 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I. -I$OUT/base"
PARSER="nn/safetensors.c nn/safetensors_set.c nn/json.c nn/half_float.c nn/error.c tests/fuzz/fuzz_targets.c"
LIBS="$OUT/base/nn/libnn.a $(pkg-config --libs hdf5 yaml-0.1 zlib) -lopenblas -fopenmp -lm -lpthread"
for target in fuzz_safetensors fuzz_safetensors_index; do
    $CC $FLAGS "tests/fuzz/$target.c" $PARSER $LIBS -o "$OUT/$target"
done
echo "built $OUT/fuzz_safetensors and $OUT/fuzz_safetensors_index"
