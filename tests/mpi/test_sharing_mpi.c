/*
 * test_sharing_mpi.c - under mpirun with 3 ranks: a teacher rank (0) feeds a
 * student group of 2 ranks (1, 2) through comm/, as `distill run` does.
 *
 *   - crops: every rank checksums the global crops of its slice; the teacher
 *     sends its checksums to the student ranks, which must find them equal
 *     to their own, sample by sample (issue 5, test d);
 *   - sharing: each student rank also runs the teacher itself, on the
 *     teacher rank's whole slice (the same batch, so the same arithmetic),
 *     and must find the delivered rows of its own images equal to the ones
 *     it computed, rounded to bf16 like the wire (issue 5, test b): the
 *     targets, a pure function of those rows, are then the same as in one
 *     process running both.
 */
#include <stdlib.h>
#include <zlib.h>

#include "comm/comm.h"
#include "data/data.h"
#include "data/ibot_mask_hook.h"
#include "teacher/teacher_rank.h"
#include "tests/mpi/mpi_test.h"

enum { BATCH = 4, ITERATIONS = 3, CHECKSUM_TAG = 7 };


typedef struct Fixture {
    ViTConfig teacher_cfg;
    DataConfig data;
    CropConfig crops;
    IbotMaskConfig masks;
} Fixture;

static int load_fixture(Fixture *f, DdError *err) {
    memset(f, 0, sizeof *f);
    if (vit_config_load(&f->teacher_cfg, "configs/models/tiny_teacher.yaml", err) != 0) return -1;
    if (config_set_defaults(&data_config_schema, &f->data, err) != 0 ||
        config_set_defaults(&crop_config_schema, &f->crops, err) != 0 ||
        config_set_defaults(&ibot_mask_config_schema, &f->masks, err) != 0)
        return -1;
    f->crops = (CropConfig){.global_size = 32, .global_count = 2, .local_size = 16, .local_count = 2};
    f->masks.probability = 1.0f;   /* every crop masked: every row carries iBOT patches */
    return 0;
}

/* A teacher-style loader (global crops, masks) for this rank's slice. */
static int open_loader(const Fixture *f, IbotMaskHookContext *masks, int begin, int end, int locals,
                       DataLoader **loader, DdError *err) {
    const int side = f->crops.global_size / f->teacher_cfg.patch_size;
    *masks = (IbotMaskHookContext){f->masks, side, side, f->crops.global_count};
    DataLoaderOptions o = {
        .data = &f->data, .crops = &f->crops, .seed = 11, .global_batch = BATCH, .begin = begin, .end = end,
        .build_locals = locals, .first_iteration = 0, .mask_hook = ibot_mask_hook, .mask_context = masks,
        .mask_bytes = ibot_mask_batch_bytes(masks, end - begin),
    };
    return data_loader_open(loader, &o, err);
}

static unsigned long crop_checksum(const DataBatch *batch, int b) {
    const size_t floats = 3 * (size_t)batch->global_size * batch->global_size;
    unsigned long crc = crc32(0L, Z_NULL, 0);
    for (int g = 0; g < batch->global_count; g++)
        crc = crc32(crc, (const unsigned char *)(batch->global_crops + ((size_t)g * batch->count + b) * floats),
                    (uInt)(floats * sizeof(float)));
    return crc;
}

