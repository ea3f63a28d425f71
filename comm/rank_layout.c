/*
 * rank_layout.c - groups and batch slices (see rank_layout.h).
 */
#include "comm/rank_layout.h"

#include <stdlib.h>
#include <string.h>

int rank_layout_init(RankLayout *layout, int group_count, const int *ranks_per_group,
                     int global_batch, DdError *err) {
    memset(layout, 0, sizeof *layout);
    if (group_count < 2 || group_count > LAYOUT_MAX_GROUPS)
        return dd_fail(err, "rank layout: expected a teacher group and 1 to %d student groups, found %d groups",
                       LAYOUT_MAX_GROUPS - 1, group_count);
    if (global_batch < 1)
        return dd_fail(err, "rank layout: expected a global batch >= 1, found %d", global_batch);
    int offsets = 0;
    for (int g = 0; g < group_count; g++) {
        if (ranks_per_group[g] < 1)
            return dd_fail(err, "rank layout: expected at least 1 rank in group %d, found %d", g,
                           ranks_per_group[g]);
        if (ranks_per_group[g] > global_batch)
            return dd_fail(err, "rank layout: group %d has %d ranks for a global batch of %d images: "
                           "expected at most one rank per image", g, ranks_per_group[g], global_batch);
        layout->ranks[g] = ranks_per_group[g];
        layout->first_rank[g] = layout->world_size;
        layout->offset_start[g] = offsets;
        layout->world_size += ranks_per_group[g];
        offsets += ranks_per_group[g] + 1;
    }
    layout->group_count = group_count;
    layout->global_batch = global_batch;
    layout->slice_offsets = malloc((size_t)offsets * sizeof *layout->slice_offsets);
    layout->teacher_members = layout->ranks[0];
    layout->teacher_member_rank = malloc((size_t)layout->ranks[0] * sizeof *layout->teacher_member_rank);
    if (!layout->slice_offsets || !layout->teacher_member_rank) {
        rank_layout_free(layout);
        return dd_fail(err, "rank layout: out of memory");
    }
    for (int r = 0; r < layout->ranks[0]; r++) layout->teacher_member_rank[r] = layout->first_rank[0] + r;
    for (int g = 0; g < group_count; g++) {
        int *o = layout->slice_offsets + layout->offset_start[g];
        const int n = layout->ranks[g];
        o[0] = 0;
        for (int r = 0; r < n; r++) o[r + 1] = o[r] + global_batch / n + (r < global_batch % n);
    }
    return 0;
}

int rank_layout_set_slices(RankLayout *layout, int group, const int *images_per_rank, DdError *err) {
    if (group < 0 || group >= layout->group_count)
        return dd_fail(err, "rank layout: expected a group in [0, %d), found %d", layout->group_count, group);
    const int members = rank_layout_members(layout, group);
    long total = 0;
    for (int r = 0; r < members; r++) {
        if (images_per_rank[r] < 0)
            return dd_fail(err, "rank layout: group %d rank %d: expected images >= 0, found %d", group, r,
                           images_per_rank[r]);
        total += images_per_rank[r];
    }
    if (total != layout->global_batch)
        return dd_fail(err, "rank layout: group %d: expected slices summing to the global batch %d, found %ld",
                       group, layout->global_batch, total);
    int *o = layout->slice_offsets + layout->offset_start[group];
    for (int r = 0; r < members; r++) o[r + 1] = o[r] + images_per_rank[r];
    return 0;
}

int rank_layout_spread_teacher(RankLayout *layout, const int *teacher_images, DdError *err) {
    const int own = layout->ranks[0];
    int members = own;
    long total = 0;
    for (int w = 0; w < layout->world_size; w++) {
        if (teacher_images[w] < 0)
            return dd_fail(err, "rank layout: rank %d: expected teacher images >= 0, found %d", w, teacher_images[w]);
        total += teacher_images[w];
        members += w >= own && teacher_images[w] > 0;
    }
    if (total != layout->global_batch)
        return dd_fail(err, "rank layout: expected teacher images summing to the global batch %d, found %ld",
                       layout->global_batch, total);
    /* the teacher's offsets take members + 1 entries: the students' are
     * laid out again after them, their slices kept */
    int starts[LAYOUT_MAX_GROUPS], size = members + 1;
    for (int g = 1; g < layout->group_count; g++) starts[g] = size, size += layout->ranks[g] + 1;
    int *offsets = malloc((size_t)size * sizeof *offsets);
    int *member_rank = malloc((size_t)members * sizeof *member_rank);
    if (!offsets || !member_rank) {
        free(offsets);
        free(member_rank);
        return dd_fail(err, "rank layout: out of memory");
    }
    offsets[0] = 0;
    for (int w = 0, m = 0; w < layout->world_size; w++)
        if (w < own || teacher_images[w] > 0) {
            member_rank[m] = w;
            offsets[m + 1] = offsets[m] + teacher_images[w];
            m++;
        }
    for (int g = 1; g < layout->group_count; g++) {
        memcpy(offsets + starts[g], layout->slice_offsets + layout->offset_start[g],
               (size_t)(layout->ranks[g] + 1) * sizeof *offsets);
        layout->offset_start[g] = starts[g];
    }
    free(layout->slice_offsets);
    free(layout->teacher_member_rank);
    layout->slice_offsets = offsets;
    layout->teacher_member_rank = member_rank;
    layout->teacher_members = members;
    return 0;
}

void rank_layout_free(RankLayout *layout) {
    free(layout->slice_offsets);
    free(layout->teacher_member_rank);
    memset(layout, 0, sizeof *layout);
}

int rank_layout_members(const RankLayout *layout, int group) {
    return group == LAYOUT_TEACHER_GROUP ? layout->teacher_members : layout->ranks[group];
}

int rank_layout_member_rank(const RankLayout *layout, int group, int member) {
    return group == LAYOUT_TEACHER_GROUP ? layout->teacher_member_rank[member] : layout->first_rank[group] + member;
}

int rank_layout_teacher_member(const RankLayout *layout, int world_rank) {
    for (int m = 0; m < layout->teacher_members; m++)
        if (layout->teacher_member_rank[m] == world_rank) return m;
    return -1;
}

int rank_layout_group_of(const RankLayout *layout, int world_rank, int *group_rank) {
    for (int g = 0; g < layout->group_count; g++) {
        if (world_rank < layout->first_rank[g] + layout->ranks[g]) {
            if (group_rank) *group_rank = world_rank - layout->first_rank[g];
            return g;
        }
    }
    return -1;
}

void rank_layout_slice(const RankLayout *layout, int group, int group_rank, int *begin, int *end) {
    const int *o = layout->slice_offsets + layout->offset_start[group];
    *begin = o[group_rank];
    *end = o[group_rank + 1];
}
