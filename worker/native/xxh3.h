/* XXH3-64 with seed 0 and the default secret: the row hash of liteshift's checksums
 * (worker/core/checksum.py hashes with the `xxhash` package's xxh3_64, which is the same
 * function), for _fastsqlite.c and _pgcopy.c.
 *
 * Why our own: xxhash's C header ships only in a -dev package that few machines have, and
 * without it the build silently fell back to the slow pure-Python paths. This is a plain
 * scalar implementation written from xxHash's published algorithm description
 * (doc/xxhash_spec.md in Cyan4973/xxHash): short inputs are scalar in every implementation,
 * and the long-input loop is simple enough for the compiler to vectorise. tests/test_native.py
 * compares it with the `xxhash` package on every length up to a few kilobytes, so a
 * checksum never changes with the build.
 */
#ifndef LITESHIFT_XXH3_H
#define LITESHIFT_XXH3_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define LS_P32_1 0x9E3779B1U
#define LS_P32_2 0x85EBCA77U
#define LS_P32_3 0xC2B2AE3DU
#define LS_P64_1 0x9E3779B185EBCA87ULL
#define LS_P64_2 0xC2B2AE3D27D4EB4FULL
#define LS_P64_3 0x165667B19E3779F9ULL
#define LS_P64_4 0x85EBCA77C2B2AE63ULL
#define LS_P64_5 0x27D4EB2F165667C5ULL
#define LS_MX1 0x165667919E3779F9ULL
#define LS_MX2 0x9FB21C651E98DF25ULL

#define LS_SECRET_SIZE 192
#define LS_STRIPE 64

static const uint8_t ls_xxh3_secret[LS_SECRET_SIZE] = {
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
};

/* The spec reads little-endian words; memcpy compiles to one load, byte order fixed below. */
static inline uint64_t ls_r64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint32_t ls_r32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline uint64_t ls_rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t ls_fold64(uint64_t a, uint64_t b) {  /* 128-bit product, halves xored */
    __uint128_t product = (__uint128_t)a * b;
    return (uint64_t)product ^ (uint64_t)(product >> 64);
}

static inline uint64_t ls_xxh64_avalanche(uint64_t h) {
    h ^= h >> 33;
    h *= LS_P64_2;
    h ^= h >> 29;
    h *= LS_P64_3;
    return h ^ (h >> 32);
}

static inline uint64_t ls_avalanche(uint64_t h) {
    h ^= h >> 37;
    h *= LS_MX1;
    return h ^ (h >> 32);
}

static inline uint64_t ls_rrmxmx(uint64_t h, uint64_t len) {
    h ^= ls_rotl64(h, 49) ^ ls_rotl64(h, 24);
    h *= LS_MX2;
    h ^= (h >> 35) + len;
    h *= LS_MX2;
    return h ^ (h >> 28);
}

static inline uint64_t ls_mix16(const uint8_t *in, const uint8_t *secret) {
    return ls_fold64(ls_r64(in) ^ ls_r64(secret), ls_r64(in + 8) ^ ls_r64(secret + 8));
}

static inline uint64_t ls_len_0to16(const uint8_t *in, size_t len) {
    const uint8_t *s = ls_xxh3_secret;
    if (len > 8) {
        uint64_t lo = ls_r64(in) ^ (ls_r64(s + 24) ^ ls_r64(s + 32));
        uint64_t hi = ls_r64(in + len - 8) ^ (ls_r64(s + 40) ^ ls_r64(s + 48));
        return ls_avalanche(len + __builtin_bswap64(lo) + hi + ls_fold64(lo, hi));
    }
    if (len >= 4) {
        uint64_t joined = ls_r32(in + len - 4) + ((uint64_t)ls_r32(in) << 32);
        return ls_rrmxmx(joined ^ (ls_r64(s + 8) ^ ls_r64(s + 16)), len);
    }
    if (len > 0) {
        uint32_t joined = ((uint32_t)in[0] << 16) | ((uint32_t)in[len >> 1] << 24)
            | (uint32_t)in[len - 1] | ((uint32_t)len << 8);
        return ls_xxh64_avalanche((uint64_t)joined ^ (uint64_t)(ls_r32(s) ^ ls_r32(s + 4)));
    }
    return ls_xxh64_avalanche(ls_r64(s + 56) ^ ls_r64(s + 64));
}

