/*
 * student_export.h - the EMA weights of one student of a run, from the run's
 * newest verified checkpoint, as a Hugging Face model folder
 * (weights_export.h): what `distill export` does.
 *
 * Where things are in RUN_DIR:
 *   checkpoints/iter_N/                   the newest verified checkpoint (checkpoint.h)
 *   checkpoints/iter_N/student_NAME.h5    the student's state: "params.", "ema.",
 *                                         "adam_m.", "adam_v." + the layout names,
 *                                         and the heads (not exported)
 *   checkpoints/iter_N/config.yaml        the run config the state was written with,
 *   or else config.yaml                   the run's effective config (RunConfig):
 *                                         either gives the student's architecture
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
