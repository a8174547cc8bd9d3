/* The library's log lines (queued from any thread, written by the worker) and the gates'
 * state changes, written to nginx's error log. */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <pthread.h>

#include "ngx_http_pgate.h"


/* Library log lines held between two drains of the worker timer; more are counted, dropped. */
#define PGATE_LOG_QUEUE_LINES  64
#define PGATE_LOG_LINE_BYTES   1024
#define PGATE_SEQUENCE_KEY     "\"sequence\":"  /* a change's number in pgate_changes_json */
/* The most of one state change's JSON written on one error log line: nginx cuts a line at
 * NGX_MAX_ERROR_STR (2048) bytes, its time, level, pid and our prefix included. */
#define PGATE_CHANGE_LINE_BYTES  1536


/* Lines from the library's log callback, which may run on a library thread. */
typedef struct {
    pgate_log_level              level;
    size_t                       len;
    u_char                       text[PGATE_LOG_LINE_BYTES];
} ngx_http_pgate_log_line_t;

typedef struct {
    pthread_mutex_t              lock;
    ngx_uint_t                   first;
    ngx_uint_t                   count;
    ngx_uint_t                   dropped;
    ngx_http_pgate_log_line_t    lines[PGATE_LOG_QUEUE_LINES];
} ngx_http_pgate_log_queue_t;


static ngx_http_pgate_log_queue_t  ngx_http_pgate_log_queue = {
    PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, {{ 0, 0, { 0 } }}
};


/* May run on any thread: copies the line into the queue and nothing else. */
void
ngx_http_pgate_log_callback(void *user_data, pgate_log_level level, const char *target,
    const char *message, size_t message_len)
{
    ngx_http_pgate_log_queue_t  *q = &ngx_http_pgate_log_queue;
    ngx_http_pgate_log_line_t   *line;

    pthread_mutex_lock(&q->lock);

    if (q->count == PGATE_LOG_QUEUE_LINES) {
        q->dropped++;

    } else {
        line = &q->lines[(q->first + q->count) % PGATE_LOG_QUEUE_LINES];
        line->level = level;
        line->len = ngx_min(message_len, PGATE_LOG_LINE_BYTES);
        ngx_memcpy(line->text, message, line->len);
        q->count++;
    }

    pthread_mutex_unlock(&q->lock);
}


/* Writes the queued lines to the error log, on the worker's own thread. */
void
ngx_http_pgate_log_drain(ngx_log_t *log)
{
    ngx_uint_t                   i, n, dropped, level;
    ngx_http_pgate_log_queue_t  *q = &ngx_http_pgate_log_queue;
    ngx_http_pgate_log_line_t    lines[PGATE_LOG_QUEUE_LINES];

    pthread_mutex_lock(&q->lock);
    n = q->count;
    for (i = 0; i < n; i++) {
        lines[i] = q->lines[(q->first + i) % PGATE_LOG_QUEUE_LINES];
    }
    q->first = (q->first + n) % PGATE_LOG_QUEUE_LINES;
    q->count = 0;
    dropped = q->dropped;
    q->dropped = 0;
    pthread_mutex_unlock(&q->lock);

    for (i = 0; i < n; i++) {
        switch (lines[i].level) {
        case PGATE_LOG_LEVEL_ERROR:
            level = NGX_LOG_ERR;
            break;
        case PGATE_LOG_LEVEL_WARN:
            level = NGX_LOG_WARN;
            break;
        case PGATE_LOG_LEVEL_INFO:
            level = NGX_LOG_NOTICE;
            break;
        default:
            level = NGX_LOG_INFO;
        }

        ngx_log_error(level, log, 0, "promotion gate: %*s", lines[i].len, lines[i].text);
    }

    if (dropped) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "promotion gate: %ui library log lines dropped (queue full)", dropped);
    }
}


/*
 * Logs one change (one object of pgate_changes_json's array) on one line: a rollback or a
 * promotion at warn, a flag change or a config swap at notice. A change longer than a line
 * holds (a rollback with the judge's evidence may take 4 KiB; nginx cuts a line at 2 KiB)
 * goes in numbered parts.
 */
static void
ngx_http_pgate_log_change(ngx_log_t *log, ngx_http_pgate_gate_t *g, u_char *change,
    size_t len)
{
    u_char      *kind;
    size_t       n;
    ngx_uint_t   level, part, parts;

    /* the object's own "kind" comes before its nested "rollback" (keys are sorted) */
    level = NGX_LOG_NOTICE;
    kind = ngx_strnstr(change, "\"kind\":\"", len);
    if (kind != NULL) {
        kind += sizeof("\"kind\":\"") - 1;
        n = change + len - kind;
        if ((n > sizeof("rollback\"") - 1
             && ngx_strncmp(kind, "rollback\"", sizeof("rollback\"") - 1) == 0)
            || (n > sizeof("promotion\"") - 1
                && ngx_strncmp(kind, "promotion\"", sizeof("promotion\"") - 1) == 0))
        {
            level = NGX_LOG_WARN;
        }
    }

    if (len <= PGATE_CHANGE_LINE_BYTES) {
        ngx_log_error(level, log, 0, "promotion gate \"%V\": state change: %*s",
                      &g->name, len, change);
        return;
    }

    parts = (len + PGATE_CHANGE_LINE_BYTES - 1) / PGATE_CHANGE_LINE_BYTES;

    for (part = 0; part < parts; part++) {
        n = ngx_min(len - part * PGATE_CHANGE_LINE_BYTES, PGATE_CHANGE_LINE_BYTES);
        ngx_log_error(level, log, 0,
                      "promotion gate \"%V\": state change (part %ui of %ui): %*s",
                      &g->name, part + 1, parts, n, change + part * PGATE_CHANGE_LINE_BYTES);
    }
}


