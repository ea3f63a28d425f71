/*
 * student_export.h - the EMA weights of one student of a run, from the run's
 * newest verified checkpoint, as a Hugging Face model folder
 * (weights_export.h): what `distill export` does.
 *
 * Where things are in RUN_DIR:
 *   config.yaml                           the run's effective config (RunConfig),
 *                                         which gives the student's architecture
 *   checkpoints/iter_N/student_NAME.h5    the student's state: "params.", "ema.",
 *                                         "adam_m.", "adam_v." + the layout names,
 *                                         and the heads (not exported)
 */
#ifndef DD_TOOLS_STUDENT_EXPORT_H
#define DD_TOOLS_STUDENT_EXPORT_H

#include <stdio.h>

#include "nn/error.h"

/* Writes OUT_DIR/model.safetensors and OUT_DIR/config.json; log (may be
 * NULL) gets one line saying what was exported, and any warning about a
 * checkpoint that failed verification and was skipped. */
int student_export(const char *run_dir, const char *student, const char *out_dir, FILE *log, DdError *err);

#endif
