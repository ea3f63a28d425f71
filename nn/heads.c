/*
 * heads.c - the DINO and iBOT heads on the op API (see model.h): the
 * layout of a head's tensors, its activations, and the two halves (the MLP
 * to the L2-normalised bottleneck, the prototype layer) forward and back.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "nn/model_layout.h"

int head_layer_out(const HeadConfig *head, int i) {
    return i == head->layers - 1 ? head->bottleneck : head->hidden;
}

int head_layer_in(const HeadConfig *head, int in_dim, int i) { return i == 0 ? in_dim : head->hidden; }


/* Records one tensor [rows, cols] (cols 0: a vector) and returns its address. */
static float *add_tensor(LayoutCursor *c, ModelModule module, int layer, int decays, int64_t rows,
                         int64_t cols, const char *name_format, ...) {
    const size_t count = (size_t)rows * (size_t)(cols ? cols : 1);
    if (c->tensors) {
        ModelTensor *t = &c->tensors[c->count];
        memset(t, 0, sizeof *t);
        va_list args;
        va_start(args, name_format);
        vsnprintf(t->info.name, sizeof t->info.name, name_format, args);
        va_end(args);
        t->info.ndim = cols ? 2 : 1;
        t->info.shape[0] = rows;
        t->info.shape[1] = cols ? cols : 1;
        t->info.shape[2] = t->info.shape[3] = 1;
        t->info.offset = c->offset;
        t->info.count = count;
        t->info.decays = decays;
        t->module = module;
        t->layer = layer;
    }
    float *address = c->memory ? c->memory + c->offset : NULL;
    c->count++;
    c->offset += count;
    return address;
}

void head_layout(LayoutCursor *cursor, const HeadConfig *head, int in_dim, ModelModule module,
                 int layer, const char *prefix, HeadParams *p) {
    HeadParams ignored;
    if (!p) p = &ignored;
    memset(p, 0, sizeof *p);
    for (int i = 0; i < head->layers; i++) {
        const int out = head_layer_out(head, i), in = head_layer_in(head, in_dim, i);
        p->weight[i] = add_tensor(cursor, module, layer, 1, out, in, "%s.mlp.%d.weight", prefix, i);
        p->bias[i] = add_tensor(cursor, module, layer, 0, out, 0, "%s.mlp.%d.bias", prefix, i);
    }
    p->prototypes = add_tensor(cursor, module, layer, 1, head->prototypes, head->bottleneck,
                               "%s.prototypes.weight", prefix);
}

/* ---- activations ----------------------------------------------------------- */

/* Places every buffer of a (memory NULL: only counts); returns the bytes. */
static size_t head_activation_walk(HeadActivations *a, const HeadConfig *head, float *memory) {
    const size_t rows = (size_t)a->capacity;
    const int widest = head->hidden > head->bottleneck ? head->hidden : head->bottleneck;
    BufferWalk w = {.memory = memory};
    if (a->parts & HEAD_PART_MLP) {
        for (int i = 0; i < head->layers; i++) {
            a->linear[i] = TAKE_FLOATS(&w, rows * head_layer_out(head, i));
            a->hidden[i] = i < head->layers - 1 ? TAKE_FLOATS(&w, rows * head->hidden) : NULL;
        }
        a->norm = TAKE_FLOATS(&w, rows);
        a->features = TAKE_FLOATS(&w, rows * head->bottleneck);
    }
    if (a->parts & HEAD_PART_PROTOTYPES) a->logits = TAKE_FLOATS(&w, rows * head->prototypes);
    if (a->parts & HEAD_PART_BACKWARD) {
        if (a->parts & HEAD_PART_PROTOTYPES) a->d_logits = TAKE_FLOATS(&w, rows * head->prototypes);
        a->d_features = TAKE_FLOATS(&w, rows * head->bottleneck);
        a->d_linear = TAKE_FLOATS(&w, rows * widest);
        a->d_hidden = TAKE_FLOATS(&w, rows * head->hidden);
    }
    return w.bytes;
}

