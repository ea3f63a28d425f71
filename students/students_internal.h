/*
 * students_internal.h - what the files of students/ share beyond the
 * public header (the layout walks of nn/model_layout.h).
 */
#ifndef DD_STUDENTS_INTERNAL_H
#define DD_STUDENTS_INTERNAL_H

#include "nn/model_layout.h"
#include "students/students.h"

#endif
