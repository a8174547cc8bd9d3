/* Tests of the C ABI's change notifications and reads, as a C host uses them: the change
 * counter (pgate_change_count) and the changes as JSON (pgate_changes_json), the read-only
 * health (pgate_read_health), the state (pgate_state), the SLO (pgate_slo_json) and its swap
 * (pgate_swap_slo). Usage: test_changes [ignored]. Ends with "N passed, M failed"; exits 1 on
 * any failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promotion_gates.h"
#include "test_check.h"

static uint64_t change_count(const pgate_gate *gate) {
  uint64_t count = UINT64_MAX;
  CHECK(pgate_change_count(gate, &count) == PGATE_STATUS_OK);
  return count;
}

/* The changes above `after` as a malloc'd NUL-terminated string: the length first, then a
 * buffer with room for the NUL. */
static char *changes_json(const pgate_gate *gate, uint64_t after) {
  size_t len = 0;
  if (pgate_changes_json(gate, after, NULL, 0, &len) != PGATE_STATUS_BUFFER_TOO_SMALL) return NULL;
  char *buf = malloc(len + 1);
  if (buf == NULL) return NULL;
  if (pgate_changes_json(gate, after, buf, len + 1, &len) != PGATE_STATUS_OK || buf[len] != '\0') {
    free(buf);
    return NULL;
  }
  return buf;
}

/* How many times `needle` occurs in `text`. */
static int occurrences(const char *text, const char *needle) {
  int n = 0;
  for (const char *at = strstr(text, needle); at != NULL; at = strstr(at + 1, needle)) n++;
  return n;
}

/* Records failures for canary requests until the gate routes elsewhere (rolled back). */
static int fail_the_canary(const pgate_gate *gate) {
  char id[32];
  for (int i = 0; i < 1000; i++) {
    pgate_decision d;
    int n = snprintf(id, sizeof id, "user-%d", i);
    if (pgate_route(gate, (const uint8_t *)id, (size_t)n, &d) != PGATE_STATUS_OK) return 0;
    if (!d.is_canary) return 1;
    if (pgate_record(gate, &d, false, 1000000, NULL) != PGATE_STATUS_OK) return 0;
  }
  return 0;
}

static void test_the_counter_and_the_changes(void) {
  pgate_gate *gate = new_gate("{\"environment\": {\"canary\": {\"traffic_percent\": 100}}}", NULL);
  CHECK(change_count(gate) == 0);
  char *none = changes_json(gate, 0);
  CHECK(none != NULL && strcmp(none, "[]") == 0);
  free(none);
  const char *flag = "dark_mode";
  CHECK(pgate_enable_feature(gate, (const uint8_t *)flag, strlen(flag), NULL) == PGATE_STATUS_OK);
  CHECK(change_count(gate) == 1);
  CHECK(fail_the_canary(gate));
  CHECK(change_count(gate) == 2);
  char *all = changes_json(gate, 0);
  CHECK(all != NULL);
  if (all != NULL) {
    CHECK(occurrences(all, "\"sequence\":") == 2);
    CHECK(strstr(all, "\"kind\":\"flags\"") != NULL);
    CHECK(strstr(all, "\"flags_enabled\":[\"dark_mode\"]") != NULL);
    CHECK(strstr(all, "\"kind\":\"rollback\"") != NULL);
    CHECK(strstr(all, "\"trigger\":\"automatic\"") != NULL);
    CHECK(strstr(all, "\"overwhelming_errors\"") != NULL);
    CHECK(strstr(all, "\"to\":\"production\"") != NULL);
  }
  char *last = changes_json(gate, 1);
  CHECK(last != NULL && occurrences(last, "\"sequence\":") == 1 &&
        strstr(last, "\"sequence\":2") != NULL);
  free(all);
  free(last);
  /* A buffer too small: only the length is written. */
  char small[4];
  size_t len = 0;
  CHECK(pgate_changes_json(gate, 0, small, sizeof small, &len) == PGATE_STATUS_BUFFER_TOO_SMALL);
  CHECK(len > sizeof small);
  uint64_t ignored = 0;
  CHECK(pgate_change_count(NULL, &ignored) == PGATE_STATUS_NULL_POINTER);
  CHECK(pgate_gate_free(gate) == PGATE_STATUS_OK);
}

static void test_read_health_state_and_slo_swap(void) {
  pgate_gate *gate = new_gate("{\"environment\": {\"canary\": {\"traffic_percent\": 50}}}",
                              "{\"min_samples\": 40, \"warm_up_ms\": 0}");
  char id[32];
  for (int i = 0; i < 300; i++) {
    int n = snprintf(id, sizeof id, "user-%d", i);
    CHECK(pgate_record_by_id(gate, (const uint8_t *)id, (size_t)n, true, 20000000, NULL) == PGATE_STATUS_OK);
  }
  pgate_health before, after;
  char evidence[PGATE_EVIDENCE_CAPACITY];
  size_t len = 0;
  CHECK(pgate_read_health(gate, &before, evidence, sizeof evidence, &len) == PGATE_STATUS_OK);
  CHECK(before.sufficient_data);
  pgate_environment env;
  double percent = 0;
  uint64_t stage = 0;
  CHECK(pgate_state(gate, &env, &percent, &stage) == PGATE_STATUS_OK);
  CHECK(env == PGATE_ENVIRONMENT_CANARY && percent == 50.0);

  const char *slo = "{\"min_samples\": 1000}";
  pgate_error *err = NULL;
  CHECK(pgate_swap_slo(gate, (const uint8_t *)slo, strlen(slo), &err) == PGATE_STATUS_OK);
  CHECK(pgate_read_health(gate, &after, NULL, 0, NULL) == PGATE_STATUS_OK);
  CHECK(after.canary_requests == before.canary_requests);
  CHECK(after.production_requests == before.production_requests);
  CHECK(after.stage == before.stage && !after.sufficient_data);
  uint64_t stage_after = 0;
  CHECK(pgate_state(gate, &env, &percent, &stage_after) == PGATE_STATUS_OK);
  CHECK(stage_after == stage && env == PGATE_ENVIRONMENT_CANARY);
  char doc[4096];
  CHECK(pgate_slo_json(gate, doc, sizeof doc, &len) == PGATE_STATUS_OK);
  CHECK(strstr(doc, "\"min_samples\":1000") != NULL);

  const char *bad = "{\"max_error_rate\": 2.5}";
  CHECK(pgate_swap_slo(gate, (const uint8_t *)bad, strlen(bad), &err) ==
        PGATE_STATUS_INVALID_CONFIG);
  CHECK(err != NULL && strstr(pgate_error_message(err), "max_error_rate") != NULL &&
        strstr(pgate_error_message(err), "2.5") != NULL);
  pgate_error_free(err);
  CHECK(pgate_slo_json(gate, doc, sizeof doc, &len) == PGATE_STATUS_OK);
  CHECK(strstr(doc, "\"min_samples\":1000") != NULL);
  CHECK(pgate_gate_free(gate) == PGATE_STATUS_OK);
}

int main(void) {
  test_the_counter_and_the_changes();
  test_read_health_state_and_slo_swap();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
