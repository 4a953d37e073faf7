/* Source rows straight to the marshal bytes we checksum and insert: PostgreSQL's binary
 * COPY rows, and rows of Python values from a driver (MySQL).
 *
 * Why: parsing COPY into Python objects (psycopg) and marshalling them again would be most
 * of a big table's reading CPU (ops/bench/RESULTS.md). The server already renders every
 * value into one of a few wire types (worker/sources/postgres/values.py), so each field maps
 * to one marshal value without Python in between.
 *
 * encode(messages, kinds, keep, slow_numeric) -> (encoded rows, flag counts)
 *   messages: COPY data messages, one row each (PostgreSQL sends one per row)
 *   kinds: one byte per field: q int8, d float8, s text, b bytea, B bool, n numeric text
 *          as converters.numeric_float converts it, N the same counting inexact values
 *          (converters.numeric_affinity), U uuid as text, A text[] as JSON text (uuid_text
 *          and json_text_array), 0x80 and up a timestamp's microseconds as text
 *          in the format DatetimeFormat.code names, counting those out of range
 *   keep: the leading fields that make the row; of the others, bool fields are counted
 *         (the server's lossy flags) and the rest skipped (raw key values)
 *   slow_numeric: converters._numeric, for the rare numeric it leaves to Decimal
 * The counts: per field, true flags past `keep`, and inexact values of N fields.
 *
 * read_chunk(pgconn, libpq functions, kinds, keep, slow_numeric, max_rows, max_bytes, first,
 *            size_hint, key_fields[, frames_fd[, scratch[, stop_at_big]]])
 *   -> (payload, rows, checksum, size, last row's key message, counts, state)
 *   reads the next rows of a COPY in progress straight from libpq (psycopg's per-row Python
 *   object would be most of a narrow table's reading cost) and encodes them as
 *   encode() does: the payload is marshal.dumps(list of rows, 2), the checksum
 *   checksum.encoded_checksum of the rows' bytes, the size their total length. It stops at
 *   max_rows, at max_bytes (one row past it), or at the end: state 0 more to read, 1 the
 *   trailer was read (psycopg finishes the COPY), 2 libpq ended the COPY or failed first
 *   (the caller asks libpq why), 3 stop_at_big's row came (below). The libpq functions
 *   must come from the very libpq that owns pgconn (worker/native/pgcopy.py finds them). The payload is written straight into its
 *   bytes object, first sized to size_hint (the previous chunk's size): a chunk built
 *   aside and copied cost a fresh copy's page faults, a third of the reader's CPU.
 *   key_fields: one byte per field, nonzero for the fields of the chunk key; the last row's
 *   message comes back with only those (the others NULL), for its key.
 *   frames_fd (optional): a reader process's stdout. A row longer than max_bytes then ends
 *   its chunk, and the chunk goes there as reader_process's P frame, its big values straight
 *   from libpq's message (payload None): the reader never holds a copy of such a row.
 *   scratch (optional, with frames_fd): a buffer from scratch(), kept by the caller across
 *   the chunks of a COPY. Every chunk is then built in it and written to frames_fd as its
 *   P frame (payload None): a fresh 8 MiB payload per chunk cost its pages' faults and
 *   zeroing again each time, a fifth of a reader process's CPU on text-heavy rows.
 *   stop_at_big (optional, without frames_fd): a row longer than max_bytes is not encoded
 *   but dropped, and the chunk ends before it in state 3: a worker reading a table itself
 *   hands the rest to a reader process (worker/sqlite/chunks.py, copy_rows), as it would
 *   otherwise hold libpq's buffer, the payload and SQLite's record of such a row at once.
 *
 * scratch() -> an empty buffer for read_chunk, freed with the object.
 *
 * encode_values(rows, kinds, keep, slow_numeric) -> (payload, rows, checksum, counts)
 *   the same for rows a driver already made into Python tuples (MySQL): see below.
 *
 * send_values(row, kinds, keep, slow_numeric, frames_fd) -> (rows, checksum, size, counts)
 *   encode_values of one row written to frames_fd as read_chunk writes a big row, and
 * first_big(rows, min_bytes) -> which row that is for: see below.
 *
 * key_only(message, key_fields) -> a COPY row message with only the fields key_fields marks
 *   (as read_chunk's), the others NULL: a row's key without a copy of its big values.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <marshal.h>
#include <errno.h>
#include <math.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/uio.h>

#include "marshal2.h"
#include "xxh3.h"

static const double FLOAT_EXACT = 9007199254740992.0;  /* 2^53 */

static int32_t be32(const unsigned char *p) {
    return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
}

static uint64_t be64(const unsigned char *p) {
    return (uint64_t)(uint32_t)be32(p) << 32 | (uint32_t)be32(p + 4);
}

static int put_python(Buffer *b, PyObject *value) {
    if (value == Py_None) return put_type(b, 'N');
    if (PyFloat_Check(value)) return put_double(b, PyFloat_AS_DOUBLE(value));
    if (PyLong_Check(value)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow || (v == -1 && PyErr_Occurred())) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_OverflowError, "numeric beyond int64 from slow path");
            return -2;
        }
        return put_int(b, v);
    }
    PyErr_SetString(PyExc_TypeError, "slow_numeric returned neither None, int nor float");
    return -2;
}

/* A decimal string as sign, significant digits and exponent, so that two texts of the same
 * value compare equal ("1.50" and "1.5", "1e+16" and "10000000000000000"). */
typedef struct {
    int negative;
    char *digits;
    Py_ssize_t count;
    long exponent;  /* value = 0.digits * 10^exponent */
} Decimal;

static int normalize(const char *s, Decimal *out) {
    Py_ssize_t len = (Py_ssize_t)strlen(s), count = 0;
    long before_point = 0, exponent = 0;
    int seen_point = 0;
    out->digits = PyMem_Malloc((size_t)len + 1);
    if (out->digits == NULL) return -1;
    out->negative = *s == '-';
    if (*s == '-' || *s == '+') s++;
    for (; *s; s++) {
        if (*s == '.') seen_point = 1;
        else if (*s >= '0' && *s <= '9') {
            if (count == 0 && *s == '0') {  /* leading zero: moves the point only */
                if (seen_point) before_point--;
                continue;
            }
            out->digits[count++] = *s;
            if (!seen_point) before_point++;
        } else if (*s == 'e' || *s == 'E') {
            exponent = strtol(s + 1, NULL, 10);
            break;
        } else break;
    }
    while (count > 0 && out->digits[count - 1] == '0') count--;
    out->count = count;
    out->exponent = count ? before_point + exponent : 0;
    if (count == 0) out->negative = 0;
    return 0;
}

