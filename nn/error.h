/*
 * error.h - how every fallible function in dinodistill reports failure.
 *
 * A function that can fail returns 0 on success and -1 on failure, and on
 * failure writes one human-readable sentence into a caller-owned DdError.
 * Messages name the place (file:line:column, a tensor, a field), what was
 * expected and what was found. There is no global error state.
 */
#ifndef DD_ERROR_H
#define DD_ERROR_H

#include <stdarg.h>

#define DD_ERROR_MESSAGE_MAX 1024

typedef struct DdError {
    char message[DD_ERROR_MESSAGE_MAX];
} DdError;

/* Formats the message into err (if err is non-NULL) and returns -1. */
int dd_fail(DdError *err, const char *format, ...) __attribute__((format(printf, 2, 3)));
int dd_vfail(DdError *err, const char *format, va_list args);

/* Prepends "prefix: " to an existing message; returns -1. */
int dd_fail_context(DdError *err, const char *format, ...) __attribute__((format(printf, 2, 3)));

#endif
