/*
 * Tests of the promotion-gates C ABI (include/promotion_gates.h), plain C11 plus pthreads.
 *
 * Usage: test_promotion_gates ROUTING_TSV OVERRIDES_TSV
 *   ROUTING_TSV is tests/vectors/routing.json converted by vectors_tsv.py (test.sh does it):
 *   a line "overridden", overrides JSON, ignored value (the header's overridden rule), then
 *   name, salt, id_hex, traffic_percent, bucket, threshold, is_canary, tab-separated.
 *   OVERRIDES_TSV is tests/vectors/overrides.tsv.
 *
 * Prints each failed check and ends with the line "N passed, M failed"; exits 1 on any failure.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "promotion_gates.h"

/* ---- the assertion macros ------------------------------------------------------------ */

static unsigned passed, failed;

/* Counts one check; on failure prints the line and the printf-style explanation. */
static bool check_at(bool ok, int line, const char *fmt, ...) {
    if (ok) {
        passed++;
        return true;
    }
    failed++;
    fprintf(stderr, "FAILED line %d: ", line);
    va_list args;
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fputc('\n', stderr);
    return false;
}

#define CHECK(cond) check_at((cond), __LINE__, "%s", #cond)
#define CHECK_STATUS(expected, call) check_status_at((expected), (call), __LINE__, #call)

static bool check_status_at(pgate_status expected, pgate_status got, int line, const char *call) {
    return check_at(expected == got, line, "%s returned %s, expected %s", call,
                    pgate_status_str(got), pgate_status_str(expected));
}

/* Checks the error object of a failed call: its status, that its message contains `needle`
 * (unless NULL); then frees it and resets *err to NULL for the next call. */
#define CHECK_ERROR(err, status, needle) check_error_at(&(err), (status), (needle), __LINE__)

static void check_error_at(pgate_error **err, pgate_status status, const char *needle, int line) {
    if (!check_at(*err != NULL, line, "no error object written")) {
        return;
    }
    const char *message = pgate_error_message(*err);
    check_at(pgate_error_status(*err) == status, line, "error status %s, expected %s",
             pgate_status_str(pgate_error_status(*err)), pgate_status_str(status));
    check_at(message != NULL && message[0] != '\0', line, "empty error message");
    if (needle != NULL) {
        check_at(message != NULL && strstr(message, needle) != NULL, line,
                 "error message \"%s\" does not name \"%s\"", message, needle);
    }
    pgate_error_free(*err);
    *err = NULL;
}

/* ---- helpers --------------------------------------------------------------------------- */

/* A NUL-terminated string as the (pointer, length) pair the ABI takes. */
#define BYTES(s) (const uint8_t *)(s), strlen(s)

static const uint8_t NOT_UTF8[] = {'a', 0xff, 0xfe};
static const size_t TOO_LONG = (size_t)PTRDIFF_MAX + 1;

static pgate_gate *new_gate(const char *config, const char *slo) {
    pgate_gate *gate = NULL;
    pgate_error *err = NULL;
    pgate_status status =
        pgate_gate_new((const uint8_t *)config, config ? strlen(config) : 0,
                       (const uint8_t *)slo, slo ? strlen(slo) : 0, &gate, &err);
    if (!CHECK_STATUS(PGATE_STATUS_OK, status)) {
        fprintf(stderr, "  config %s, SLO %s: %s\n", config ? config : "(default)",
                slo ? slo : "(default)", pgate_error_message(err));
        pgate_error_free(err);
        exit(1); /* every later check would fail for the same reason */
    }
    return gate;
}

/* A gate in Canary{percent}; `more` holds further config members ("" for none). */
static pgate_gate *canary_gate(double percent, const char *more, const char *slo) {
    char config[512];
    snprintf(config, sizeof config,
             "{\"environment\": {\"canary\": {\"traffic_percent\": %.17g}}%s%s}", percent,
             more[0] != '\0' ? ", " : "", more);
    return new_gate(config, slo);
}

/* Reads a string output through the NULL-then-exact-size protocol; the caller frees it. */
typedef pgate_status (*text_reader)(const pgate_gate *, char *, size_t, size_t *);

static char *read_text(const pgate_gate *gate, text_reader read) {
    size_t len = 0;
    if (!CHECK_STATUS(PGATE_STATUS_BUFFER_TOO_SMALL, read(gate, NULL, 0, &len))) {
        return NULL;
    }
    char *buf = malloc(len + 1);
    if (buf == NULL) {
        abort();
    }
    size_t len2 = 0;
    if (!CHECK_STATUS(PGATE_STATUS_OK, read(gate, buf, len + 1, &len2)) || !CHECK(len2 == len) ||
        !CHECK(strlen(buf) == len)) {
        free(buf);
        return NULL;
    }
    return buf;
}

static bool contains(const char *haystack, const char *needle) {
    return haystack != NULL && strstr(haystack, needle) != NULL;
}

static unsigned count_of(const char *haystack, const char *needle) {
    unsigned n = 0;
    for (const char *p = haystack; p != NULL && (p = strstr(p, needle)) != NULL; p++) {
        n++;
    }
    return n;
}

static pgate_decision route(const pgate_gate *gate, const char *id) {
    pgate_decision d;
    memset(&d, 0, sizeof d);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_route(gate, BYTES(id), &d));
    return d;
}

/* Finds an id the gate routes to the canary (or not); writes it to id[32]. */
static pgate_decision find_id(const pgate_gate *gate, bool canary, char id[32]) {
    for (int i = 0; i < 100000; i++) {
        snprintf(id, 32, "user-%d", i);
        pgate_decision d = route(gate, id);
        if (d.is_canary == canary) {
            return d;
        }
    }
    CHECK(!"no id found for the cohort");
    exit(1);
}

/* A cold-path call that takes UTF-8 text as pointer and length, and an error object. */
typedef pgate_status (*text_call)(const pgate_gate *, const uint8_t *, size_t, pgate_error **);

/* The argument errors every text-taking call shares; `what` is how its messages name the text,
 * `pointer` its C parameter (whose length is `len`). */
static void check_text_errors(const pgate_gate *gate, text_call call, const char *what,
                              const char *pointer) {
    char not_utf8[160], null_with_len[96], too_long[96], size_max[96];
    snprintf(not_utf8, sizeof not_utf8,
             "invalid %s = \"a\\xff\\xfe\": %s is not valid UTF-8 (invalid byte at offset 1)",
             pointer, what);
    snprintf(null_with_len, sizeof null_with_len,
             "invalid %s = NULL with len = 3: a NULL pointer needs length 0", pointer);
    snprintf(too_long, sizeof too_long, "invalid len = %zu: above PTRDIFF_MAX (%td)", TOO_LONG,
             (ptrdiff_t)PTRDIFF_MAX);
    snprintf(size_max, sizeof size_max, "invalid len = %zu: above PTRDIFF_MAX", (size_t)SIZE_MAX);
    const struct {
        const uint8_t *ptr;
        size_t len;
        pgate_status status;
        const char *named;
    } cases[] = {
        {NOT_UTF8, sizeof NOT_UTF8, PGATE_STATUS_INVALID_ARGUMENT, not_utf8},
        {NULL, 3, PGATE_STATUS_NULL_POINTER, null_with_len},
        {(const uint8_t *)"x", TOO_LONG, PGATE_STATUS_INVALID_ARGUMENT, too_long},
        {(const uint8_t *)"x", SIZE_MAX, PGATE_STATUS_INVALID_ARGUMENT, size_max},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pgate_error *err = NULL;
        pgate_status status = call(gate, cases[i].ptr, cases[i].len, &err);
        check_at(status == cases[i].status, __LINE__, "%s, case %zu: %s, expected %s", what, i,
                 pgate_status_str(status), pgate_status_str(cases[i].status));
        check_error_at(&err, cases[i].status, cases[i].named, __LINE__);
    }
}

static pgate_environment environment_of(const pgate_gate *gate) {
    return route(gate, "probe").environment;
}

/* Routes fresh ids and records successes of `latency_ns` until `canary` canary outcomes and
 * at least `stable` stable ones are counted (stable only when the environment has any). */
static void feed(const pgate_gate *gate, unsigned canary, unsigned stable, uint64_t latency_ns) {
    static unsigned serial;
    unsigned got_canary = 0, got_stable = 0;
    bool ok = true;
    for (unsigned i = 0; ok && i < 1000000 && (got_canary < canary || got_stable < stable); i++) {
        char id[32];
        snprintf(id, sizeof id, "feed-%u", serial++);
        pgate_decision d = route(gate, id);
        if (d.environment == PGATE_ENVIRONMENT_STAGING) {
            stable = 0;
        }
        pgate_recorded recorded = PGATE_RECORDED_LATE;
        ok = pgate_record(gate, &d, true, latency_ns, &recorded) == PGATE_STATUS_OK &&
             recorded == PGATE_RECORDED_COUNTED;
        *(d.is_canary ? &got_canary : &got_stable) += 1;
    }
    CHECK(ok && got_canary >= canary && got_stable >= stable);
}

/* Returns flag `index` of a decision's flag set as a NUL-terminated copy in buf[64]. */
static const char *flag_name(const pgate_gate *gate, uint32_t set, size_t index, char buf[64]) {
    const uint8_t *name = NULL;
    size_t len = 0;
    buf[0] = '\0';
    if (CHECK_STATUS(PGATE_STATUS_OK, pgate_flag_set_name(gate, set, index, &name, &len)) &&
        CHECK(name != NULL && len < 64)) {
        memcpy(buf, name, len);
        buf[len] = '\0';
    }
    return buf;
}

static size_t flag_count(const pgate_gate *gate, uint32_t set) {
    size_t n = SIZE_MAX;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_flag_set_len(gate, set, &n));
    return n;
}

/* ---- the routing vectors --------------------------------------------------------------- */

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Splits a line into `n` tab-separated fields in place; false if the count differs. */
static bool split_tabs(char *line, char **fields, int n) {
    line[strcspn(line, "\r\n")] = '\0';
    for (int i = 0; i < n; i++) {
        fields[i] = line;
        char *tab = strchr(line, '\t');
        if (tab == NULL) {
            return i == n - 1;
        }
        *tab = '\0';
        line = tab + 1;
    }
    return false;
}

/* Escapes a salt as a JSON string body (the vectors' salts hold no control characters). */
static void json_escape(const char *in, char *out, size_t cap) {
    size_t j = 0;
    for (; *in != '\0' && j + 2 < cap; in++) {
        if (*in == '"' || *in == '\\') {
            out[j++] = '\\';
        }
        out[j++] = *in;
    }
    out[j] = '\0';
}

/* One vector's expectations, for route_vector. */
struct vector {
    const char *name;
    const uint8_t *id;
    size_t id_len;
    double percent;
    unsigned long bucket, threshold;
    bool is_canary;
};

/* Routes vector `v` through a new gate of `config` promoted to its percentage: with
 * pgate_route when `value` is NULL, else with pgate_route_forced and `value`, which forces
 * nothing. `how` names the way in messages. */
