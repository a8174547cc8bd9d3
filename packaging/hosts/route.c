/*
 * A C host of an installed promotion-gates: route.c GATE PERCENT ID routes one request on a
 * canary of PERCENT % and prints "canary BUCKET" or "stable BUCKET". packaging/test.sh builds
 * it with `pkg-config --cflags --libs promotion_gates` (and -static) after the install.
 */
#include <stdio.h>
#include <string.h>

#include <promotion_gates.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s GATE PERCENT ID\n", argv[0]);
        return 2;
    }
    char config[512];
    int len = snprintf(config, sizeof config,
                       "{\"gate\": \"%s\", \"environment\": {\"canary\": {\"traffic_percent\": %s}}}",
                       argv[1], argv[2]);
    if (len < 0 || (size_t)len >= sizeof config) {
        fprintf(stderr, "arguments too long\n");
        return 2;
    }
    pgate_gate *gate = NULL;
    pgate_error *err = NULL;
    pgate_status status = pgate_gate_new((const uint8_t *)config, (size_t)len, NULL, 0, &gate, &err);
    if (status != PGATE_STATUS_OK) {
        fprintf(stderr, "pgate_gate_new: %s: %s\n", pgate_status_str(status),
                err != NULL ? pgate_error_message(err) : "");
        pgate_error_free(err);
        return 1;
    }
    pgate_decision decision;
    status = pgate_route(gate, (const uint8_t *)argv[3], strlen(argv[3]), &decision);
    if (status == PGATE_STATUS_OK) {
        printf("%s %u\n", decision.is_canary ? "canary" : "stable", (unsigned)decision.bucket);
    } else {
        fprintf(stderr, "pgate_route: %s\n", pgate_status_str(status));
    }
    pgate_gate_free(gate);
    return status == PGATE_STATUS_OK ? 0 : 1;
}