/* Does `text` hold exactly the decimal that the shortest repr of `d` reads as? (The server
 * flag's test, float8::text::numeric = n, and converters._numeric's, in C.) -1: no memory */
static int same_decimal(const char *text, double d) {
    char *shortest = PyOS_double_to_string(d, 'r', 0, 0, NULL);
    if (shortest == NULL) return -1;
    Decimal a, b;
    int same = -1;
    if (normalize(text, &a) == 0) {
        if (normalize(shortest, &b) == 0) {
            same = a.negative == b.negative && a.count == b.count && a.exponent == b.exponent
                   && memcmp(a.digits, b.digits, (size_t)a.count) == 0;
            PyMem_Free(b.digits);
        }
        PyMem_Free(a.digits);
    }
    PyMem_Free(shortest);
    return same;
}

/* True when `text` has at most 15 significant digits (DBL_DIG) and no exponent, and `d` is
 * a normal double: such a decimal reads back from `d`'s shortest repr exactly, so the
 * repr need not be made (the common case: money, measurements). Zero counts as short. */
static int short_decimal(const char *text, double d) {
    int digits = 0, started = 0;
    for (const char *p = text; *p; p++) {
        if (*p >= '0' && *p <= '9') {
            started |= *p != '0';
            digits += started;
        } else if (*p != '.' && *p != '-' && *p != '+') return 0;  /* an exponent, NaN, ... */
    }
    if (digits == 0) return 1;
    double magnitude = fabs(d);
    return digits <= 15 && magnitude >= 1e-300 && magnitude <= 1e300;
}

/* A plain decimal ("-123.45") of at most 15 significant digits and 22 after the point is
 * m / 10^k with m and 10^k exact doubles, so one IEEE division rounds it correctly (Clinger's
 * fast path): the double PyOS_string_to_double gives, without its x87 control-word switches,
 * which were a fifth of a mixed table's reading CPU. 0 when the text is anything else. */
static int plain_decimal(const char *text, double *out) {
    static const double POW10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
                                   1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
                                   1e20, 1e21, 1e22};
    const char *p = text;
    int negative = *p == '-', digits = 0, fraction = -1, seen = 0;
    uint64_t m = 0;
    if (*p == '-' || *p == '+') p++;
    for (; *p; p++) {
        if (*p >= '0' && *p <= '9') {
            seen = 1;
            if ((m != 0 || *p != '0') && ++digits > 15) return 0;
            m = m * 10 + (uint64_t)(*p - '0');
            fraction += fraction >= 0;
        } else if (*p == '.' && fraction < 0) {
            fraction = 0;
        } else {
            return 0;
        }
    }
    if (!seen || fraction > 22) return 0;
    double d = (double)m / POW10[fraction < 0 ? 0 : fraction];
    *out = negative ? -d : d;
    return 1;
}

/* numeric text stored as SQLite's NUMERIC affinity would: converters._numeric in C. An
 * integral value that fits int64 as INTEGER, anything else as the nearest REAL (an integral
 * REAL as INTEGER), NaN as NULL; *lossy when the value is not kept exactly. float() is C;
 * integral values from 2^53 on go to `slow` (converters._numeric), which is exact.
 * Returns -1 on no memory, -2 with a Python exception set. */
static int put_numeric(Buffer *b, const unsigned char *text, int32_t n, PyObject *slow,
                       int *lossy) {
    char small[64];
    char *s = n < (int32_t)sizeof(small) ? small : PyMem_Malloc((size_t)n + 1);
    if (s == NULL) return -1;
    memcpy(s, text, (size_t)n);
    s[n] = '\0';
    double approx;
    int plain = plain_decimal(s, &approx);  /* then short_decimal holds: exact, no rescan */
    if (!plain) approx = PyOS_string_to_double(s, NULL, NULL);
    int rc = 0, same;
    *lossy = 0;
    if (approx == -1.0 && PyErr_Occurred()) rc = -2;
    else if (isnan(approx)) {
        rc = put_type(b, 'N');
        *lossy = 1;
    } else if (isinf(approx)) {
        rc = put_double(b, approx);
        *lossy = strcmp(s, "Infinity") != 0 && strcmp(s, "-Infinity") != 0;
    } else if (floor(approx) == approx && fabs(approx) >= FLOAT_EXACT) {
        PyObject *pair = PyObject_CallFunction(slow, "s#", s, (Py_ssize_t)n);
        if (pair == NULL || !PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            if (pair != NULL) PyErr_SetString(PyExc_TypeError, "slow numeric: not a pair");
            rc = -2;
        } else {
            rc = put_python(b, PyTuple_GET_ITEM(pair, 0));
            *lossy = PyObject_IsTrue(PyTuple_GET_ITEM(pair, 1)) == 1;
        }
        Py_XDECREF(pair);
    } else {
        rc = floor(approx) == approx ? put_int(b, (long long)approx) : put_double(b, approx);
        if (rc == 0 && !plain && !short_decimal(s, approx)) {
            if ((same = same_decimal(s, approx)) < 0) rc = -1;
            else *lossy = !same;
        }
    }
    if (s != small) PyMem_Free(s);
    return rc;
}

static const char HEX[] = "0123456789abcdef";

/* A uuid's 16 bytes as uuid_out writes them: lowercase, hyphenated 8-4-4-4-12, for less
 * than the server's ::text cast costs. */
static int put_uuid(Buffer *b, const unsigned char *v) {
    char text[36];
    int at = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) text[at++] = '-';
        text[at++] = HEX[v[i] >> 4];
        text[at++] = HEX[v[i] & 15];
    }
    return put_bytes(b, 'u', text, 36);
}

/* Text as PostgreSQL's escape_json quotes it (control characters as \b \f \n \r \t or
 * \u00XX, " and \ escaped, the rest as it is). */