static void route_vector(const struct vector *v, const char *config, const char *value,
                         const char *how) {
    pgate_gate *gate = new_gate(config, NULL);
    pgate_error *err = NULL;
    pgate_status status = pgate_promote(gate, PGATE_ENVIRONMENT_CANARY, v->percent, &err);
    if (check_at(status == PGATE_STATUS_OK, __LINE__, "%s (%s): promote to %.17g%%: %s",
                 v->name, how, v->percent, pgate_error_message(err))) {
        pgate_decision d;
        memset(&d, 0xa5, sizeof d); /* written only on success */
        /* The empty id goes in as NULL with length 0, as the ABI allows. */
        const uint8_t *id = v->id_len == 0 ? NULL : v->id;
        status = value == NULL ? pgate_route(gate, id, v->id_len, &d)
                               : pgate_route_forced(gate, id, v->id_len, BYTES(value), &d);
        check_at(status == PGATE_STATUS_OK && d.bucket == v->bucket &&
                     d.threshold == v->threshold && d.is_canary == v->is_canary &&
                     d.forced == PGATE_FORCED_NONE &&
                     d.environment == PGATE_ENVIRONMENT_CANARY &&
                     d.traffic_percent == v->percent,
                 __LINE__,
                 "vector %s (%s): status %s, bucket %u threshold %u is_canary %d forced %d, "
                 "expected bucket %lu threshold %lu is_canary %d forced 0",
                 v->name, how, pgate_status_str(status), (unsigned)d.bucket,
                 (unsigned)d.threshold, (int)d.is_canary, (int)d.forced, v->bucket, v->threshold,
                 (int)v->is_canary);
    }
    pgate_error_free(err);
    pgate_gate_free(gate);
}

/* Routes every vector through a gate without overrides, and by the header's overridden rule
 * through one with its overrides: with no forcing value and with the ignored value. */
static void test_vectors(const char *path) {
    FILE *f = fopen(path, "r");
    if (!check_at(f != NULL, __LINE__, "cannot open %s", path)) {
        return;
    }
    char *line = NULL;
    size_t line_cap = 0;
    unsigned vectors = 0;
    char overrides[512] = "", ignored[64] = "";
    if (getline(&line, &line_cap, f) != -1) {
        char *field[3];
        if (check_at(split_tabs(line, field, 3) && strcmp(field[0], "overridden") == 0 &&
                         strlen(field[1]) < sizeof overrides && strlen(field[2]) < sizeof ignored,
                     __LINE__, "%s: the first line is no overridden rule", path)) {
            strcpy(overrides, field[1]);
            strcpy(ignored, field[2]);
        }
    }
    while (overrides[0] != '\0' && getline(&line, &line_cap, f) != -1) {
        char *field[7];
        if (!check_at(split_tabs(line, field, 7), __LINE__, "malformed vector line %u",
                      vectors + 1)) {
            continue;
        }
        vectors++;
        const char *name = field[0], *hex = field[2];
        size_t id_len = strlen(hex) / 2;
        uint8_t *id = malloc(id_len + 1);
        bool hex_ok = id != NULL && strlen(hex) % 2 == 0;
        for (size_t i = 0; hex_ok && i < id_len; i++) {
            int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
            hex_ok = hi >= 0 && lo >= 0;
            id[i] = (uint8_t)(hi * 16 + lo);
        }
        char *end = NULL;
        struct vector v = {
            .name = name,
            .id = id,
            .id_len = id_len,
            .percent = strtod(field[3], &end),
            .bucket = strtoul(field[4], NULL, 10),
            .threshold = strtoul(field[5], NULL, 10),
            .is_canary = strcmp(field[6], "1") == 0,
        };
        if (!check_at(hex_ok && *end == '\0', __LINE__, "%s: bad id_hex or percent", name)) {
            free(id);
            continue;
        }

        /* The salt comes from the config; the percent goes in as a double, unconverted. */
        char salt[300], config[1024];
        json_escape(field[1], salt, sizeof salt);
        snprintf(config, sizeof config, "{\"salt\": \"%s\"}", salt);
        route_vector(&v, config, NULL, "no overrides");
        snprintf(config, sizeof config, "{\"salt\": \"%s\", \"overrides\": %s}", salt, overrides);
        route_vector(&v, config, NULL, "overrides, no forcing value");
        route_vector(&v, config, ignored, "overrides, an ignored forcing value");
        free(id);
    }
    free(line);
    fclose(f);
    check_at(vectors >= 100, __LINE__, "only %u vectors read from %s", vectors, path);
    printf("routing vectors: %u routed, each without and with overrides\n", vectors);
}

/* ---- statuses, version, error objects -------------------------------------------------- */

/* ---- the override vectors ------------------------------------------------------------- */

/* A VALUE field of tests/vectors/overrides.tsv, decoded in place: "-" none (false), "hex:"
 * and the bytes in hex, or the field's bytes. *len receives the value's length; false with
 * *len 1 for a malformed hex field. */
static bool forcing_value(char *field, size_t *len) {
    if (strcmp(field, "-") == 0) {
        *len = 0;
        return false;
    }
    if (strncmp(field, "hex:", 4) != 0) {
        *len = strlen(field);
        return true;
    }
    const char *hex = field + 4;
    size_t n = strlen(hex);
    *len = n / 2;
    for (size_t i = 0; i < n / 2; i++) { /* writes byte i after reading digits 2i and 2i + 1 */
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0 || n % 2 != 0) {
            *len = 1;
            return false;
        }
        field[i] = (char)(hi * 16 + lo);
    }
    return true;
}

/* Routes each `route` line of tests/vectors/overrides.tsv with pgate_route_forced under its
 * named config, checks is_canary and forced, and what recording it does: by the decision, by
 * id with the value (pgate_record_by_id_forced) and by id alone (pgate_record_by_id). */
static void test_override_vectors(const char *path) {
    FILE *f = fopen(path, "r");
    if (!check_at(f != NULL, __LINE__, "cannot open %s", path)) {
        return;
    }
    enum { MAX_CONFIGS = 16 };
    char names[MAX_CONFIGS][32];
    pgate_gate *gates[MAX_CONFIGS];
    int configs = 0;
    unsigned cases = 0;
    char *line = NULL;
    size_t line_cap = 0;
    while (getline(&line, &line_cap, f) != -1) {
        char *field[6];
        if (line[0] == '#') {
            continue;
        }
        if (strncmp(line, "config\t", 7) == 0) {
            if (check_at(split_tabs(line, field, 3) && configs < MAX_CONFIGS, __LINE__,
                         "malformed config line")) {
                snprintf(names[configs], sizeof names[configs], "%s", field[1]);
                gates[configs++] = new_gate(field[2], NULL);
            }
            continue;
        }
        if (!check_at(split_tabs(line, field, 6) && strcmp(field[0], "route") == 0, __LINE__,
                      "malformed route line %u", cases + 1)) {
            continue;
        }
        cases++;
        const pgate_gate *gate = NULL;
        for (int i = 0; i < configs; i++) {
            if (strcmp(names[i], field[1]) == 0) {
                gate = gates[i];
            }
        }
        if (!check_at(gate != NULL, __LINE__, "no config %s", field[1])) {
            continue;
        }
        char shown_copy[64]; /* the field as written, for messages */
        snprintf(shown_copy, sizeof shown_copy, "%s", field[3]);
        size_t value_len = 0;
        bool present = forcing_value(field[3], &value_len);
        if (!check_at(present || value_len == 0, __LINE__, "malformed value %s", shown_copy)) {
            continue;
        }
        const uint8_t *value = present ? (const uint8_t *)field[3] : NULL;
        const char *id = field[2];
        pgate_decision d;
        memset(&d, 0xa5, sizeof d); /* written only on success */
        pgate_status status = pgate_route_forced(gate, BYTES(id), value, value_len, &d);
        pgate_forced forced = strcmp(field[5], "value") == 0     ? PGATE_FORCED_VALUE
                              : strcmp(field[5], "id_list") == 0 ? PGATE_FORCED_ID_LIST
                                                                 : PGATE_FORCED_NONE;
        bool is_canary = strcmp(field[4], "1") == 0;
        check_at(status == PGATE_STATUS_OK && d.is_canary == is_canary && d.forced == forced,
                 __LINE__, "%s id %s value \"%s\": is_canary %d forced %d, expected %d %d",
                 field[1], id, shown_copy, (int)d.is_canary, (int)d.forced, (int)is_canary,
                 (int)forced);
        pgate_recorded expected =
            forced == PGATE_FORCED_NONE ? PGATE_RECORDED_COUNTED : PGATE_RECORDED_FORCED;
        pgate_recorded recorded = PGATE_RECORDED_LATE;
        CHECK_STATUS(PGATE_STATUS_OK, pgate_record(gate, &d, true, 1000, &recorded));
        check_at(recorded == expected, __LINE__, "%s id %s value \"%s\": recorded %d", field[1],
                 id, shown_copy, (int)recorded);
        recorded = PGATE_RECORDED_LATE;
        CHECK_STATUS(PGATE_STATUS_OK, pgate_record_by_id_forced(gate, BYTES(id), value, value_len,
                                                                true, 1000, &recorded));
        check_at(recorded == expected, __LINE__, "%s id %s value \"%s\": by id with it %d",
                 field[1], id, shown_copy, (int)recorded);
        /* The plain call cannot see the value: only an id list forces it. */
        recorded = PGATE_RECORDED_LATE;
        CHECK_STATUS(PGATE_STATUS_OK, pgate_record_by_id(gate, BYTES(id), true, 1000, &recorded));
        check_at(recorded == (forced == PGATE_FORCED_ID_LIST ? PGATE_RECORDED_FORCED
                                                              : PGATE_RECORDED_COUNTED),
                 __LINE__, "%s id %s value \"%s\": by id alone %d", field[1], id, shown_copy,
                 (int)recorded);
    }
    free(line);
    fclose(f);
    for (int i = 0; i < configs; i++) {
        CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gates[i]));
    }
    check_at(cases >= 45 && configs >= 5, __LINE__, "only %u cases, %d configs read from %s",
             cases, configs, path);
    printf("override vectors: %u routed\n", cases);
}

/* A forced request reaches its version; its failures count in neither cohort, so a failing
 * tester never rolls the canary back; the decision keeps its size. */