/*
 * Logs the gate's state changes since the last look (a rollback with its rules, a promotion,
 * a flag change, a config swap, another worker's or process's write from the store), one
 * line each: the change counter is one atomic load, so a look costs nothing when nothing
 * changed. The array is split into its objects at the commas between them, strings skipped;
 * of each object only its "sequence" is read, so that no change is logged twice and a gap (a
 * worker more than the kept changes behind) is logged as one.
 */
void
ngx_http_pgate_log_changes(ngx_log_t *log, ngx_http_pgate_gate_t *g)
{
    u_char       *json, *p, *q, *end, *start;
    size_t        len;
    uint64_t      count, sequence, newest;
    ngx_uint_t    depth, in_string;

    if (pgate_change_count(g->gate, &count) != PGATE_STATUS_OK || count == g->changes_seen) {
        return;
    }

    json = ngx_http_pgate_json(log, g, pgate_changes_json, "changes", g->changes_seen, &len);
    if (json == NULL) {
        return;
    }

    depth = 0;
    in_string = 0;
    start = NULL;
    end = json + len;
    sequence = 0;
    newest = g->changes_seen;

    for (p = json; p < end; p++) {
        if (in_string) {
            if (*p == '\\') {
                p++;
            } else if (*p == '"') {
                in_string = 0;
            }
            continue;
        }

        switch (*p) {
        case '"':
            /* a change's own "sequence" (its objects', such as "rollback", have none) */
            if (depth == 2 && (size_t) (end - p) > sizeof(PGATE_SEQUENCE_KEY) - 1
                && ngx_strncmp(p, PGATE_SEQUENCE_KEY, sizeof(PGATE_SEQUENCE_KEY) - 1) == 0)
            {
                sequence = 0;
                for (q = p + sizeof(PGATE_SEQUENCE_KEY) - 1;
                     q < end && *q >= '0' && *q <= '9'; q++)
                {
                    sequence = sequence * 10 + (uint64_t) (*q - '0');
                }
            }
            in_string = 1;
            break;
        case '{':
        case '[':
            if (depth++ == 1) {
                start = p;      /* a change: an object in the top array */
            }
            break;
        case '}':
        case ']':
            if (--depth == 1 && start != NULL) {
                if (sequence > newest + 1) {
                    ngx_log_error(NGX_LOG_WARN, log, 0,
                                  "promotion gate \"%V\": changes %uL to %uL were not logged: "
                                  "the gate keeps its last changes only",
                                  &g->name, newest + 1, sequence - 1);
                }
                ngx_http_pgate_log_change(log, g, start, p + 1 - start);
                newest = ngx_max(newest, sequence);
                start = NULL;
            }
            break;
        }
    }

    /* the newest change logged, read from the JSON: one made after the count was read is
     * logged now, and not again at the next look */
    g->changes_seen = ngx_max(count, newest);
    ngx_free(json);
}


/*
 * Logs one occurrence of a failure that may repeat on every request or timer tick (a status
 * other than PGATE_STATUS_OK from the library's `what`) at error level, quietly
 * (ngx_http_pgate_quiet): the first at once, then one line every PGATE_QUIET_LOG_MS at most
 * per worker and gate. A line says what the failure leaves (`consequence`) and, when the
 * previous line kept some quiet, how many `occurrences` and when that line was: they came
 * within PGATE_QUIET_LOG_MS after it, maybe in a run of failures that ended long before this
 * one. Cold.
 */
void
ngx_http_pgate_log_quiet(ngx_log_t *log, ngx_http_pgate_gate_t *g, ngx_http_pgate_quiet_t *q,
    const char *what, pgate_status st, const char *consequence, const char *occurrences)
{
    uint64_t    quieted;
    ngx_msec_t  ago;

    if (!ngx_http_pgate_quiet(q, &quieted, &ago)) {
        return;
    }

    if (quieted == 0) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "promotion gate \"%V\": %s: %s (%s; one line "
                      "every %d s at most per worker)", &g->name, what, pgate_status_str(st),
                      consequence, PGATE_QUIET_LOG_MS / 1000);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, log, 0, "promotion gate \"%V\": %s: %s (%s; %s kept quiet in "
                  "the %d s after this worker's previous such line, written %M ms ago: %uL; "
                  "one line every %d s at most per worker)", &g->name, what,
                  pgate_status_str(st), consequence, occurrences, PGATE_QUIET_LOG_MS / 1000,
                  ago, quieted, PGATE_QUIET_LOG_MS / 1000);
}
