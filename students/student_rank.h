/*
 * student_rank.h - one student rank of a run: its loader (all crops and
 * the iBOT masks of its slice), its student, the teacher's prototype layers,
 * and the receipt of the teacher's rows (DESIGN, step 4). All ranks of a
 * group hold the same student and move in lockstep: gradients are averaged
 * over the group inside student_update, each weighted by its rank's share
 * of the batch (slices may be uneven, and move while the run goes on).
 */
#ifndef DD_STUDENTS_STUDENT_RANK_H
#define DD_STUDENTS_STUDENT_RANK_H

#include "comm/comm.h"
#include "comm/teacher_payload.h"
#include "data/data.h"
#include "data/ibot_mask_hook.h"
#include "schedule/schedule.h"
#include "students/students.h"

/* The teacher's prototype layers for a student rank: read from the weights
 * file (when it has trained heads), or drawn from the seed exactly as the
 * teacher ranks draw them. */
int teacher_prototypes_load(TeacherPrototypes *prototypes, const ViTConfig *cfg, const char *weights_path,
                            uint64_t seed, const NnBackend *be, DdError *err);

typedef struct StudentRankOptions {
    const char *name;                  /* the group's name in messages */
    const ViTConfig *model;
    const ViTConfig *teacher;
    const char *teacher_weights;       /* NULL: the teacher's prototypes are drawn from the seed */
    int model_index;                   /* 1 + the student's index in the run */
    uint64_t seed;
    const DataConfig *data;
    const CropConfig *crops;
    const ObjectiveConfig *objective;
    const OptimizerConfig *optimizer;
    const RunSchedules *schedules;
    int global_batch;
    int micro_batch;                   /* images per forward and backward (0: the whole slice at once) */
    long first_iteration;
    int overlap_gradient_sums;         /* start each layer's gradient sum as the backward finishes it */
    int shard_optimizer_state;         /* keep this rank's shard of the AdamW moments and EMA (StudentShard) */
} StudentRankOptions;

/* What one iteration of a student rank measured. */
typedef struct StudentStepReport {
    LossTerms losses;
    ScheduleValues values;            /* lr, weight decay, teacher temperature, EMA momentum */
    UpdateReport update;
    double busy_seconds;              /* compute: not waiting for data, the teacher, or the group's reductions */
    double collective_seconds;        /* in the group's reductions (Sinkhorn, gradients), waiting included */
    double wait_seconds;              /* waiting for the teacher's rows */
    long bytes_received;
    int images;                       /* this rank's slice */
} StudentStepReport;

typedef struct StudentRank {
    Comm *comm;
    Student student;
    StudentWorkspace workspace;
    TeacherPrototypes prototypes;
    StudentGroup group;
    DataLoader *loader;
    IbotMaskHookContext masks;
    StudentRankOptions options;
    int begin, end;
    PayloadShape shape;
    long *offsets;                    /* [global_batch + 1] */
    PayloadStarts starts;             /* payload scratch: G * B + max_masked feature rows */
    int on_device;                    /* rows received into device memory over NCCL (delivery_on_device) */
    uint16_t *wire;                   /* the slice's bf16 rows: the backend's memory when on_device */
    DeliveryTransfer transfer;        /* MPI wire only */
    float *host_dino, *host_ibot;     /* unpacked teacher rows, crop-major (MPI wire only) */
    float *memory;                    /* one backend allocation for: */
    float *global_crops, *local_crops, *teacher_dino, *teacher_ibot;
    /* fault injection for the service tests (environment, read at open;
     * -1: off): DD_INJECT_NAN_AT=k poisons iteration k's crops with a NaN;
     * DD_INJECT_HANG_AT=k makes the rank say so on stderr and stop at the
     * start of iteration k, to be killed there. */
    long inject_nan_at, inject_hang_at;
    double collective_seconds;        /* of the step under way */
} StudentRank;

int student_rank_open(StudentRank *rank, const StudentRankOptions *options, Comm *comm, const RankLayout *layout,
                      const NnBackend *be, DdError *err);
/* The rank's slice changed in the layout (the online balancer, from
 * first_iteration on): the buffers sized by the slice and the loader are
 * made again; the student's state is kept. */
int student_rank_move_slice(StudentRank *rank, const RankLayout *layout, const NnBackend *be, long first_iteration,
                            DdError *err);
/* One iteration: the batch, the teacher's rows, targets, forward and
 * backward, the update. A loss that is not finite fails with a message that
 * names the group's model, the iteration and the term. */
int student_rank_step(StudentRank *rank, long iteration, Comm *comm, const RankLayout *layout,
                      const NnBackend *be, StudentStepReport *report, DdError *err);
void student_rank_close(StudentRank *rank, const NnBackend *be);

/* The student's state in a checkpoint file: parameters, EMA, AdamW moments
 * and step count under "params.", "ema.", "adam_m.", "adam_v.", "state.",
 * each in full whatever the sharding, so a run may resume on another number
 * of ranks. Saving a sharded state is a collective over the group (every
 * rank calls it; the shards are gathered through the gradient buffer,
 * which it overwrites): path names the file on the rank that writes it,
 * NULL on the others. Loading reads the file on every rank, which keeps
 * its own shard. */
int student_state_save(Student *s, const NnBackend *be, const StudentGroup *group, const char *path,
                       DdError *err);
int student_state_load(Student *s, const NnBackend *be, const char *path, DdError *err);

#endif
