/*
 * delivery_overlap.h - the one walk behind every teacher -> student delivery
 * (MPI in delivery.c, NCCL in nccl_comm.c): which peer ranks this rank
 * exchanges rows with, and which part of its slice each message holds.
 * Internal to comm/.
 */
#ifndef DD_COMM_DELIVERY_OVERLAP_H
#define DD_COMM_DELIVERY_OVERLAP_H

#include "comm/comm.h"

/* One message of a delivery: values payload values (bf16) exchanged with
 * world rank peer, starting first_value values into this rank's slice rows. */
typedef int (*DeliveryMessageVisitor)(void *ctx, int peer, long first_value, long values, DdError *err);

/* Calls visit once per peer rank whose slice overlaps this rank's, in group
 * then rank order, skipping empty overlaps: a teacher rank (sending) visits
 * every student rank, a student rank (receiving) the teacher ranks. Stops
 * at and returns the first failure of visit. */
int delivery_for_each_message(const Comm *comm, const RankLayout *layout, const long *payload_offsets,
                              int sending, DeliveryMessageVisitor visit, void *ctx, DdError *err);

#endif