size_t head_activation_count(const HeadConfig *head, int rows, int parts) {
    HeadActivations a = {.capacity = rows, .parts = parts};
    return head_activation_walk(&a, head, NULL) / sizeof(float);
}

int head_activations_alloc(HeadActivations *a, const HeadConfig *head, int in_dim, int capacity,
                           int parts, const NnBackend *be, DdError *err) {
    memset(a, 0, sizeof *a);
    a->capacity = capacity > 0 ? capacity : 1;
    a->parts = parts;
    const size_t bytes = head_activation_walk(a, head, NULL);
    a->count = bytes / sizeof(float);
    a->memory = be->alloc(bytes);
    if (!a->memory)
        return dd_fail(err, "head (%d layers, hidden %d, bottleneck %d, %d prototypes, input %d): could not "
                       "allocate %.1f MiB of %s memory for %d rows of activations", head->layers, head->hidden,
                       head->bottleneck, head->prototypes, in_dim, a->count * 4.0 / (1 << 20), be->name,
                       a->capacity);
    head_activation_walk(a, head, a->memory);
    return 0;
}

void head_activations_free(HeadActivations *a, const NnBackend *be) {
    if (be && a->memory) be->free(a->memory);
    memset(a, 0, sizeof *a);
}

/* ---- forward ------------------------------------------------------------------ */

void head_mlp_forward(const NnBackend *be, const HeadConfig *head, int in_dim, const HeadParams *p,
                      HeadActivations *a, const float *inp, int N) {
    const float *x = inp;   /* [N, in] input of layer i */
    for (int i = 0; i < head->layers; i++) {
        const int out = head_layer_out(head, i), in = head_layer_in(head, in_dim, i);
        be->matmul_forward(a->linear[i], x, p->weight[i], p->bias[i], N, in, out);
        if (i == head->layers - 1) break;
        be->gelu_forward(a->hidden[i], a->linear[i], (long)N * out);
        x = a->hidden[i];
    }
    be->l2norm_forward(a->features, a->norm, a->linear[head->layers - 1], N, head->bottleneck, HEAD_NORM_EPS);
}

void head_prototypes_forward(const NnBackend *be, const HeadConfig *head, const float *prototypes,
                             const float *features, float *logits, int N) {
    be->matmul_forward(logits, features, prototypes, NULL, N, head->bottleneck, head->prototypes);
}

/* ---- backward ----------------------------------------------------------------- */

void head_prototypes_backward(const NnBackend *be, const HeadConfig *head, const HeadParams *p,
                              HeadParams *grads, HeadActivations *a, int N) {
    be->zero(a->d_features, (size_t)N * head->bottleneck * sizeof(float));
    be->matmul_backward(a->d_features, grads->prototypes, NULL, a->d_logits, a->features, p->prototypes,
                        N, head->bottleneck, head->prototypes);
}

void head_mlp_backward(const NnBackend *be, const HeadConfig *head, int in_dim, const HeadParams *p,
                       HeadParams *grads, HeadActivations *a, const float *inp, float *d_input, int N) {
    const int last = head->layers - 1;
    /* d_linear holds the gradient of the current layer's output [N, out_i] */
    be->zero(a->d_linear, (size_t)N * head->bottleneck * sizeof(float));
    be->l2norm_backward(a->d_linear, a->d_features, a->linear[last], a->norm, N, head->bottleneck,
                        HEAD_NORM_EPS);
    for (int i = last; i > 0; i--) {
        const int out = head_layer_out(head, i), in = head_layer_in(head, in_dim, i);
        be->zero(a->d_hidden, (size_t)N * in * sizeof(float));
        be->matmul_backward(a->d_hidden, grads->weight[i], grads->bias[i], a->d_linear, a->hidden[i - 1],
                            p->weight[i], N, in, out);
        be->zero(a->d_linear, (size_t)N * in * sizeof(float));
        be->gelu_backward(a->d_linear, a->d_hidden, a->linear[i - 1], (long)N * in);
    }
    be->matmul_backward(d_input, grads->weight[0], grads->bias[0], a->d_linear, inp, p->weight[0], N,
                        in_dim, head_layer_out(head, 0));
}
