/* The status and metrics locations' content handlers: a gate's state as JSON, every gate's
 * metrics as Prometheus text. */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_pgate.h"


/* A text the library copies out (the rollback history, the metrics) may grow between two
 * calls, as the sync thread applies another process's rollbacks: each retry asks with an
 * eighth and PGATE_TEXT_SLACK bytes more room than the last call asked for, and the handler
 * gives up after PGATE_TEXT_TRIES calls (as the Lua and Python bindings do) rather than
 * take buffers from the request's pool for as long as the text grows. */
#define PGATE_TEXT_TRIES  8
#define PGATE_TEXT_SLACK  4096
#define pgate_text_room(len)  ((len) + 1 + (len) / 8 + PGATE_TEXT_SLACK)
/* The most a traffic percentage takes, as ngx_http_pgate_percent writes it. */
#define PGATE_PERCENT_LEN     32


/*
 * Both locations answer GET and HEAD only: another method is answered 405, with the Allow
 * header the status requires, before any work (the gate's state, a text), whatever the gate.
 */
static ngx_int_t
ngx_http_pgate_method(ngx_http_request_t *r)
{
    ngx_table_elt_t  *allow;

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        return NGX_OK;
    }

    allow = ngx_list_push(&r->headers_out.headers);
    if (allow == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    allow->hash = 1;
#if (nginx_version >= 1023000)
    allow->next = NULL;
#endif
    ngx_str_set(&allow->key, "Allow");
    ngx_str_set(&allow->value, "GET, HEAD");
    return NGX_HTTP_NOT_ALLOWED;
}


static ngx_int_t
ngx_http_pgate_send(ngx_http_request_t *r, ngx_str_t *type, u_char *body, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = len;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = body;
    b->last = body + len;
    b->memory = len ? 1 : 0;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;
    /* an empty body in a subrequest (no gate's metrics) is neither data nor the last buffer:
     * a sync buffer, as nginx's static module sends an empty file (else nginx alerts of a
     * zero size buf) */
    b->sync = (b->last_buf || b->memory) ? 0 : 1;

    out.buf = b;
    out.next = NULL;
    return ngx_http_output_filter(r, &out);
}


/*
 * Writes a traffic percentage (at most PGATE_PERCENT_LEN bytes) as the library's JSON writes
 * it (the gate's config, its changes, the history beside it): the fewest digits that read
 * back as the same double, not rounded to a fixed place (0.0004 % is not 0.000, and 0.000 is
 * no canary); "5.0" for a whole number, a decimal down to 0.00001, "5.1e-6" below. A
 * percentage is finite, from 0 to 100 (pgate_state's).
 */
static u_char *
ngx_http_pgate_percent(u_char *p, double percent)
{
    int         exponent, whole, n, precision;
    char        digits[32], *e;
    u_char     *d, *end;

    if (percent == 0.0) {
        return ngx_cpymem(p, "0.0", 3);
    }

    /* d.ddde[+-]x, one more digit each time, until it reads back as the percentage */
    for (precision = 0; precision < 17; precision++) {
        snprintf(digits, sizeof(digits), "%.*e", precision, percent);
        if (strtod(digits, NULL) == percent) {
            break;
        }
    }

    e = strchr(digits, 'e');
    if (e == NULL) {
        return ngx_sprintf(p, "%s", digits);     /* not a finite number */
    }
    exponent = atoi(e + 1);

    /* the digits without the point, trailing zeros dropped */
    d = (u_char *) digits;
    end = (u_char *) e;
    if (end - d > 1) {
        ngx_memmove(d + 1, d + 2, end - d - 2);
        end--;
    }
    while (end - d > 1 && end[-1] == '0') {
        end--;
    }
    n = end - d;

    whole = exponent + 1;       /* the digits before the point */

    if (whole >= n && whole <= 16) {
        p = ngx_cpymem(p, d, n);
        for ( /* void */ ; n < whole; n++) {
            *p++ = '0';
        }
        return ngx_cpymem(p, ".0", 2);
    }

    if (whole > 0 && whole <= 16) {
        p = ngx_cpymem(p, d, whole);
        *p++ = '.';
        return ngx_cpymem(p, d + whole, n - whole);
    }

    if (whole > -5 && whole <= 0) {
        p = ngx_cpymem(p, "0.", 2);
        for ( /* void */ ; whole < 0; whole++) {
            *p++ = '0';
        }
        return ngx_cpymem(p, d, n);
    }

    *p++ = *d;
    if (n > 1) {
        *p++ = '.';
        p = ngx_cpymem(p, d + 1, n - 1);
    }
    return ngx_sprintf(p, "e%d", exponent);
}


