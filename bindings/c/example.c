/*
 * promotion-gates from C: a 10% canary with one release flag. Routes a few requests,
 * records their outcomes, reads the canary's health, promotes, rolls back and prints the
 * rollback history. Build and run: see README.md (test.sh builds and runs it too).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promotion_gates.h"

/* Prints a failed call's status and message, frees the error object, and says whether the
 * call succeeded. */
static int ok(const char *what, pgate_status status, pgate_error *err) {
    if (status == PGATE_STATUS_OK) {
        return 1;
    }
    fprintf(stderr, "%s: %s: %s\n", what, pgate_status_str(status),
            err != NULL ? pgate_error_message(err) : "");
    pgate_error_free(err);
    return 0;
}

/* A latency in seconds as the uint64_t nanoseconds of pgate_record, rounded; false for one that
 * is negative, NaN, infinite or 2^64 ns or more (casting those to uint64_t is undefined
 * behaviour in C). The other bindings refuse the same latencies with
 * PGATE_STATUS_INVALID_ARGUMENT. */
static bool latency_ns(double seconds, uint64_t *ns) {
    const double v = seconds * 1e9;
    if (!(v >= 0 && v < 18446744073709551616.0)) { /* false for NaN too */
        return false;
    }
    /* Half a nanosecond rounds up. Not (uint64_t)(v + 0.5): that sum rounds
     * 0.49999999999999994 up to 1, and an odd whole number from 2^52 on to the even one above.
     * The cast of a v in [0, 2^64) is its floor, a double itself: v - whole is exact. */
    const uint64_t whole = (uint64_t)v;
    *ns = whole + (v - (double)whole >= 0.5 ? 1 : 0);
    return true;
}

static const char *environment_name(pgate_environment env) {
    switch (env) {
    case PGATE_ENVIRONMENT_CANARY: return "canary";
    case PGATE_ENVIRONMENT_STAGING: return "staging";
    case PGATE_ENVIRONMENT_PRODUCTION: return "production";
    default: return "?";
    }
}

static void print_decision(const pgate_gate *gate, const char *id, const pgate_decision *d) {
    printf("%-8s -> %-6s (%s, bucket %7u, threshold %7u) flags:", id,
           d->is_canary ? "canary" : "stable", environment_name(d->environment),
           (unsigned)d->bucket, (unsigned)d->threshold);
    size_t n = 0;
    if (pgate_flag_set_len(gate, d->flag_set, &n) != PGATE_STATUS_OK) {
        n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *name = NULL;
        size_t len = 0;
        if (pgate_flag_set_name(gate, d->flag_set, i, &name, &len) == PGATE_STATUS_OK) {
            printf(" %.*s", (int)len, (const char *)name); /* names are not NUL-terminated */
        }
    }
    printf("%s\n", n == 0 ? " (none)" : "");
}

int main(void) {
    static const char config[] = "{\"environment\": {\"canary\": {\"traffic_percent\": 10}},"
                                 " \"feature_flags\": [\"new_checkout\"], \"gate\": \"checkout\"}";
    static const char slo[] = "{\"latency_target_ms\": 250, \"min_samples\": 20, \"warm_up_ms\": 0, \"promotion_evidence\": false}";
    pgate_gate *gate = NULL;
    pgate_error *err = NULL;
    printf("promotion-gates %s\n", pgate_version());
    if (!ok("pgate_gate_new",
            pgate_gate_new((const uint8_t *)config, strlen(config), (const uint8_t *)slo,
                           strlen(slo), &gate, &err),
            err)) {
        return 1;
    }

    /* Route requests by id (any bytes) and record how each went, with its own decision. */
    char id[32];
    for (int i = 0; i < 400; i++) {
        pgate_decision d;
        snprintf(id, sizeof id, "user-%d", i);
        if (!ok("pgate_route", pgate_route(gate, (const uint8_t *)id, strlen(id), &d), NULL)) {
            return 1;
        }
        if (i >= 10 && i < 14) { /* a few of them; user-11 goes to the canary */
            print_decision(gate, id, &d);
        }
        uint64_t ns = 0;
        if (!latency_ns((20 + i % 30) / 1000.0, &ns)) { /* 20-49 ms, all succeed */
            return 1;
        }
        if (!ok("pgate_record", pgate_record(gate, &d, true, ns, NULL), NULL)) {
            return 1;
        }
    }

    uint64_t refused = 0;
    if (latency_ns(-0.001, &refused) || latency_ns(0.0 / 0.0, &refused)) {
        fprintf(stderr, "latency_ns accepted a negative or NaN latency\n");
        return 1;
    }

    /* The judge's view, with the evidence line behind it. This call judges (and may roll
     * back): call it once, with room for any evidence line, rather than again with more. */
    pgate_health health;
    char evidence[PGATE_EVIDENCE_CAPACITY];
    size_t evidence_len = 0;
    if (!ok("pgate_monitor_health",
            pgate_monitor_health(gate, &health, evidence, sizeof evidence, &evidence_len), NULL)) {
        return 1;
    }
    static const char *const advice[] = {
        [PGATE_RECOMMENDATION_HEALTHY] = "healthy",
        [PGATE_RECOMMENDATION_MONITOR] = "monitor",
        [PGATE_RECOMMENDATION_ROLLBACK] = "rollback",
        [PGATE_RECOMMENDATION_NO_DATA] = "no_data",
    };
    printf("health: score %.3f, canary %llu requests, stable %llu, %s\n", health.health_score,
           (unsigned long long)health.canary_requests,
           (unsigned long long)health.production_requests,
           health.recommendation < sizeof advice / sizeof advice[0]
               ? advice[health.recommendation]
               : "?");
    printf("evidence: %s\n", evidence);

    /* Ramp up (gated: the judge must approve), then roll back by hand. */
    pgate_status status = pgate_promote(gate, PGATE_ENVIRONMENT_CANARY, 25.0, &err);
    printf("promote to 25%%: %s\n", pgate_status_str(status));
    if (status != PGATE_STATUS_OK) {
        printf("  why: %s\n", pgate_error_message(err));
        pgate_error_free(err);
        err = NULL;
    }
    static const char reason[] = "checkout errors reported by support";
    if (!ok("pgate_rollback",
            pgate_rollback(gate, (const uint8_t *)reason, strlen(reason), &err), err)) {
        return 1;
    }

    /* The history as JSON: ask for the length, then fetch; again while it does not fit (with
     * a state store another process's rollback can lengthen it between the two calls). */
    char *history = NULL;
    size_t len = 0;
    status = pgate_rollback_history_json(gate, NULL, 0, &len);
    while (status == PGATE_STATUS_BUFFER_TOO_SMALL) {
        const size_t cap = len + 256; /* some slack for what arrives meanwhile */
        free(history);
        history = malloc(cap);
        if (history == NULL) {
            return 1;
        }
        status = pgate_rollback_history_json(gate, history, cap, &len);
    }
    if (!ok("pgate_rollback_history_json", status, NULL)) {
        free(history);
        return 1;
    }
    printf("history: %s\n", history);
    free(history);
    return ok("pgate_gate_free", pgate_gate_free(gate), NULL) ? 0 : 1;
}