static void test_forced(void) {
    CHECK(sizeof(pgate_decision) == 40 && offsetof(pgate_decision, forced) == 33);
    pgate_gate *gate = canary_gate(
        0, "\"overrides\": {\"header\": \"X-Canary\", \"canary_ids\": [\"tester-1\"]}",
        "{\"min_samples\": 20}");
    pgate_decision d;
    pgate_recorded recorded = PGATE_RECORDED_LATE;
    for (int i = 0; i < 200; i++) {
        char id[32];
        snprintf(id, sizeof id, "user-%d", i);
        CHECK_STATUS(PGATE_STATUS_OK,
                     pgate_route_forced(gate, BYTES(id), (const uint8_t *)"canary", 6, &d));
        CHECK(d.is_canary && d.forced == PGATE_FORCED_VALUE);
        CHECK_STATUS(PGATE_STATUS_OK, pgate_record(gate, &d, false, 5000000000u, &recorded));
        CHECK(recorded == PGATE_RECORDED_FORCED);
    }
    d = route(gate, "tester-1"); /* pgate_route checks the id lists too */
    CHECK(d.is_canary && d.forced == PGATE_FORCED_ID_LIST);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_record_by_id(gate, BYTES("tester-1"), false, 1, &recorded));
    CHECK(recorded == PGATE_RECORDED_FORCED);
    /* By id, a request forced by value is forced only when the value is passed again. */
    CHECK_STATUS(PGATE_STATUS_OK, pgate_record_by_id_forced(gate, BYTES("user-0"),
                                                            BYTES("canary"), false, 1, &recorded));
    CHECK(recorded == PGATE_RECORDED_FORCED);
    pgate_health h;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_monitor_health(gate, &h, NULL, 0, NULL));
    CHECK(h.canary_requests == 0 && h.production_requests == 0);
    CHECK(environment_of(gate) == PGATE_ENVIRONMENT_CANARY);
    /* A forced byte set by hand is honoured; an unforced decision counts. */
    d = route(gate, "user-1");
    CHECK(!d.is_canary && d.forced == PGATE_FORCED_NONE);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_record(gate, &d, true, 1000, &recorded));
    CHECK(recorded == PGATE_RECORDED_COUNTED);
    d.forced = PGATE_FORCED_VALUE;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_record(gate, &d, true, 1000, &recorded));
    CHECK(recorded == PGATE_RECORDED_FORCED);
    /* The arguments: NULL out, NULL gate, an over-long value. */
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER,
                 pgate_route_forced(gate, BYTES("u"), (const uint8_t *)"canary", 6, NULL));
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER,
                 pgate_route_forced(NULL, BYTES("u"), (const uint8_t *)"canary", 6, &d));
    CHECK_STATUS(PGATE_STATUS_INVALID_ARGUMENT,
                 pgate_route_forced(gate, BYTES("u"), (const uint8_t *)"c", TOO_LONG, &d));
    char *metrics = read_text(gate, pgate_metrics_prometheus);
    /* 200 forced by value, tester-1 and user-0 by id, one forced byte set by hand. */
    CHECK(contains(metrics, "promotion_forced_outcomes_total{gate=\"default\"} 203"));
    free(metrics);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));
}

/* Where a host reads the forcing value, without parsing the config: the names the config's
 * overrides section gives (length 0: not given), in buffers of PGATE_NAME_CAPACITY; a too
 * small buffer gets both lengths and no name. The gate's own name, the same way. And whether
 * the store sums every process's outcomes (no store here: false). */
static void test_override_names(void) {
    pgate_gate *gate = canary_gate(5, "\"overrides\": {\"header\": \"X-Canary\"}", NULL);
    char header[PGATE_NAME_CAPACITY], cookie[PGATE_NAME_CAPACITY];
    size_t header_len = 0, cookie_len = 0;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_override_names(gate, header, sizeof header, &header_len,
                                                       cookie, sizeof cookie, &cookie_len));
    CHECK(header_len == 8 && strcmp(header, "X-Canary") == 0);
    CHECK(cookie_len == 0 && cookie[0] == '\0');
    char small[8] = "abc";
    header_len = cookie_len = 99;
    CHECK_STATUS(PGATE_STATUS_BUFFER_TOO_SMALL,
                 pgate_override_names(gate, small, sizeof small, &header_len, cookie,
                                      sizeof cookie, &cookie_len));
    CHECK(header_len == 8 && cookie_len == 0 && strcmp(small, "abc") == 0);
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_override_names(gate, header, sizeof header,
                                                                 NULL, cookie, sizeof cookie,
                                                                 &cookie_len));
    char name[PGATE_NAME_CAPACITY];
    size_t name_len = 0;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_name(gate, name, sizeof name, &name_len));
    CHECK(name_len == 7 && strcmp(name, "default") == 0);
    strcpy(small, "abc");
    CHECK_STATUS(PGATE_STATUS_BUFFER_TOO_SMALL, pgate_gate_name(gate, small, 7, &name_len));
    CHECK(name_len == 7 && strcmp(small, "abc") == 0);
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_gate_name(gate, name, sizeof name, NULL));
    bool fleet_judging = true;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_fleet_judging(gate, &fleet_judging));
    CHECK(!fleet_judging);
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_fleet_judging(gate, NULL));
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));
}

static void test_status_names(void) {
    static const char *const names[] = {
        "PGATE_STATUS_OK",
        "PGATE_STATUS_NULL_POINTER",
        "PGATE_STATUS_INVALID_ARGUMENT",
        "PGATE_STATUS_INVALID_CONFIG",
        "PGATE_STATUS_INVALID_JSON",
        "PGATE_STATUS_INVALID_PROMOTION",
        "PGATE_STATUS_SLO_NOT_MET",
        "PGATE_STATUS_INSUFFICIENT_DATA",
        "PGATE_STATUS_ALREADY_THERE",
        "PGATE_STATUS_INVALID_FLAG",
        "PGATE_STATUS_FLAG_NOT_ENABLED",
        "PGATE_STATUS_ROLLBACK_REFUSED",
        "PGATE_STATUS_BUFFER_TOO_SMALL",
        "PGATE_STATUS_INVALID_HANDLE",
        "PGATE_STATUS_PANIC",
        "PGATE_STATUS_INDEX_OUT_OF_RANGE",
        "PGATE_STATUS_UNKNOWN_FLAG_SET",
        "PGATE_STATUS_FLAG_SETS_EXHAUSTED",
        "PGATE_STATUS_STORE",
        "PGATE_STATUS_STAGE_CHANGED",
        "PGATE_STATUS_GATE_CHANGED",
    };
    /* The header's constants carry the numbers the names belong to. */
    static const pgate_status codes[] = {
        PGATE_STATUS_OK,
        PGATE_STATUS_NULL_POINTER,
        PGATE_STATUS_INVALID_ARGUMENT,
        PGATE_STATUS_INVALID_CONFIG,
        PGATE_STATUS_INVALID_JSON,
        PGATE_STATUS_INVALID_PROMOTION,
        PGATE_STATUS_SLO_NOT_MET,
        PGATE_STATUS_INSUFFICIENT_DATA,
        PGATE_STATUS_ALREADY_THERE,
        PGATE_STATUS_INVALID_FLAG,
        PGATE_STATUS_FLAG_NOT_ENABLED,
        PGATE_STATUS_ROLLBACK_REFUSED,
        PGATE_STATUS_BUFFER_TOO_SMALL,
        PGATE_STATUS_INVALID_HANDLE,
        PGATE_STATUS_PANIC,
        PGATE_STATUS_INDEX_OUT_OF_RANGE,
        PGATE_STATUS_UNKNOWN_FLAG_SET,
        PGATE_STATUS_FLAG_SETS_EXHAUSTED,
        PGATE_STATUS_STORE,
        PGATE_STATUS_STAGE_CHANGED,
        PGATE_STATUS_GATE_CHANGED,
    };
    for (uint32_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *got = pgate_status_str(i);
        check_at(codes[i] == i && got != NULL && strcmp(got, names[i]) == 0, __LINE__,
                 "pgate_status_str(%u) = %s, expected %s", (unsigned)i, got, names[i]);
    }
    CHECK(strcmp(pgate_status_str(21), "PGATE_STATUS_UNKNOWN") == 0);
    CHECK(strcmp(pgate_status_str(UINT32_MAX), "PGATE_STATUS_UNKNOWN") == 0);
}

static void test_version(void) {
    const char *v = pgate_version();
    CHECK(v != NULL && v == pgate_version()); /* static: the same string every time */
    unsigned major, minor, patch;
    CHECK(v != NULL && sscanf(v, "%u.%u.%u", &major, &minor, &patch) == 3);
#ifdef PGATE_EXPECTED_VERSION /* test.sh passes Cargo.toml's version */
    check_at(v != NULL && strcmp(v, PGATE_EXPECTED_VERSION) == 0, __LINE__,
             "pgate_version() = %s, Cargo.toml says %s", v, PGATE_EXPECTED_VERSION);
#endif
}

static void test_error_objects(void) {
    CHECK(pgate_error_status(NULL) == PGATE_STATUS_NULL_POINTER);
    CHECK(pgate_error_message(NULL) != NULL && pgate_error_message(NULL)[0] == '\0');
    pgate_error_free(NULL); /* accepted */

    pgate_gate *gate = new_gate(NULL, NULL);
    pgate_error *err = NULL;
    /* Success writes no error object. */
    CHECK_STATUS(PGATE_STATUS_OK, pgate_enable_feature(gate, BYTES("x"), &err));
    CHECK(err == NULL);
    /* Failure writes one that carries the returned status and a message naming the problem. */
    CHECK_STATUS(PGATE_STATUS_FLAG_NOT_ENABLED, pgate_disable_feature(gate, BYTES("nope"), &err));
    CHECK_ERROR(err, PGATE_STATUS_FLAG_NOT_ENABLED, "\"nope\"");
    /* A NULL err is allowed: only the status comes back. */
    CHECK_STATUS(PGATE_STATUS_FLAG_NOT_ENABLED, pgate_disable_feature(gate, BYTES("nope"), NULL));
    /* A pointer or length refused before use is named with its value. */
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_enable_feature(gate, NULL, 1, &err));
    CHECK_ERROR(err, PGATE_STATUS_NULL_POINTER,
                "invalid name = NULL with len = 1: a NULL pointer needs length 0");
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));
}

/* ---- creating gates, config -------------------------------------------------------------- */