static int put_json_string(Buffer *b, const unsigned char *s, int32_t n) {
    if (grow(b, (size_t)n * 6 + 2) < 0) return -1;
    unsigned char *o = b->buf + b->len;
    *o++ = '"';
    for (int32_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        const char *escape = c == '\b' ? "b" : c == '\f' ? "f" : c == '\n' ? "n" : c == '\r'
            ? "r" : c == '\t' ? "t" : c == '"' ? "\"" : c == '\\' ? "\\" : NULL;
        if (escape != NULL) {
            *o++ = '\\';
            *o++ = (unsigned char)escape[0];
        } else if (c < 0x20) {
            memcpy(o, "\\u00", 4);
            o[4] = (unsigned char)HEX[c >> 4];
            o[5] = (unsigned char)HEX[c & 15];
            o += 6;
        } else {
            *o++ = c;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->buf);
    return 0;
}

static int put_raw(Buffer *b, const char *text, size_t n) {
    if (grow(b, n) < 0) return -1;
    memcpy(b->buf + b->len, text, n);
    b->len += n;
    return 0;
}

/* One dimension of a text array's elements (at *v) as a JSON array, nested for the next
 * dimensions. -1 no memory, -3 malformed. */
static int put_json_dimension(Buffer *b, const unsigned char **v, const unsigned char *end,
                              const int32_t *dims, int ndim, int d) {
    if (put_raw(b, "[", 1) < 0) return -1;
    for (int32_t i = 0; i < dims[d]; i++) {
        if (i > 0 && put_raw(b, ",", 1) < 0) return -1;
        int rc;
        if (d + 1 < ndim) {
            rc = put_json_dimension(b, v, end, dims, ndim, d + 1);
        } else {
            if (end - *v < 4) return -3;
            int32_t n = be32(*v);
            *v += 4;
            if (n > end - *v) return -3;
            rc = n < 0 ? put_raw(b, "null", 4) : put_json_string(b, *v, n);
            if (n > 0) *v += n;
        }
        if (rc < 0) return rc;
    }
    return put_raw(b, "]", 1);
}

/* A text (or varchar) array in binary COPY form as to_json(array)::text writes it, as a
 * str: nested [...] per dimension (bounds ignored), elements as JSON strings, NULL as null,
 * for less than the server's to_json costs. */
static int put_text_array_json(Buffer *b, const unsigned char *v, int32_t n) {
    const unsigned char *end = v + n;
    if (n < 12) return -3;
    int32_t ndim = be32(v), dims[6];
    v += 12;  /* ndim, has-nulls flag, element type */
    if (ndim < 0 || ndim > 6 || end - v < 8 * (Py_ssize_t)ndim) return -3;
    for (int d = 0; d < ndim; d++, v += 8)
        if ((dims[d] = be32(v)) < 0) return -3;
    if (grow(b, 5) < 0) return -1;
    size_t start = b->len;
    b->buf[start] = 'u';
    b->len += 5;
    int rc = ndim == 0 ? put_raw(b, "[]", 2) : put_json_dimension(b, &v, end, dims, ndim, 0);
    if (rc < 0) return rc;
    put_i32(b->buf + start + 1, (int32_t)(b->len - start - 5));
    return v == end ? 0 : -3;
}

/* Proleptic Gregorian date of a day count from 2000-01-01; year 0 is 1 BC (H. Hinnant's
 * civil_from_days). The same as datetime_text.civil. */
static void civil(long long days, long long *year, int *month, int *day) {
    long long z = days + 730425;  /* from 0000-03-01 */
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
    *month = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = yoe + era * 400 + (*month <= 2);
}

static char *two(char *p, int v) {
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

static char *six(char *p, int v) {
    for (int i = 5; i >= 0; i--, v /= 10) p[i] = (char)('0' + v % 10);
    return p + 6;
}

/* A timestamp's binary microseconds as datetime_text.render writes them. `code` is
 * DatetimeFormat.code: bit 0 `T`, bits 1-2 fraction (always, never, nonzero), bit 3 `Z`,
 * bit 4 timestamptz. Digits are written by hand: snprintf was most of the cost. */
static int put_datetime(Buffer *b, int64_t micros, unsigned code, int *lossy) {
    char text[80], *p = text;
    *lossy = 1;
    if (micros == INT64_MAX) return put_bytes(b, 'u', "infinity", 8);
    if (micros == INT64_MIN) return put_bytes(b, 'u', "-infinity", 9);
    const long long per_day = 86400000000LL;
    long long days = micros / per_day, rest = micros % per_day;
    if (rest < 0) { rest += per_day; days--; }
    long long seconds = rest / 1000000, year;
    int fraction = (int)(rest % 1000000), month, day;
    civil(days, &year, &month, &day);
    int in_range = year >= 1 && year <= 9999;
    if (in_range) {
        p = two(two(p, (int)(year / 100)), (int)(year % 100));
    } else {
        p += snprintf(p, 24, "%04lld", year > 0 ? year : 1 - year);
    }
    *p++ = '-';
    p = two(p, month);
    *p++ = '-';
    p = two(p, day);
    *p++ = in_range && (code & 1) ? 'T' : ' ';
    p = two(p, (int)(seconds / 3600));
    *p++ = ':';
    p = two(p, (int)(seconds / 60 % 60));
    *p++ = ':';
    p = two(p, (int)(seconds % 60));
    if (in_range) {
        unsigned mode = code >> 1 & 3;
        if (mode == 0 || (mode == 2 && fraction)) {
            *p++ = '.';
            p = six(p, fraction);
        }
        if (code & 8) *p++ = 'Z';
        *lossy = 0;
    } else {
        if (fraction) {
            *p++ = '.';
            p = six(p, fraction);
            while (p[-1] == '0') p--;
        }
        if (code & 16) { memcpy(p, "+00", 3); p += 3; }
        if (year <= 0) { memcpy(p, " BC", 3); p += 3; }
    }
    return put_bytes(b, 'u', text, (int)(p - text));
}

/* Encode one COPY row, adding to flags[i] a true bool field past `keep` and an inexact N
 * or out-of-range timestamp value. -1 no memory, -2 an exception is set, -3 the message is
 * malformed. */
/* A big text or bytea value of a row sent as it is: its marshal header is in the payload
 * buffer up to `at`, its bytes stay in the libpq message. */
typedef struct {
    size_t at;
    const unsigned char *data;
    int32_t n;
} Segment;

#define SEGMENT_BYTES (1 << 16)  /* values from this long on are left where they are */

static int encode_row_segments(Buffer *b, const unsigned char *p, Py_ssize_t len,
                               const char *kinds, int nkinds, int keep, long long *flags,
                               PyObject *slow, Segment *segments, int *nsegments);

static int encode_row(Buffer *b, const unsigned char *p, Py_ssize_t len, const char *kinds,
                      int nkinds, int keep, long long *flags, PyObject *slow) {
    return encode_row_segments(b, p, len, kinds, nkinds, keep, flags, slow, NULL, NULL);
}

/* encode_row, leaving big text and bytea values out of `b` (their headers in) when given
 * `segments` (room for one per field): they are written from the message itself. */
static int encode_row_segments(Buffer *b, const unsigned char *p, Py_ssize_t len,
                               const char *kinds, int nkinds, int keep, long long *flags,
                               PyObject *slow, Segment *segments, int *nsegments) {
    const unsigned char *end = p + len;
    if (len < 2) return -3;
    int fields = (int16_t)((uint16_t)p[0] << 8 | p[1]);
    p += 2;
    if (fields != nkinds) return -3;
    if (grow(b, 5) < 0) return -1;
    b->buf[b->len] = '(';
    put_i32(b->buf + b->len + 1, keep);
    b->len += 5;
    for (int i = 0; i < fields; i++) {
        if (end - p < 4) return -3;
        int32_t n = be32(p);
        p += 4;
        if (n > end - p) return -3;
        const unsigned char *v = p;
        if (n > 0) p += n;
        unsigned char kind = (unsigned char)kinds[i];
        if (i >= keep) {
            if (kind == 'B' && n == 1 && v[0]) flags[i]++;
            continue;
        }
        int rc = 0;
        if (segments != NULL && (kind == 's' || kind == 'b') && n >= SEGMENT_BYTES) {
            if (grow(b, 5) < 0) return -1;
            b->buf[b->len] = kind == 's' ? 'u' : 's';
            put_i32(b->buf + b->len + 1, n);
            b->len += 5;
            segments[*nsegments] = (Segment){b->len, v, n};
            (*nsegments)++;
            continue;
        }
        if (n < 0) rc = put_type(b, 'N');
        else if (kind == 'q' && n == 8) rc = put_int(b, (long long)be64(v));
        else if (kind == 'd' && n == 8) {
            uint64_t bits = be64(v);
            double d;
            memcpy(&d, &bits, 8);
            rc = put_double(b, d);
        } else if (kind == 's') rc = put_bytes(b, 'u', v, n);
        else if (kind == 'b') rc = put_bytes(b, 's', v, n);
        else if (kind == 'B' && n == 1) rc = put_type(b, v[0] ? 'T' : 'F');
        else if (kind >= 0x80 && n == 8) {
            int lossy = 0;
            rc = put_datetime(b, (int64_t)be64(v), kind, &lossy);
            if (lossy) flags[i]++;
        } else if (kind == 'n' || kind == 'N') {
            int lossy = 0;
            rc = put_numeric(b, v, n, slow, &lossy);
            if (kind == 'N' && lossy) flags[i]++;
        } else if (kind == 'U' && n == 16) rc = put_uuid(b, v);
        else if (kind == 'A') rc = put_text_array_json(b, v, n);
        else return -3;
        if (rc < 0) return rc;
    }
    return p == end ? 0 : -3;
}

/* The per-field counts as a Python list of ints, or NULL with an exception set. */
static PyObject *counts_list(const long long *flags, Py_ssize_t n) {
    PyObject *counts = PyList_New(n);
    if (counts == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *count = PyLong_FromLongLong(flags[i]);
        if (count == NULL) { Py_DECREF(counts); return NULL; }
        PyList_SET_ITEM(counts, i, count);
    }
    return counts;
}

static PyObject *encode(PyObject *self, PyObject *args) {
    PyObject *messages, *slow;
    const char *kinds;
    Py_ssize_t nkinds;
    int keep;
    if (!PyArg_ParseTuple(args, "O!y#iO", &PyList_Type, &messages, &kinds, &nkinds, &keep,
                          &slow))
        return NULL;
    if (keep < 0 || keep > nkinds) return PyErr_Format(PyExc_ValueError, "bad keep %d", keep);
    long long *flags = PyMem_Calloc((size_t)nkinds + 1, sizeof(long long));
    Buffer b = {NULL, 0, 0};
    PyObject *out = PyList_New(PyList_GET_SIZE(messages));
    PyObject *counts = NULL;
    if (flags == NULL || out == NULL) { PyErr_NoMemory(); goto fail; }
    for (Py_ssize_t r = 0; r < PyList_GET_SIZE(messages); r++) {
        Py_buffer view;
        if (PyObject_GetBuffer(PyList_GET_ITEM(messages, r), &view, PyBUF_SIMPLE) < 0) goto fail;
        b.len = 0;
        int rc = encode_row(&b, view.buf, view.len, kinds, (int)nkinds, keep, flags, slow);
        PyBuffer_Release(&view);
        if (rc == -1) { PyErr_NoMemory(); goto fail; }
        if (rc == -3) {
            PyErr_Format(PyExc_ValueError, "COPY row %zd does not match the expected %zd fields "
                         "of types %s", r, nkinds, kinds);
            goto fail;
        }
        if (rc < 0) goto fail;
        PyObject *row = PyBytes_FromStringAndSize((const char *)b.buf, (Py_ssize_t)b.len);
        if (row == NULL) goto fail;
        PyList_SET_ITEM(out, r, row);
    }
    counts = counts_list(flags, nkinds);
    if (counts == NULL) goto fail;
    PyMem_Free(flags);
    PyMem_RawFree(b.buf);
    PyObject *result = PyTuple_Pack(2, out, counts);
    Py_DECREF(out);
    Py_DECREF(counts);
    return result;
fail:
    PyMem_Free(flags);
    PyMem_RawFree(b.buf);
    Py_XDECREF(out);
    Py_XDECREF(counts);
    return NULL;
}

/* One Python value as marshal.dumps writes it, in C for the common types; anything else
 * (a big int, a bytearray, a str with lone surrogates) through marshal itself. */
static int put_value(Buffer *b, PyObject *value) {
    if (value == Py_None) return put_type(b, 'N');
    if (value == Py_True || value == Py_False) return put_type(b, value == Py_True ? 'T' : 'F');
    if (PyLong_CheckExact(value)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (!overflow && !(v == -1 && PyErr_Occurred())) return put_int(b, v);
        PyErr_Clear();
    } else if (PyFloat_CheckExact(value)) {
        return put_double(b, PyFloat_AS_DOUBLE(value));
    } else if (PyBytes_CheckExact(value)) {
        return put_bytes(b, 's', PyBytes_AS_STRING(value), (int)PyBytes_GET_SIZE(value));
    } else if (PyUnicode_CheckExact(value)) {
        Py_ssize_t n;
        const char *text = PyUnicode_AsUTF8AndSize(value, &n);
        if (text != NULL) return put_bytes(b, 'u', text, (int)n);
        PyErr_Clear();
    }
    PyObject *encoded = PyMarshal_WriteObjectToString(value, 2);
    if (encoded == NULL) return -2;
    int rc = grow(b, (size_t)PyBytes_GET_SIZE(encoded));
    if (rc == 0) {
        memcpy(b->buf + b->len, PyBytes_AS_STRING(encoded), (size_t)PyBytes_GET_SIZE(encoded));
        b->len += (size_t)PyBytes_GET_SIZE(encoded);
    }
    Py_DECREF(encoded);
    return rc;
}

/* A big str or bytes value left out of `b` as a segment (its marshal header in `b`, its
 * bytes where its object holds them: a str's UTF-8, its own storage when ASCII): 1 when it
 * was, 0 when it stays in `b` (small, another type, or a str without UTF-8). */
static int segment_value(Buffer *b, PyObject *value, Segment *segments, int *nsegments) {
    const char *data = NULL;
    Py_ssize_t n = 0;
    char type = 's';
    if (PyBytes_CheckExact(value)) {
        data = PyBytes_AS_STRING(value);
        n = PyBytes_GET_SIZE(value);
    } else if (PyUnicode_CheckExact(value) && PyUnicode_GET_LENGTH(value) >= SEGMENT_BYTES / 4) {
        type = 'u';
        if ((data = PyUnicode_AsUTF8AndSize(value, &n)) == NULL) PyErr_Clear();
    }
    if (data == NULL || n < SEGMENT_BYTES || n > INT32_MAX) return 0;
    if (grow(b, 5) < 0) return -1;
    b->buf[b->len] = type;
    put_i32(b->buf + b->len + 1, (int32_t)n);
    b->len += 5;
    segments[*nsegments] = (Segment){b->len, (const unsigned char *)data, (int32_t)n};
    (*nsegments)++;
    return 1;
}

/* 1 when `value` is a str `YYYY-MM-DD...` whose date is no calendar day (a zero date, a
 * zero month or day, a day past its month's end): mysql_converters.off_calendar_null's
 * test, the year 0000 not a leap year as in MySQL and MariaDB. */
static int off_calendar(PyObject *value) {
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    static const int at[8] = {0, 1, 2, 3, 5, 6, 8, 9};
    Py_ssize_t n;
    const char *text = PyUnicode_AsUTF8AndSize(value, &n);
    int digit[8];
    if (text == NULL) { PyErr_Clear(); return 0; }
    if (n < 10) return 0;
    for (int i = 0; i < 8; i++) {
        if (text[at[i]] < '0' || text[at[i]] > '9') return 0;
        digit[i] = text[at[i]] - '0';
    }
    int year = digit[0] * 1000 + digit[1] * 100 + digit[2] * 10 + digit[3];
    int month = digit[4] * 10 + digit[5], day = digit[6] * 10 + digit[7];
    if (month == 0 || day == 0 || month > 12) return 1;
    int leap = year % 4 == 0 && (year % 100 != 0 || (year % 400 == 0 && year != 0));
    return day > (month == 2 && leap ? 29 : days[month - 1]);
}

/* One row tuple into `b`; given `segments` (room for one per field), its big str and bytes
 * values are left out as segments (segment_value). */
static int encode_tuple(Buffer *b, PyObject *row, const char *kinds, int nkinds, int keep,
                        long long *flags, PyObject *slow, Segment *segments, int *nsegments) {
    if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != nkinds) return -3;
    if (grow(b, 5) < 0) return -1;
    b->buf[b->len] = '(';
    put_i32(b->buf + b->len + 1, keep);
    b->len += 5;
    for (int i = 0; i < nkinds; i++) {
        PyObject *value = PyTuple_GET_ITEM(row, i);
        char kind = kinds[i];
        if (i >= keep) {
            if (kind == 'B' && value != Py_None && PyObject_IsTrue(value) == 1) flags[i]++;
            continue;
        }
        int rc, lossy = 0;
        if ((kind == 'n' || kind == 'N') && PyUnicode_Check(value)) {
            Py_ssize_t n;
            const char *text = PyUnicode_AsUTF8AndSize(value, &n);
            rc = text == NULL ? -2 : put_numeric(b, (const unsigned char *)text, (int32_t)n,
                                                 slow, &lossy);
            if (kind == 'N' && lossy) flags[i]++;
        } else if (kind == 'Z' && PyFloat_Check(value) && PyFloat_AS_DOUBLE(value) == 0.0 &&
                   signbit(PyFloat_AS_DOUBLE(value))) {
            rc = put_double(b, 0.0);  /* mysql_converters.negative_zero, counted */
            flags[i]++;
        } else if (kind == 'D' && PyUnicode_Check(value) && off_calendar(value)) {
            rc = put_type(b, 'N');  /* mysql_converters.off_calendar_null, counted */
            flags[i]++;
        } else if ((kind == 'n' || kind == 'N') && value != Py_None) {
            PyErr_Format(PyExc_TypeError, "numeric field %d is not text", i);
            rc = -2;
        } else if (segments != NULL && (rc = segment_value(b, value, segments, nsegments))) {
            if (rc > 0) rc = 0;
        } else rc = put_value(b, value);
        if (rc < 0) return rc;
    }
    return 0;
}

/* encode_values(rows, kinds, keep, slow_numeric) -> (payload, rows, checksum, counts):
 * rows a driver already made into Python tuples (MySQL), as marshal.dumps(list of rows, 2),
 * each row as marshal.dumps(row, 2) writes it. kinds: one byte per field: n and N numeric
 * text (as in encode), Z a float whose -0.0 becomes 0.0, counted
 * (mysql_converters.negative_zero), D a date's text that becomes None when its date is no
 * calendar day, counted (off_calendar_null), B a flag past `keep`, anything else as it is
 * (None, int, float, str, bytes). The checksum is read_chunk's. The payload is written
 * straight into its bytes object, as read_chunk's: a row of big values is not copied
 * again to become one. */
static PyObject *encode_values(PyObject *self, PyObject *args) {
    PyObject *rows, *slow;
    const char *kinds;
    Py_ssize_t nkinds;
    int keep;
    if (!PyArg_ParseTuple(args, "O!y#iO", &PyList_Type, &rows, &kinds, &nkinds, &keep, &slow))
        return NULL;
    if (keep < 0 || keep > nkinds) return PyErr_Format(PyExc_ValueError, "bad keep %d", keep);
    long long *flags = PyMem_Calloc((size_t)nkinds + 1, sizeof(long long));
    Buffer b = {NULL, 5, 256, PyBytes_FromStringAndSize(NULL, 256)};  /* 5: the list header */
    uint64_t sum = 0;
    if (flags == NULL || b.bytes == NULL) { PyErr_NoMemory(); goto fail; }
    b.buf = (unsigned char *)PyBytes_AS_STRING(b.bytes);
    for (Py_ssize_t r = 0; r < PyList_GET_SIZE(rows); r++) {
        size_t start = b.len;
        int rc = encode_tuple(&b, PyList_GET_ITEM(rows, r), kinds, (int)nkinds, keep, flags,
                              slow, NULL, NULL);
        if (rc == -1) PyErr_NoMemory();
        if (rc == -3)
            PyErr_Format(PyExc_ValueError, "row %zd is not a tuple of %zd values", r, nkinds);
        if (rc < 0) goto fail;
        sum += ls_xxh3_64(b.buf + start, b.len - start);
    }
    b.buf[0] = '[';
    put_i32(b.buf + 1, (int32_t)PyList_GET_SIZE(rows));
    if (_PyBytes_Resize(&b.bytes, (Py_ssize_t)b.len) < 0) goto fail;  /* shrinks in place */
    PyObject *counts = counts_list(flags, nkinds);
    if (counts == NULL) goto fail;
    PyObject *result = Py_BuildValue("(NnKN)", b.bytes, PyList_GET_SIZE(rows),
                                     (unsigned long long)sum, counts);
    b.bytes = NULL;  /* the result owns it (or it was freed with a failed result) */
    PyMem_Free(flags);
    return result;
fail:
    PyMem_Free(flags);
    Py_XDECREF(b.bytes);
    return NULL;
}

typedef int (*GetCopyData)(void *conn, char **buffer, int async);
typedef void (*FreeMem)(void *ptr);
typedef int (*ConsumeInput)(void *conn);
typedef int (*Socket)(const void *conn);

typedef struct {
    void *conn;
    GetCopyData get;
    FreeMem free;
    ConsumeInput consume;
    Socket socket;
} Libpq;

enum { MORE = 0, TRAILER = 1, ENDED = 2, BIG = 3 };
static const unsigned char SIGNATURE[11] = "PGCOPY\n\377\r\n";  /* and its NUL */
#define HEADER_BYTES 19  /* the signature, flags and header extension length (both zero) */
/* A row message this long is freed as soon as it is encoded (its key copied out first)
 * rather than held until the next row arrives: two big rows are never in memory at once. */
#define BIG_ROW_BYTES (1 << 20)

/* Waits for the socket without the GIL, a second at a time so signals get handled. */
static int wait_readable(Libpq *pq) {
    int rc;
    struct pollfd fd = {pq->socket(pq->conn), POLLIN, 0};
    Py_BEGIN_ALLOW_THREADS
    rc = poll(&fd, 1, 1000);
    Py_END_ALLOW_THREADS
    if (rc < 0 && errno != EINTR) { PyErr_SetFromErrno(PyExc_OSError); return -1; }
    return PyErr_CheckSignals();
}

/* The next COPY data message (> 0, its length), the end (-1, -2 as PQgetCopyData), or an
 * exception raised (-3). */
static int next_message(Libpq *pq, char **message) {
    for (;;) {
        int n = pq->get(pq->conn, message, 1);
        if (n != 0) return n;
        if (wait_readable(pq) < 0) return -3;
        if (!pq->consume(pq->conn)) return -2;
    }
}

/* A copy of a COPY row message with only the fields `wanted` marks (one byte per field,
 * nonzero: kept), the others NULL: what the caller needs of a chunk's last row is its key,
 * and a copy of a row of big values would cost the row again. NULL with an exception set. */
static PyObject *key_message(const unsigned char *p, Py_ssize_t len, const char *wanted,
                             Py_ssize_t nwanted) {
    const unsigned char *end = p + len;
    if (len < 2) return PyErr_Format(PyExc_ValueError, "COPY row message of %zd bytes", len);
    int fields = (int16_t)((uint16_t)p[0] << 8 | p[1]);
    Py_ssize_t size = 2;
    const unsigned char *q = p + 2;
    for (int i = 0; i < fields; i++) {  /* the size first: kept fields whole, others 4 bytes */
        if (end - q < 4) return PyErr_Format(PyExc_ValueError, "truncated COPY row message");
        int32_t n = be32(q);
        q += 4;
        if (n > end - q) return PyErr_Format(PyExc_ValueError, "truncated COPY row message");
        int kept = i < nwanted && wanted[i];
        size += 4 + (kept && n > 0 ? n : 0);
        if (n > 0) q += n;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL) return NULL;
    unsigned char *w = (unsigned char *)PyBytes_AS_STRING(out);
    memcpy(w, p, 2);
    w += 2;
    q = p + 2;
    for (int i = 0; i < fields; i++) {
        int32_t n = be32(q);
        int kept = i < nwanted && wanted[i];
        if (kept && n > 0) {
            memcpy(w, q, 4 + (size_t)n);
            w += 4 + n;
        } else {
            memcpy(w, kept ? q : (const unsigned char *)"\xff\xff\xff\xff", 4);
            w += 4;
        }
        q += 4 + (n > 0 ? n : 0);
    }
    return out;
}

/* xxh3-64 of the row at b[start:] with its segments' bytes where their headers end. */
static uint64_t segmented_hash(const Buffer *b, size_t start, const Segment *segments,
                               int nsegments) {
    ls_xxh3_state st;
    ls_xxh3_reset(&st);
    size_t from = start;
    for (int i = 0; i < nsegments; i++) {
        ls_xxh3_update(&st, b->buf + from, segments[i].at - from);
        ls_xxh3_update(&st, segments[i].data, (size_t)segments[i].n);
        from = segments[i].at;
    }
    ls_xxh3_update(&st, b->buf + from, b->len - from);
    return ls_xxh3_digest(&st);
}

/* Write the chunk in `b` with its segments to fd as the reader's P frame (reader_process:
 * a kind byte and the length, big-endian), without the GIL. -1 with an exception set. */
static int send_frame(int fd, const Buffer *b, const Segment *segments, int nsegments) {
    struct iovec parts[2 * 64 + 2];
    unsigned char header[9] = {'P'};
    uint64_t total = b->len;
    for (int i = 0; i < nsegments; i++) total += (uint64_t)segments[i].n;
    for (int i = 0; i < 8; i++) header[1 + i] = (unsigned char)(total >> (56 - 8 * i));
    int count = 0;
    size_t from = 0;
    parts[count++] = (struct iovec){header, sizeof header};
    for (int i = 0; i < nsegments; i++) {
        parts[count++] = (struct iovec){b->buf + from, segments[i].at - from};
        parts[count++] = (struct iovec){(void *)segments[i].data, (size_t)segments[i].n};
        from = segments[i].at;
    }
    parts[count++] = (struct iovec){b->buf + from, b->len - from};
    struct iovec *at = parts;
    while (count > 0) {
        ssize_t n;
        Py_BEGIN_ALLOW_THREADS
        n = writev(fd, at, count > IOV_MAX ? IOV_MAX : count);
        Py_END_ALLOW_THREADS
        if (n < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0) return -1;
                continue;
            }
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        while (count > 0 && (size_t)n >= at->iov_len) {  /* partial writes: go on from there */
            n -= (ssize_t)at->iov_len;
            at++;
            count--;
        }
        if (count > 0) {
            at->iov_base = (unsigned char *)at->iov_base + n;
            at->iov_len -= (size_t)n;
        }
    }
    return 0;
}

