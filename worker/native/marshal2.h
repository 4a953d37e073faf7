/* Writing marshal format 2 the way marshal.dumps(value, 2) does, for the values a row holds:
 * None, int (within int64), float, str (as UTF-8) and bytes. Shared by _fastsqlite.c and
 * _pgcopy.c; tests/test_native.py holds both to marshal.dumps itself. */
#ifndef LITESHIFT_MARSHAL2_H
#define LITESHIFT_MARSHAL2_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    unsigned char *buf;
    size_t len, cap;
    /* When set, buf is this bytes object's storage, grown in place (the GIL held): the
     * result needs no copy of its own. */
    PyObject *bytes;
} Buffer;

static inline int grow(Buffer *b, size_t more) {
    if (b->len + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more) cap *= 2;
    if (b->bytes != NULL) {
        if (_PyBytes_Resize(&b->bytes, (Py_ssize_t)cap) < 0) {  /* frees it on failure */
            PyErr_Clear();
            return -1;
        }
        b->buf = (unsigned char *)PyBytes_AS_STRING(b->bytes);
        b->cap = cap;
        return 0;
    }
    unsigned char *buf = PyMem_RawRealloc(b->buf, cap);
    if (buf == NULL) return -1;
    b->buf = buf;
    b->cap = cap;
    return 0;
}

static inline void put_i32(unsigned char *p, int32_t v) {
    uint32_t u = (uint32_t)v;
    p[0] = u & 0xff; p[1] = u >> 8 & 0xff; p[2] = u >> 16 & 0xff; p[3] = u >> 24 & 0xff;
}

static inline int put_int(Buffer *b, long long v) {
    if (v >= INT32_MIN && v <= INT32_MAX) {
        if (grow(b, 5) < 0) return -1;
        b->buf[b->len] = 'i';
        put_i32(b->buf + b->len + 1, (int32_t)v);
        b->len += 5;
        return 0;
    }
    unsigned long long magnitude = v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v;
    unsigned digits[5];
    int32_t n = 0;
    while (magnitude) { digits[n++] = magnitude & 0x7fff; magnitude >>= 15; }
    if (grow(b, 5 + 2 * (size_t)n) < 0) return -1;
    unsigned char *p = b->buf + b->len;
    p[0] = 'l';
    put_i32(p + 1, v < 0 ? -n : n);
    for (int32_t i = 0; i < n; i++) { p[5 + 2 * i] = digits[i] & 0xff; p[6 + 2 * i] = digits[i] >> 8; }
    b->len += 5 + 2 * (size_t)n;
    return 0;
}

static inline int put_bytes(Buffer *b, char type, const void *data, int n) {
    if (grow(b, 5 + (size_t)n) < 0) return -1;
    b->buf[b->len] = type;
    put_i32(b->buf + b->len + 1, n);
    if (n) memcpy(b->buf + b->len + 5, data, n);
    b->len += 5 + (size_t)n;
    return 0;
}

static inline int put_type(Buffer *b, char type) {
    if (grow(b, 1) < 0) return -1;
    b->buf[b->len++] = type;
    return 0;
}

static inline int put_double(Buffer *b, double d) {
    if (grow(b, 9) < 0) return -1;
    b->buf[b->len] = 'g';
    memcpy(b->buf + b->len + 1, &d, 8);  /* little-endian hosts only (checked at import) */
    b->len += 9;
    return 0;
}

#endif