static void test_gate_new(void) {
    static max_align_t marker;
    pgate_gate *const untouched = (pgate_gate *)(void *)&marker;
    pgate_gate *gate = untouched;
    pgate_error *err = NULL;

    /* Defaults: NULL documents with length 0; Production, gate "default". */
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_new(NULL, 0, NULL, 0, &gate, &err));
    CHECK(gate != untouched && gate != NULL && err == NULL);
    CHECK(environment_of(gate) == PGATE_ENVIRONMENT_PRODUCTION);
    char *config = read_text(gate, pgate_config_json);
    CHECK(contains(config, "\"environment\":\"production\""));
    CHECK(contains(config, "\"gate\":\"default\""));
    free(config);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));

    /* An empty document (any pointer, length 0) also means the defaults. */
    gate = untouched;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_new((const uint8_t *)"", 0, (const uint8_t *)"", 0, &gate, &err));
    CHECK(gate != untouched && gate != NULL && err == NULL);
    CHECK(environment_of(gate) == PGATE_ENVIRONMENT_PRODUCTION);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));

    /* Each refusal writes nothing to gate_out and explains itself. */
    struct {
        const char *config, *slo;
        pgate_status status;
        const char *named;
    } bad[] = {
        {"{not json", NULL, PGATE_STATUS_INVALID_JSON, "config"},
        {"{\"slo_treshold\": 0.9}", NULL, PGATE_STATUS_INVALID_JSON, "slo_treshold"},
        {"{\"environment\": {\"canary\": {\"traffic_percent\": 150}}}", NULL,
         PGATE_STATUS_INVALID_CONFIG, "environment.canary.traffic_percent"},
        {"{\"feature_flags\": [\"a b\"]}", NULL, PGATE_STATUS_INVALID_CONFIG, "feature_flags[0]"},
        {"{\"slo_threshold\": 1.5}", NULL, PGATE_STATUS_INVALID_CONFIG, "slo_threshold"},
        {NULL, "{\"min_sample\": 5}", PGATE_STATUS_INVALID_JSON, "min_sample"},
        {NULL, "{\"min_samples\": 0}", PGATE_STATUS_INVALID_CONFIG, "min_samples"},
        {NULL, "[1,2", PGATE_STATUS_INVALID_JSON, "SLO config"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gate = untouched;
        pgate_status status = pgate_gate_new(
            (const uint8_t *)bad[i].config, bad[i].config ? strlen(bad[i].config) : 0,
            (const uint8_t *)bad[i].slo, bad[i].slo ? strlen(bad[i].slo) : 0, &gate, &err);
        check_at(status == bad[i].status, __LINE__, "case %zu: %s", i, pgate_status_str(status));
        CHECK(gate == untouched);
        CHECK_ERROR(err, bad[i].status, bad[i].named);
    }

    /* Pointer and length errors. */
    gate = untouched;
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_gate_new(NULL, 0, NULL, 0, NULL, &err));
    CHECK_ERROR(err, PGATE_STATUS_NULL_POINTER, NULL);
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_gate_new(NULL, 2, NULL, 0, &gate, NULL));
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_gate_new(NULL, 0, NULL, 2, &gate, NULL));
    CHECK_STATUS(PGATE_STATUS_INVALID_ARGUMENT,
                 pgate_gate_new((const uint8_t *)"{}", TOO_LONG, NULL, 0, &gate, NULL));
    CHECK_STATUS(PGATE_STATUS_INVALID_ARGUMENT,
                 pgate_gate_new((const uint8_t *)"{}", SIZE_MAX, NULL, 0, &gate, NULL));
    CHECK_STATUS(PGATE_STATUS_INVALID_ARGUMENT,
                 pgate_gate_new(NOT_UTF8, sizeof NOT_UTF8, NULL, 0, &gate, &err));
    CHECK_ERROR(err, PGATE_STATUS_INVALID_ARGUMENT,
                "invalid config_json = \"a\\xff\\xfe\": config is not valid UTF-8 (invalid "
                "byte at offset 1)");
    CHECK(gate == untouched);
}

static void test_config(void) {
    pgate_gate *gate =
        canary_gate(10, "\"feature_flags\": [\"new_api\"], \"gate\": \"checkout\"", NULL);
    pgate_error *err = NULL;
    char *before = read_text(gate, pgate_config_json);
    CHECK(contains(before, "\"gate\":\"checkout\""));
    CHECK(contains(before, "\"feature_flags\":[\"new_api\"]"));
    CHECK(contains(before, "{\"canary\":{\"traffic_percent\":10.0}}"));

    /* The buffer protocol: the NUL needs room; outputs only on success. */
    size_t len = 0, need = before ? strlen(before) : 0;
    char small[8] = "xxxxxxx";
    CHECK_STATUS(PGATE_STATUS_BUFFER_TOO_SMALL, pgate_config_json(gate, small, sizeof small, &len));
    CHECK(len == need && strcmp(small, "xxxxxxx") == 0);
    char *exact = malloc(need + 1);
    CHECK_STATUS(PGATE_STATUS_BUFFER_TOO_SMALL, pgate_config_json(gate, exact, need, &len));
    CHECK_STATUS(PGATE_STATUS_OK, pgate_config_json(gate, exact, need + 1, &len));
    CHECK(len == need && strcmp(exact, before ? before : "") == 0);
    free(exact);
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_config_json(gate, small, sizeof small, NULL));
    len = 7;
    CHECK_STATUS(PGATE_STATUS_INVALID_ARGUMENT, pgate_config_json(gate, small, TOO_LONG, &len));
    CHECK(len == 7);

    /* Refused swaps leave the config exactly as it was. */
    struct {
        const char *json;
        pgate_status status;
        const char *named;
    } bad[] = {
        {"{\"gate\": ", PGATE_STATUS_INVALID_JSON, NULL},
        {"", PGATE_STATUS_INVALID_JSON, NULL},
        {"{\"gate\": \"checkout\", \"traffic\": 5}", PGATE_STATUS_INVALID_JSON, "traffic"},
        {"{\"slo_threshold\": 7}", PGATE_STATUS_INVALID_CONFIG, "slo_threshold"},
        {"{\"rollback_window_seconds\": 0}", PGATE_STATUS_INVALID_CONFIG,
         "rollback_window_seconds"},
        {"{\"environment\": {\"canary\": {\"traffic_percent\": -1}}}", PGATE_STATUS_INVALID_CONFIG,
         "environment.canary.traffic_percent"},
        {"{\"feature_flags\": [\"a\", \"a\"]}", PGATE_STATUS_INVALID_CONFIG, "feature_flags[1]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pgate_status status = pgate_swap_config(gate, BYTES(bad[i].json), &err);
        check_at(status == bad[i].status, __LINE__, "case %zu: %s", i, pgate_status_str(status));
        CHECK_ERROR(err, bad[i].status, bad[i].named);
    }
    CHECK_STATUS(PGATE_STATUS_INVALID_JSON, pgate_swap_config(gate, NULL, 0, &err));
    CHECK_ERROR(err, PGATE_STATUS_INVALID_JSON, NULL);
    check_text_errors(gate, pgate_swap_config, "config", "json");
    char *after = read_text(gate, pgate_config_json);
    CHECK(before != NULL && after != NULL && strcmp(before, after) == 0);
    free(after);

    /* A valid swap is read back, and routing follows it. */
    static const char next[] = "{\"environment\": {\"canary\": {\"traffic_percent\": 100}},"
                               " \"feature_flags\": [\"dark_mode\"], \"gate\": \"checkout\"}";
    CHECK_STATUS(PGATE_STATUS_OK, pgate_swap_config(gate, BYTES(next), &err));
    CHECK(err == NULL);
    after = read_text(gate, pgate_config_json);
    CHECK(contains(after, "\"feature_flags\":[\"dark_mode\"]"));
    CHECK(contains(after, "{\"canary\":{\"traffic_percent\":100.0}}"));
    bool on = false;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_is_feature_enabled(gate, BYTES("dark_mode"), &on));
    CHECK(on);
    pgate_decision d = route(gate, "anyone");
    CHECK(d.is_canary && d.threshold == 10000000);
    free(after);
    free(before);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));
}

/* ---- routing and recording --------------------------------------------------------------- */

static void test_route(void) {
    pgate_gate *gate = canary_gate(10, "\"feature_flags\": [\"new_api\", \"beta\"]", NULL);
    char id[32], buf[64];
    pgate_decision canary = find_id(gate, true, id);
    pgate_decision again = route(gate, id);
    CHECK(memcmp(&canary, &again, offsetof(pgate_decision, is_canary)) == 0 &&
          again.is_canary); /* deterministic */
    CHECK(canary.environment == PGATE_ENVIRONMENT_CANARY && canary.traffic_percent == 10.0);
    CHECK(canary.threshold == 1000000 && canary.bucket < canary.threshold);
    /* A canary request sees the release flags, in byte order. */
    CHECK(flag_count(gate, canary.flag_set) == 2);
    CHECK(strcmp(flag_name(gate, canary.flag_set, 0, buf), "beta") == 0);
    CHECK(strcmp(flag_name(gate, canary.flag_set, 1, buf), "new_api") == 0);
    const uint8_t *name = NULL;
    size_t len = 99;
    CHECK_STATUS(PGATE_STATUS_INDEX_OUT_OF_RANGE,
                 pgate_flag_set_name(gate, canary.flag_set, 2, &name, &len));
    CHECK(name == NULL && len == 99);
    CHECK_STATUS(PGATE_STATUS_INDEX_OUT_OF_RANGE,
                 pgate_flag_set_name(gate, canary.flag_set, SIZE_MAX, &name, &len));

    /* A stable request sees none; a set number the gate never gave out is refused. */
    pgate_decision stable = find_id(gate, false, id);
    CHECK(stable.bucket >= stable.threshold && stable.environment == PGATE_ENVIRONMENT_CANARY);
    CHECK(flag_count(gate, stable.flag_set) == 0);
    size_t unknown_len = 7;
    CHECK_STATUS(PGATE_STATUS_UNKNOWN_FLAG_SET, pgate_flag_set_len(gate, UINT32_MAX, &unknown_len));
    CHECK(unknown_len == 7);
    CHECK_STATUS(PGATE_STATUS_UNKNOWN_FLAG_SET,
                 pgate_flag_set_name(gate, UINT32_MAX, 0, &name, &len));

    /* Ids are bytes: not UTF-8, with NULs inside; NULL with length 0 is the empty id. */
    static const uint8_t raw[] = {0x00, 0xff, 0xc3, 0x00};
    pgate_decision a, b;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_route(gate, raw, sizeof raw, &a));
    CHECK_STATUS(PGATE_STATUS_OK, pgate_route(gate, raw, 2, &b));
    CHECK(a.bucket != b.bucket); /* the bytes after a NUL count */
    CHECK_STATUS(PGATE_STATUS_OK, pgate_route(gate, NULL, 0, &a));
    CHECK_STATUS(PGATE_STATUS_OK, pgate_route(gate, raw, 0, &b));
    CHECK(a.bucket == b.bucket);

    /* Staging: everyone on the new version with every flag; Production: no one. */
    CHECK_STATUS(PGATE_STATUS_OK,
                 pgate_swap_config(gate, BYTES("{\"environment\": \"staging\"}"), NULL));
    pgate_decision s = route(gate, id);
    CHECK(s.environment == PGATE_ENVIRONMENT_STAGING && s.is_canary && s.threshold == 10000000);
    CHECK(s.traffic_percent == 100.0 && s.stage > canary.stage);
    CHECK_STATUS(PGATE_STATUS_OK,
                 pgate_swap_config(gate, BYTES("{\"environment\": \"production\"}"), NULL));
    pgate_decision p = route(gate, id);
    CHECK(p.environment == PGATE_ENVIRONMENT_PRODUCTION && !p.is_canary && p.threshold == 0);
    CHECK(p.traffic_percent == 0.0 && flag_count(gate, p.flag_set) == 0);
    /* The old decision's flag names are still readable: valid until the gate is freed. */
    CHECK(strcmp(flag_name(gate, canary.flag_set, 1, buf), "new_api") == 0);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));
}