static inline uint64_t ls_len_17to128(const uint8_t *in, size_t len) {
    const uint8_t *s = ls_xxh3_secret;
    uint64_t acc = len * LS_P64_1;
    if (len > 32) {
        if (len > 64) {
            if (len > 96) {
                acc += ls_mix16(in + 48, s + 96);
                acc += ls_mix16(in + len - 64, s + 112);
            }
            acc += ls_mix16(in + 32, s + 64);
            acc += ls_mix16(in + len - 48, s + 80);
        }
        acc += ls_mix16(in + 16, s + 32);
        acc += ls_mix16(in + len - 32, s + 48);
    }
    acc += ls_mix16(in, s);
    acc += ls_mix16(in + len - 16, s + 16);
    return ls_avalanche(acc);
}

static inline uint64_t ls_len_129to240(const uint8_t *in, size_t len) {
    const uint8_t *s = ls_xxh3_secret;
    uint64_t acc = len * LS_P64_1;
    size_t rounds = len / 16, i;
    for (i = 0; i < 8; i++) {
        acc += ls_mix16(in + 16 * i, s + 16 * i);
    }
    acc = ls_avalanche(acc);
    for (i = 8; i < rounds; i++) {
        acc += ls_mix16(in + 16 * i, s + 16 * (i - 8) + 3);
    }
    acc += ls_mix16(in + len - 16, s + 136 - 17);
    return ls_avalanche(acc);
}

static inline void ls_stripe(uint64_t acc[8], const uint8_t *in, const uint8_t *secret) {
    for (int i = 0; i < 8; i++) {
        uint64_t value = ls_r64(in + 8 * i);
        uint64_t keyed = value ^ ls_r64(secret + 8 * i);
        acc[i ^ 1] += value;
        acc[i] += (keyed & 0xFFFFFFFFULL) * (keyed >> 32);
    }
}

static inline void ls_scramble(uint64_t acc[8], const uint8_t *secret) {
    for (int i = 0; i < 8; i++) {
        uint64_t a = acc[i];
        a ^= a >> 47;
        a ^= ls_r64(secret + 8 * i);
        acc[i] = a * LS_P32_1;
    }
}

static uint64_t ls_long(const uint8_t *in, size_t len) {
    const uint8_t *s = ls_xxh3_secret;
    uint64_t acc[8] = {LS_P32_3, LS_P64_1, LS_P64_2, LS_P64_3, LS_P64_4, LS_P32_2, LS_P64_5,
                       LS_P32_1};
    const size_t per_block = (LS_SECRET_SIZE - LS_STRIPE) / 8;  /* stripes per block */
    const size_t block = LS_STRIPE * per_block;
    size_t blocks = (len - 1) / block, n, i;
    for (n = 0; n < blocks; n++) {
        for (i = 0; i < per_block; i++) {
            ls_stripe(acc, in + n * block + i * LS_STRIPE, s + i * 8);
        }
        ls_scramble(acc, s + LS_SECRET_SIZE - LS_STRIPE);
    }
    size_t stripes = ((len - 1) - block * blocks) / LS_STRIPE;
    for (i = 0; i < stripes; i++) {
        ls_stripe(acc, in + blocks * block + i * LS_STRIPE, s + i * 8);
    }
    ls_stripe(acc, in + len - LS_STRIPE, s + LS_SECRET_SIZE - LS_STRIPE - 7);
    uint64_t result = len * LS_P64_1;
    for (i = 0; i < 4; i++) {
        result += ls_fold64(acc[2 * i] ^ ls_r64(s + 11 + 16 * i),
                            acc[2 * i + 1] ^ ls_r64(s + 11 + 16 * i + 8));
    }
    return ls_avalanche(result);
}

