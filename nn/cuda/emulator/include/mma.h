/*
 * mma.h (CUDA emulator) - the WMMA API (nvcuda::wmma) for 16 x 16 x 16
 * products of bf16 matrices with fp32 accumulators, on the host.
 *
 * As on a GPU a fragment is spread over the 32 lanes of a warp, each lane
 * holding its share: here lane l owns the accumulator elements l * 8 ..
 * l * 8 + 7 of the 16 x 16 tile in row-major order, that is row l / 2,
 * columns (l % 2) * 8 .. + 7, and its matrix_a and matrix_b fragments hold
 * what those elements need (row l / 2 of A; those 8 columns of B). A real
 * GPU's mapping is different and unspecified; code that only loads,
 * stores, fills, multiplies and applies the same operation to every x[e]
 * cannot tell. Loads and stores touch the lane's own share only, so a lane
 * that reads what other lanes stored needs __syncwarp in between, as on a
 * GPU. mma_sync computes a lane's own elements, products of bf16 values
 * exact in fp32, summed in fp32 over k in ascending order (a tensor core's
 * order is unspecified). The loops are in emulator_wmma.cc, which is
 * optimised in every build.
 */
#ifndef DD_CUDA_EMULATOR_MMA_H
#define DD_CUDA_EMULATOR_MMA_H

#include "cuda_bf16.h"
#include "cuda_runtime.h"

namespace emu {
/* The running lane's share of WMMA tiles (emulator_wmma.cc); row_major
 * says how the tile at p is stored, ldm its leading dimension. */
void wmma_load_a(float row[16], const __nv_bfloat16 *p, unsigned ldm, bool row_major);
void wmma_load_b(float columns[128], const __nv_bfloat16 *p, unsigned ldm, bool row_major);
void wmma_load_accumulator(float x[8], const float *p, unsigned ldm, bool row_major);
void wmma_store_accumulator(float *p, const float x[8], unsigned ldm, bool row_major);
void wmma_mma(float d[8], const float a_row[16], const float b_columns[128], const float c[8]);
}  // namespace emu

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

enum { TILE = 16 };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
class fragment;

/* Row l / 2 of A: x[k]. */
template <typename Layout>
class fragment<matrix_a, TILE, TILE, TILE, __nv_bfloat16, Layout> {
  public:
    enum { num_elements = TILE };
    float x[num_elements];
};
/* Columns (l % 2) * 8 + j of B: x[k * 8 + j]. */
template <typename Layout>
class fragment<matrix_b, TILE, TILE, TILE, __nv_bfloat16, Layout> {
  public:
    enum { num_elements = TILE * 8 };
    float x[num_elements];
};
/* Elements l * 8 + e of the row-major tile: x[e]. */
template <>
class fragment<accumulator, TILE, TILE, TILE, float, void> {
  public:
    enum { num_elements = 8 };
    float x[num_elements];
};
typedef fragment<accumulator, TILE, TILE, TILE, float, void> Accumulator;

template <typename Use, typename T, typename Layout>
void fill_fragment(fragment<Use, TILE, TILE, TILE, T, Layout> &f, float value) {
    for (int e = 0; e < f.num_elements; e++) f.x[e] = value;
}

template <typename Layout>
bool is_row_major() {
    static_assert(std::is_same<Layout, row_major>::value || std::is_same<Layout, col_major>::value,
                  "a matrix_a or matrix_b fragment needs row_major or col_major");
    return std::is_same<Layout, row_major>::value;
}

template <typename Layout>
void load_matrix_sync(fragment<matrix_a, TILE, TILE, TILE, __nv_bfloat16, Layout> &f, const __nv_bfloat16 *p,
                      unsigned ldm) {
    emu::wmma_load_a(f.x, p, ldm, is_row_major<Layout>());
}
template <typename Layout>
void load_matrix_sync(fragment<matrix_b, TILE, TILE, TILE, __nv_bfloat16, Layout> &f, const __nv_bfloat16 *p,
                      unsigned ldm) {
    emu::wmma_load_b(f.x, p, ldm, is_row_major<Layout>());
}
static inline void load_matrix_sync(Accumulator &f, const float *p, unsigned ldm, layout_t layout) {
    emu::wmma_load_accumulator(f.x, p, ldm, layout == mem_row_major);
}
static inline void store_matrix_sync(float *p, const Accumulator &f, unsigned ldm, layout_t layout) {
    emu::wmma_store_accumulator(p, f.x, ldm, layout == mem_row_major);
}

/* d = a b + c (d may be c). */
template <typename LayoutA, typename LayoutB>
void mma_sync(Accumulator &d, const fragment<matrix_a, TILE, TILE, TILE, __nv_bfloat16, LayoutA> &a,
              const fragment<matrix_b, TILE, TILE, TILE, __nv_bfloat16, LayoutB> &b, const Accumulator &c) {
    emu::wmma_mma(d.x, a.x, b.x, c.x);
}

}  // namespace wmma
}  // namespace nvcuda

#endif /* DD_CUDA_EMULATOR_MMA_H */
