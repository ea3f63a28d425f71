/*
 * test_balancer_units.c - the balancer's decisions and its slices file
 * without MPI (tools/balancer.h, tools/balancer_slices.h): the teacher
 * group is moved like a student group unless student ranks help it, and
 * moved slices come back from a checkpoint only into the same layout.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/test.h"
#include "tools/balancer.h"
#include "tools/balancer_slices.h"

static const BalancerConfig config = {.enabled = 1, .threshold = 0.10, .window = 10, .average = 0.5};

/* Two windows of 5 iterations with these busy seconds per world rank: the
 * second is where a group that stayed above the threshold is due. */
static BalancerDecision observe_twice(Balancer *b, const RankLayout *layout, const double *busy) {
    balancer_init(b, &config);
    balancer_observe(b, layout, busy, 5, 5);
    return balancer_observe(b, layout, busy, 5, 10);
}

static void slow_teacher_rank_moves_teacher_images(void) {
    RankLayout layout;
    DdError err;
    const int ranks[2] = {2, 1};
    CHECK(rank_layout_init(&layout, 2, ranks, 32, &err) == 0, "%s", err.message);
    const double busy[3] = {0.010, 0.030, 0.050};   /* teacher rank 1 three times slower */
    Balancer b;
    BalancerDecision d = observe_twice(&b, &layout, busy);
    CHECK(d.action == BALANCER_MOVE_IMAGES && d.group == LAYOUT_TEACHER_GROUP, "action %d, group %d", d.action,
          d.group);
    CHECK(d.images[0] == 24 && d.images[1] == 8, "images %d/%d, expected 24/8 (speeds 3:1)", d.images[0],
          d.images[1]);
    CHECK(b.moves[0] == 1, "teacher moves %g", b.moves[0]);
    rank_layout_free(&layout);
}

static void teacher_with_helpers_is_not_moved(void) {
    RankLayout layout;
    DdError err;
    const int ranks[2] = {2, 2};
    CHECK(rank_layout_init(&layout, 2, ranks, 32, &err) == 0, "%s", err.message);
    const int teacher_images[4] = {14, 14, 4, 0};   /* student rank 2 helps the teacher */
    CHECK(rank_layout_spread_teacher(&layout, teacher_images, &err) == 0, "%s", err.message);
    const double busy[4] = {0.010, 0.030, 0.050, 0.050};
    Balancer b;
    BalancerDecision d = observe_twice(&b, &layout, busy);
    CHECK(d.action == BALANCER_NONE, "action %d on group %d: a teacher with helpers must not move", d.action,
          d.group);
    CHECK(b.imbalance[0] > 0.10, "the teacher's imbalance is still measured: %g", b.imbalance[0]);
    rank_layout_free(&layout);
}

/* A teacher of 2 ranks and a student of 2, the student's slices moved. */
static int moved_layout(RankLayout *layout, DdError *err) {
    const int ranks[2] = {2, 2}, teacher[2] = {20, 12}, student[2] = {25, 7};
    if (rank_layout_init(layout, 2, ranks, 32, err) != 0) return -1;
    if (rank_layout_set_slices(layout, 0, teacher, err) != 0) return -1;
    return rank_layout_set_slices(layout, 1, student, err);
}

/* The layout's slices as a checkpoint holds them, in a new file named by
 * the mkstemp template path. */
static int write_slices_file(const RankLayout *layout, char *path) {
    int fd = mkstemp(path);
    FILE *out = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!out) return -1;
    balancer_slices_print(out, layout);
    return fclose(out) == 0 ? 0 : -1;
}

static void slices_come_back_into_the_same_layout(void) {
    RankLayout moved, planned;
    DdError err;
    CHECK(moved_layout(&moved, &err) == 0, "%s", err.message);
    char path[] = "/tmp/dd_slices_XXXXXX";
    CHECK(write_slices_file(&moved, path) == 0, "cannot write %s", path);
    const int ranks[2] = {2, 2};
    CHECK(rank_layout_init(&planned, 2, ranks, 32, &err) == 0, "%s", err.message);
    int images[4] = {0};
    CHECK(balancer_slices_count(&planned) == 4, "count %d", balancer_slices_count(&planned));
    CHECK(balancer_slices_read(path, &planned, images, &err) == 1, "%s", err.message);
    CHECK(images[0] == 20 && images[1] == 12 && images[2] == 25 && images[3] == 7, "images %d %d %d %d", images[0],
          images[1], images[2], images[3]);
    CHECK(balancer_slices_differ(&planned, images), "the plan's 16/16 must differ");
    CHECK(balancer_slices_apply(&planned, images, &err) == 0, "%s", err.message);
    CHECK(!balancer_slices_differ(&planned, images), "applied slices must match");
    const char *names[2] = {"teacher", "s"};
    char text[64];
    balancer_slices_describe(&planned, names, text, sizeof text);
    CHECK(strcmp(text, "teacher 20/12, s 25/7") == 0, "described as '%s'", text);
    remove(path);
    CHECK(balancer_slices_read(path, &planned, images, &err) == 0, "a missing file is no slices");
    rank_layout_free(&moved);
    rank_layout_free(&planned);
}

static void slices_of_another_layout_are_refused(void) {
    RankLayout moved, other;
    DdError err;
    CHECK(moved_layout(&moved, &err) == 0, "%s", err.message);
    char path[] = "/tmp/dd_slices_XXXXXX";
    CHECK(write_slices_file(&moved, path) == 0, "cannot write %s", path);
    int images[4];
    const int replanned[2] = {1, 3};   /* a re-plan: other ranks per group */
    CHECK(rank_layout_init(&other, 2, replanned, 32, &err) == 0, "%s", err.message);
    CHECK(balancer_slices_read(path, &other, images, &err) == -1, "slices of 2+2 ranks read into 1+3");
    CHECK(strstr(err.message, "expected group 0 with 1 members, found group 0 with 2") != NULL, "%s", err.message);
    rank_layout_free(&other);
    const int same_ranks[2] = {2, 2}, helper[4] = {16, 12, 4, 0};   /* same ranks, a helper among the members */
    CHECK(rank_layout_init(&other, 2, same_ranks, 32, &err) == 0 &&
              rank_layout_spread_teacher(&other, helper, &err) == 0, "%s", err.message);
    CHECK(balancer_slices_read(path, &other, images, &err) == -1, "slices without the helper read into one");
    rank_layout_free(&other);
    CHECK(rank_layout_init(&other, 2, same_ranks, 40, &err) == 0, "%s", err.message);
    CHECK(balancer_slices_read(path, &other, images, &err) == -1, "slices of 32 images read into a batch of 40");
    CHECK(strstr(err.message, "global batch 40") != NULL, "%s", err.message);
    rank_layout_free(&other);
    remove(path);
    rank_layout_free(&moved);
}

TEST_MAIN(TEST(slow_teacher_rank_moves_teacher_images), TEST(teacher_with_helpers_is_not_moved),
          TEST(slices_come_back_into_the_same_layout), TEST(slices_of_another_layout_are_refused))
