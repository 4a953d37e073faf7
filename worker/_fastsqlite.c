/* The hot loop of a chunk commit, in C: insert rows given as marshal (format 2) bytes, and
 * checksum the rows read back over the marshal bytes Python would make of them, without a
 * Python object per value.
 *
 * Why: sqlite3's executemany spends most of its time turning Python objects into SQLite
 * values (5.5 of 9 s for 1M rows of our mixed table, SQLite's own insert being 3.4 s), and
 * the chunk read-back spends most of its time building tuples only to marshal them again.
 * The rows already travel as marshal bytes (the checksum is computed over them), so this
 * module binds straight from those bytes and encodes straight from SQLite's values.
 *
 * It works on the connection of Python's own sqlite3 module (the transaction, the
 * checkpoint and the token check stay there). Python 3.11 has no API for the sqlite3 handle,
 * so `handle()` reads it from the object. worker/native.py checks that this module calls the
 * very library _sqlite3 uses (libversion_address), `check()` that the handle names the file
 * Python opened, and worker/fastsqlite.py uses plain Python when either fails.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sqlite3.h>
#include <string.h>

#include "marshal2.h"
#define XXH_INLINE_ALL
#include <xxhash.h>

typedef struct {  /* the head of CPython 3.11-3.13's pysqlite_Connection */
    PyObject_HEAD
    sqlite3 *db;
} ConnectionHead;

static PyObject *IntegrityError, *OperationalError, *ProgrammingError;

static sqlite3 *handle(PyObject *conn) {
    sqlite3 *db = ((ConnectionHead *)conn)->db;
    if (db == NULL) {
        PyErr_SetString(OperationalError, "the SQLite connection is closed");
    }
    return db;
}

static PyObject *raise_sqlite(sqlite3 *db, int rc) {
    int primary = rc & 0xff;
    PyObject *kind = (primary == SQLITE_CONSTRAINT || primary == SQLITE_MISMATCH)
        ? IntegrityError : OperationalError;
    PyErr_SetString(kind, sqlite3_errmsg(db));
    return NULL;
}

/* ---- reading marshal format 2 ---- */

/* Runs with the GIL released: errors are recorded here and raised once it is held again. */
typedef struct {
    const unsigned char *at, *end;
    PyObject *error_type;
    const char *error;
} Reader;

static int fail(Reader *r, PyObject *type, const char *error) {
    r->error_type = type;
    r->error = error;
    return -1;
}

static int take(Reader *r, Py_ssize_t n, const unsigned char **out) {
    if (n < 0 || r->end - r->at < n) return fail(r, PyExc_ValueError, "truncated rows payload");
    *out = r->at;
    r->at += n;
    return 0;
}

static int take_i32(Reader *r, int32_t *out) {
    const unsigned char *p;
    if (take(r, 4, &p) < 0) return -1;
    *out = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
    return 0;
}

static const char TOO_BIG[] = "Python int too large to convert to SQLite INTEGER";

/* marshal's long: a signed count of 15-bit digits, least significant first */
static int take_long(Reader *r, sqlite3_int64 *out) {
    int32_t n;
    const unsigned char *p;
    if (take_i32(r, &n) < 0) return -1;
    int negative = n < 0;
    int32_t digits = negative ? -n : n;
    if (digits > 5) return fail(r, PyExc_OverflowError, TOO_BIG);
    if (take(r, (Py_ssize_t)digits * 2, &p) < 0) return -1;
    unsigned long long magnitude = 0;
    for (int32_t i = digits - 1; i >= 0; i--) {
        unsigned digit = (unsigned)p[2 * i] | (unsigned)p[2 * i + 1] << 8;
        magnitude = magnitude << 15 | digit;  /* 5 digits are 75 bits: checked below */
        if (i > 0 && magnitude >> 49) return fail(r, PyExc_OverflowError, TOO_BIG);
    }
    if ((!negative && magnitude > (unsigned long long)INT64_MAX) ||
        (negative && magnitude > (unsigned long long)INT64_MAX + 1))
        return fail(r, PyExc_OverflowError, TOO_BIG);
    *out = negative ? (sqlite3_int64)(0 - magnitude) : (sqlite3_int64)magnitude;
    return 0;
}

