/*
 * balancer_slices.h - the online balancer's moved slices in a checkpoint
 * (docs/balancer.md), so that a restart (resume, rollback) keeps them.
 *
 * Rank 0 writes the layout's slices into each checkpoint folder as the text
 * file `slices`, one line per group:
 *
 *     group G N W1:I1 ... WN:IN
 *
 * G the group (0: the teacher), N its members (the teacher's: its ranks and
 * helpers, comm/rank_layout.h), then each member's world rank and images.
 * At resume, rank 0 reads it back; the slices apply only to a layout with
 * the same groups and the same members, and each group's slices must cover
 * the batch (a student rank at least 1 image). No MPI here.
 */
#ifndef DD_TOOLS_BALANCER_SLICES_H
#define DD_TOOLS_BALANCER_SLICES_H

#include <stddef.h>
#include <stdio.h>

#include "comm/rank_layout.h"
#include "nn/error.h"

/* Images per member of every group, the groups one after another: how many
 * values (the sum of the groups' members). */
int balancer_slices_count(const RankLayout *layout);

/* Writes the layout's slices in the file's format. */
void balancer_slices_print(FILE *out, const RankLayout *layout);

/* Reads the file at path into images (balancer_slices_count values).
 * Returns 1 when they fit the layout, 0 when there is no file, -1 when they
 * do not fit or cannot be read (err says why). */
int balancer_slices_read(const char *path, const RankLayout *layout, int *images, DdError *err);

/* 1 when images differ from the layout's slices. */
int balancer_slices_differ(const RankLayout *layout, const int *images);

/* Gives every group of the layout its slices from images. */
int balancer_slices_apply(RankLayout *layout, const int *images, DdError *err);

/* "teacher 26/6, s 32": each group's images per member, names[g] naming
 * group g. */
void balancer_slices_describe(const RankLayout *layout, const char *const *names, char *text, size_t size);

#endif