#define SCRATCH "liteshift._pgcopy.scratch"

typedef struct {
    unsigned char *buf;
    size_t cap;
} Scratch;

static void scratch_free(PyObject *capsule) {
    Scratch *s = PyCapsule_GetPointer(capsule, SCRATCH);
    if (s == NULL) return;
    PyMem_RawFree(s->buf);
    PyMem_RawFree(s);
}

static PyObject *scratch(PyObject *self, PyObject *unused) {
    Scratch *s = PyMem_RawCalloc(1, sizeof(Scratch));
    if (s == NULL) return PyErr_NoMemory();
    PyObject *capsule = PyCapsule_New(s, SCRATCH, scratch_free);
    if (capsule == NULL) PyMem_RawFree(s);
    return capsule;
}

static PyObject *read_chunk(PyObject *self, PyObject *args) {
    unsigned long long conn, get, free_, consume, socket;
    const char *kinds, *wanted;
    Py_ssize_t nkinds, nwanted, max_rows, max_bytes, size_hint;
    int keep, first, frames_fd = -1, stop_at_big = 0;
    PyObject *slow, *scratch_arg = Py_None;
    if (!PyArg_ParseTuple(args, "K(KKKK)y#iOnnpny#|iOp", &conn, &get, &free_, &consume,
                          &socket, &kinds, &nkinds, &keep, &slow, &max_rows, &max_bytes, &first,
                          &size_hint, &wanted, &nwanted, &frames_fd, &scratch_arg,
                          &stop_at_big))
        return NULL;
    if (keep < 0 || keep > nkinds) return PyErr_Format(PyExc_ValueError, "bad keep %d", keep);
    Scratch *kept = NULL;  /* the caller's buffer: every chunk goes to frames_fd from it */
    if (scratch_arg != Py_None) {
        kept = PyCapsule_GetPointer(scratch_arg, SCRATCH);
        if (kept == NULL) return NULL;
        if (frames_fd < 0) return PyErr_Format(PyExc_ValueError, "scratch needs frames_fd");
    }
    /* send_frame's room: wider rows of big values are copied whole into the payload */
    int big_fd = nkinds > 64 ? -1 : frames_fd;
    Libpq pq = {(void *)(uintptr_t)conn, (GetCopyData)(uintptr_t)get, (FreeMem)(uintptr_t)free_,
                (ConsumeInput)(uintptr_t)consume, (Socket)(uintptr_t)socket};
    long long *flags = PyMem_Calloc((size_t)nkinds + 1, sizeof(long long));
    size_hint = size_hint < 256 ? 256 : size_hint;
    Buffer b = {NULL, 0, 0, NULL};
    if (kept != NULL) {  /* grown in place (realloc), never given away */
        b = (Buffer){kept->buf, 0, kept->cap, NULL};
        if (grow(&b, (size_t)size_hint) < 0) b.buf = NULL;
        else kept->buf = b.buf, kept->cap = b.cap;
    } else {
        b = (Buffer){NULL, 0, (size_t)size_hint, PyBytes_FromStringAndSize(NULL, size_hint)};
        if (b.bytes != NULL) b.buf = (unsigned char *)PyBytes_AS_STRING(b.bytes);
    }
    char *held = NULL;  /* the last row's message, kept for its key until the next arrives */
    PyObject *big_key = NULL;  /* or, for a big row, its key fields: the row is freed at once */
    const unsigned char *last = NULL;
    Py_ssize_t last_len = 0, rows = 0;
    uint64_t sum = 0;
    int state = MORE, sent = 0;
    Segment segments[64];
    if (flags == NULL || b.buf == NULL) { PyErr_NoMemory(); goto fail; }
    b.len = 5;  /* the list's header, written at the end */
    while (rows < max_rows && (Py_ssize_t)(b.len - 5) < max_bytes) {
        char *message = NULL;
        int n = next_message(&pq, &message);
        if (n == -3) goto fail;
        if (n < 0) { state = ENDED; break; }
        const unsigned char *p = (const unsigned char *)message;
        Py_ssize_t len = n;
        if (first) {
            first = 0;
            if (len < HEADER_BYTES || memcmp(p, SIGNATURE, sizeof SIGNATURE) != 0) {
                pq.free(message);
                PyErr_SetString(PyExc_ValueError,
                                "binary COPY did not start with PostgreSQL's signature");
                goto fail;
            }
            p += HEADER_BYTES;
            len -= HEADER_BYTES;
        }
        if (len == 2 && p[0] == 0xff && p[1] == 0xff) { pq.free(message); state = TRAILER; break; }
        if (len == 0) { pq.free(message); continue; }
        if (stop_at_big && frames_fd < 0 && len >= max_bytes) {  /* read again elsewhere */
            pq.free(message);
            state = BIG;
            break;
        }
        size_t start = b.len;
        int nsegments = 0;
        int rc = encode_row_segments(&b, p, len, kinds, (int)nkinds, keep, flags, slow,
                                     big_fd >= 0 && len >= max_bytes ? segments : NULL,
                                     &nsegments);
        if (kept != NULL) kept->buf = b.buf, kept->cap = b.cap;  /* grow() may move it */
        if (rc < 0) {
            pq.free(message);
            if (rc == -1) PyErr_NoMemory();
            if (rc == -3)
                PyErr_Format(PyExc_ValueError, "COPY row %zd does not match the expected %zd "
                             "fields of types %s", rows, nkinds, kinds);
            goto fail;
        }
        if (nsegments > 0) {
            /* A row longer than a chunk ends its chunk, sent from the message itself: it
             * is never copied whole into the payload. */
            sum += segmented_hash(&b, start, segments, nsegments);
            rows++;
            b.buf[0] = '[';
            put_i32(b.buf + 1, (int32_t)rows);
            if (held != NULL) pq.free(held);
            held = NULL;
            Py_CLEAR(big_key);
            big_key = key_message(p, len, wanted, nwanted);
            rc = big_key == NULL ? -1 : send_frame(big_fd, &b, segments, nsegments);
            for (int i = 0; i < nsegments; i++) b.len += (size_t)segments[i].n;  /* the size */
            pq.free(message);
            if (rc < 0) goto fail;
            sent = 1;
            break;
        }
        sum += ls_xxh3_64(b.buf + start, b.len - start);  /* modulo 2^64, as fold() */
        rows++;
        if (held != NULL) pq.free(held);
        held = NULL;
        Py_CLEAR(big_key);
        if (len >= BIG_ROW_BYTES) {  /* not held while the next row is read */
            big_key = key_message(p, len, wanted, nwanted);
            pq.free(message);
            if (big_key == NULL) goto fail;
            continue;
        }
        held = message;
        last = p;
        last_len = len;
    }
    size_t size = b.len - 5;
    if (!sent && kept != NULL) {
        b.buf[0] = '[';
        put_i32(b.buf + 1, (int32_t)rows);
        if (rows > 0 && send_frame(frames_fd, &b, NULL, 0) < 0) goto fail;
        sent = 1;
    }
    if (sent) {
        Py_CLEAR(b.bytes);
        b.bytes = Py_NewRef(Py_None);
    } else {
        b.buf[0] = '[';
        put_i32(b.buf + 1, (int32_t)rows);
        if (_PyBytes_Resize(&b.bytes, (Py_ssize_t)b.len) < 0) goto fail;  /* shrinks in place */
    }
    PyObject *counts = counts_list(flags, nkinds);
    if (counts == NULL) goto fail;
    PyObject *key = big_key != NULL ? big_key
        : held != NULL ? key_message(last, last_len, wanted, nwanted) : Py_NewRef(Py_None);
    big_key = NULL;
    if (key == NULL) { Py_DECREF(counts); goto fail; }
    PyObject *result = Py_BuildValue(
        "(NnKnNNi)", b.bytes, rows, (unsigned long long)sum, (Py_ssize_t)size, key,
        counts, state);
    b.bytes = NULL;  /* the result owns it (or it was freed with a failed result) */
    if (held != NULL) pq.free(held);
    PyMem_Free(flags);
    return result;
fail:
    Py_XDECREF(big_key);
    if (held != NULL) pq.free(held);
    PyMem_Free(flags);
    Py_XDECREF(b.bytes);
    return NULL;
}

