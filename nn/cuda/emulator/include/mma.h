/*
 * mma.h (CUDA emulator) - the WMMA API (nvcuda::wmma) for 16 x 16 x 16
 * products of bf16 matrices with fp32 accumulators, on the host.
 *
 * As on a GPU an accumulator fragment is spread over the 32 lanes of a
 * warp: here lane l holds the elements l * 8 .. l * 8 + 7 of the 16 x 16
 * tile in row-major order (a real GPU's mapping is different and
 * unspecified; code that only loads, stores, fills, multiplies and applies
 * the same operation to every x[e] cannot tell). load_matrix_sync and
 * store_matrix_sync of an accumulator touch the lane's own elements only,
 * so a lane that reads what other lanes stored needs __syncwarp in between,
 * as on a GPU. matrix_a and matrix_b fragments hold the whole tile in every
 * lane (num_elements 256), which only costs host time. mma_sync computes a
 * lane's own elements, products of bf16 values exact in fp32, summed in
 * fp32 over k in ascending order (a tensor core's order is unspecified).
 */
#ifndef DD_CUDA_EMULATOR_MMA_H
#define DD_CUDA_EMULATOR_MMA_H

#include "cuda_bf16.h"
#include "cuda_runtime.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

enum { TILE = 16, ELEMENTS_PER_LANE = TILE * TILE / 32 };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
class fragment;

/* A whole bf16 tile, row by row: element (r, c) is x[r * 16 + c]. */
template <typename Use, typename Layout>
class fragment<Use, TILE, TILE, TILE, __nv_bfloat16, Layout> {
  public:
    enum { num_elements = TILE * TILE };
    float x[num_elements];
};

/* The lane's 8 elements of an fp32 16 x 16 tile. */
template <>
class fragment<accumulator, TILE, TILE, TILE, float, void> {
  public:
    enum { num_elements = ELEMENTS_PER_LANE };
    float x[num_elements];
};

/* (row, column) of the lane's element e of an accumulator tile. */
static inline int accumulator_row(int e) { return (emu::lane() * ELEMENTS_PER_LANE + e) / TILE; }
static inline int accumulator_column(int e) { return (emu::lane() * ELEMENTS_PER_LANE + e) % TILE; }

template <typename Use, typename T, typename Layout>
void fill_fragment(fragment<Use, TILE, TILE, TILE, T, Layout> &f, float value) {
    for (int e = 0; e < f.num_elements; e++) f.x[e] = value;
}

/* A 16 x 16 bf16 tile at p with leading dimension ldm; matrix_a is m x k
 * and matrix_b k x n, each stored row- or column-major as Layout says. */
template <typename Use, typename Layout>
void load_matrix_sync(fragment<Use, TILE, TILE, TILE, __nv_bfloat16, Layout> &f, const __nv_bfloat16 *p,
                      unsigned ldm) {
    const bool row_major_tile = std::is_same<Layout, row_major>::value;
    static_assert(std::is_same<Layout, row_major>::value || std::is_same<Layout, col_major>::value,
                  "a matrix_a or matrix_b fragment needs row_major or col_major");
    for (int r = 0; r < TILE; r++)
        for (int c = 0; c < TILE; c++)
            f.x[r * TILE + c] = __bfloat162float(row_major_tile ? p[r * ldm + c] : p[c * ldm + r]);
}

static inline void load_matrix_sync(fragment<accumulator, TILE, TILE, TILE, float, void> &f, const float *p,
                                    unsigned ldm, layout_t layout) {
    for (int e = 0; e < f.num_elements; e++) {
        const int r = accumulator_row(e), c = accumulator_column(e);
        f.x[e] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
    }
}

static inline void store_matrix_sync(float *p, const fragment<accumulator, TILE, TILE, TILE, float, void> &f,
                                     unsigned ldm, layout_t layout) {
    for (int e = 0; e < f.num_elements; e++) {
        const int r = accumulator_row(e), c = accumulator_column(e);
        (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[e];
    }
}

/* d = a b + c (d may be c). */
template <typename LayoutA, typename LayoutB>
void mma_sync(fragment<accumulator, TILE, TILE, TILE, float, void> &d,
              const fragment<matrix_a, TILE, TILE, TILE, __nv_bfloat16, LayoutA> &a,
              const fragment<matrix_b, TILE, TILE, TILE, __nv_bfloat16, LayoutB> &b,
              const fragment<accumulator, TILE, TILE, TILE, float, void> &c) {
    float result[ELEMENTS_PER_LANE];
    for (int e = 0; e < ELEMENTS_PER_LANE; e++) {
        const int r = accumulator_row(e), col = accumulator_column(e);
        float sum = c.x[e];
        for (int k = 0; k < TILE; k++) sum += a.x[r * TILE + k] * b.x[k * TILE + col];
        result[e] = sum;
    }
    for (int e = 0; e < ELEMENTS_PER_LANE; e++) d.x[e] = result[e];
}

}  // namespace wmma
}  // namespace nvcuda

#endif /* DD_CUDA_EMULATOR_MMA_H */