static void test_record(void) {
    pgate_gate *gate = canary_gate(10, "", NULL);
    char id[32];
    pgate_recorded recorded = PGATE_RECORDED_FOREIGN;
    pgate_decision old = find_id(gate, true, id);

    /* By decision, by id, with and without the out-value. */
    CHECK_STATUS(PGATE_STATUS_OK, pgate_record(gate, &old, true, 2000000, &recorded));
    CHECK(recorded == PGATE_RECORDED_COUNTED);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_record(gate, &old, false, 0, NULL));
    recorded = PGATE_RECORDED_FOREIGN;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_record_by_id(gate, BYTES(id), true, 1000, &recorded));
    CHECK(recorded == PGATE_RECORDED_COUNTED);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_record_by_id(gate, NULL, 0, true, UINT64_MAX, NULL));

    /* A decision from a future stage was not made by this gate: Foreign, not counted. */
    pgate_decision forged = old;
    forged.stage += 1000;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_record(gate, &forged, true, 1000, &recorded));
    CHECK(recorded == PGATE_RECORDED_FOREIGN);

    /* After a stage change (ramping down is not gated), once this thread has recorded for the
     * new stage, an outcome of the old stage is Late. */
    CHECK_STATUS(PGATE_STATUS_OK, pgate_promote(gate, PGATE_ENVIRONMENT_CANARY, 5.0, NULL));
    pgate_decision fresh = route(gate, "someone");
    CHECK(fresh.stage > old.stage);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_record(gate, &fresh, true, 1000, &recorded));
    CHECK(recorded == PGATE_RECORDED_COUNTED);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_record(gate, &old, true, 1000, &recorded));
    CHECK(recorded == PGATE_RECORDED_LATE);

    /* A client that went away: nothing before the SLO's latency target (500 ms), a slow
     * success after it; never a failure. */
    bool abandoned = true;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_record_abandoned(gate, &fresh, 100000000u, &abandoned));
    CHECK(!abandoned);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_record_abandoned(gate, &fresh, 2000000000u, &abandoned));
    CHECK(abandoned);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_record_abandoned(gate, &fresh, 2000000000u, NULL));

    /* The judge counts only what was Counted in the current stage. */
    pgate_health h;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_monitor_health(gate, &h, NULL, 0, NULL));
    CHECK(h.stage == fresh.stage);
    CHECK(h.canary_requests + h.production_requests == 3);
    CHECK(h.canary_error_rate == 0.0 && h.production_error_rate == 0.0);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));
}

/* ---- judging ----------------------------------------------------------------------------- */

static void test_health(void) {
    pgate_gate *gate = canary_gate(50, "", "{\"min_samples\": 20, \"warm_up_ms\": 0, \"promotion_evidence\": false}");
    pgate_health h;
    char evidence[1024];
    size_t len = 0;

    /* No data yet: MONITOR, nothing fired. */
    CHECK_STATUS(PGATE_STATUS_OK,
                 pgate_monitor_health(gate, &h, evidence, sizeof evidence, &len));
    CHECK(h.environment == PGATE_ENVIRONMENT_CANARY && h.traffic_percent == 50.0);
    CHECK(h.canary_requests == 0 && h.production_requests == 0 && !h.sufficient_data);
    CHECK(h.recommendation == PGATE_RECOMMENDATION_MONITOR && h.rules_fired == 0);
    CHECK(len == strlen(evidence) && contains(evidence, "min_samples 20"));
    CHECK(h.stage == route(gate, "x").stage);
    bool compliant = true;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_check_slo(gate, &compliant));
    CHECK(!compliant); /* too little data */

    /* Healthy data: counts, rates, compliance and the verdict. */
    feed(gate, 30, 30, 3000000);
    CHECK_STATUS(PGATE_STATUS_OK,
                 pgate_monitor_health(gate, &h, evidence, sizeof evidence, &len));
    CHECK(h.canary_requests >= 30 && h.production_requests >= 30 && h.sufficient_data);
    CHECK(h.canary_error_rate == 0.0 && h.production_error_rate == 0.0);
    CHECK(h.canary_compliance == 1.0 && h.health_score == 1.0 && h.rules_fired == 0);
    CHECK(h.recommendation == PGATE_RECOMMENDATION_HEALTHY);
    CHECK(h.canary_p99_ns >= 2900000 && h.canary_p99_ns <= 3100000); /* 2 significant figures */
    CHECK(h.production_p99_ns >= 2900000 && h.production_p99_ns <= 3100000);
    CHECK(contains(evidence, "no rule fired"));
    CHECK_STATUS(PGATE_STATUS_OK, pgate_check_slo(gate, &compliant));
    CHECK(compliant);

    /* BUFFER_TOO_SMALL: the health is still written, the needed length given, the buffer
     * left alone; it takes len + 1 bytes (the NUL). */
    size_t need = len;
    char small[16] = "untouched";
    pgate_health h2;
    memset(&h2, 0, sizeof h2);
    h2.stage = UINT64_MAX;
    len = 0;
    CHECK_STATUS(PGATE_STATUS_BUFFER_TOO_SMALL,
                 pgate_monitor_health(gate, &h2, small, sizeof small, &len));
    CHECK(len == need && strcmp(small, "untouched") == 0 && h2.stage == h.stage);
    char *exact = malloc(need + 1);
    CHECK_STATUS(PGATE_STATUS_BUFFER_TOO_SMALL,
                 pgate_monitor_health(gate, &h2, exact, need, &len));
    CHECK_STATUS(PGATE_STATUS_OK, pgate_monitor_health(gate, &h2, exact, need + 1, &len));
    CHECK(len == strlen(exact));
    free(exact);

    /* NULL outputs. */
    h2.stage = UINT64_MAX;
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER,
                 pgate_monitor_health(gate, NULL, evidence, sizeof evidence, &len));
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER,
                 pgate_monitor_health(gate, &h2, evidence, sizeof evidence, NULL));
    CHECK(h2.stage == UINT64_MAX);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_monitor_health(gate, &h2, NULL, 0, NULL));
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_check_slo(gate, NULL));
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));
}

static void test_automatic_rollback(void) {
    pgate_gate *gate = canary_gate(100, "\"feature_flags\": [\"new_api\"]", NULL);
    /* A canary that fails every request rolls itself back within a few records. */
    unsigned records = 0;
    for (; records < 64; records++) {
        char id[32];
        snprintf(id, sizeof id, "doomed-%u", records);
        pgate_decision d = route(gate, id);
        if (d.environment != PGATE_ENVIRONMENT_CANARY) {
            break;
        }
        CHECK_STATUS(PGATE_STATUS_OK, pgate_record(gate, &d, false, 1000000, NULL));
    }
    check_at(records >= 1 && records <= 16, __LINE__, "rolled back after %u records", records);
    CHECK(environment_of(gate) == PGATE_ENVIRONMENT_PRODUCTION);
    bool on = true;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_is_feature_enabled(gate, BYTES("new_api"), &on));
    CHECK(!on); /* release flags go with the release */
    char *history = read_text(gate, pgate_rollback_history_json);
    CHECK(count_of(history, "\"trigger\":\"automatic\"") == 1);
    CHECK(contains(history, "\"feature\":\"Canary{100}\""));
    CHECK(contains(history, "overwhelming_errors"));
    free(history);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));
}

/* ---- promotion, rollback, flags ---------------------------------------------------------- */

static void test_promote(void) {
    pgate_gate *gate = new_gate("{\"feature_flags\": [\"new_api\"]}", "{\"min_samples\": 10, \"warm_up_ms\": 0, \"promotion_evidence\": false}");
    pgate_error *err = NULL;

    /* Paths the state machine does not have. */
    CHECK_STATUS(PGATE_STATUS_INVALID_PROMOTION,
                 pgate_promote(gate, PGATE_ENVIRONMENT_STAGING, 0.0, &err));
    CHECK_ERROR(err, PGATE_STATUS_INVALID_PROMOTION, "Production -> Staging");
    CHECK_STATUS(PGATE_STATUS_ALREADY_THERE,
                 pgate_promote(gate, PGATE_ENVIRONMENT_PRODUCTION, 0.0, &err));
    CHECK_ERROR(err, PGATE_STATUS_ALREADY_THERE, "already");

    /* Bad arguments: percentages and environment numbers. */
    const double bad_percent[] = {NAN, -1.0, 100.5, INFINITY, -INFINITY, -0.000001};
    for (size_t i = 0; i < sizeof bad_percent / sizeof bad_percent[0]; i++) {
        CHECK_STATUS(PGATE_STATUS_INVALID_CONFIG,
                     pgate_promote(gate, PGATE_ENVIRONMENT_CANARY, bad_percent[i], &err));
        CHECK_ERROR(err, PGATE_STATUS_INVALID_CONFIG, "environment.canary.traffic_percent");
    }
    CHECK_STATUS(PGATE_STATUS_INVALID_ARGUMENT, pgate_promote(gate, 3, 1.0, &err));
    CHECK_ERROR(err, PGATE_STATUS_INVALID_ARGUMENT, "invalid environment = 3");
    CHECK_STATUS(PGATE_STATUS_INVALID_ARGUMENT, pgate_promote(gate, UINT32_MAX, 1.0, NULL));
    CHECK(environment_of(gate) == PGATE_ENVIRONMENT_PRODUCTION);

    /* A new rollout and ramping down are not gated. */
    CHECK_STATUS(PGATE_STATUS_OK, pgate_promote(gate, PGATE_ENVIRONMENT_CANARY, 20.0, &err));
    CHECK(err == NULL && route(gate, "x").traffic_percent == 20.0);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_promote(gate, PGATE_ENVIRONMENT_CANARY, 10.0, &err));
    CHECK_STATUS(PGATE_STATUS_ALREADY_THERE,
                 pgate_promote(gate, PGATE_ENVIRONMENT_CANARY, 10.0, &err));
    CHECK_ERROR(err, PGATE_STATUS_ALREADY_THERE, NULL);

    /* Ramping up is gated: refused without data, and nothing changes. */
    CHECK_STATUS(PGATE_STATUS_INSUFFICIENT_DATA,
                 pgate_promote(gate, PGATE_ENVIRONMENT_CANARY, 50.0, &err));
    CHECK_ERROR(err, PGATE_STATUS_INSUFFICIENT_DATA, "0 of 10 canary samples");
    CHECK_STATUS(PGATE_STATUS_INSUFFICIENT_DATA,
                 pgate_promote(gate, PGATE_ENVIRONMENT_STAGING, 0.0, &err));
    CHECK_ERROR(err, PGATE_STATUS_INSUFFICIENT_DATA, NULL);
    CHECK(route(gate, "x").traffic_percent == 10.0);

    /* With enough healthy data each gated step passes: ramp up, Staging, Production. */
    feed(gate, 10, 10, 1000000);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_promote(gate, PGATE_ENVIRONMENT_CANARY, 50.0, &err));
    CHECK_STATUS(PGATE_STATUS_INSUFFICIENT_DATA, /* a new stage starts from zero */
                 pgate_promote(gate, PGATE_ENVIRONMENT_STAGING, 0.0, &err));
    CHECK_ERROR(err, PGATE_STATUS_INSUFFICIENT_DATA, NULL);
    feed(gate, 10, 10, 1000000);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_promote(gate, PGATE_ENVIRONMENT_STAGING, 12.5, &err));
    CHECK(environment_of(gate) == PGATE_ENVIRONMENT_STAGING);
    CHECK_STATUS(PGATE_STATUS_INVALID_PROMOTION,
                 pgate_promote(gate, PGATE_ENVIRONMENT_CANARY, 10.0, &err));
    CHECK_ERROR(err, PGATE_STATUS_INVALID_PROMOTION, "Staging -> Canary{10}");
    feed(gate, 10, 0, 1000000);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_promote(gate, PGATE_ENVIRONMENT_PRODUCTION, 0.0, &err));
    CHECK(err == NULL);

    /* Promotion to Production graduates the release's flags: on for everyone. */
    pgate_decision d = route(gate, "x");
    char buf[64];
    CHECK(d.environment == PGATE_ENVIRONMENT_PRODUCTION && !d.is_canary);
    CHECK(flag_count(gate, d.flag_set) == 1 &&
          strcmp(flag_name(gate, d.flag_set, 0, buf), "new_api") == 0);
    char *config = read_text(gate, pgate_config_json);
    CHECK(contains(config, "\"graduated_flags\":[\"new_api\"]"));
    free(config);

    /* Canary straight to Production (gated, skips Staging). */
    CHECK_STATUS(PGATE_STATUS_OK, pgate_promote(gate, PGATE_ENVIRONMENT_CANARY, 100.0, NULL));
    feed(gate, 10, 0, 1000000);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_promote(gate, PGATE_ENVIRONMENT_PRODUCTION, 0.0, NULL));
    CHECK(environment_of(gate) == PGATE_ENVIRONMENT_PRODUCTION);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));
}