/* Bind the next marshalled value to parameter `index`; SQLite's code goes to *rc. */
static int bind_value(Reader *r, sqlite3_stmt *stmt, int index, int *rc) {
    const unsigned char *p;
    int32_t n;
    sqlite3_int64 big;
    double d;
    if (take(r, 1, &p) < 0) return -1;
    switch (*p & 0x7f) {  /* 0x80 is marshal's reference flag, never set in format 2 */
    case 'N': *rc = sqlite3_bind_null(stmt, index); return 0;
    case 'T': *rc = sqlite3_bind_int64(stmt, index, 1); return 0;
    case 'F': *rc = sqlite3_bind_int64(stmt, index, 0); return 0;
    case 'i':
        if (take_i32(r, &n) < 0) return -1;
        *rc = sqlite3_bind_int64(stmt, index, n);
        return 0;
    case 'l':
        if (take_long(r, &big) < 0) return -1;
        *rc = sqlite3_bind_int64(stmt, index, big);
        return 0;
    case 'g':
        if (take(r, 8, &p) < 0) return -1;
        memcpy(&d, p, 8);  /* little-endian IEEE 754, as marshal writes it (checked at import) */
        *rc = sqlite3_bind_double(stmt, index, d);
        return 0;
    case 'u': case 't':
        if (take_i32(r, &n) < 0 || take(r, n, &p) < 0) return -1;
        *rc = sqlite3_bind_text(stmt, index, (const char *)p, n, SQLITE_STATIC);
        return 0;
    case 's':
        if (take_i32(r, &n) < 0 || take(r, n, &p) < 0) return -1;
        *rc = sqlite3_bind_blob(stmt, index, p, n, SQLITE_STATIC);
        return 0;
    default:
        return fail(r, ProgrammingError, "a row holds a value SQLite cannot store (not None, "
                    "int, float, str or bytes)");
    }
}

/* Bind the next `rows` marshalled rows to `stmt`, `width` values each, from parameter 1. */
static int bind_rows(Reader *r, sqlite3_stmt *stmt, int rows, int width, int *rc) {
    const unsigned char *p;
    int32_t found;
    for (int row = 0; row < rows; row++) {
        if (take(r, 1, &p) < 0 || (*p & 0x7f) != '(' || take_i32(r, &found) < 0) return -1;
        if (found != width)
            return fail(r, ProgrammingError, "Incorrect number of bindings supplied");
        for (int i = 1; i <= width; i++) {
            if (bind_value(r, stmt, row * width + i, rc) < 0) return -1;
            if (*rc != SQLITE_OK) return -2;
        }
    }
    return 0;
}

static int step(sqlite3_stmt *stmt, int *rc) {
    *rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return *rc == SQLITE_DONE ? 0 : -2;
}

/* insert_rows(connection, insert_sql, payload, batch_sql, batch) -> rows inserted
 * payload: marshal.dumps(list_of_tuples, 2); batch_sql: insert_sql with `batch` rows of
 * parameters, used while that many rows are left (one statement per row cost 0.48 us a row
 * on a two-integer table, a 64-row statement about half: sqlite3_step's own overhead).
 * Runs inside the caller's transaction. */
