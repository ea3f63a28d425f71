/*
 * op_checks_objective.h - the checks of the objective's ops (heads, losses,
 * Sinkhorn-Knopp, EMA), listed in test_ops.c's OP_TABLE with the others.
 */
#ifndef DD_TESTS_NN_OP_CHECKS_OBJECTIVE_H
#define DD_TESTS_NN_OP_CHECKS_OBJECTIVE_H

#include "tests/nn/op_check.h"

void check_l2norm_forward(OpRun *run);
void check_l2norm_backward(OpRun *run);
void check_gather_rows(OpRun *run);
void check_gather_rows_backward(OpRun *run);
void check_softmax_cross_entropy_forward(OpRun *run);
void check_softmax_cross_entropy_backward(OpRun *run);
void check_koleo_forward(OpRun *run);
void check_koleo_backward(OpRun *run);
void check_exp_with_temperature(OpRun *run);
void check_column_sums(OpRun *run);
void check_column_max(OpRun *run);
void check_divide_columns(OpRun *run);
void check_normalize_rows(OpRun *run);
void check_ema_update(OpRun *run);

#endif
