/*
 * comm.h - the communication layer's one header: MPI bootstrap, the
 * communicators of the rank layout, in-group sums, and the delivery of
 * teacher outputs to student ranks. (The CUDA build adds NCCL underneath
 * the same calls.)
 */
#ifndef DD_COMM_COMM_H
#define DD_COMM_COMM_H

#include <mpi.h>
#include <stdint.h>

#include "comm/bf16.h"
#include "comm/rank_layout.h"
#include "nn/error.h"

typedef struct Comm {
    MPI_Comm world;       /* a private duplicate of MPI_COMM_WORLD */
    MPI_Comm group;       /* the ranks of this rank's group */
    int world_rank, world_size;
    int group_index;      /* LAYOUT_TEACHER_GROUP or a student group 1.. */
    int group_rank, group_size;
    struct CommNccl *nccl; /* NCCL communicators of a CUDA run; NULL until comm_init_nccl */
    /* Where the hooks' buffers live (comm_set_hook_memory): NULL for host
     * memory, else the backend whose memory they are, staged through
     * host_staging when no NCCL communicator carries them. */
    const struct NnBackend *hook_memory;
    float *host_staging;
    long host_staging_count;
    struct CommPendingSums *pending;   /* sums started and not finished (comm/comm_hooks.c) */
} Comm;

/* Fails with "what: " and MPI's text for an MPI error code. */
int comm_mpi_fail(DdError *err, int code, const char *what);

/* MPI must be initialised. Fails (on every rank alike) when the world size
 * differs from the layout's. Collective over MPI_COMM_WORLD. */
int comm_init(Comm *comm, const RankLayout *layout, DdError *err);
/* Also frees the NCCL communicators, if comm_init_nccl created them. */
void comm_free(Comm *comm);
/* The state of comm_group_sum_start_hook (comm_free calls it). Sums still
 * in flight (a failed step's) are abandoned, their host memory kept. */
void comm_pending_sums_free(Comm *comm);

/* buffer[count] <- its sum over the ranks of this rank's group. */
int comm_group_sum(Comm *comm, float *buffer, long count, DdError *err);
/* buffer[count] <- its maximum over the ranks of this rank's group. */
int comm_group_max(Comm *comm, float *buffer, long count, DdError *err);
/* The same with the signature of a reduction hook (ctx is the Comm), on
 * buffers in the memory comm_set_hook_memory names (host memory until it
 * is called): through NCCL when comm_init_nccl succeeded, else over MPI,
 * copying a device buffer to host memory and back (comm/comm_hooks.c). */
int comm_group_sum_hook(void *comm, float *buffer, long count, DdError *err);
int comm_group_max_hook(void *comm, float *buffer, long count, DdError *err);
/* The asynchronous sum, with the signatures of GroupSumStart and
 * GroupSumFinish (students/students.h): start returns at once, the buffer
 * left alone until finish, which completes every sum started since the last
 * finish. owner < 0: every rank gets the sum (an all-reduce); else only
 * group rank `owner` does (a reduce; the others' buffers are then
 * unspecified). Host memory: MPI_Iallreduce / MPI_Ireduce (start also lets
 * the earlier ones progress). NCCL: comm_group_sum_device_start / _finish.
 * Device memory without NCCL: the buffer is copied to host memory at start
 * (waiting for the kernels that wrote it), summed over MPI, and copied back
 * at finish where it was wanted. Every rank of the group starts the same
 * sums in the same order. */
int comm_group_sum_start_hook(void *comm, float *buffer, long count, int owner, DdError *err);
int comm_group_sum_finish_hook(void *comm, DdError *err);
/* values[count] (host memory) <- their sum over the group, in double. */
int comm_group_sum_doubles(Comm *comm, double *values, int count, DdError *err);
int comm_group_sum_doubles_hook(void *comm, double *values, int count, DdError *err);
/* Starts the `bytes` bytes at buffer (the hooks' memory: fp32 values,
 * bf16 ones, any) <- group rank owner's copy on every rank of the group (a
 * broadcast) and returns at once: the buffer is
 * not to be touched until comm_group_broadcast_wait_hook has waited for its
 * slot (>= 0, the caller's label: the layer it holds) or for every slot
 * (-1). Host memory: MPI_Ibcast. NCCL: comm_group_broadcast_device_start.
 * Device memory without NCCL: the owner's copy goes to host memory at
 * start, the others' come back at the wait. Every rank starts the same
 * broadcasts in the same order; started sums are finished first. */