static void students_get_the_teachers_crops_and_rows(void) {
    Fixture f;
    DdError err;
    CHECK(load_fixture(&f, &err) == 0, "%s", err.message);
    RankLayout layout;
    const int ranks[2] = {1, 2};
    CHECK(rank_layout_init(&layout, 2, ranks, BATCH, &err) == 0, "%s", err.message);
    Comm comm;
    CHECK(comm_init(&comm, &layout, &err) == 0, "%s", err.message);
    const NnBackend *be = &nn_cpu_backend;
    const int side = f.crops.global_size / f.teacher_cfg.patch_size, Np = side * side;
    const int max_masked = f.crops.global_count * BATCH * ibot_mask_max_count(&f.masks, Np);

    if (comm.group_index == LAYOUT_TEACHER_GROUP) {
        TeacherRankOptions o = {
            .model = &f.teacher_cfg, .seed = 11, .data = &f.data, .crops = &f.crops, .ibot_mask = &f.masks,
            .global_batch = BATCH, .prefetch = 2, .first_iteration = 0,
        };
        TeacherRank teacher;
        CHECK(teacher_rank_open(&teacher, &o, &comm, &layout, be, &err) == 0, "%s", err.message);
        /* checksums of the crops the teacher sees, for the student ranks to compare */
        IbotMaskHookContext masks;
        DataLoader *loader;
        CHECK(open_loader(&f, &masks, 0, BATCH, 0, &loader, &err) == 0, "%s", err.message);
        for (long k = 0; k < ITERATIONS; k++) {
            const DataBatch *batch;
            CHECK(data_loader_next(loader, &batch, &err) == 0, "%s", err.message);
            unsigned long sums[BATCH];
            for (int b = 0; b < BATCH; b++) sums[b] = crop_checksum(batch, b);
            data_loader_release(loader, batch);
            for (int r = 1; r <= 2; r++) MPI_Send(sums, BATCH, MPI_UNSIGNED_LONG, r, CHECKSUM_TAG, MPI_COMM_WORLD);
            CHECK(teacher_rank_step(&teacher, k, &comm, &layout, be, &err) == 0, "%s", err.message);
        }
        CHECK(teacher_rank_drain(&teacher, &err) == 0, "%s", err.message);
        data_loader_close(loader);
        teacher_rank_close(&teacher, be);
    } else {
        int begin, end;
        rank_layout_slice(&layout, comm.group_index, comm.group_rank, &begin, &end);
        const int B = end - begin;
        IbotMaskHookContext masks, teacher_masks;
        DataLoader *loader, *teacher_loader;   /* this student rank's slice; the teacher rank's */
        CHECK(open_loader(&f, &masks, begin, end, 1, &loader, &err) == 0, "%s", err.message);
        CHECK(open_loader(&f, &teacher_masks, 0, BATCH, 0, &teacher_loader, &err) == 0, "%s", err.message);
        Teacher own;          /* the teacher, run here */
        CHECK(teacher_create(&own, &f.teacher_cfg, NULL, 11, BATCH, f.crops.global_count, f.crops.global_size,
                             max_masked, be, &err) == 0, "%s", err.message);
        const size_t capacity = (size_t)BATCH * f.crops.global_count *
                                (f.teacher_cfg.dino_head.bottleneck + (size_t)Np * f.teacher_cfg.ibot_head.bottleneck);
        uint16_t *wire = malloc(capacity * sizeof(uint16_t)), *own_wire = malloc(capacity * sizeof(uint16_t));
        float *own_rows = malloc(capacity * sizeof(float));
        long offsets[BATCH + 1], full_offsets[BATCH + 1];
        DeliveryTransfer transfer;
        CHECK(delivery_transfer_init(&transfer, &layout, &err) == 0, "%s", err.message);
        int crops_differ = 0, rows_differ = 0;
        long values_compared = 0;
        for (long k = 0; k < ITERATIONS; k++) {
            const DataBatch *batch, *full;
            CHECK(data_loader_next(loader, &batch, &err) == 0 && data_loader_next(teacher_loader, &full, &err) == 0,
                  "%s", err.message);
            unsigned long sums[BATCH];
            MPI_Recv(sums, BATCH, MPI_UNSIGNED_LONG, 0, CHECKSUM_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            for (int b = 0; b < B; b++) crops_differ += crop_checksum(batch, b) != sums[begin + b];
            PayloadShape shape = {B, f.crops.global_count, Np, f.teacher_cfg.dino_head.bottleneck,
                                  f.teacher_cfg.ibot_head.bottleneck};
            payload_offsets(&shape, batch->masks, begin, offsets);
            CHECK(delivery_post_receives(&comm, &layout, offsets, wire, (int)k, &transfer, &err) == 0 &&
                  delivery_wait(&transfer, &err) == 0, "%s", err.message);
            PayloadShape full_shape = shape;
            full_shape.images = BATCH;
            payload_offsets(&full_shape, full->masks, 0, full_offsets);
            CHECK(teacher_compute_rows(&own, be, full->global_crops, full->masks, BATCH, own_rows, &err) == 0, "%s",
                  err.message);
            const long values = offsets[end];
            CHECK(values == full_offsets[end] - full_offsets[begin], "row sizes differ: %ld and %ld", values,
                  full_offsets[end] - full_offsets[begin]);
            bf16_from_float(own_wire, own_rows + full_offsets[begin], values);
            rows_differ += memcmp(wire, own_wire, (size_t)values * sizeof(uint16_t)) != 0;
            values_compared += values;
            data_loader_release(loader, batch);
            data_loader_release(teacher_loader, full);
        }
        printf("  rank %d: %d iterations, %d images, %ld bf16 values compared\n", comm.world_rank, ITERATIONS, B,
               values_compared);
        CHECK(crops_differ == 0, "%d global crops differ from the teacher's", crops_differ);
        CHECK(rows_differ == 0, "%d iterations' rows differ from the ones computed here", rows_differ);
        CHECK(values_compared > 0, "nothing compared");
        delivery_transfer_free(&transfer);
        free(wire);
        free(own_wire);
        free(own_rows);
        teacher_free(&own, be);
        data_loader_close(loader);
        data_loader_close(teacher_loader);
    }
    comm_free(&comm);
    rank_layout_free(&layout);
}

MPI_TEST_MAIN(TEST(students_get_the_teachers_crops_and_rows))
