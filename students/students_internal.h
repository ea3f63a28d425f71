/*
 * students_internal.h - what the files of students/ share beyond the
 * public header (the layout walks of nn/model_layout.h, how a slice is cut
 * into micro-batches).
 */
#ifndef DD_STUDENTS_INTERNAL_H
#define DD_STUDENTS_INTERNAL_H

#include "nn/model_layout.h"
#include "students/students.h"

/* The images of the micro-batch that starts at image `first` of the slice:
 * micro of them, the last one the rest. */
static inline int micro_batch_images(const StudentWorkspace *w, int first) {
    return w->shape.images - first < w->micro ? w->shape.images - first : w->micro;
}

#endif