static PyObject *insert_rows(PyObject *self, PyObject *args) {
    PyObject *conn;
    const char *sql, *batch_sql;
    int batch;
    Py_buffer payload;
    if (!PyArg_ParseTuple(args, "Osy*si", &conn, &sql, &payload, &batch_sql, &batch))
        return NULL;
    sqlite3 *db = handle(conn);
    if (db == NULL) { PyBuffer_Release(&payload); return NULL; }
    Reader r = {payload.buf, (const unsigned char *)payload.buf + payload.len, NULL, NULL};
    const unsigned char *p;
    int32_t rows = 0, done = 0;
    sqlite3_stmt *one = NULL, *many = NULL;
    int failed = 0, rc = sqlite3_prepare_v2(db, sql, -1, &one, NULL);
    if (rc == SQLITE_OK && batch > 1) rc = sqlite3_prepare_v2(db, batch_sql, -1, &many, NULL);
    if (rc != SQLITE_OK) { raise_sqlite(db, rc); goto out; }
    int width = sqlite3_bind_parameter_count(one);
    if (many != NULL && sqlite3_bind_parameter_count(many) != width * batch) {
        PyErr_SetString(PyExc_ValueError, "batch_sql does not hold `batch` rows of insert_sql");
        goto out;
    }
    if (take(&r, 1, &p) < 0 || (*p & 0x7f) != '[' || take_i32(&r, &rows) < 0) {
        failed = -1;
        goto checked;
    }
    Py_BEGIN_ALLOW_THREADS
    /* Python's sqlite3 opens connections serialized: every SQLite call takes the
     * connection's mutex. Held here once, the calls below find it theirs already (it is
     * recursive): the lock and unlock pairs were 7% of a worker's CPU. */
    sqlite3_mutex_enter(sqlite3_db_mutex(db));
    for (; many != NULL && rows - done >= batch && !failed; done += batch)
        if ((failed = bind_rows(&r, many, batch, width, &rc)) == 0) failed = step(many, &rc);
    for (; done < rows && !failed; done++)
        if ((failed = bind_rows(&r, one, 1, width, &rc)) == 0) failed = step(one, &rc);
    sqlite3_mutex_leave(sqlite3_db_mutex(db));
    Py_END_ALLOW_THREADS
checked:
    if (failed == -2) { raise_sqlite(db, rc); goto out; }
    if (failed == 0 && r.at != r.end) failed = -1;
    if (failed == -1) {
        if (r.error_type) PyErr_SetString(r.error_type, r.error);
        else PyErr_Format(PyExc_ValueError, "malformed rows payload (a list of tuples of %d "
                          "values expected)", width);
        goto out;
    }
    sqlite3_finalize(one);
    sqlite3_finalize(many);
    PyBuffer_Release(&payload);
    return PyLong_FromLong(done);
out:
    sqlite3_finalize(one);
    sqlite3_finalize(many);
    PyBuffer_Release(&payload);
    return NULL;
}

/* ---- writing marshal format 2, as marshal.dumps(row, 2) writes a tuple from sqlite3 ---- */

/* One column, read through its sqlite3_value: each sqlite3_column_* call takes the
 * connection's mutex, the sqlite3_value_* calls none (the caller holds it, so the value
 * is as protected as SQLite asks). */
static int put_column(Buffer *b, sqlite3_stmt *stmt, int i) {
    sqlite3_value *value = sqlite3_column_value(stmt, i);
    switch (sqlite3_value_type(value)) {
    case SQLITE_NULL:
        return put_type(b, 'N');
    case SQLITE_INTEGER:
        return put_int(b, sqlite3_value_int64(value));
    case SQLITE_FLOAT:
        return put_double(b, sqlite3_value_double(value));
    case SQLITE_TEXT: {
        const unsigned char *text = sqlite3_value_text(value);
        return put_bytes(b, 'u', text, sqlite3_value_bytes(value));
    }
    default: {
        const void *blob = sqlite3_value_blob(value);
        return put_bytes(b, 's', blob, sqlite3_value_bytes(value));
    }
    }
}

/* a row as marshal.dumps(row, 2) writes the tuple sqlite3 makes of it */
static int put_row(Buffer *b, sqlite3_stmt *stmt, int width) {
    if (grow(b, 5) < 0) return -1;
    b->buf[b->len] = '(';
    put_i32(b->buf + b->len + 1, width);
    b->len += 5;
    for (int i = 0; i < width; i++)
        if (put_column(b, stmt, i) < 0) return -1;
    return 0;
}

