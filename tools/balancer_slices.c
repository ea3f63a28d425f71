/*
 * balancer_slices.c - the balancer's slices in a checkpoint (see
 * balancer_slices.h).
 */
#include "tools/balancer_slices.h"

#include <errno.h>
#include <string.h>

static int images_of(const RankLayout *layout, int group, int member) {
    int begin, end;
    rank_layout_slice(layout, group, member, &begin, &end);
    return end - begin;
}

int balancer_slices_count(const RankLayout *layout) {
    int count = 0;
    for (int g = 0; g < layout->group_count; g++) count += rank_layout_members(layout, g);
    return count;
}

void balancer_slices_print(FILE *out, const RankLayout *layout) {
    for (int g = 0; g < layout->group_count; g++) {
        const int members = rank_layout_members(layout, g);
        fprintf(out, "group %d %d", g, members);
        for (int m = 0; m < members; m++)
            fprintf(out, " %d:%d", rank_layout_member_rank(layout, g, m), images_of(layout, g, m));
        fprintf(out, "\n");
    }
}

/* One group's line into images; -1 when it does not fit the layout. */
static int read_group(FILE *in, const char *path, const RankLayout *layout, int g, int *images, DdError *err) {
    int group, members;
    if (fscanf(in, " group %d %d", &group, &members) != 2)
        return dd_fail(err, "%s: expected the line of group %d, found none", path, g);
    if (group != g || members != rank_layout_members(layout, g))
        return dd_fail(err, "%s: expected group %d with %d members, found group %d with %d", path, g,
                       rank_layout_members(layout, g), group, members);
    long total = 0;
    for (int m = 0; m < members; m++) {
        int world;
        if (fscanf(in, " %d:%d", &world, &images[m]) != 2)
            return dd_fail(err, "%s: group %d: expected %d world_rank:images pairs, found %d", path, g, members, m);
        if (world != rank_layout_member_rank(layout, g, m))
            return dd_fail(err, "%s: group %d member %d: expected world rank %d, found %d", path, g, m,
                           rank_layout_member_rank(layout, g, m), world);
        const int least = g == LAYOUT_TEACHER_GROUP ? 0 : 1;   /* a student rank trains on its slice */
        if (images[m] < least)
            return dd_fail(err, "%s: group %d member %d: expected at least %d images, found %d", path, g, m, least,
                           images[m]);
        total += images[m];
    }
    if (total != layout->global_batch)
        return dd_fail(err, "%s: group %d: expected slices summing to the global batch %d, found %ld", path, g,
                       layout->global_batch, total);
    return 0;
}

int balancer_slices_read(const char *path, const RankLayout *layout, int *images, DdError *err) {
    FILE *in = fopen(path, "r");
    if (!in) {
        if (errno == ENOENT) return 0;
        return dd_fail(err, "%s: cannot read: %s", path, strerror(errno));
    }
    int status = 0, at = 0;
    for (int g = 0; g < layout->group_count && status == 0; g++) {
        status = read_group(in, path, layout, g, images + at, err);
        at += rank_layout_members(layout, g);
    }
    int extra;
    if (status == 0 && fscanf(in, " group %d", &extra) == 1)
        status = dd_fail(err, "%s: expected %d groups, found more", path, layout->group_count);
    fclose(in);
    return status == 0 ? 1 : -1;
}

int balancer_slices_differ(const RankLayout *layout, const int *images) {
    for (int g = 0, at = 0; g < layout->group_count; g++)
        for (int m = 0; m < rank_layout_members(layout, g); m++, at++)
            if (images[at] != images_of(layout, g, m)) return 1;
    return 0;
}

int balancer_slices_apply(RankLayout *layout, const int *images, DdError *err) {
    for (int g = 0, at = 0; g < layout->group_count; at += rank_layout_members(layout, g), g++)
        if (rank_layout_set_slices(layout, g, images + at, err) != 0) return -1;
    return 0;
}

void balancer_slices_describe(const RankLayout *layout, const char *const *names, char *text, size_t size) {
    int at = 0;
    text[0] = '\0';
    for (int g = 0; g < layout->group_count && at >= 0 && (size_t)at < size; g++)
        for (int m = 0; m < rank_layout_members(layout, g) && at >= 0 && (size_t)at < size; m++)
            at += m ? snprintf(text + at, size - at, "/%d", images_of(layout, g, m))
                    : snprintf(text + at, size - at, "%s%s %d", g ? ", " : "", names[g], images_of(layout, g, m));
}