/* A ramp loop's look, then a rollback before its promotion: pgate_promote_from refuses it
 * rather than start a new rollout of the build rolled back; from the current stage it promotes. */
static void test_promote_from(void) {
    pgate_gate *gate = canary_gate(10, "", NULL);
    pgate_error *err = NULL;
    const uint64_t looked = route(gate, "x").stage;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_rollback(gate, BYTES("the judge, or a process"), NULL));
    CHECK_STATUS(PGATE_STATUS_STAGE_CHANGED,
                 pgate_promote_from(gate, looked, PGATE_ENVIRONMENT_CANARY, 25.0, &err));
    char named[64];
    snprintf(named, sizeof named, "the gate left stage %llu: ", (unsigned long long)looked);
    CHECK_ERROR(err, PGATE_STATUS_STAGE_CHANGED, named);
    CHECK_STATUS(PGATE_STATUS_STAGE_CHANGED, /* err is optional */
                 pgate_promote_from(gate, looked, PGATE_ENVIRONMENT_CANARY, 25.0, NULL));
    pgate_decision now = route(gate, "x");
    CHECK(now.environment == PGATE_ENVIRONMENT_PRODUCTION && now.stage != looked);

    /* From the stage the gate is in, it is pgate_promote. */
    CHECK_STATUS(PGATE_STATUS_OK,
                 pgate_promote_from(gate, now.stage, PGATE_ENVIRONMENT_CANARY, 25.0, &err));
    CHECK(err == NULL);
    pgate_decision d = route(gate, "x");
    CHECK(d.environment == PGATE_ENVIRONMENT_CANARY && d.traffic_percent == 25.0 &&
          d.stage != now.stage);
    CHECK_STATUS(PGATE_STATUS_OK, /* ramping down: not gated */
                 pgate_promote_from(gate, d.stage, PGATE_ENVIRONMENT_CANARY, 5.0, NULL));
    CHECK_STATUS(PGATE_STATUS_STAGE_CHANGED,
                 pgate_promote_from(gate, d.stage, PGATE_ENVIRONMENT_CANARY, 1.0, &err));
    CHECK_ERROR(err, PGATE_STATUS_STAGE_CHANGED, "nothing was promoted");
    CHECK_STATUS(PGATE_STATUS_STAGE_CHANGED,
                 pgate_promote_from(gate, UINT64_MAX, PGATE_ENVIRONMENT_CANARY, 1.0, &err));
    CHECK_ERROR(err, PGATE_STATUS_STAGE_CHANGED, "18446744073709551615");

    /* Its other refusals are pgate_promote's. */
    const uint64_t stage = route(gate, "x").stage;
    CHECK_STATUS(PGATE_STATUS_INSUFFICIENT_DATA,
                 pgate_promote_from(gate, stage, PGATE_ENVIRONMENT_CANARY, 50.0, &err));
    CHECK_ERROR(err, PGATE_STATUS_INSUFFICIENT_DATA, "canary samples");
    CHECK_STATUS(PGATE_STATUS_INVALID_CONFIG,
                 pgate_promote_from(gate, stage, PGATE_ENVIRONMENT_CANARY, NAN, &err));
    CHECK_ERROR(err, PGATE_STATUS_INVALID_CONFIG, "environment.canary.traffic_percent");
    CHECK_STATUS(PGATE_STATUS_INVALID_ARGUMENT, pgate_promote_from(gate, stage, 3, 1.0, &err));
    CHECK_ERROR(err, PGATE_STATUS_INVALID_ARGUMENT, "invalid environment = 3");
    d = route(gate, "x");
    CHECK(d.stage == stage && d.traffic_percent == 5.0);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));
}

/* `config` (a pgate_config_json document) with the flag dark_mode on (first in its
 * feature_flags); the caller frees it. */
static char *with_dark_mode(const char *config) {
    static const char list[] = "\"feature_flags\":[";
    static const char flag[] = "\"dark_mode\"";
    const char *at = config != NULL ? strstr(config, list) : NULL;
    if (!CHECK(at != NULL)) {
        return NULL;
    }
    const size_t head = (size_t)(at - config) + strlen(list);
    char *edited = malloc(strlen(config) + sizeof flag + 1);
    if (edited == NULL) {
        abort();
    }
    memcpy(edited, config, head);
    strcpy(edited + head, flag);
    if (config[head] != ']') {
        strcat(edited, ",");
    }
    strcat(edited, config + head);
    return edited;
}

/* The gate's change count (pgate_change_count). */
static uint64_t change_count(const pgate_gate *gate) {
    uint64_t count = 0;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_change_count(gate, &count));
    return count;
}

/* pgate_swap_config_from(gate, seen, next) is refused with PGATE_STATUS_GATE_CHANGED, naming
 * the count read and the count now, and changes nothing. */
static void check_refused_as_changed(pgate_gate *gate, uint64_t seen, const char *next) {
    pgate_error *err = NULL;
    char *before = read_text(gate, pgate_config_json);
    CHECK_STATUS(PGATE_STATUS_GATE_CHANGED,
                 pgate_swap_config_from(gate, seen, BYTES(next), &err));
    const uint64_t now = change_count(gate);
    CHECK(now > seen);
    char named[96];
    snprintf(named, sizeof named, "the gate changed since change %llu (now %llu: ",
             (unsigned long long)seen, (unsigned long long)now);
    CHECK_ERROR(err, PGATE_STATUS_GATE_CHANGED, named);
    CHECK_STATUS(PGATE_STATUS_GATE_CHANGED, /* err is optional */
                 pgate_swap_config_from(gate, seen, BYTES(next), NULL));
    char *after = read_text(gate, pgate_config_json);
    CHECK(before != NULL && after != NULL && strcmp(before, after) == 0);
    free(before);
    free(after);
}

/* A hot reload reads the change count, then the config, and edits it; a rollback, or a flag
 * turned off (a kill switch, which begins no stage), comes before its swap:
 * pgate_swap_config_from refuses it rather than undo that change; from the current count it
 * swaps. */
static void test_swap_config_from(void) {
    pgate_gate *gate = canary_gate(10, "", NULL);
    pgate_error *err = NULL;
    uint64_t seen = change_count(gate);
    char *config = read_text(gate, pgate_config_json);
    char *next = with_dark_mode(config);
    free(config);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_rollback(gate, BYTES("the judge, or a process"), NULL));
    if (next != NULL) {
        check_refused_as_changed(gate, seen, next);
    }
    free(next);
    CHECK(route(gate, "x").environment == PGATE_ENVIRONMENT_PRODUCTION);
    bool on = true;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_is_feature_enabled(gate, BYTES("dark_mode"), &on));
    CHECK(!on);

    /* From the count the gate is at, it is pgate_swap_config. */
    seen = change_count(gate);
    config = read_text(gate, pgate_config_json);
    next = with_dark_mode(config);
    free(config);
    if (next != NULL) {
        CHECK_STATUS(PGATE_STATUS_OK, pgate_swap_config_from(gate, seen, BYTES(next), &err));
        CHECK(err == NULL);
    }
    free(next);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_is_feature_enabled(gate, BYTES("dark_mode"), &on));
    CHECK(on);
    CHECK(route(gate, "x").environment == PGATE_ENVIRONMENT_PRODUCTION);

    /* Its other refusals are pgate_swap_config's. */
    seen = change_count(gate);
    char *swapped = read_text(gate, pgate_config_json);
    CHECK_STATUS(PGATE_STATUS_INVALID_CONFIG,
                 pgate_swap_config_from(gate, seen, BYTES("{\"slo_threshold\": 7}"), &err));
    CHECK_ERROR(err, PGATE_STATUS_INVALID_CONFIG, "slo_threshold");
    CHECK_STATUS(PGATE_STATUS_INVALID_JSON, pgate_swap_config_from(gate, seen, NULL, 0, &err));
    CHECK_ERROR(err, PGATE_STATUS_INVALID_JSON, NULL);
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_swap_config_from(gate, seen, NULL, 3, &err));
    CHECK_ERROR(err, PGATE_STATUS_NULL_POINTER, "invalid json = NULL with len = 3");
    CHECK_STATUS(PGATE_STATUS_INVALID_ARGUMENT,
                 pgate_swap_config_from(gate, seen, NOT_UTF8, sizeof NOT_UTF8, &err));
    CHECK_ERROR(err, PGATE_STATUS_INVALID_ARGUMENT, "config is not valid UTF-8");
    char *after = read_text(gate, pgate_config_json);
    CHECK(change_count(gate) == seen);
    CHECK(swapped != NULL && after != NULL && strcmp(swapped, after) == 0);
    free(swapped);
    free(after);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));

    /* A kill switch begins no stage (in Canary, where a flag turned on begins one): the flag
     * stays off. */
    gate = new_gate("{\"environment\": {\"canary\": {\"traffic_percent\": 10}}, "
                    "\"feature_flags\": [\"checkout_v2\"]}",
                    NULL);
    seen = change_count(gate);
    config = read_text(gate, pgate_config_json);
    next = with_dark_mode(config);
    free(config);
    const uint64_t stage = route(gate, "x").stage;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_disable_feature(gate, BYTES("checkout_v2"), NULL));
    CHECK(route(gate, "x").stage == stage);
    if (next != NULL) {
        check_refused_as_changed(gate, seen, next);
    }
    free(next);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_is_feature_enabled(gate, BYTES("checkout_v2"), &on));
    CHECK(!on);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_is_feature_enabled(gate, BYTES("dark_mode"), &on));
    CHECK(!on);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));
}