/* readback(connection, select_sql, after_rowid or None) -> (rows, checksum) of the query's
 * rows, summed as checksum.rows_checksum sums them (xxh3-64 of each row's marshal bytes,
 * modulo 2^64). The caller bounds the rows (one chunk). */
static PyObject *readback(PyObject *self, PyObject *args) {
    PyObject *conn, *after;
    const char *sql;
    if (!PyArg_ParseTuple(args, "OsO", &conn, &sql, &after)) return NULL;
    sqlite3 *db = handle(conn);
    if (db == NULL) return NULL;
    sqlite3_stmt *stmt = NULL;
    Buffer b = {NULL, 0, 0};
    long long rows = 0;
    uint64_t sum = 0;
    int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (rc != SQLITE_OK) { raise_sqlite(db, rc); goto fail; }
    if (after != Py_None) {
        sqlite3_int64 top = PyLong_AsLongLong(after);
        if (top == -1 && PyErr_Occurred()) goto fail;
        sqlite3_bind_int64(stmt, 1, top);
    }
    int width = sqlite3_column_count(stmt), memory = 0;
    sqlite3_mutex_enter(sqlite3_db_mutex(db));  /* once, as insert_rows does */
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        b.len = 0;
        if ((memory = put_row(&b, stmt, width)) < 0) break;
        sum += XXH3_64bits(b.buf, b.len);  /* wraps modulo 2^64, as checksum.fold does */
        rows++;
    }
    sqlite3_mutex_leave(sqlite3_db_mutex(db));
    if (memory < 0) { PyErr_NoMemory(); goto fail; }
    if (rc != SQLITE_DONE) { raise_sqlite(db, rc); goto fail; }
    sqlite3_finalize(stmt);
    PyMem_RawFree(b.buf);
    return Py_BuildValue("LK", rows, (unsigned long long)sum);
fail:
    sqlite3_finalize(stmt);
    PyMem_RawFree(b.buf);
    return NULL;
}

/* check(connection, path): is this module able to work on that connection? */
static PyObject *check(PyObject *self, PyObject *args) {
    PyObject *conn;
    const char *path;
    if (!PyArg_ParseTuple(args, "Os", &conn, &path)) return NULL;
    sqlite3 *db = handle(conn);
    if (db == NULL) return NULL;
    const char *name = sqlite3_db_filename(db, "main");
    return PyBool_FromLong(name != NULL && strcmp(name, path) == 0);
}

static PyObject *libversion_address(PyObject *self, PyObject *unused) {
    return PyLong_FromVoidPtr((void *)&sqlite3_libversion);
}

static PyMethodDef methods[] = {
    {"insert_rows", insert_rows, METH_VARARGS, "Insert marshalled rows with a prepared INSERT."},
    {"readback", readback, METH_VARARGS, "A query's row count and rows checksum."},
    {"check", check, METH_VARARGS, "True when the connection's handle names this file."},
    {"libversion_address", libversion_address, METH_NOARGS,
     "Address of sqlite3_libversion as this module sees it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastsqlite", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastsqlite(void) {
#if !PY_LITTLE_ENDIAN
    PyErr_SetString(PyExc_ImportError, "_fastsqlite reads marshal's floats as little-endian");
    return NULL;
#endif
    PyObject *sqlite = PyImport_ImportModule("sqlite3");
    if (sqlite == NULL) return NULL;
    IntegrityError = PyObject_GetAttrString(sqlite, "IntegrityError");
    OperationalError = PyObject_GetAttrString(sqlite, "OperationalError");
    ProgrammingError = PyObject_GetAttrString(sqlite, "ProgrammingError");
    Py_DECREF(sqlite);
    if (IntegrityError == NULL || OperationalError == NULL || ProgrammingError == NULL)
        return NULL;
    return PyModule_Create(&module);
}
