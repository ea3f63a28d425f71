/*
 * delivery.c - teacher rows to the student ranks that own them (see the
 * delivery part of comm.h). Each (teacher rank, student rank) pair whose
 * slices overlap exchanges one message: the rows of the overlap, in bf16.
 * Both sides derive every message's size from the layout and the payload
 * offsets, so nothing but the rows themselves crosses the wire.
 */
#include <limits.h>
#include <stdlib.h>

#include "comm/comm.h"
#include "comm/delivery_overlap.h"

int delivery_transfer_init(DeliveryTransfer *transfer, const RankLayout *layout, DdError *err) {
    transfer->count = 0;
    transfer->bytes_sent = transfer->bytes_received = 0;
    transfer->capacity = layout->world_size;   /* at most one message per other rank */
    transfer->requests = malloc((size_t)transfer->capacity * sizeof *transfer->requests);
    if (!transfer->requests) return dd_fail(err, "delivery: out of memory for %d requests", transfer->capacity);
    return 0;
}

void delivery_transfer_free(DeliveryTransfer *transfer) {
    free(transfer->requests);
    transfer->requests = NULL;
    transfer->count = transfer->capacity = 0;
}

int delivery_for_each_message(const Comm *comm, const RankLayout *layout, const long *payload_offsets,
                              int sending, DeliveryMessageVisitor visit, void *ctx, DdError *err) {
    /* a sender is a teacher member (maybe a student rank helping); a
     * receiver is a student rank */
    const int me = sending ? rank_layout_teacher_member(layout, comm->world_rank) : comm->group_rank;
    if (me < 0) return dd_fail(err, "delivery: rank %d sends teacher rows but computes none", comm->world_rank);
    int begin, end;
    rank_layout_slice(layout, sending ? LAYOUT_TEACHER_GROUP : comm->group_index, me, &begin, &end);
    const long base = payload_offsets[begin];
    const int first_group = sending ? 1 : LAYOUT_TEACHER_GROUP;
    const int last_group = sending ? layout->group_count - 1 : LAYOUT_TEACHER_GROUP;
    for (int g = first_group; g <= last_group; g++) {
        for (int r = 0; r < rank_layout_members(layout, g); r++) {
            int peer_begin, peer_end;
            rank_layout_slice(layout, g, r, &peer_begin, &peer_end);
            int lo = begin > peer_begin ? begin : peer_begin;
            int hi = end < peer_end ? end : peer_end;
            if (lo >= hi) continue;
            long values = payload_offsets[hi] - payload_offsets[lo];
            if (values == 0) continue;
            if (visit(ctx, rank_layout_member_rank(layout, g, r), payload_offsets[lo] - base, values, err) != 0) return -1;
        }
    }
    return 0;
}

/* What the MPI messages of one post need. */
typedef struct MpiPost {
    const Comm *comm;
    uint16_t *rows;   /* this rank's slice rows */
    int sending, tag;
    DeliveryTransfer *transfer;
} MpiPost;

/* Posts one MPI_Isend or MPI_Irecv of a message (a DeliveryMessageVisitor). */
static int post_mpi_message(void *ctx, int peer, long first_value, long values, DdError *err) {
    MpiPost *post = ctx;
    DeliveryTransfer *transfer = post->transfer;
    if (values > INT_MAX)
        return dd_fail(err, "delivery: a message of %ld values exceeds MPI's int count", values);
    if (transfer->count == transfer->capacity)
        return dd_fail(err, "delivery: more than %d messages in one transfer", transfer->capacity);
    uint16_t *start = post->rows + first_value;
    MPI_Request *request = &transfer->requests[transfer->count];
    int code = post->sending
                   ? MPI_Isend(start, (int)values, MPI_UINT16_T, peer, post->tag, post->comm->world, request)
                   : MPI_Irecv(start, (int)values, MPI_UINT16_T, peer, post->tag, post->comm->world, request);
    if (code != MPI_SUCCESS)
        return dd_fail(err, "delivery: %s of %ld values with rank %d failed (MPI error %d)",
                       post->sending ? "MPI_Isend" : "MPI_Irecv", values, peer, code);
    transfer->count++;
    if (post->sending) transfer->bytes_sent += values * (long)sizeof(uint16_t);
    else transfer->bytes_received += values * (long)sizeof(uint16_t);
    return 0;
}

int delivery_post_sends(const Comm *comm, const RankLayout *layout, const long *payload_offsets,
                        const uint16_t *slice_rows, int tag, DeliveryTransfer *transfer, DdError *err) {
    /* a teacher rank, or a student rank computing teacher images: checked
     * by the walk (delivery_for_each_message) */
    transfer->bytes_sent = 0;
    MpiPost post = {comm, (uint16_t *)slice_rows, 1, tag, transfer};
    return delivery_for_each_message(comm, layout, payload_offsets, 1, post_mpi_message, &post, err);
}

int delivery_post_receives(const Comm *comm, const RankLayout *layout, const long *payload_offsets,
                           uint16_t *slice_rows, int tag, DeliveryTransfer *transfer, DdError *err) {
    if (comm->group_index == LAYOUT_TEACHER_GROUP)
        return dd_fail(err, "delivery: rank %d is a teacher rank, not a student rank", comm->world_rank);
    transfer->bytes_received = 0;
    MpiPost post = {comm, slice_rows, 0, tag, transfer};
    return delivery_for_each_message(comm, layout, payload_offsets, 0, post_mpi_message, &post, err);
}

int delivery_wait(DeliveryTransfer *transfer, DdError *err) {
    int code = MPI_Waitall(transfer->count, transfer->requests, MPI_STATUSES_IGNORE);
    transfer->count = 0;
    if (code != MPI_SUCCESS) return dd_fail(err, "delivery: MPI_Waitall failed (MPI error %d)", code);
    return 0;
}