static PyObject *key_only(PyObject *self, PyObject *args) {
    Py_buffer message;
    const char *wanted;
    Py_ssize_t nwanted;
    if (!PyArg_ParseTuple(args, "y*y#", &message, &wanted, &nwanted)) return NULL;
    PyObject *out = key_message(message.buf, message.len, wanted, nwanted);
    PyBuffer_Release(&message);
    return out;
}

/* send_values(row, kinds, keep, slow_numeric, frames_fd) -> (rows, checksum, size, counts)
 * encode_values' chunk of the one row `row`, written to frames_fd as reader_process's P
 * frame with its big str and bytes values straight from their objects (as read_chunk sends
 * a row from libpq's message): a reader never holds the row a second time as a payload.
 * The checksum, size and counts are those encode_values gives for [row]. */
static PyObject *send_values(PyObject *self, PyObject *args) {
    PyObject *row, *slow;
    const char *kinds;
    Py_ssize_t nkinds;
    int keep, fd;
    if (!PyArg_ParseTuple(args, "Oy#iOi", &row, &kinds, &nkinds, &keep, &slow, &fd))
        return NULL;
    if (keep < 0 || keep > nkinds) return PyErr_Format(PyExc_ValueError, "bad keep %d", keep);
    if (nkinds > 64) return PyErr_Format(PyExc_ValueError, "rows of %zd fields are not sent "
                                         "as frames (64 at most)", nkinds);
    long long *flags = PyMem_Calloc((size_t)nkinds + 1, sizeof(long long));
    Buffer b = {NULL, 0, 0, NULL};
    Segment segments[64];
    int nsegments = 0;
    PyObject *result = NULL;
    if (flags == NULL || grow(&b, 5) < 0) { PyErr_NoMemory(); goto out; }
    b.len = 5;  /* the list's header */
    int rc = encode_tuple(&b, row, kinds, (int)nkinds, keep, flags, slow, segments, &nsegments);
    if (rc == -1) PyErr_NoMemory();
    if (rc == -3) PyErr_Format(PyExc_ValueError, "the row is not a tuple of %zd values", nkinds);
    if (rc < 0) goto out;
    uint64_t sum = segmented_hash(&b, 5, segments, nsegments);
    b.buf[0] = '[';
    put_i32(b.buf + 1, 1);
    if (send_frame(fd, &b, segments, nsegments) < 0) goto out;
    size_t size = b.len - 5;
    for (int i = 0; i < nsegments; i++) size += (size_t)segments[i].n;
    PyObject *counts = counts_list(flags, nkinds);
    if (counts != NULL)
        result = Py_BuildValue("(nKnN)", (Py_ssize_t)1, (unsigned long long)sum,
                               (Py_ssize_t)size, counts);
out:
    PyMem_Free(flags);
    PyMem_RawFree(b.buf);
    return result;
}