static void test_slo_not_met(void) {
    /* Slow but successful canary requests: no rule has to fire for compliance to be short. */
    pgate_gate *gate = canary_gate(100, "\"auto_rollback_enabled\": false",
                                   "{\"min_samples\": 10, \"latency_target_ms\": 100, \"warm_up_ms\": 0, \"promotion_evidence\": false}");
    pgate_error *err = NULL;
    feed(gate, 20, 0, 400000000); /* 400 ms > 100 ms target */
    bool compliant = true;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_check_slo(gate, &compliant));
    CHECK(!compliant);
    CHECK_STATUS(PGATE_STATUS_SLO_NOT_MET,
                 pgate_promote(gate, PGATE_ENVIRONMENT_STAGING, 0.0, &err));
    CHECK_ERROR(err, PGATE_STATUS_SLO_NOT_MET, "compliance");
    CHECK(environment_of(gate) == PGATE_ENVIRONMENT_CANARY); /* auto rollback is off */
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));
}

static void test_manual_rollback(void) {
    pgate_gate *gate = canary_gate(10, "\"feature_flags\": [\"new_api\"]", NULL);
    pgate_error *err = NULL;
    char *history = read_text(gate, pgate_rollback_history_json);
    CHECK(history != NULL && strcmp(history, "[]") == 0);
    free(history);

    /* Refused: empty or blank reasons, reasons that are not UTF-8, bad pointers. */
    CHECK_STATUS(PGATE_STATUS_ROLLBACK_REFUSED, pgate_rollback(gate, NULL, 0, &err));
    CHECK_ERROR(err, PGATE_STATUS_ROLLBACK_REFUSED, "reason");
    CHECK_STATUS(PGATE_STATUS_ROLLBACK_REFUSED, pgate_rollback(gate, BYTES(" \t "), &err));
    CHECK_ERROR(err, PGATE_STATUS_ROLLBACK_REFUSED, "reason");
    check_text_errors(gate, pgate_rollback, "reason", "reason");
    CHECK(environment_of(gate) == PGATE_ENVIRONMENT_CANARY);

    /* Rolled back: Production, the release's flags off, one manual event. */
    static const char reason[] = "latency \"spike\" \xe2\x9a\xa0"; /* quotes, non-ASCII */
    CHECK_STATUS(PGATE_STATUS_OK, pgate_rollback(gate, BYTES(reason), &err));
    CHECK(err == NULL && environment_of(gate) == PGATE_ENVIRONMENT_PRODUCTION);
    bool on = true;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_is_feature_enabled(gate, BYTES("new_api"), &on));
    CHECK(!on);
    history = read_text(gate, pgate_rollback_history_json);
    CHECK(history != NULL && history[0] == '[' && count_of(history, "\"trigger\"") == 1);
    CHECK(contains(history, "\"reason\":\"latency \\\"spike\\\" \xe2\x9a\xa0\""));
    CHECK(contains(history, "\"trigger\":\"manual\""));
    CHECK(contains(history, "\"rolled_back\":\"release\""));
    CHECK(contains(history, "\"feature\":\"Canary{10}\""));
    CHECK(contains(history, "\"environment\":{\"canary\":{\"traffic_percent\":10.0}}"));
    CHECK(contains(history, "\"timestamp_ms\":"));
    /* The history buffer follows the same protocol as the config's. */
    size_t len = 0, need = history ? strlen(history) : 0;
    char small[4] = "abc";
    CHECK_STATUS(PGATE_STATUS_BUFFER_TOO_SMALL,
                 pgate_rollback_history_json(gate, small, sizeof small, &len));
    CHECK(len == need && strcmp(small, "abc") == 0);
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_rollback_history_json(gate, NULL, 0, NULL));
    free(history);

    /* Nothing to roll back in Production. */
    CHECK_STATUS(PGATE_STATUS_ROLLBACK_REFUSED, pgate_rollback(gate, BYTES("again"), &err));
    CHECK_ERROR(err, PGATE_STATUS_ROLLBACK_REFUSED, "production");
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));
}

static void test_flags(void) {
    pgate_gate *gate = canary_gate(50, "", NULL);
    pgate_error *err = NULL;
    char id[32], buf[64];
    bool on = true;

    CHECK_STATUS(PGATE_STATUS_OK, pgate_is_feature_enabled(gate, BYTES("dark_mode"), &on));
    CHECK(!on);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_enable_feature(gate, BYTES("dark_mode"), &err));
    CHECK_STATUS(PGATE_STATUS_OK, pgate_enable_feature(gate, BYTES("dark_mode"), &err));
    CHECK_STATUS(PGATE_STATUS_OK, pgate_enable_feature(gate, BYTES("\xc3\xa9t\xc3\xa9"), &err));
    CHECK(err == NULL);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_is_feature_enabled(gate, BYTES("dark_mode"), &on));
    CHECK(on);

    /* Canary decisions carry the flags (byte order), stable ones none. */
    pgate_decision canary = find_id(gate, true, id);
    CHECK(flag_count(gate, canary.flag_set) == 2);
    CHECK(strcmp(flag_name(gate, canary.flag_set, 0, buf), "dark_mode") == 0);
    CHECK(strcmp(flag_name(gate, canary.flag_set, 1, buf), "\xc3\xa9t\xc3\xa9") == 0);
    pgate_decision stable = find_id(gate, false, id);
    CHECK(flag_count(gate, stable.flag_set) == 0);

    /* Disabling: off for new decisions, recorded in the history; old names stay valid. */
    CHECK_STATUS(PGATE_STATUS_OK, pgate_disable_feature(gate, BYTES("dark_mode"), &err));
    CHECK_STATUS(PGATE_STATUS_OK, pgate_is_feature_enabled(gate, BYTES("dark_mode"), &on));
    CHECK(!on);
    pgate_decision later = find_id(gate, true, id);
    CHECK(flag_count(gate, later.flag_set) == 1);
    CHECK(strcmp(flag_name(gate, canary.flag_set, 0, buf), "dark_mode") == 0);
    char *history = read_text(gate, pgate_rollback_history_json);
    CHECK(contains(history, "\"rolled_back\":\"flag\""));
    CHECK(contains(history, "\"feature\":\"dark_mode\""));
    CHECK(contains(history, "\"trigger\":\"flag_disabled\""));
    free(history);
    CHECK_STATUS(PGATE_STATUS_FLAG_NOT_ENABLED,
                 pgate_disable_feature(gate, BYTES("dark_mode"), &err));
    CHECK_ERROR(err, PGATE_STATUS_FLAG_NOT_ENABLED, "dark_mode");

    /* Invalid names: empty, whitespace, too long, not UTF-8. */
    char long_name[130];
    memset(long_name, 'f', 129);
    long_name[129] = '\0';
    const char *invalid[] = {"", "a b", "tab\there", long_name};
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        CHECK_STATUS(PGATE_STATUS_INVALID_FLAG,
                     pgate_enable_feature(gate, BYTES(invalid[i]), &err));
        CHECK_ERROR(err, PGATE_STATUS_INVALID_FLAG, "invalid feature flag name");
        CHECK_STATUS(PGATE_STATUS_INVALID_FLAG,
                     pgate_disable_feature(gate, BYTES(invalid[i]), &err));
        CHECK_ERROR(err, PGATE_STATUS_INVALID_FLAG, NULL);
    }
    CHECK_STATUS(PGATE_STATUS_OK, /* 128 bytes is the longest name */
                 pgate_enable_feature(gate, (const uint8_t *)long_name, 128, NULL));
    check_text_errors(gate, pgate_enable_feature, "flag name", "name");
    check_text_errors(gate, pgate_disable_feature, "flag name", "name");
    on = true;
    CHECK_STATUS(PGATE_STATUS_INVALID_ARGUMENT,
                 pgate_is_feature_enabled(gate, NOT_UTF8, sizeof NOT_UTF8, &on));
    CHECK(on); /* not written */
    /* A name no flag can have is refused as enable_feature refuses it (was OK and false,
       then INVALID_ARGUMENT). */
    CHECK_STATUS(PGATE_STATUS_INVALID_FLAG, pgate_is_feature_enabled(gate, NULL, 0, &on));
    CHECK_STATUS(PGATE_STATUS_INVALID_FLAG, pgate_is_feature_enabled(gate, BYTES("a b"), &on));
    CHECK(on); /* not written */
    CHECK_STATUS(PGATE_STATUS_OK, pgate_is_feature_enabled(gate, BYTES("absent"), &on));
    CHECK(!on);
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_is_feature_enabled(gate, BYTES("x"), NULL));
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_is_feature_enabled(gate, NULL, 1, &on));
    CHECK_STATUS(PGATE_STATUS_INVALID_ARGUMENT,
                 pgate_is_feature_enabled(gate, (const uint8_t *)"x", TOO_LONG, &on));
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));
}

/* ---- pointer, length and handle errors --------------------------------------------------- */

/* Every cold-path call refuses `gate` with `expected` (NULL_POINTER for NULL, INVALID_HANDLE
 * for a freed or foreign handle), writes no output and explains itself in the error object. */
static void check_cold_calls_refuse(const pgate_gate *gate, pgate_status expected) {
    pgate_error *err = NULL;
    size_t len = 7;
    bool flag = true;
    char buf[8] = "abc";
    pgate_health h;
    memset(&h, 0, sizeof h);
    h.stage = UINT64_MAX;
    CHECK_STATUS(expected, pgate_config_json(gate, buf, sizeof buf, &len));
    CHECK_STATUS(expected, pgate_rollback_history_json(gate, buf, sizeof buf, &len));
    CHECK_STATUS(expected, pgate_monitor_health(gate, &h, buf, sizeof buf, &len));
    CHECK_STATUS(expected, pgate_check_slo(gate, &flag));
    CHECK_STATUS(expected, pgate_is_feature_enabled(gate, BYTES("x"), &flag));
    size_t cookie_len = 7;
    char cookie[8] = "abc";
    CHECK_STATUS(expected, pgate_override_names(gate, buf, sizeof buf, &len, cookie,
                                                sizeof cookie, &cookie_len));
    CHECK_STATUS(expected, pgate_fleet_judging(gate, &flag));
    CHECK_STATUS(expected, pgate_gate_name(gate, buf, sizeof buf, &len));
    CHECK(cookie_len == 7 && strcmp(cookie, "abc") == 0);
    CHECK(len == 7 && flag && h.stage == UINT64_MAX && strcmp(buf, "abc") == 0);
    /* The message names the parameter and its value: NULL, or the address. */
    char named[128];
    if (gate == NULL) {
        snprintf(named, sizeof named, "invalid gate = NULL: a gate made by pgate_gate_new");
    } else {
        snprintf(named, sizeof named, "invalid gate = %p: not a live gate", (const void *)gate);
    }
    const text_call text_calls[] = {pgate_swap_config, pgate_swap_slo, pgate_rollback,
                                    pgate_enable_feature, pgate_disable_feature};
    for (size_t i = 0; i < sizeof text_calls / sizeof text_calls[0]; i++) {
        CHECK_STATUS(expected, text_calls[i](gate, BYTES("{}"), &err));
        CHECK_ERROR(err, expected, named);
    }
    CHECK_STATUS(expected, pgate_promote(gate, PGATE_ENVIRONMENT_CANARY, 5.0, &err));
    CHECK_ERROR(err, expected, named);
    CHECK_STATUS(expected, pgate_promote_from(gate, 1, PGATE_ENVIRONMENT_CANARY, 5.0, &err));
    CHECK_ERROR(err, expected, named);
}

