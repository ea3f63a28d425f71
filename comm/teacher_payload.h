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
 *
 * payload_pack and payload_unpack work on host memory. Where the features
 * live in a backend's memory (a run whose rows travel over NCCL), the
 * _on variants do the same with the backend's scatter_rows_to_bf16 and
 * gather_rows_from_bf16: the host walks the masks once to find where each
 * feature row sits in the image rows (payload_feature_starts), the backend
 * moves the values, bit for bit as the host functions (with bf16_from_float
 * for the pack).
 */
#ifndef DD_COMM_TEACHER_PAYLOAD_H
#define DD_COMM_TEACHER_PAYLOAD_H

#include <stdint.h>

#include "data/ibot_mask.h"
#include "nn/backend.h"
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

/* Where every feature row sits in the slice's image rows: starts[G*B + M]
 * gets the value offsets of the rows of dino[G*B, Kd], then those of the
 * rows of ibot[M, Ki]. row_starts[G*B] is scratch. Returns M. */
long payload_feature_starts(const PayloadShape *shape, const uint8_t *masks, int64_t *starts, long *row_starts);

/* Scratch of the _on variants: feature starts on the host and in a
 * backend's memory, for slices of up to capacity = G*B + M feature rows. */
typedef struct PayloadStarts {
    long capacity;
    int64_t *host;       /* [capacity] */
    long *row_starts;    /* [capacity], the walk's scratch */
    int64_t *device;     /* [capacity], in the backend's memory */
} PayloadStarts;

/* crop_rows: G*B at most; max_masked: M at most. */
int payload_starts_alloc(PayloadStarts *starts, const NnBackend *be, long crop_rows, long max_masked, DdError *err);
void payload_starts_free(PayloadStarts *starts, const NnBackend *be);

/* payload_pack then bf16_from_float, in be's memory: dino[G*B, Kd] and
 * ibot[M, Ki] -> rows (bf16); masks stay on the host. Enqueued behind the
 * backend's earlier ops (returns once the host may reuse masks). */
int payload_pack_bf16_on(const NnBackend *be, const PayloadShape *shape, const uint8_t *masks, const float *dino,
                         const float *ibot, uint16_t *rows, PayloadStarts *starts, DdError *err);
/* payload_unpack in be's memory: rows (bf16) -> dino[G*B, Kd], ibot[M, Ki]. */
int payload_unpack_on(const NnBackend *be, const PayloadShape *shape, const uint8_t *masks, const uint16_t *rows,
                      float *dino, float *ibot, PayloadStarts *starts, DdError *err);

/* Mean bf16 bytes of one image's row for a run's masks, measured by
 * drawing the masks of `samples` images (sample ids 0.., epoch 0) with the
 * run's mask generator: what every student group receives per image. */
double payload_mean_bytes(const IbotMaskConfig *masks, uint64_t seed, int samples, int global_count, int Hp,
                          int Wp, int dino_dim, int ibot_dim);

#endif