ngx_int_t
ngx_http_pgate_status_handler(ngx_http_request_t *r)
{
    u_char                      *body, *history, *p;
    size_t                       history_len, cap, escaped;
    double                       percent;
    ngx_int_t                    rc;
    ngx_uint_t                   tries;
    uint64_t                     stage;
    ngx_str_t                    type = ngx_string("application/json");
    const char                  *environment;
    pgate_status                 st;
    pgate_environment            env;
    ngx_http_pgate_gate_t       *g;
    ngx_http_pgate_loc_conf_t   *plcf;
    ngx_http_pgate_main_conf_t  *pmcf;

    rc = ngx_http_pgate_method(r);
    if (rc != NGX_OK) {
        return rc;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_promotion_gate_module);
    plcf = ngx_http_get_module_loc_conf(r, ngx_http_promotion_gate_module);

    if (plcf->status_gate < 0 || (ngx_uint_t) plcf->status_gate >= pmcf->gates.nelts) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "promotion gate status: no gate in this location's configuration");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    g = &((ngx_http_pgate_gate_t *) pmcf->gates.elts)[plcf->status_gate];

    if (g->gate == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    st = pgate_state(g->gate, &env, &percent, &stage);
    if (st != PGATE_STATUS_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    switch (env) {
    case PGATE_ENVIRONMENT_CANARY:
        environment = "canary";
        break;
    case PGATE_ENVIRONMENT_STAGING:
        environment = "staging";
        break;
    default:
        environment = "production";
    }

    /* the history may grow between two calls: retry with room to spare, at most
     * PGATE_TEXT_TRIES calls in all, giving the pool back each buffer found too small
     * (ngx_pfree frees a large allocation, as every retry's buffer is) */
    history_len = 0;
    history = NULL;
    cap = 0;

    for (tries = 0; /* void */; tries++) {
        st = pgate_rollback_history_json(g->gate, (char *) history, cap, &history_len);
        if (st == PGATE_STATUS_OK) {
            break;
        }
        if (st != PGATE_STATUS_BUFFER_TOO_SMALL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        if (tries + 1 == PGATE_TEXT_TRIES) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "promotion gate status: the rollback history of gate \"%V\" kept "
                          "growing: %d tries, the last asking for %uz bytes",
                          &g->name, PGATE_TEXT_TRIES, history_len);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        if (history != NULL) {
            ngx_pfree(r->pool, history);
        }
        cap = pgate_text_room(history_len);
        history = ngx_pnalloc(r->pool, cap);
        if (history == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /* "gate" is the document's name, as the metrics' gate label and the store know the gate
     * (any bytes but whitespace and control characters: escaped); "declared" is the name
     * promotion_gate gave it (letters, digits and _) */
    escaped = ngx_escape_json(NULL, g->gate_name.data, g->gate_name.len);

    p = ngx_pnalloc(r->pool, history_len + g->gate_name.len + escaped + g->name.len
                             + ngx_strlen(pgate_version()) + PGATE_PERCENT_LEN + 256);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body = ngx_cpymem(p, "{\"gate\":\"", sizeof("{\"gate\":\"") - 1);
    body = (u_char *) ngx_escape_json(body, g->gate_name.data, g->gate_name.len);
    body = ngx_sprintf(body, "\",\"declared\":\"%V\",\"environment\":\"%s\","
                       "\"traffic_percent\":", &g->name, environment);
    body = ngx_http_pgate_percent(body, percent);
    body = ngx_sprintf(body, ",\"stage\":%uL,\"library_version\":\"%s\","
                       "\"worker_pid\":%P,\"history\":%*s}\n",
                       stage, pgate_version(), ngx_pid,
                       history_len, history ? history : (u_char *) "[]");

    return ngx_http_pgate_send(r, &type, p, body - p);
}


/*
 * Every gate's metrics, with the four outcome counters of the gate's zone (summed over every
 * worker, see ngx_http_pgate_counts_t) in place of the answering worker's own, so every worker
 * answers the same counters, which never go down while the zone lives. The library reads each
 * window as pgate_read_health does: an evaluation that fell due while it held the window is
 * made right after, on this thread, and may roll the canary back; each gate then announces
 * such a change to the other workers at once, as the record path does (not at this worker's
 * next timer tick).
 */
ngx_int_t
ngx_http_pgate_metrics_handler(ngx_http_request_t *r)
{
    char                        *body;
    size_t                       len, cap;
    ngx_int_t                    rc;
    ngx_str_t                    type = ngx_string("text/plain; version=0.0.4");
    ngx_uint_t                   i, n, tries;
    pgate_status                 st;
    const pgate_gate           **live;
    pgate_outcome_counts        *counts;
    ngx_http_pgate_gate_t       *gates;
    ngx_http_pgate_counts_t     *shared;
    ngx_http_pgate_main_conf_t  *pmcf;

    rc = ngx_http_pgate_method(r);
    if (rc != NGX_OK) {
        return rc;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_promotion_gate_module);
    gates = pmcf->gates.elts;

    live = ngx_palloc(r->pool, (pmcf->gates.nelts + 1) * sizeof(pgate_gate *));
    counts = ngx_palloc(r->pool, (pmcf->gates.nelts + 1) * sizeof(pgate_outcome_counts));
    if (live == NULL || counts == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = 0;
    for (i = 0; i < pmcf->gates.nelts; i++) {
        if (gates[i].gate == NULL) {
            continue;
        }

        shared = &gates[i].ring->counts;
        counts[n].late_outcomes = __atomic_load_n(&shared->late_outcomes, __ATOMIC_RELAXED);
        counts[n].foreign_outcomes = __atomic_load_n(&shared->foreign_outcomes,
                                                     __ATOMIC_RELAXED);
        counts[n].forced_outcomes = __atomic_load_n(&shared->forced_outcomes,
                                                    __ATOMIC_RELAXED);
        counts[n].ignored_override_values = __atomic_load_n(&shared->ignored_override_values,
                                                            __ATOMIC_RELAXED);
        live[n++] = gates[i].gate;
    }

    body = NULL;
    cap = 0;
    len = 0;

    /* the text may grow between two calls: as the history above */
    for (tries = 0; /* void */; tries++) {
        st = pgate_metrics_prometheus_counted(live, counts, n, body, cap, &len);

        for (i = 0; i < pmcf->gates.nelts; i++) {
            if (gates[i].gate != NULL) {
                ngx_http_pgate_announce(r->connection->log, &gates[i]);
            }
        }

        if (st == PGATE_STATUS_OK) {
            break;
        }
        if (st != PGATE_STATUS_BUFFER_TOO_SMALL) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "promotion gate metrics: %s", pgate_status_str(st));
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        if (tries + 1 == PGATE_TEXT_TRIES) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "promotion gate metrics: the exposition kept growing: %d tries, "
                          "the last asking for %uz bytes", PGATE_TEXT_TRIES, len);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        if (body != NULL) {
            ngx_pfree(r->pool, body);
        }
        cap = pgate_text_room(len);
        body = ngx_pnalloc(r->pool, cap);
        if (body == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_pgate_send(r, &type, (u_char *) body, len);
}