static void test_null_gate(void) {
    pgate_decision d;
    const uint8_t *name = NULL;
    size_t len = 0;
    memset(&d, 0, sizeof d);
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_route(NULL, BYTES("x"), &d));
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_record(NULL, &d, true, 1, NULL));
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_record_abandoned(NULL, &d, 1, NULL));
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_record_by_id(NULL, BYTES("x"), true, 1, NULL));
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER,
                 pgate_record_by_id_forced(NULL, BYTES("x"), BYTES("canary"), true, 1, NULL));
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_flag_set_len(NULL, 0, &len));
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_flag_set_name(NULL, 0, 0, &name, &len));
    check_cold_calls_refuse(NULL, PGATE_STATUS_NULL_POINTER);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(NULL));
}

static void test_hot_path_arguments(void) {
    pgate_gate *gate = canary_gate(50, "", NULL);
    pgate_decision d;
    memset(&d, 0, sizeof d);
    d.stage = 4242; /* outputs are written only on success */
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_route(gate, BYTES("x"), NULL));
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_route(gate, NULL, 1, &d));
    CHECK_STATUS(PGATE_STATUS_INVALID_ARGUMENT,
                 pgate_route(gate, (const uint8_t *)"x", TOO_LONG, &d));
    CHECK_STATUS(PGATE_STATUS_INVALID_ARGUMENT,
                 pgate_route(gate, (const uint8_t *)"x", SIZE_MAX, &d));
    CHECK_STATUS(PGATE_STATUS_INVALID_ARGUMENT, pgate_route(gate, NULL, SIZE_MAX, &d));
    CHECK(d.stage == 4242);

    pgate_recorded recorded = PGATE_RECORDED_FOREIGN;
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_record(gate, NULL, true, 1, &recorded));
    bool abandoned = true;
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_record_abandoned(gate, NULL, 1, &abandoned));
    CHECK(abandoned);
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER,
                 pgate_record_by_id(gate, NULL, 5, true, 1, &recorded));
    CHECK_STATUS(PGATE_STATUS_INVALID_ARGUMENT,
                 pgate_record_by_id(gate, (const uint8_t *)"x", TOO_LONG, true, 1, &recorded));
    /* A forcing value NULL with a length is refused as an id's (it was taken as none). */
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER,
                 pgate_record_by_id_forced(gate, BYTES("x"), NULL, 6, true, 1, &recorded));
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER,
                 pgate_record_by_id_forced(gate, NULL, 5, NULL, 0, true, 1, &recorded));
    CHECK(recorded == PGATE_RECORDED_FOREIGN);
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_route_forced(gate, BYTES("x"), NULL, 6, &d));
    CHECK(d.stage == 4242);

    const uint8_t *name = NULL;
    size_t len = 0;
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_flag_set_len(gate, 0, NULL));
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_flag_set_name(gate, 0, 0, NULL, &len));
    CHECK_STATUS(PGATE_STATUS_NULL_POINTER, pgate_flag_set_name(gate, 0, 0, &name, NULL));

    pgate_health h;
    char evidence[8];
    CHECK_STATUS(PGATE_STATUS_INVALID_ARGUMENT,
                 pgate_monitor_health(gate, &h, evidence, TOO_LONG, &len));
    CHECK_STATUS(PGATE_STATUS_INVALID_ARGUMENT,
                 pgate_rollback_history_json(gate, evidence, TOO_LONG, &len));
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));
}

static void test_freed_handles(void) {
    pgate_gate *gate = new_gate(NULL, NULL);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));
    /* Double free is detected and refused; cold calls refuse the dead handle. (No gate is
     * made in between, so the address cannot belong to a new gate.) */
    CHECK_STATUS(PGATE_STATUS_INVALID_HANDLE, pgate_gate_free(gate));
    check_cold_calls_refuse(gate, PGATE_STATUS_INVALID_HANDLE);

    /* A pointer that never was a gate is refused too, and not freed. */
    static max_align_t not_a_gate;
    CHECK_STATUS(PGATE_STATUS_INVALID_HANDLE, pgate_gate_free((pgate_gate *)(void *)&not_a_gate));
    check_cold_calls_refuse((const pgate_gate *)(const void *)&not_a_gate,
                            PGATE_STATUS_INVALID_HANDLE);
}

/* ---- threads ------------------------------------------------------------------------------ */

enum { WORKERS = 4, ROUTES_PER_WORKER = 4000, CYCLES = 40 };

struct worker {
    pgate_gate *gate;
    unsigned index;
    unsigned routed, counted, late, foreign, canary, bad_status, bad_decision, bad_flags;
};

static void *worker_main(void *arg) {
    struct worker *w = arg;
    for (unsigned i = 0; i < ROUTES_PER_WORKER; i++) {
        char id[48];
        int n = snprintf(id, sizeof id, "thread-%u-request-%u", w->index, i);
        pgate_decision d;
        if (pgate_route(w->gate, (const uint8_t *)id, (size_t)n, &d) != PGATE_STATUS_OK) {
            w->bad_status++;
            continue;
        }
        w->routed++;
        w->canary += d.is_canary;
        /* One snapshot per decision: environment, threshold and flags always agree. */
        bool consistent =
            d.is_canary == (d.bucket < d.threshold) &&
            (d.environment == PGATE_ENVIRONMENT_CANARY
                 ? d.threshold == 5000000 && d.traffic_percent == 50.0
                 : d.environment == PGATE_ENVIRONMENT_PRODUCTION && d.threshold == 0);
        w->bad_decision += !consistent;
        size_t flags = SIZE_MAX;
        const uint8_t *name = NULL;
        size_t len = 0;
        if (pgate_flag_set_len(w->gate, d.flag_set, &flags) != PGATE_STATUS_OK) {
            w->bad_status++;
        } else if (d.is_canary) {
            w->bad_flags +=
                flags != 1 ||
                pgate_flag_set_name(w->gate, d.flag_set, 0, &name, &len) != PGATE_STATUS_OK ||
                len != 7 || memcmp(name, "new_api", 7) != 0;
        } else {
            w->bad_flags += flags != 0;
        }
        pgate_recorded recorded = PGATE_RECORDED_FOREIGN;
        pgate_status status =
            i % 2 == 0 ? pgate_record(w->gate, &d, true, 1000000 + i, &recorded)
                       : pgate_record_by_id(w->gate, (const uint8_t *)id, (size_t)n, true,
                                            1000000 + i, &recorded);
        if (status != PGATE_STATUS_OK) {
            w->bad_status++;
        } else if (recorded == PGATE_RECORDED_COUNTED) {
            w->counted++;
        } else if (recorded == PGATE_RECORDED_LATE) {
            w->late++;
        } else {
            w->foreign++;
        }
    }
    return NULL;
}

struct promoter {
    pgate_gate *gate;
    unsigned cycles, failures;
};

static void *promoter_main(void *arg) {
    struct promoter *p = arg;
    const struct timespec pause = {0, 200000}; /* 0.2 ms: let the workers see each stage */
    for (unsigned i = 0; i < CYCLES; i++) {
        /* Flag and canary share one snapshot: rollback turns the release flags off. */
        bool ok = pgate_enable_feature(p->gate, BYTES("new_api"), NULL) == PGATE_STATUS_OK &&
                  pgate_promote(p->gate, PGATE_ENVIRONMENT_CANARY, 50.0, NULL) == PGATE_STATUS_OK;
        nanosleep(&pause, NULL);
        ok = pgate_rollback(p->gate, BYTES("stress test"), NULL) == PGATE_STATUS_OK && ok;
        nanosleep(&pause, NULL);
        p->failures += !ok;
        p->cycles++;
    }
    return NULL;
}

static void test_threads(void) {
    pgate_gate *gate = new_gate("{\"auto_rollback_enabled\": false}", NULL);
    pgate_health h;
    CHECK_STATUS(PGATE_STATUS_OK, pgate_monitor_health(gate, &h, NULL, 0, NULL));
    uint64_t first_stage = h.stage;

    struct worker workers[WORKERS];
    pthread_t threads[WORKERS + 1];
    struct promoter promoter = {gate, 0, 0};
    memset(workers, 0, sizeof workers);
    bool started = pthread_create(&threads[WORKERS], NULL, promoter_main, &promoter) == 0;
    for (unsigned i = 0; i < WORKERS; i++) {
        workers[i].gate = gate;
        workers[i].index = i;
        started = pthread_create(&threads[i], NULL, worker_main, &workers[i]) == 0 && started;
    }
    if (!CHECK(started)) {
        exit(1);
    }
    for (unsigned i = 0; i <= WORKERS; i++) {
        pthread_join(threads[i], NULL);
    }

    unsigned canary = 0;
    for (unsigned i = 0; i < WORKERS; i++) {
        struct worker *w = &workers[i];
        check_at(w->bad_status == 0 && w->bad_decision == 0 && w->bad_flags == 0, __LINE__,
                 "worker %u: %u bad statuses, %u inconsistent decisions, %u wrong flag sets", i,
                 w->bad_status, w->bad_decision, w->bad_flags);
        /* Each outcome counts, or is late when the stage changed between its route and its
         * record (the library counts it nowhere then); none is another gate's. */
        check_at(w->routed == ROUTES_PER_WORKER && w->counted + w->late == ROUTES_PER_WORKER &&
                     w->counted > 0 && w->foreign == 0,
                 __LINE__, "worker %u: %u routed, %u counted, %u late, %u foreign", i, w->routed,
                 w->counted, w->late, w->foreign);
        canary += w->canary;
    }
    CHECK(promoter.cycles == CYCLES && promoter.failures == 0);
    printf("threads: %u workers routed and recorded %u requests (%u to the canary) during %u "
           "promote/rollback cycles\n",
           WORKERS, WORKERS * ROUTES_PER_WORKER, canary, CYCLES);

    /* Two stages per cycle, one manual rollback event per cycle. */
    CHECK_STATUS(PGATE_STATUS_OK, pgate_monitor_health(gate, &h, NULL, 0, NULL));
    CHECK(h.stage == first_stage + 2 * CYCLES && h.environment == PGATE_ENVIRONMENT_PRODUCTION);
    char *history = read_text(gate, pgate_rollback_history_json);
    CHECK(count_of(history, "\"trigger\":\"manual\"") == CYCLES);
    CHECK(count_of(history, "\"trigger\"") == CYCLES);
    free(history);
    CHECK_STATUS(PGATE_STATUS_OK, pgate_gate_free(gate));
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s ROUTING_TSV (made by vectors_tsv.py) OVERRIDES_TSV\n",
                argv[0]);
        return 2;
    }
    printf("promotion-gates %s\n", pgate_version());
    test_status_names();
    test_version();
    test_error_objects();
    test_vectors(argv[1]);
    test_override_vectors(argv[2]);
    test_forced();
    test_override_names();
    test_gate_new();
    test_config();
    test_route();
    test_record();
    test_health();
    test_automatic_rollback();
    test_promote();
    test_promote_from();
    test_swap_config_from();
    test_slo_not_met();
    test_manual_rollback();
    test_flags();
    test_null_gate();
    test_hot_path_arguments();
    test_freed_handles();
    test_threads();
    printf("%u passed, %u failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