int comm_group_broadcast_start_hook(void *comm, void *buffer, size_t bytes, int owner, int slot, DdError *err);
int comm_group_broadcast_wait_hook(void *comm, int slot, DdError *err);
/* Host memory the hooks hold for staging device buffers, in bytes. */
size_t comm_staging_bytes(const Comm *comm);
/* The hooks' buffers are in be's memory from now on (NULL: host memory).
 * A run on a device backend calls it once after comm_init (and after
 * comm_init_nccl, if the ranks have devices of their own). */
void comm_set_hook_memory(Comm *comm, const struct NnBackend *be);

/* ---- teacher -> student delivery --------------------------------------- */

/* One batch's teacher payload is a row per sample, laid out sample after
 * sample in batch order: row i holds payload_offsets[i + 1] - payload_offsets[i]
 * values (the DINO bottlenecks of both global crops, then the iBOT
 * bottlenecks of the masked patches). Every rank knows the offsets
 * ([global_batch + 1] prefix sums), since masks derive from the seed. A
 * teacher rank holds the rows of its slice, a student rank receives the rows
 * of its own slice, in bf16, from whichever teacher ranks own them. */
typedef struct DeliveryTransfer {
    MPI_Request *requests;
    int count, capacity;
    long bytes_sent, bytes_received;   /* of the transfer in flight */
} DeliveryTransfer;

int delivery_transfer_init(DeliveryTransfer *transfer, const RankLayout *layout, DdError *err);
void delivery_transfer_free(DeliveryTransfer *transfer);

/* Teacher rank: sends slice_rows (the rows of its slice, bf16) to every
 * student rank of every group that owns some of them. tag tells batches
 * apart when several are in flight (iteration modulo 32768). */
int delivery_post_sends(const Comm *comm, const RankLayout *layout, const long *payload_offsets,
                        const uint16_t *slice_rows, int tag, DeliveryTransfer *transfer, DdError *err);
/* Student rank: receives the rows of its slice into slice_rows. */
int delivery_post_receives(const Comm *comm, const RankLayout *layout, const long *payload_offsets,
                           uint16_t *slice_rows, int tag, DeliveryTransfer *transfer, DdError *err);
/* Completes the posted transfer. */
int delivery_wait(DeliveryTransfer *transfer, DdError *err);

/* ---- NCCL, for runs on the CUDA backend (comm/nccl_comm.c) --------------
 * In a build without NCCL every call below fails with "this build has no
 * NCCL" (comm/nccl_absent.c); the CPU path never calls them.
 *
 * "Compute" below is the legacy default stream, where the CUDA backend runs
 * every kernel. NCCL work runs on two streams of its own, neither ordered
 * implicitly with compute: the reduce stream (in-group sums, the group
 * communicator) and the delivery stream (teacher rows, the world
 * communicator), so a delivery waiting for a slow peer never holds up a sum
 * or a kernel. Each call orders itself after the kernels enqueued before it
 * (events), and says when its result may be used. */

/* 1 when this build has NCCL (comm/nccl_comm.c), 0 otherwise. */
int comm_has_nccl(void);

/* After comm_init, on a rank whose CUDA device is already chosen
 * (cudaSetDevice; one device per rank): creates an NCCL communicator over
 * the group and one over the world from the MPI communicators (the unique id
 * made on rank 0 and broadcast over MPI), and the reduce and delivery
 * streams with their events. Collective over the world. comm_free releases
 * them. */
int comm_init_nccl(Comm *comm, DdError *err);
void comm_free_nccl(Comm *comm);
/* *shared <- 1 when two ranks of this world run on the same CUDA device
 * (compared by device UUID), which NCCL refuses within one communicator:
 * such a run reduces over MPI through host memory instead. Names the first
 * pair in note (may be NULL). Collective over the world; the device must be
 * chosen (cudaSetDevice) first. */