/* first_big(rows, min_bytes) -> the index of the first row (a tuple of Python values)
 * whose str and bytes values hold min_bytes or more (a str counted by its characters: its
 * UTF-8 is at least as long), or -1: which row send_values should send, at a few
 * nanoseconds a row. */
static PyObject *first_big(PyObject *self, PyObject *args) {
    PyObject *rows;
    Py_ssize_t min_bytes;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &rows, &min_bytes)) return NULL;
    for (Py_ssize_t r = 0; r < PyList_GET_SIZE(rows); r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        if (!PyTuple_Check(row)) continue;
        Py_ssize_t total = 0;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(row); i++) {
            PyObject *value = PyTuple_GET_ITEM(row, i);
            if (PyBytes_CheckExact(value)) total += PyBytes_GET_SIZE(value);
            else if (PyUnicode_CheckExact(value)) total += PyUnicode_GET_LENGTH(value);
        }
        if (total >= min_bytes) return PyLong_FromSsize_t(r);
    }
    return PyLong_FromLong(-1);
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_VARARGS, "COPY binary rows to marshal bytes, and flag counts."},
    {"key_only", key_only, METH_VARARGS,
     "A COPY row message with only the marked fields, the others NULL."},
    {"encode_values", encode_values, METH_VARARGS,
     "Rows of Python values to concatenated marshal bytes, checksum and counts."},
    {"read_chunk", read_chunk, METH_VARARGS,
     "The next rows of a COPY in progress, read from libpq and encoded."},
    {"scratch", scratch, METH_NOARGS, "An empty buffer for read_chunk to build chunks in."},
    {"first_big", first_big, METH_VARARGS,
     "The index of the first row whose str and bytes values are that long, or -1."},
    {"send_values", send_values, METH_VARARGS,
     "One row of Python values written as a frame, its big values from their objects."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pgcopy", NULL, -1, methods};

PyMODINIT_FUNC PyInit__pgcopy(void) {
#if !PY_LITTLE_ENDIAN
    PyErr_SetString(PyExc_ImportError, "_pgcopy writes marshal's floats as little-endian");
    return NULL;
#endif
    return PyModule_Create(&module);
}