/* XXH3_64bits(data, len) of xxHash: the same value for the same bytes. */
static inline uint64_t ls_xxh3_64(const void *data, size_t len) {
    const uint8_t *in = (const uint8_t *)data;
    if (len <= 16) {
        return ls_len_0to16(in, len);
    }
    if (len <= 128) {
        return ls_len_17to128(in, len);
    }
    if (len <= 240) {
        return ls_len_129to240(in, len);
    }
    return ls_long(in, len);
}

/* The same hash over bytes that come in pieces, never joined: a row of big values is hashed
 * where SQLite holds them. A stripe is mixed only once a byte after it has come (the one-shot
 * loop above mixes floor((len - 1) / 64) stripes, then the last 64 bytes apart); the
 * previous stripe is kept for those last 64 bytes, and the first 240 bytes for the short
 * forms. tests/test_native.py holds it to the `xxhash` package. */
typedef struct {
    uint64_t acc[8];
    uint64_t total;
    size_t stripes, buffered;
    uint8_t buf[LS_STRIPE], prev[LS_STRIPE], head[240];
} ls_xxh3_state;

static inline void ls_xxh3_reset(ls_xxh3_state *st) {
    static const uint64_t init[8] = {LS_P32_3, LS_P64_1, LS_P64_2, LS_P64_3, LS_P64_4,
                                     LS_P32_2, LS_P64_5, LS_P32_1};
    memcpy(st->acc, init, sizeof init);
    st->total = 0;
    st->stripes = st->buffered = 0;
}

static inline void ls_xxh3_mix(ls_xxh3_state *st, const uint8_t *stripe) {
    const size_t per_block = (LS_SECRET_SIZE - LS_STRIPE) / 8;
    ls_stripe(st->acc, stripe, ls_xxh3_secret + (st->stripes % per_block) * 8);
    if (++st->stripes % per_block == 0) ls_scramble(st->acc, ls_xxh3_secret + LS_SECRET_SIZE - LS_STRIPE);
}

static inline void ls_xxh3_update(ls_xxh3_state *st, const void *data, size_t len) {
    const uint8_t *in = (const uint8_t *)data;
    if (st->total < sizeof st->head) {
        size_t n = sizeof st->head - (size_t)st->total;
        memcpy(st->head + st->total, in, n < len ? n : len);
    }
    st->total += len;
    while (len > 0) {
        if (st->buffered == LS_STRIPE) {  /* more has come: the buffered stripe is not the last */
            ls_xxh3_mix(st, st->buf);
            memcpy(st->prev, st->buf, LS_STRIPE);
            st->buffered = 0;
        }
        if (st->buffered == 0 && len > LS_STRIPE) {  /* whole stripes straight from the input */
            const uint8_t *last = NULL;
            while (len > LS_STRIPE) {
                ls_xxh3_mix(st, in);
                last = in;
                in += LS_STRIPE;
                len -= LS_STRIPE;
            }
            memcpy(st->prev, last, LS_STRIPE);
            continue;
        }
        size_t n = LS_STRIPE - st->buffered;
        if (n > len) n = len;
        memcpy(st->buf + st->buffered, in, n);
        st->buffered += n;
        in += n;
        len -= n;
    }
}

static inline uint64_t ls_xxh3_digest(const ls_xxh3_state *st) {
    if (st->total <= sizeof st->head) return ls_xxh3_64(st->head, (size_t)st->total);
    const uint8_t *s = ls_xxh3_secret;
    uint64_t acc[8];
    uint8_t last[LS_STRIPE];
    memcpy(acc, st->acc, sizeof acc);
    memcpy(last, st->prev + st->buffered, LS_STRIPE - st->buffered);  /* the last 64 bytes */
    memcpy(last + LS_STRIPE - st->buffered, st->buf, st->buffered);
    ls_stripe(acc, last, s + LS_SECRET_SIZE - LS_STRIPE - 7);
    uint64_t result = st->total * LS_P64_1;
    for (int i = 0; i < 4; i++) {
        result += ls_fold64(acc[2 * i] ^ ls_r64(s + 11 + 16 * i),
                            acc[2 * i + 1] ^ ls_r64(s + 11 + 16 * i + 8));
    }
    return ls_avalanche(result);
}

#endif