int comm_devices_shared(Comm *comm, int *shared, char *note, size_t note_size, DdError *err);

/* device_buffer[count] (device memory) <- its sum / maximum over the ranks of
 * this rank's group: ncclAllReduce on the reduce stream after the kernels
 * enqueued so far; returns when done. */
int comm_group_sum_device(Comm *comm, float *device_buffer, long count, DdError *err);
int comm_group_max_device(Comm *comm, float *device_buffer, long count, DdError *err);
/* Starts device_buffer[count] <- its sum over the group and returns at once:
 * the sum runs on the reduce stream after every kernel enqueued so far on
 * the legacy default stream, overlapping later kernels. owner < 0: on every
 * rank (ncclAllReduce); else on group rank owner only (ncclReduce). The
 * buffer must not be read or written until comm_group_sum_device_finish. */
int comm_group_sum_device_start(Comm *comm, float *device_buffer, long count, int owner, DdError *err);
/* Makes the legacy default stream wait (no host wait) for every sum started
 * since the last finish, and checks NCCL's asynchronous error state. */
int comm_group_sum_device_finish(Comm *comm, DdError *err);
/* The broadcast of comm_group_broadcast_start_hook on a device buffer:
 * ncclBroadcast on the reduce stream after the kernels enqueued so far,
 * an event per slot recorded after it. The wait makes the legacy default
 * stream wait (no host wait) for the slot's event, or for everything on
 * the reduce stream (-1). */
int comm_group_broadcast_device_start(Comm *comm, void *device_buffer, size_t bytes, int owner, int slot,
                                      DdError *err);
int comm_group_broadcast_device_wait(Comm *comm, int slot, DdError *err);

/* 1 when this run delivers the teacher's rows over NCCL from and to be's
 * memory (delivery_device_*): comm_init_nccl succeeded (every rank on a
 * device of its own) and the hooks' buffers are be's memory (a device
 * backend, comm_set_hook_memory). Else 0: the rows go over MPI through host
 * memory (delivery_post_*). The same answer on every rank of a run. */
int delivery_on_device(const Comm *comm, const struct NnBackend *be);

/* Prefetch slots whose sends are told apart: on a teacher rank, slot =
 * iteration modulo prefetch (teacher/teacher_rank.h). */
enum { DELIVERY_DEVICE_SLOTS = 16 };

/* The delivery above on device buffers: one grouped ncclSend / ncclRecv per
 * overlapping (teacher rank, student rank) pair, on the delivery stream
 * after the kernels enqueued so far (the ones that wrote the rows to send,
 * or last read the buffer receiving); *bytes (may be NULL) gets the bytes
 * this rank sends / receives. Messages between a pair arrive in the order
 * posted (no tags). Sends come from the rows buffer of prefetch slot `slot`
 * (< DELIVERY_DEVICE_SLOTS): refill it only after delivery_device_wait_slot.
 * A rank that also receives (a student rank computing teacher images) holds
 * its sends and posts them in one group with its next receives, as NCCL
 * needs for ranks that send to one another or to themselves: its receive
 * must follow before any wait. */
int delivery_device_post_sends(const Comm *comm, const RankLayout *layout, const long *payload_offsets,
                               const uint16_t *device_slice_rows, int slot, long *bytes, DdError *err);
int delivery_device_post_receives(const Comm *comm, const RankLayout *layout, const long *payload_offsets,
                                  uint16_t *device_slice_rows, long *bytes, DdError *err);
/* Returns when every delivery posted on comm has completed (the received
 * rows may be read by any kernel enqueued afterwards). */
int delivery_device_wait(const Comm *comm, DdError *err);
/* Returns when the sends posted last from slot have completed (at once
 * when none were), so its rows buffer may be refilled: one event per slot,
 * later sends stay in flight. */
int delivery_device_wait_slot(const Comm *comm, int slot, DdError *err);

#endif
