/* Tests of the C ABI's telemetry: the Prometheus exposition, the latency histograms and the
 * log callback, as a C host uses them. Usage: test_telemetry [ignored]. Ends with
 * "N passed, M failed"; exits 1 on any failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promotion_gates.h"
#include "test_check.h"

/* Reads a (buf, cap, len_out) call's text into a malloc'd string, as the README says: the
 * length first, then a buffer with room for the NUL (and slack: the exposition may grow). */
typedef pgate_status (*text_call)(const pgate_gate *, char *, size_t, size_t *);

static char *read_text(text_call call, const pgate_gate *gate) {
  size_t len = 0;
  if (call(gate, NULL, 0, &len) != PGATE_STATUS_BUFFER_TOO_SMALL) return NULL;
  size_t cap = len + 256;
  char *buf = malloc(cap);
  if (buf == NULL) return NULL;
  if (call(gate, buf, cap, &len) != PGATE_STATUS_OK || buf[len] != '\0') {
    free(buf);
    return NULL;
  }
  return buf;
}

static void test_exposition(void) {
  pgate_gate *gate = new_gate("{\"gate\": \"edge\", \"environment\": \"staging\"}", NULL);
  const char *manual =
      "promotion_rollbacks_total{gate=\"edge\",trigger=\"manual\",rule=\"none\"} ";
  char *before = read_text(pgate_metrics_prometheus, gate);
  CHECK(before != NULL);
  if (before != NULL) {
    CHECK(strstr(before, "# TYPE promotion_health_score gauge\n") != NULL);
    CHECK(strstr(before, "promotion_health_score{gate=\"edge\"} ") != NULL);
    const char *at = strstr(before, manual);
    CHECK(at != NULL && at[strlen(manual)] == '0');
  }
  const char *reason = "bad deploy";
  CHECK(pgate_rollback(gate, (const uint8_t *)reason, strlen(reason), NULL) == PGATE_STATUS_OK);
  char *after = read_text(pgate_metrics_prometheus, gate);
  CHECK(after != NULL);
  if (after != NULL) {
    const char *at = strstr(after, manual);
    CHECK(at != NULL && at[strlen(manual)] == '1');
  }
  char *histograms = read_text(pgate_latency_histograms_json, gate);
  CHECK(histograms != NULL &&
        strstr(histograms, "\"encoding\":\"hdrhistogram-v2-deflate-base64\"") != NULL);
  free(before);
  free(after);
  free(histograms);
  /* Two gates of one name in one exposition would repeat their series: refused, and nothing
   * written; two names are served. */
  pgate_gate *twin = new_gate("{\"gate\": \"edge\"}", NULL);
  pgate_gate *other = new_gate("{\"gate\": \"api\"}", NULL);
  const pgate_gate *same[] = {gate, other, twin};
  char buf[16] = "abc";
  size_t len = 7;
  CHECK(pgate_metrics_prometheus_gates(same, 3, buf, sizeof buf, &len) ==
        PGATE_STATUS_INVALID_ARGUMENT);
  CHECK(len == 7 && strcmp(buf, "abc") == 0);
  CHECK(pgate_metrics_prometheus_gates(same, 2, NULL, 0, &len) == PGATE_STATUS_BUFFER_TOO_SMALL);
  CHECK(pgate_gate_free(twin) == PGATE_STATUS_OK);
  CHECK(pgate_gate_free(other) == PGATE_STATUS_OK);
  CHECK(pgate_gate_free(gate) == PGATE_STATUS_OK);
}

/* The log lines a callback received. */
struct lines {
  int info_flag_enabled;
  int errors;
  int total;
};

static void collect(void *user_data, pgate_log_level level, const char *target,
                    const char *message, size_t message_len) {
  struct lines *lines = user_data;
  lines->total++;
  if (strlen(message) != message_len || target == NULL) return;
  if (level == PGATE_LOG_LEVEL_INFO && strncmp(message, "Feature flag enabled: dark_mode", 31) == 0)
    lines->info_flag_enabled++;
  if (level == PGATE_LOG_LEVEL_ERROR) lines->errors++;
}

static void test_log_callback(void) {
  struct lines lines = {0, 0, 0};
  CHECK(pgate_set_log_callback(collect, &lines, PGATE_LOG_LEVEL_INFO, NULL) == PGATE_STATUS_OK);
  pgate_gate *gate = new_gate("{\"environment\": \"staging\"}", NULL);
  CHECK(pgate_enable_feature(gate, (const uint8_t *)"dark_mode", 9, NULL) == PGATE_STATUS_OK);
  CHECK(lines.info_flag_enabled == 1);
  CHECK(pgate_rollback(gate, (const uint8_t *)"bad", 3, NULL) == PGATE_STATUS_OK);
  CHECK(lines.errors >= 1);

  pgate_error *err = NULL;
  CHECK(pgate_set_log_callback(collect, &lines, 9, &err) == PGATE_STATUS_INVALID_ARGUMENT);
  CHECK(err != NULL && strstr(pgate_error_message(err), "max_level 9") != NULL);
  pgate_error_free(err);

  CHECK(pgate_set_log_callback(NULL, NULL, PGATE_LOG_LEVEL_TRACE, NULL) == PGATE_STATUS_OK);
  int before = lines.total;
  CHECK(pgate_enable_feature(gate, (const uint8_t *)"other", 5, NULL) == PGATE_STATUS_OK);
  CHECK(lines.total == before);
  CHECK(pgate_gate_free(gate) == PGATE_STATUS_OK);
}

int main(void) {
  test_exposition();
  test_log_callback();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
