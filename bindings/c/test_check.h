/* What the small C tests (test_telemetry.c, test_changes.c) share: the CHECK macro, its two
 * counters and a gate made from JSON. Each test ends by printing "N passed, M failed". */
#ifndef PGATE_TEST_CHECK_H
#define PGATE_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promotion_gates.h"

static int passed, failed;

#define CHECK(cond)                                                  \
  do {                                                               \
    if (cond) {                                                      \
      passed++;                                                      \
    } else {                                                         \
      failed++;                                                      \
      fprintf(stderr, "FAILED line %d: %s\n", __LINE__, #cond);      \
    }                                                                \
  } while (0)

/* A gate from a JSON config and a JSON SLO (NULL for the defaults); exits on failure. */
static pgate_gate *new_gate(const char *config, const char *slo) {
  pgate_gate *gate = NULL;
  if (pgate_gate_new((const uint8_t *)config, strlen(config), (const uint8_t *)slo,
                     slo ? strlen(slo) : 0, &gate, NULL) != PGATE_STATUS_OK) {
    fprintf(stderr, "pgate_gate_new(%s) failed\n", config);
    exit(1);
  }
  return gate;
}

#endif /* PGATE_TEST_CHECK_H */
