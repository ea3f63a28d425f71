/*
 * test_teacher.h - the frozen teacher's side of an iteration, for the
 * tests: its backbone (forward only) on the global crops, its head MLPs on
 * the CLS tokens and on the masked patch tokens, giving the L2-normalised
 * bottlenecks a student rank receives (DESIGN step 2). The real teacher
 * ranks (teacher/) do the same with comm in between.
 */
#ifndef DD_TESTS_STUDENTS_TEST_TEACHER_H
#define DD_TESTS_STUDENTS_TEST_TEACHER_H

#include <stdint.h>

#include "students/students.h"

typedef struct TestTeacher {
    ViTConfig cfg;
    ModelParams params;            /* backend, frozen */
    ViTActivations acts;           /* forward only: `crops` global crops */
    HeadActivations dino, ibot;    /* the MLP halves: features [crops, .] and [M, .] */
    int crops, max_masked;
    float *tokens;                 /* [crops + max_masked, D] CLS rows, then masked patch rows */
    int32_t *rows;                 /* [crops + max_masked] backend: their rows in acts.out */
    int32_t *host_rows;            /* [crops + max_masked] */
} TestTeacher;

int test_teacher_alloc(TestTeacher *t, const ViTConfig *cfg, const NnBackend *be, int crops, int size_px,
                       int max_masked, DdError *err);
void test_teacher_free(TestTeacher *t, const NnBackend *be);

/* global_crops[crops, C, S, S] (backend), masks[crops, Np] (host) ->
 * t->dino.features [crops, dino bottleneck], t->ibot.features [M, ibot
 * bottleneck]; returns M (-1 over max_masked). */
int test_teacher_forward(TestTeacher *t, const NnBackend *be, const float *global_crops, const uint8_t *masks);

#endif
