/* The hot loop of a chunk commit, in C: insert rows given as marshal (format 2) bytes, and
 * checksum the rows read back over the marshal bytes Python would make of them, without a
 * Python object per value.
 *
 * Why: sqlite3's executemany spends most of its time turning Python objects into SQLite
 * values, more than SQLite's own insert takes (ops/bench/RESULTS.md), and
 * the chunk read-back spends most of its time building tuples only to marshal them again.
 * The rows already travel as marshal bytes (the checksum is computed over them), so this
 * module inserts straight from those bytes (a virtual table SQLite selects them from, or
 * bound parameters) and encodes straight from SQLite's values.
 *
 * It works on the connection of Python's own sqlite3 module (the transaction, the
 * checkpoint and the token check stay there). Python 3.11 has no API for the sqlite3 handle,
 * so `handle()` reads it from the object. worker/native/__init__.py checks that this module calls the
 * very library _sqlite3 uses (libversion_address), `check()` that the handle names the file
 * Python opened, and worker/native/fastsqlite.py uses plain Python when either fails.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sqlite3.h>
#include <string.h>

#include "marshal2.h"
#include "xxh3.h"

/* ConnectionHead copies the head of pysqlite_Connection as the CPython versions in
 * worker/native/__init__.py's FASTSQLITE_PYTHONS lay it out; setup.py passes their bounds
 * (LITESHIFT_PY_MIN included, LITESHIFT_PY_END excluded, as PY_VERSION_HEX values) and builds
 * nothing on any other version. Reading another layout would follow a bad pointer. */
#if !defined(LITESHIFT_PY_MIN) || !defined(LITESHIFT_PY_END)
#error "build _fastsqlite through setup.py, which passes the CPython versions it was written for"
#endif
#if PY_VERSION_HEX < LITESHIFT_PY_MIN || PY_VERSION_HEX >= LITESHIFT_PY_END
#error "_fastsqlite reads a CPython struct whose layout it was not written for on this version"
#endif

