/*
 * nccl_absent.c - the NCCL entry points of comm.h in a build without NCCL:
 * each fails with a message that says so (comm_free_nccl does nothing, and
 * delivery_on_device answers 0: the rows always go over MPI).
 */
#include "comm/comm.h"

static int no_nccl(DdError *err, const char *what) {
    return dd_fail(err, "%s: this build has no NCCL (configure with -Dcuda=enabled on a machine with "
                        "nccl.h and libnccl)", what);
}

int comm_has_nccl(void) { return 0; }

int comm_init_nccl(Comm *comm, DdError *err) { return no_nccl(err, "comm_init_nccl"); }

int comm_devices_shared(Comm *comm, int *shared, char *note, size_t note_size, DdError *err) {
    (void)comm, (void)note, (void)note_size;
    *shared = 0;
    return no_nccl(err, "comm_devices_shared");
}

void comm_free_nccl(Comm *comm) { (void)comm; }

int comm_group_sum_device(Comm *comm, float *device_buffer, long count, DdError *err) {
    return no_nccl(err, "comm_group_sum_device");
}

int comm_group_max_device(Comm *comm, float *device_buffer, long count, DdError *err) {
    return no_nccl(err, "comm_group_max_device");
}

int comm_group_sum_device_start(Comm *comm, float *device_buffer, long count, int owner, DdError *err) {
    return no_nccl(err, "comm_group_sum_device_start");
}

int comm_group_sum_device_finish(Comm *comm, DdError *err) { return no_nccl(err, "comm_group_sum_device_finish"); }

int comm_group_broadcast_device_start(Comm *comm, void *device_buffer, size_t bytes, int owner, int slot,
                                      DdError *err) {
    return no_nccl(err, "comm_group_broadcast_device_start");
}

int comm_group_broadcast_device_wait(Comm *comm, int slot, DdError *err) {
    return no_nccl(err, "comm_group_broadcast_device_wait");
}

int delivery_on_device(const Comm *comm, const struct NnBackend *be) { return 0; }

int delivery_device_post_sends(const Comm *comm, const RankLayout *layout, const long *payload_offsets,
                               const uint16_t *device_slice_rows, int slot, long *bytes, DdError *err) {
    return no_nccl(err, "delivery_device_post_sends");
}

int delivery_device_post_receives(const Comm *comm, const RankLayout *layout, const long *payload_offsets,
                                  uint16_t *device_slice_rows, long *bytes, DdError *err) {
    return no_nccl(err, "delivery_device_post_receives");
}

int delivery_device_wait(const Comm *comm, DdError *err) { return no_nccl(err, "delivery_device_wait"); }

int delivery_device_wait_slot(const Comm *comm, int slot, DdError *err) {
    return no_nccl(err, "delivery_device_wait_slot");
}
