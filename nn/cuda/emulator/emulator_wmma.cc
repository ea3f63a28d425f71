/*
 * emulator_wmma.cc - the loops of the emulated WMMA API (include/mma.h):
 * the running lane's share of 16 x 16 tiles. Lane l owns accumulator
 * elements l * 8 .. l * 8 + 7 in row-major order: row l / 2, columns
 * (l % 2) * 8 .. + 7.
 */
#include "include/mma.h"

namespace emu {

namespace {

int lane_row() { return lane() / 2; }
int lane_first_column() { return lane() % 2 * 8; }

/* Element (r, c) of a tile at p: row-major p[r * ldm + c], else p[c * ldm + r]. */
template <typename T>
const T &tile_element(const T *p, unsigned ldm, bool row_major, int r, int c) {
    return row_major ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
}

}  // namespace

void wmma_load_a(float row[16], const __nv_bfloat16 *p, unsigned ldm, bool row_major) {
    const int r = lane_row();
    for (int k = 0; k < 16; k++) row[k] = __bfloat162float(tile_element(p, ldm, row_major, r, k));
}

void wmma_load_b(float columns[128], const __nv_bfloat16 *p, unsigned ldm, bool row_major) {
    const int c0 = lane_first_column();
    for (int k = 0; k < 16; k++)
        for (int j = 0; j < 8; j++) columns[k * 8 + j] = __bfloat162float(tile_element(p, ldm, row_major, k, c0 + j));
}

void wmma_load_accumulator(float x[8], const float *p, unsigned ldm, bool row_major) {
    const int r = lane_row(), c0 = lane_first_column();
    for (int j = 0; j < 8; j++) x[j] = tile_element(p, ldm, row_major, r, c0 + j);
}

void wmma_store_accumulator(float *p, const float x[8], unsigned ldm, bool row_major) {
    const int r = lane_row(), c0 = lane_first_column();
    for (int j = 0; j < 8; j++) {
        float *element = row_major ? &p[(size_t)r * ldm + c0 + j] : &p[(size_t)(c0 + j) * ldm + r];
        *element = x[j];
    }
}

void wmma_mma(float d[8], const float a_row[16], const float b_columns[128], const float c[8]) {
    float result[8];
    for (int j = 0; j < 8; j++) {
        float sum = c[j];
        for (int k = 0; k < 16; k++) sum += a_row[k] * b_columns[k * 8 + j];
        result[j] = sum;
    }
    for (int j = 0; j < 8; j++) d[j] = result[j];
}

}  // namespace emu