typedef struct {
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

/* One value as read from the payload: what it binds or a virtual table's column gives. */
typedef struct {
    char type;  /* 'N' null, 'I' integer, 'D' float, 'T' text, 'B' blob */
    int n;
    sqlite3_int64 i;
    double d;
    const unsigned char *p;
} Slot;

/* The next marshalled value, its text or bytes pointing into the payload. */
static int take_value(Reader *r, Slot *s) {
    const unsigned char *p;
    int32_t n;
    if (take(r, 1, &p) < 0) return -1;
    switch (*p & 0x7f) {  /* 0x80 is marshal's reference flag, never set in format 2 */
    case 'N': s->type = 'N'; return 0;
    case 'T': s->type = 'I'; s->i = 1; return 0;
    case 'F': s->type = 'I'; s->i = 0; return 0;
    case 'i':
        if (take_i32(r, &n) < 0) return -1;
        s->type = 'I'; s->i = n;
        return 0;
    case 'l': s->type = 'I'; return take_long(r, &s->i);
    case 'g':
        if (take(r, 8, &p) < 0) return -1;
        /* little-endian IEEE 754, as marshal writes it (checked at import) */
        memcpy(&s->d, p, 8);
        s->type = 'D';
        return 0;
    case 'u': case 't': case 's':
        s->type = (*p & 0x7f) == 's' ? 'B' : 'T';
        if (take_i32(r, &n) < 0 || take(r, n, &s->p) < 0) return -1;
        s->n = n;
        return 0;
    default:
        return fail(r, ProgrammingError, "a row holds a value SQLite cannot store (not None, "
                    "int, float, str or bytes)");
    }
}

/* Bind the next marshalled value to parameter `index`; SQLite's code goes to *rc. */
static int bind_value(Reader *r, sqlite3_stmt *stmt, int index, int *rc) {
    Slot s;
    if (take_value(r, &s) < 0) return -1;
    switch (s.type) {
    case 'I': *rc = sqlite3_bind_int64(stmt, index, s.i); break;
    case 'D': *rc = sqlite3_bind_double(stmt, index, s.d); break;
    case 'T': *rc = sqlite3_bind_text(stmt, index, (const char *)s.p, s.n, SQLITE_STATIC); break;
    case 'B': *rc = sqlite3_bind_blob(stmt, index, s.p, s.n, SQLITE_STATIC); break;
    default: *rc = sqlite3_bind_null(stmt, index);
    }
    return 0;
}

/* A list's or a tuple's header: its type byte and item count. -1 when the payload ends or
 * holds another type there (no message: the caller says what it expected). */
static int take_header(Reader *r, char type, int32_t *count) {
    const unsigned char *p;
    if (take(r, 1, &p) < 0 || (*p & 0x7f) != type) return -1;
    return take_i32(r, count);
}

/* The header of the next row, which must hold `width` values. */
static int take_row(Reader *r, int width) {
    int32_t found;
    if (take_header(r, '(', &found) < 0) return -1;
    if (found != width)
        return fail(r, ProgrammingError, "Incorrect number of bindings supplied");
    return 0;
}

/* Bind the next `rows` marshalled rows to `stmt`, `width` values each, from parameter 1. */
static int bind_rows(Reader *r, sqlite3_stmt *stmt, int rows, int width, int *rc) {
    for (int row = 0; row < rows; row++) {
        if (take_row(r, width) < 0) return -1;
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
 * parameters, used while that many rows are left (a statement per row would pay
 * sqlite3_step's own overhead per row: ops/bench/RESULTS.md).
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
    if (take_header(&r, '[', &rows) < 0) {
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

/* ---- inserting a chunk as INSERT ... SELECT from the rows of its payload ---- */

/* liteshift_rows(payload): an eponymous virtual table whose rows are the payload's, read in
 * place (format as insert_rows takes it), columns c0, c1, ... One INSERT ... SELECT per chunk
 * skips binding and the VALUES co-routine: a chunk insert's CPU fell by a fifth on the narrow
 * table and a tenth on the mixed one (ops/bench/RESULTS.md). The payload comes as a pointer
 * bound to the hidden column (sqlite3_bind_pointer): no SQL text can hand it anything else. */

#define ROWS_MAX_WIDTH 1999  /* SQLite's default column limit, less the hidden payload */
static const char PAYLOAD_POINTER[] = "liteshift_payload";

typedef struct {
    const unsigned char *buf;
    Py_ssize_t len;
    int width;       /* values per row, as the statement selects them */
    long long rows;  /* rows read, all of them once the statement is done */
    Reader *failed;  /* the reader that failed, for the caller to raise its error */
    Reader reader;
} Payload;

typedef struct {
    sqlite3_vtab_cursor base;
    Payload *payload;
    int32_t left, width;
    int eof;
    Slot *slots;
} RowsCursor;

static int rows_connect(sqlite3 *db, void *aux, int argc, const char *const *argv,
                        sqlite3_vtab **out, char **error) {
    sqlite3_str *schema = sqlite3_str_new(db);
    sqlite3_str_appendall(schema, "CREATE TABLE x(payload HIDDEN");
    for (int i = 0; i < ROWS_MAX_WIDTH; i++) sqlite3_str_appendf(schema, ", c%d", i);
    sqlite3_str_appendall(schema, ")");
    char *sql = sqlite3_str_finish(schema);
    if (sql == NULL) return SQLITE_NOMEM;
    int rc = sqlite3_declare_vtab(db, sql);
    sqlite3_free(sql);
    if (rc != SQLITE_OK) return rc;
    *out = sqlite3_malloc(sizeof(sqlite3_vtab));
    if (*out == NULL) return SQLITE_NOMEM;
    memset(*out, 0, sizeof(sqlite3_vtab));
    return SQLITE_OK;
}

static int rows_disconnect(sqlite3_vtab *vtab) {
    sqlite3_free(vtab);
    return SQLITE_OK;
}

static int rows_best_index(sqlite3_vtab *vtab, sqlite3_index_info *info) {
    for (int k = 0; k < info->nConstraint; k++) {
        const struct sqlite3_index_constraint *c = &info->aConstraint[k];
        if (c->iColumn == 0 && c->op == SQLITE_INDEX_CONSTRAINT_EQ && c->usable) {
            info->aConstraintUsage[k].argvIndex = 1;
            info->aConstraintUsage[k].omit = 1;
            info->estimatedCost = 1;
            return SQLITE_OK;
        }
    }
    return SQLITE_CONSTRAINT;  /* no plan without its payload */
}

static int rows_open(sqlite3_vtab *vtab, sqlite3_vtab_cursor **out) {
    RowsCursor *cur = sqlite3_malloc(sizeof(RowsCursor));
    if (cur == NULL) return SQLITE_NOMEM;
    memset(cur, 0, sizeof(RowsCursor));
    *out = &cur->base;
    return SQLITE_OK;
}

static int rows_close(sqlite3_vtab_cursor *base) {
    RowsCursor *cur = (RowsCursor *)base;
    sqlite3_free(cur->slots);
    sqlite3_free(cur);
    return SQLITE_OK;
}

static int rows_failed(RowsCursor *cur) {
    cur->payload->failed = &cur->payload->reader;
    return SQLITE_ERROR;
}

static int rows_next(sqlite3_vtab_cursor *base) {
    RowsCursor *cur = (RowsCursor *)base;
    Reader *r = &cur->payload->reader;
    if (cur->left == 0) {
        cur->eof = 1;
        if (r->at == r->end) return SQLITE_OK;
        fail(r, PyExc_ValueError, "malformed rows payload (bytes after its rows)");
        return rows_failed(cur);
    }
    if (take_row(r, cur->width) < 0) return rows_failed(cur);
    for (int i = 0; i < cur->width; i++)
        if (take_value(r, &cur->slots[i]) < 0) return rows_failed(cur);
    cur->left--;
    cur->payload->rows++;
    return SQLITE_OK;
}

static int rows_filter(sqlite3_vtab_cursor *base, int idx, const char *idx_str, int argc,
                       sqlite3_value **argv) {
    RowsCursor *cur = (RowsCursor *)base;
    Payload *payload = argc == 1 ? sqlite3_value_pointer(argv[0], PAYLOAD_POINTER) : NULL;
    if (payload == NULL) {
        base->pVtab->zErrMsg = sqlite3_mprintf("liteshift_rows takes a payload pointer");
        return SQLITE_ERROR;
    }
    if (cur->slots == NULL) {
        cur->slots = sqlite3_malloc64(sizeof(Slot) * (sqlite3_uint64)payload->width);
        if (cur->slots == NULL) return SQLITE_NOMEM;
        cur->width = payload->width;
    }
    cur->payload = payload;
    payload->reader = (Reader){payload->buf, payload->buf + payload->len, NULL, NULL};
    if (take_header(&payload->reader, '[', &cur->left) < 0 || cur->left < 0) {
        if (payload->reader.error_type == NULL)
            fail(&payload->reader, PyExc_ValueError, "malformed rows payload");
        return rows_failed(cur);
    }
    cur->eof = 0;
    return rows_next(base);
}

static int rows_eof(sqlite3_vtab_cursor *base) {
    return ((RowsCursor *)base)->eof;
}

static int rows_column(sqlite3_vtab_cursor *base, sqlite3_context *ctx, int column) {
    RowsCursor *cur = (RowsCursor *)base;
    if (column < 1 || column > cur->width) {
        sqlite3_result_null(ctx);
        return SQLITE_OK;
    }
    const Slot *s = &cur->slots[column - 1];
    switch (s->type) {
    case 'I': sqlite3_result_int64(ctx, s->i); break;
    case 'D': sqlite3_result_double(ctx, s->d); break;
    case 'T': sqlite3_result_text(ctx, (const char *)s->p, s->n, SQLITE_STATIC); break;
    case 'B': sqlite3_result_blob(ctx, s->p, s->n, SQLITE_STATIC); break;
    default: sqlite3_result_null(ctx);
    }
    return SQLITE_OK;
}

static int rows_rowid(sqlite3_vtab_cursor *base, sqlite3_int64 *rowid) {
    *rowid = ((RowsCursor *)base)->payload->rows;
    return SQLITE_OK;
}

static sqlite3_module rows_module = {
    0, NULL, rows_connect, rows_best_index, rows_disconnect, NULL, rows_open, rows_close,
    rows_filter, rows_next, rows_eof, rows_column, rows_rowid,
};

/* insert_chunk(connection, insert_select_sql, width, payload) -> rows inserted
 * insert_select_sql: an INSERT ... SELECT c0, c1, ... c<width - 1> FROM liteshift_rows(?),
 * every row of the payload `width` values long. Runs inside
 * the caller's transaction; the connection must have passed check() (which registers the
 * module). */
static PyObject *insert_chunk(PyObject *self, PyObject *args) {
    PyObject *conn;
    const char *sql;
    int width;
    Py_buffer buffer;
    if (!PyArg_ParseTuple(args, "Osiy*", &conn, &sql, &width, &buffer)) return NULL;
    if (width < 1 || width > ROWS_MAX_WIDTH) {
        PyBuffer_Release(&buffer);
        return PyErr_Format(PyExc_ValueError, "rows of %d values: 1 to %d fit", width,
                            ROWS_MAX_WIDTH);
    }
    sqlite3 *db = handle(conn);
    if (db == NULL) { PyBuffer_Release(&buffer); return NULL; }
    Payload payload = {buffer.buf, buffer.len, width, 0, NULL, {NULL, NULL, NULL, NULL}};
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_bind_pointer(stmt, 1, &payload, PAYLOAD_POINTER, NULL);
    if (rc == SQLITE_OK) {
        Py_BEGIN_ALLOW_THREADS
        sqlite3_mutex_enter(sqlite3_db_mutex(db));
        rc = sqlite3_step(stmt);
        sqlite3_mutex_leave(sqlite3_db_mutex(db));
        Py_END_ALLOW_THREADS
    }
    PyObject *result = NULL;
    if (payload.failed != NULL) {
        PyErr_SetString(payload.failed->error_type ? payload.failed->error_type
                        : PyExc_ValueError, payload.failed->error ? payload.failed->error
                        : "malformed rows payload");
    } else if (rc != SQLITE_DONE) {
        raise_sqlite(db, rc);
    } else {
        result = PyLong_FromLongLong(payload.rows);
    }
    sqlite3_finalize(stmt);
    PyBuffer_Release(&buffer);
    return result;
}

/* ---- writing marshal format 2, as marshal.dumps(row, 2) writes a tuple from sqlite3 ---- */

/* One value as marshal.dumps writes what sqlite3 makes of it. The sqlite3_value_* calls
 * take no mutex (the sqlite3_column_* ones take the connection's, a tenth of a read-back). */
static int put_value(Buffer *b, sqlite3_value *value) {
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

/* A value this long is hashed where SQLite holds it rather than copied into the row's
 * marshal bytes first: a row of big values would cost the row again. */
#define STREAM_VALUE_BYTES (1 << 16)

/* xxh3-64 of a row's marshal bytes (as marshal.dumps(row, 2) writes the tuple sqlite3
 * makes of it), into *hash; -1 when out of memory. The bytes are made in `b`, except a big
 * value's: from the first one on, the row is hashed in pieces, each big value where SQLite
 * holds it. */
static int row_hash(Buffer *b, sqlite3_value **values, int width, uint64_t *hash) {
    ls_xxh3_state st;
    int streaming = 0;
    b->len = 0;
    if (grow(b, 5) < 0) return -1;
    b->buf[0] = '(';
    put_i32(b->buf + 1, width);
    b->len = 5;
    for (int i = 0; i < width; i++) {
        int type = sqlite3_value_type(values[i]);
        if (type != SQLITE_TEXT && type != SQLITE_BLOB) {
            if (put_value(b, values[i]) < 0) return -1;
            continue;
        }
        const void *data = type == SQLITE_TEXT ? (const void *)sqlite3_value_text(values[i])
                                               : sqlite3_value_blob(values[i]);
        int n = sqlite3_value_bytes(values[i]);
        if (n < STREAM_VALUE_BYTES) {
            if (put_bytes(b, type == SQLITE_TEXT ? 'u' : 's', data, n) < 0) return -1;
            continue;
        }
        if (data == NULL) return -1;
        if (!streaming) {
            ls_xxh3_reset(&st);
            streaming = 1;
        }
        if (grow(b, 5) < 0) return -1;
        b->buf[b->len] = type == SQLITE_TEXT ? 'u' : 's';
        put_i32(b->buf + b->len + 1, n);
        ls_xxh3_update(&st, b->buf, b->len + 5);  /* what came before it, and its header */
        ls_xxh3_update(&st, data, (size_t)n);
        b->len = 0;
    }
    if (!streaming) {
        *hash = ls_xxh3_64(b->buf, b->len);
        return 0;
    }
    ls_xxh3_update(&st, b->buf, b->len);
    *hash = ls_xxh3_digest(&st);
    return 0;
}

/* liteshift_checksum(column, ...): an aggregate, the sum modulo 2^64 of each row's xxh3-64
 * over its marshal bytes (checksum.rows_checksum), as a signed 64-bit integer. SQLite
 * hands it each row's values inside its own scan: no sqlite3_step and no mutex per row. */
typedef struct {
    uint64_t sum;
    int failed;
    Buffer b;
} RowsChecksum;

static void checksum_step(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    RowsChecksum *c = sqlite3_aggregate_context(ctx, sizeof(RowsChecksum));  /* zeroed */
    if (c == NULL || c->failed) { sqlite3_result_error_nomem(ctx); return; }
    uint64_t hash;
    if (row_hash(&c->b, argv, argc, &hash) < 0) {  /* b grows with PyMem_RawRealloc: no GIL */
        c->failed = 1;
        sqlite3_result_error_nomem(ctx);
        return;
    }
    c->sum += hash;  /* wraps modulo 2^64, as checksum.fold does */
}

static void checksum_final(sqlite3_context *ctx) {
    RowsChecksum *c = sqlite3_aggregate_context(ctx, 0);
    if (c == NULL) { sqlite3_result_int64(ctx, 0); return; }  /* no rows */
    PyMem_RawFree(c->b.buf);
    c->b.buf = NULL;
    if (c->failed) sqlite3_result_error_nomem(ctx);
    else sqlite3_result_int64(ctx, (sqlite3_int64)c->sum);
}

/* The read-back query: count(*) and liteshift_checksum over select_sql's columns, by name
 * (a table's, or a list of distinct ones: the caller's); NULL with *rc SQLITE_OK when the
 * rows are too wide for it. */
static char *checksum_sql(sqlite3 *db, const char *select_sql, int *rc) {
    sqlite3_stmt *stmt = NULL;
    *rc = sqlite3_prepare_v2(db, select_sql, -1, &stmt, NULL);
    if (*rc != SQLITE_OK) return NULL;
    if (sqlite3_column_count(stmt) > sqlite3_limit(db, SQLITE_LIMIT_FUNCTION_ARG, -1)) {
        sqlite3_finalize(stmt);
        return NULL;  /* wider than a function takes (127 by default): readback_rows */
    }
    sqlite3_str *sql = sqlite3_str_new(db);
    sqlite3_str_appendall(sql, "SELECT count(*), liteshift_checksum(");
    for (int i = 0; i < sqlite3_column_count(stmt); i++)
        sqlite3_str_appendf(sql, "%s\"%w\"", i ? ", " : "", sqlite3_column_name(stmt, i));
    sqlite3_str_appendf(sql, ") FROM (%s)", select_sql);
    sqlite3_finalize(stmt);
    char *text = sqlite3_str_finish(sql);
    if (text == NULL) *rc = SQLITE_NOMEM;
    return text;
}

/* The same sums stepping through select_sql's rows, for rows too wide for the aggregate. */
static int readback_rows(sqlite3_stmt *stmt, long long *rows, uint64_t *sum, int *rc) {
    int width = sqlite3_column_count(stmt);
    sqlite3_value **values = PyMem_RawMalloc(sizeof(sqlite3_value *) * (size_t)width);
    Buffer b = {NULL, 0, 0};
    int memory = values == NULL ? -1 : 0;
    while (memory == 0 && (*rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        for (int i = 0; i < width; i++) values[i] = sqlite3_column_value(stmt, i);
        uint64_t hash;
        if ((memory = row_hash(&b, values, width, &hash)) < 0) break;
        *sum += hash;
        (*rows)++;
    }
    PyMem_RawFree(values);
    PyMem_RawFree(b.buf);
    return memory;
}

/* readback(connection, select_sql, after_rowid or None) -> (rows, checksum) of the query's
 * rows, summed as checksum.rows_checksum sums them (xxh3-64 of each row's marshal bytes,
 * modulo 2^64). The caller bounds the rows (one chunk). */
static PyObject *readback(PyObject *self, PyObject *args) {
    PyObject *conn, *after;
    const char *select_sql;
    if (!PyArg_ParseTuple(args, "OsO", &conn, &select_sql, &after)) return NULL;
    sqlite3 *db = handle(conn);
    if (db == NULL) return NULL;
    sqlite3_int64 top = 0;
    if (after != Py_None && (top = PyLong_AsLongLong(after)) == -1 && PyErr_Occurred())
        return NULL;
    sqlite3_stmt *stmt = NULL;
    int rc, memory = 0;
    char *sql = checksum_sql(db, select_sql, &rc);
    int aggregate = sql != NULL;
    if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(db, sql ? sql : select_sql, -1, &stmt, NULL);
    sqlite3_free(sql);
    if (rc != SQLITE_OK) { raise_sqlite(db, rc); sqlite3_finalize(stmt); return NULL; }
    if (after != Py_None) sqlite3_bind_int64(stmt, 1, top);
    long long rows = 0;
    uint64_t sum = 0;
    /* Without the GIL, as insert_rows: the worker's other threads (the WAL copier, the
     * lease's renewal) go on while a chunk is read back. */
    Py_BEGIN_ALLOW_THREADS
    sqlite3_mutex_enter(sqlite3_db_mutex(db));  /* once, as insert_rows does */
    if (!aggregate) {
        memory = readback_rows(stmt, &rows, &sum, &rc);
    } else if ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        rows = sqlite3_column_int64(stmt, 0);
        sum = (uint64_t)sqlite3_column_int64(stmt, 1);
        rc = sqlite3_step(stmt);
    }
    sqlite3_mutex_leave(sqlite3_db_mutex(db));
    Py_END_ALLOW_THREADS
    PyObject *result = memory < 0 ? PyErr_NoMemory()
        : rc == SQLITE_DONE ? Py_BuildValue("LK", rows, (unsigned long long)sum)
        : raise_sqlite(db, rc);
    sqlite3_finalize(stmt);
    return result;
}

/* check(connection, path): is this module able to work on that connection? If so, it
 * registers liteshift_rows there (once per connection: insert_chunk needs it). */
static PyObject *check(PyObject *self, PyObject *args) {
    PyObject *conn;
    const char *path;
    if (!PyArg_ParseTuple(args, "Os", &conn, &path)) return NULL;
    sqlite3 *db = handle(conn);
    if (db == NULL) return NULL;
    const char *name = sqlite3_db_filename(db, "main");
    if (name == NULL || strcmp(name, path) != 0) Py_RETURN_FALSE;
    int rc = sqlite3_create_module_v2(db, "liteshift_rows", &rows_module, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function_v2(db, "liteshift_checksum", -1, SQLITE_UTF8, NULL, NULL,
                                        checksum_step, checksum_final, NULL);
    if (rc != SQLITE_OK) return raise_sqlite(db, rc);
    Py_RETURN_TRUE;
}

static PyObject *libversion_address(PyObject *self, PyObject *unused) {
    return PyLong_FromVoidPtr((void *)&sqlite3_libversion);
}

static PyMethodDef methods[] = {
    {"insert_rows", insert_rows, METH_VARARGS, "Insert marshalled rows with a prepared INSERT."},
    {"insert_chunk", insert_chunk, METH_VARARGS,
     "Insert marshalled rows with one INSERT ... SELECT from liteshift_rows(?)."},
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
    /* The interpreter running, not the headers it was built with (see ConnectionHead). */
    if (Py_Version < LITESHIFT_PY_MIN || Py_Version >= LITESHIFT_PY_END) {
        PyErr_Format(PyExc_ImportError, "_fastsqlite was not written for CPython %s",
                     Py_GetVersion());
        return NULL;
    }
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
