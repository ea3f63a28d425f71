/*
 * rank_layout.h - who does what: the world's ranks split into groups (group
 * 0 runs the teacher, groups 1.. train one student each), and each rank's
 * slice of the global batch. Pure bookkeeping, no MPI: every rank builds the
 * same layout from the same plan, so nothing about it is ever sent.
 *
 * Groups take consecutive world ranks in group order. Within a group, rank r
 * owns the batch positions [slice_begin, slice_end); slices are contiguous,
 * cover the batch exactly once per group, and may be uneven (a planner can
 * give a faster rank more images).
 *
 * The teacher's images may also be computed by student ranks with spare
 * time (the planner's spread, schedule/planner.h). The teacher's slices then
 * belong to its "members": the teacher group's own ranks first, then those
 * student ranks ("helpers") in world order; member m's slice is
 * rank_layout_slice(layout, LAYOUT_TEACHER_GROUP, m, ...). A helper stays in
 * its student group for everything else.
 */
#ifndef DD_COMM_RANK_LAYOUT_H
#define DD_COMM_RANK_LAYOUT_H

#include "nn/error.h"

enum { LAYOUT_MAX_GROUPS = 17, LAYOUT_TEACHER_GROUP = 0 };

typedef struct RankLayout {
    int group_count;                    /* 1 teacher group + student groups */
    int world_size;                     /* sum of ranks over the groups */
    int global_batch;                   /* images per iteration, seen by every group */
    int ranks[LAYOUT_MAX_GROUPS];       /* ranks per group */
    int first_rank[LAYOUT_MAX_GROUPS];  /* world rank of each group's rank 0 */
    int *slice_offsets;                 /* one allocation: per group, ranks + 1 batch positions */
    int offset_start[LAYOUT_MAX_GROUPS];/* index of each group's first offset in slice_offsets */
    int teacher_members;                /* ranks computing teacher images: ranks[0] + helpers */
    int *teacher_member_rank;           /* [teacher_members] world rank of each member */
} RankLayout;

/* Groups of ranks_per_group[g] ranks (g = 0 the teacher), the batch split
 * as evenly as possible inside each group (the first ranks take one more). */
int rank_layout_init(RankLayout *layout, int group_count, const int *ranks_per_group,
                     int global_batch, DdError *err);
/* Replaces one group's slices: images_per_rank[r] >= 0, summing to the
 * batch (for the teacher group: one per member). */
int rank_layout_set_slices(RankLayout *layout, int group, const int *images_per_rank, DdError *err);
/* Spreads the teacher: teacher_images[world rank] images per iteration for
 * every rank, > 0 on a student rank making it a member, summing to the
 * batch; the teacher group's own ranks may take 0. */
int rank_layout_spread_teacher(RankLayout *layout, const int *teacher_images, DdError *err);
void rank_layout_free(RankLayout *layout);

/* The group of a world rank, and its rank inside the group. */
int rank_layout_group_of(const RankLayout *layout, int world_rank, int *group_rank);
/* Batch positions [*begin, *end) of rank group_rank of group (of member
 * group_rank for the teacher group). */
void rank_layout_slice(const RankLayout *layout, int group, int group_rank, int *begin, int *end);
/* Ranks holding slices of a group: its ranks, or the teacher's members. */
int rank_layout_members(const RankLayout *layout, int group);
/* The world rank of member m of a group. */
int rank_layout_member_rank(const RankLayout *layout, int group, int member);
/* The teacher member index of a world rank, or -1 when it computes no
 * teacher images. */
int rank_layout_teacher_member(const RankLayout *layout, int world_rank);

#endif
