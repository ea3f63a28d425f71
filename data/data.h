/*
 * data.h - the data pipeline of dinodistill, the one header other folders
 * include: sources (synthetic, image folder, HDF5 shards), the seeded
 * sampler, seeded multi-crop augmentation, loading threads, and packing a
 * folder into shards.
 *
 * Determinism is the contract of this folder: which samples batch k holds,
 * every crop's box and colour operations, the iBOT mask of a sample and the
 * RoPE rescale of a step are pure functions of the run seed and their
 * coordinates (nn/random.h's keyed streams), so every rank recomputes them
 * and nothing random is ever sent.
 *
 *   data_config.h   the `crops:` and `data:` sections of a run file
 *   source.h        one source: count, labels, load(id) -> RGB pixels
 *   dataset.h       all sources as one id space; bad samples replaced
 *   sampler.h       batch k -> sample ids of any rank's slice; data_rope_rescale
 *   augment.h       crop plans and rendering: [3, S, S] normalised floats
 *   loader.h        loading threads, prefetch ring, the iBOT mask hook
 *   pack.h          image folder -> HDF5 shards
 *   problems.h      bad-input counts and reports
 */
#ifndef DD_DATA_DATA_H
#define DD_DATA_DATA_H

#include "data/augment.h"
#include "data/data_config.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/loader.h"
#include "data/pack.h"
#include "data/problems.h"
#include "data/sampler.h"
#include "data/source.h"

#endif
