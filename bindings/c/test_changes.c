/* Tests of the C ABI's change notifications and reads, as a C host uses them: the change
 * counter (pgate_change_count) and the changes as JSON (pgate_changes_json), the read-only
 * health (pgate_read_health), the state (pgate_state), the SLO (pgate_slo_json) and its swap
 * (pgate_swap_slo), a read of the store asked for (pgate_sync_now, two gates sharing a SQLite
 * store in a temporary directory, removed afterwards) and where a document's store keeps the
 * state (pgate_store_location). Usage: test_changes [ignored]. Ends with "N passed, M failed";
 * exits 1 on any failure. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, nanosleep */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
  /* A new rollout from Production: a promotion, in the stage after the rollback's. */
  pgate_environment env = PGATE_ENVIRONMENT_PRODUCTION;
  double percent = -1;
  uint64_t rolled_back = 0, stage = 0;
  CHECK(pgate_state(gate, &env, &percent, &rolled_back) == PGATE_STATUS_OK);
  CHECK(pgate_promote(gate, PGATE_ENVIRONMENT_CANARY, 25.0, NULL) == PGATE_STATUS_OK);
  CHECK(change_count(gate) == 3);
  CHECK(pgate_state(gate, &env, &percent, &stage) == PGATE_STATUS_OK);
  CHECK(env == PGATE_ENVIRONMENT_CANARY && stage == rolled_back + 1);
  char *promoted = changes_json(gate, 2);
  CHECK(promoted != NULL);
  if (promoted != NULL) {
    CHECK(occurrences(promoted, "\"sequence\":") == 1 && strstr(promoted, "\"sequence\":3") != NULL);
    CHECK(strstr(promoted, "\"kind\":\"promotion\"") != NULL);
    CHECK(strstr(promoted, "\"origin\":\"this_gate\"") != NULL);
    CHECK(strstr(promoted, "\"from\":\"production\"") != NULL);
    CHECK(strstr(promoted, "\"to\":{\"canary\":{\"traffic_percent\":25.0}}") != NULL);
    CHECK(strstr(promoted, "\"rollback\":null") != NULL);
    char expect[64];
    snprintf(expect, sizeof expect, "\"stage\":%llu", (unsigned long long)stage);
    const char *at = strstr(promoted, expect);
    CHECK(at != NULL && (at[strlen(expect)] == ',' || at[strlen(expect)] == '}'));
  }
  free(promoted);
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

/* A gate of `environment` with a SQLite store at `path`, read every `sync_ms`. */
static pgate_gate *stored_gate(const char *path, int sync_ms) {
  char config[512];
  snprintf(config, sizeof config,
           "{\"environment\": {\"canary\": {\"traffic_percent\": 10}}, "
           "\"store\": {\"sqlite\": {\"path\": \"%s\", \"sync_interval_ms\": %d}}}",
           path, sync_ms);
  return new_gate(config, NULL);
}

static void test_sync_now_reads_another_gates_rollback_at_once(void) {
  char dir[] = "/tmp/pgate-test-changes-XXXXXX";
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    exit(1);
  }
  char path[256];
  snprintf(path, sizeof path, "%s/gate.db", dir);
  pgate_gate *slow = stored_gate(path, 60000); /* reads the store once a minute: here when asked */
  pgate_gate *other = stored_gate(path, 20);
  uint64_t seen = change_count(slow);
  const char *reason = "bad deploy";
  CHECK(pgate_rollback(other, (const uint8_t *)reason, strlen(reason), NULL) == PGATE_STATUS_OK);
  bool asked = false;
  CHECK(pgate_sync_now(slow, &asked) == PGATE_STATUS_OK && asked);
  const struct timespec millisecond = {0, 1000000};
  int waited = 0;
  while (change_count(slow) == seen && waited < 5000) {
    nanosleep(&millisecond, NULL);
    waited++;
  }
  CHECK(change_count(slow) > seen); /* read within 5 s, not at the next minute */
  pgate_environment env;
  double percent = -1;
  uint64_t stage = 0;
  CHECK(pgate_state(slow, &env, &percent, &stage) == PGATE_STATUS_OK);
  CHECK(env == PGATE_ENVIRONMENT_PRODUCTION);

  pgate_gate *storeless = new_gate("{}", NULL);
  asked = true;
  CHECK(pgate_sync_now(storeless, &asked) == PGATE_STATUS_OK && !asked);
  CHECK(pgate_sync_now(NULL, &asked) == PGATE_STATUS_NULL_POINTER);
  CHECK(pgate_sync_now(storeless, NULL) == PGATE_STATUS_OK); /* `asked` is optional */
  CHECK(pgate_gate_free(slow) == PGATE_STATUS_OK);
  CHECK(pgate_gate_free(other) == PGATE_STATUS_OK);
  CHECK(pgate_gate_free(storeless) == PGATE_STATUS_OK);

  /* The database and whatever SQLite kept beside it, then the directory (fails if any is left). */
  const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
  char file[300];
  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
    snprintf(file, sizeof file, "%s%s", path, suffixes[i]);
    unlink(file);
  }
  CHECK(rmdir(dir) == 0);
}

/* pgate_store_location of `config` into a buffer of `cap` bytes (at most 128): the status, with
 * the location in `out`. */
static pgate_status store_location(const char *config, size_t cap, char out[128], size_t *len) {
  return pgate_store_location((const uint8_t *)config, strlen(config), out, cap, len, NULL);
}

static void test_store_location_reads_the_document_alone(void) {
  char location[128];
  size_t len = 0;
  /* Written as the document gives it; nothing is opened or created (the directory is missing). */
  const char *relative = "{\"store\": {\"sqlite\": {\"path\": \"no-such-dir/rel.db\"}}}";
  CHECK(store_location(relative, sizeof location, location, &len) == PGATE_STATUS_OK);
  CHECK(len == 25 && strcmp(location, "sqlite:no-such-dir/rel.db") == 0);
  CHECK(access("no-such-dir", F_OK) != 0);
  const char *etcd = "{\"store\": {\"etcd\": {\"endpoints\": [\"http://127.0.0.1:2379\"], "
                     "\"prefix\": \"/pg/checkout\"}}}";
  CHECK(store_location(etcd, sizeof location, location, &len) == PGATE_STATUS_OK);
  CHECK(strcmp(location, "etcd:/pg/checkout") == 0);
  CHECK(store_location("{\"gate\": \"g\"}", sizeof location, location, &len) == PGATE_STATUS_OK);
  CHECK(len == 0 && location[0] == '\0');
  /* Too small: only the length. */
  CHECK(store_location(relative, 8, location, &len) == PGATE_STATUS_BUFFER_TOO_SMALL && len == 25);
  /* Validated as pgate_gate_new validates: the error names the field. */
  const char *empty = "{\"store\": {\"sqlite\": {\"path\": \"\"}}}";
  pgate_error *err = NULL;
  CHECK(pgate_store_location((const uint8_t *)empty, strlen(empty), location, sizeof location,
                             &len, &err) == PGATE_STATUS_INVALID_CONFIG);
  CHECK(err != NULL && strstr(pgate_error_message(err), "store.sqlite.path") != NULL);
  pgate_error_free(err);
}

int main(void) {
  test_the_counter_and_the_changes();
  test_read_health_state_and_slo_swap();
  test_sync_now_reads_another_gates_rollback_at_once();
  test_store_location_reads_the_document_alone();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
