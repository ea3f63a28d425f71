/*
 * model_layout.h - what nn/heads.c and nn/model.c share, and students/
 * uses for its own buffers: the walk that places named tensors in a model
 * buffer, the head's part of it, the widths of a head's layers, and the
 * walk that places buffers one after the other in one allocation.
 */
#ifndef DD_NN_MODEL_LAYOUT_H
#define DD_NN_MODEL_LAYOUT_H

#include "nn/model.h"
#include "nn/weights_names.h"   /* head_tensor_count */

/* Walks a layout in memory order: with tensors it records each one, with
 * memory it hands out each tensor's address in it (else NULL). */
typedef struct LayoutCursor {
    ModelTensor *tensors;   /* may be NULL */
    float *memory;          /* may be NULL */
    int count;              /* tensors so far */
    size_t offset;          /* floats so far */
} LayoutCursor;

/* The head's tensors: `layers` weight/bias pairs, then the prototypes,
 * named "<prefix>.mlp.{i}.weight", ..., "<prefix>.prototypes.weight". With
 * p, its views are pointed at the cursor's memory. */
void head_layout(LayoutCursor *cursor, const HeadConfig *head, int in_dim, ModelModule module,
                 int layer, const char *prefix, HeadParams *p);

/* Output and input width of MLP layer i of a head on a backbone of in_dim. */
int head_layer_out(const HeadConfig *head, int i);
int head_layer_in(const HeadConfig *head, int in_dim, int i);

/* Places buffers one after the other in one allocation, each 64-byte
 * aligned; with memory NULL it only counts. */
typedef struct BufferWalk {
    void *memory;        /* may be NULL */
    size_t bytes;        /* so far */
} BufferWalk;

static inline void *buffer_take(BufferWalk *w, size_t count, size_t element_size) {
    void *address = w->memory ? (char *)w->memory + w->bytes : NULL;
    w->bytes += (count * element_size + 63) & ~(size_t)63;
    return address;
}
#define TAKE_FLOATS(walk, count) ((float *)buffer_take((walk), (count), sizeof(float)))

#endif
