/*
 * teacher_rank.h - one teacher rank of a run: its loader (global crops and
 * iBOT masks of its slice), the frozen teacher, and a ring of `prefetch`
 * wire buffers, so the teacher computes up to `prefetch` iterations ahead of
 * the students while earlier rows are still on the wire (DESIGN, steps 2-3).
 *
 * Two wires, chosen once at open (delivery_on_device): in a run whose ranks
 * each have a GPU of their own, the rows stay on the device, made into bf16
 * there and sent with NCCL from device wire buffers; otherwise they come to
 * the host, become bf16 there and go over MPI. Either way a slot's buffer is
 * refilled only once its earlier sends have left.
 */
#ifndef DD_TEACHER_TEACHER_RANK_H
#define DD_TEACHER_TEACHER_RANK_H

#include "comm/comm.h"
#include "data/data.h"
#include "data/ibot_mask_hook.h"
#include "teacher/teacher.h"

typedef struct TeacherRankOptions {
    const ViTConfig *model;
    const char *weights_path;        /* NULL: drawn from the seed */
    uint64_t seed;
    const DataConfig *data;
    const CropConfig *crops;
    const IbotMaskConfig *ibot_mask;
    int global_batch;
    int prefetch;                    /* iterations the teacher may run ahead, >= 1 */
    long first_iteration;
} TeacherRankOptions;

enum { TEACHER_MAX_PREFETCH = 16 };
_Static_assert((int)TEACHER_MAX_PREFETCH <= (int)DELIVERY_DEVICE_SLOTS, "one delivery slot per prefetch slot");

typedef struct TeacherRank {
    TeacherRankOptions options;
    const Comm *comm;
    int on_device;                           /* rows sent from device memory over NCCL (delivery_on_device) */
    int member;                              /* among the teacher's members (rank_layout.h) */
    Teacher teacher;
    DataLoader *loader;
    IbotMaskHookContext masks;
    int begin, end;                          /* slice of the global batch */
    int prefetch;
    long *offsets;                           /* [global_batch + 1] */
    float *rows;                             /* one slice of image rows, floats (host wire only) */
    uint16_t *wire[TEACHER_MAX_PREFETCH];    /* bf16 rows on the wire: the backend's memory when on_device */
    DeliveryTransfer transfers[TEACHER_MAX_PREFETCH];   /* host wire only */
    int in_flight[TEACHER_MAX_PREFETCH];
    double busy_seconds;                     /* compute of the last step (not waiting) */
    long bytes_sent;                         /* of the last step */
} TeacherRank;

int teacher_rank_open(TeacherRank *rank, const TeacherRankOptions *options, const Comm *comm,
                      const RankLayout *layout, const NnBackend *be, DdError *err);
/* The rank's slice changed in the layout (the online balancer, from
 * first_iteration on): what was posted is drained, the buffers sized by the
 * slice and the loader are made again; the teacher's weights are kept.
 * Every rank must hold the new layout before iteration first_iteration's
 * rows are posted or received. */
int teacher_rank_move_slice(TeacherRank *rank, const RankLayout *layout, const NnBackend *be, long first_iteration,
                            DdError *err);
/* Computes iteration k's rows and posts them to the students (nothing for
 * a member whose slice is empty). */
int teacher_rank_step(TeacherRank *rank, long iteration, const Comm *comm, const RankLayout *layout,
                      const NnBackend *be, DdError *err);
/* Waits until every posted row has left. */
int teacher_rank_drain(TeacherRank *rank, DdError *err);
void teacher_rank_close(TeacherRank *rank, const NnBackend *be);

#endif
