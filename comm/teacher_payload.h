/*
 * teacher_payload.h - what a teacher rank sends per image, and the two
 * rearrangements around the wire.
 *
 * The row of one image: the teacher's L2-normalised DINO bottleneck of each
 * of its G global crops (G x Kd values), then its iBOT bottlenecks at the
 * masked patches of global crop 0, of crop 1, ... (m_g x Ki values each;
 * patches in grid order). Rows go image after image in batch order, in
 * bf16, so a rank's slice of the batch is one contiguous range.
 *
 * Compute works crop-major instead (every tensor of global crops has crop g
 * of image b at row g * B + b), so a teacher packs crop-major features into
 * image rows, and a student unpacks image rows back into crop-major
 * features. Both sides derive the row sizes from the masks, which every rank
 * computes from the seed.
 */
#ifndef DD_COMM_TEACHER_PAYLOAD_H
#define DD_COMM_TEACHER_PAYLOAD_H

#include <stdint.h>

#include "data/ibot_mask.h"
#include "nn/error.h"

typedef struct PayloadShape {
    int images;          /* B: images of this rank's slice */
    int global_count;    /* G */
    int patches;         /* Np: patches of a global crop */
    int dino_dim;        /* Kd: the teacher's DINO bottleneck */
    int ibot_dim;        /* Ki: the teacher's iBOT bottleneck */
} PayloadShape;

/* offsets[first .. first + B] (values, relative to the slice start, so
 * offsets[first] = 0) of the slice's image rows from masks[G*B, Np]
 * (crop-major, 1 = masked); returns the masked patch count M of the slice. */
long payload_offsets(const PayloadShape *shape, const uint8_t *masks, int first, long *offsets);

/* Teacher: dino[G*B, Kd] and ibot[M, Ki] (crop-major, masked patches in crop
 * row then grid order) -> rows (the slice's image rows, floats).
 * row_starts[G*B] is scratch. */
void payload_pack(const PayloadShape *shape, const uint8_t *masks, const float *dino, const float *ibot,
                  float *rows, long *row_starts);

/* Student: rows (bf16, as received) -> dino[G*B, Kd] and ibot[M, Ki]. */
void payload_unpack(const PayloadShape *shape, const uint8_t *masks, const uint16_t *rows, float *dino,
                    float *ibot, long *row_starts);

/* Mean bf16 bytes of one image's row for a run's masks, measured by
 * drawing the masks of `samples` images (sample ids 0.., epoch 0) with the
 * run's mask generator: what every student group receives per image. */
double payload_mean_bytes(const IbotMaskConfig *masks, uint64_t seed, int samples, int global_count, int Hp,
                          int Wp, int dino_dim, int ibot_dim);

#endif
