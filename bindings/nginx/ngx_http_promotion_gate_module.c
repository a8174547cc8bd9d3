/*
 * promotion-gates inside nginx (README.md beside this file): the module's definition, its
 * configuration structures, and each worker's life (making and freeing its gates).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_pgate.h"


static void *ngx_http_pgate_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_pgate_create_srv_conf(ngx_conf_t *cf);
static void *ngx_http_pgate_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_pgate_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child);
static ngx_int_t ngx_http_pgate_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_pgate_init_process(ngx_cycle_t *cycle);
static void ngx_http_pgate_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_pgate_commands[] = {

    { ngx_string("promotion_gate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_pgate_declare,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("promotion_gate_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_pgate_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("promotion_gate_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_pgate_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_pgate_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_pgate_postconfiguration,      /* postconfiguration */
    ngx_http_pgate_create_main_conf,       /* create main configuration */
    NULL,                                  /* init main configuration */
    ngx_http_pgate_create_srv_conf,        /* create server configuration */
    NULL,                                  /* merge server configuration */
    ngx_http_pgate_create_loc_conf,        /* create location configuration */
    ngx_http_pgate_merge_loc_conf          /* merge location configuration */
};


ngx_module_t  ngx_http_promotion_gate_module = {
    NGX_MODULE_V1,
    &ngx_http_pgate_module_ctx,            /* module context */
    ngx_http_pgate_commands,               /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_pgate_init_process,           /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_pgate_exit_process,           /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* ---- configuration ---------------------------------------------------------------- */

static void *
ngx_http_pgate_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_pgate_main_conf_t  *pmcf;

    pmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_pgate_main_conf_t));
    if (pmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&pmcf->gates, cf->pool, 2, sizeof(ngx_http_pgate_gate_t))
        != NGX_OK
        || ngx_array_init(&pmcf->handlers, cf->pool, 2, sizeof(ngx_http_pgate_handler_t))
           != NGX_OK
        || ngx_array_init(&pmcf->key_reads, cf->pool, 1, sizeof(ngx_http_pgate_key_read_t))
           != NGX_OK)
    {
        return NULL;
    }

    pmcf->request_id_index = NGX_ERROR;
    return pmcf;
}


static void *
ngx_http_pgate_create_srv_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_http_pgate_srv_conf_t));
}


static void *
ngx_http_pgate_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_pgate_loc_conf_t  *plcf;

    plcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_pgate_loc_conf_t));
    if (plcf == NULL) {
        return NULL;
    }

    plcf->status_gate = NGX_CONF_UNSET;
    return plcf;
}


/*
 * A block nested in a status location (an `if`, a location) runs the status handler it
 * inherits: it inherits the gate too.
 */
static char *
ngx_http_pgate_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_pgate_loc_conf_t  *prev = parent;
    ngx_http_pgate_loc_conf_t  *conf = child;

    ngx_conf_merge_value(conf->status_gate, prev->status_gate, NGX_CONF_UNSET);
    return NGX_CONF_OK;
}


/* ---- worker life ------------------------------------------------------------------ */

/* Reads the gate's override names (ngx_http_pgate_refresh_config). */
static ngx_int_t
ngx_http_pgate_read_overrides(ngx_log_t *log, ngx_http_pgate_gate_t *g)
{
    size_t        header_len, cookie_len, old_len;
    u_char       *p;
    pgate_status  st;
    u_char        old[PGATE_NAME_CAPACITY];

    old_len = g->override_header_len;
    ngx_memcpy(old, g->override_header, old_len);

    /* PGATE_NAME_CAPACITY bytes always hold a name and its NUL */
    st = pgate_override_names(g->gate, (char *) g->override_header, PGATE_NAME_CAPACITY,
                              &header_len, (char *) g->override_cookie,
                              PGATE_NAME_CAPACITY, &cookie_len);
    if (st != PGATE_STATUS_OK) {
        /* asked again every timer tick: one line every PGATE_QUIET_LOG_MS at most */
        ngx_http_pgate_log_quiet(log, g, &g->override_failures, "override names", st,
                                 "forcing values read as before, asked again every timer "
                                 "tick", "failed reads");
        return NGX_ERROR;
    }

    g->override_header_len = header_len;
    g->override_cookie_len = cookie_len;

    if (header_len == 0
        || (header_len == old_len && ngx_memcmp(old, g->override_header, header_len) == 0))
    {
        return NGX_OK;
    }

    /* nginx drops request headers with an underscore unless underscores_in_headers is on */
    if (ngx_strlchr(g->override_header, g->override_header + header_len, '_') != NULL) {
        ngx_log_error(NGX_LOG_WARN, log, 0, "promotion gate \"%V\": overrides.header "
                      "\"%*s\" has an underscore: nginx ignores such request headers unless "
                      "the server sets \"underscores_in_headers on\" (or "
                      "\"ignore_invalid_headers off\")",
                      &g->name, header_len, g->override_header);
    }

    /* and, as invalid, those with any other punctuation than '-' (an HTTP token may hold
     * !#$%&'*+.^`|~ too, which the library takes) unless ignore_invalid_headers is off */
    for (p = g->override_header; p < g->override_header + header_len; p++) {
        if (*p != '-' && *p != '_' && !(*p >= '0' && *p <= '9')
            && !(ngx_tolower(*p) >= 'a' && ngx_tolower(*p) <= 'z'))
        {
            ngx_log_error(NGX_LOG_WARN, log, 0, "promotion gate \"%V\": overrides.header "
                          "\"%*s\" has \"%c\": nginx ignores request headers whose names "
                          "hold other characters than letters, digits, \"-\" (and \"_\" "
                          "with \"underscores_in_headers on\") unless the server sets "
                          "\"ignore_invalid_headers off\"",
                          &g->name, header_len, g->override_header, *p);
            break;
        }
    }

    return NGX_OK;
}


/* pgate_config_json in the shape of pgate_changes_json, for ngx_http_pgate_json. */
static pgate_status
ngx_http_pgate_config_json(const pgate_gate *gate, uint64_t after, char *buf, size_t cap,
    size_t *len_out)
{
    return pgate_config_json(gate, buf, cap, len_out);
}


/*
 * Reads the gate's rollback_window_seconds from its config's JSON into window_ms
 * (ngx_http_pgate_refresh_config): how long an outcome shared in the ring stays evidence. The
 * key cannot occur inside a JSON string, whose quotes are escaped.
 */
static ngx_int_t
ngx_http_pgate_read_window(ngx_log_t *log, ngx_http_pgate_gate_t *g)
{
    u_char      *json, *p, *end;
    size_t       len;
    ngx_msec_t   seconds;

    static u_char  key[] = "\"rollback_window_seconds\":";

    json = ngx_http_pgate_json(log, g, ngx_http_pgate_config_json, "config", 0, &len);
    if (json == NULL) {
        return NGX_ERROR;
    }

    end = json + len;
    p = ngx_strnstr(json, (char *) key, len);
    seconds = 0;

    if (p != NULL) {
        for (p += sizeof(key) - 1; p < end && *p >= '0' && *p <= '9'; p++) {
            seconds = seconds * 10 + (*p - '0');
        }
    }

    ngx_free(json);

    if (seconds == 0) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "promotion gate \"%V\": no "
                      "rollback_window_seconds in the gate's config: the window read before "
                      "stays (none: the ring's outcomes are pooled whatever their age)",
                      &g->name);
        return NGX_ERROR;
    }

    g->window_ms = seconds * 1000;
    return NGX_OK;
}


/*
 * Reads what the worker keeps of its gate's config again when the gate's state changed since
 * the last read (a config swap, this worker's or one applied from the store, may change it):
 * the override names and the rollback window. One atomic load when nothing changed. Run when
 * the gate opens and from the worker timer, never per request.
 */
void
ngx_http_pgate_refresh_config(ngx_log_t *log, ngx_http_pgate_gate_t *g)
{
    uint64_t  count;

    if (pgate_change_count(g->gate, &count) != PGATE_STATUS_OK || count == g->config_seen) {
        return;
    }

    /* names not read are asked for again at the next look; a window not read is logged once
     * a change (its error is no passing one) */
    if (ngx_http_pgate_read_overrides(log, g) == NGX_OK) {
        (void) ngx_http_pgate_read_window(log, g);
        g->config_seen = count;
    }
}


static ngx_int_t
ngx_http_pgate_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                   i;
    pgate_error                 *err;
    pgate_status                 st;
    ngx_http_pgate_gate_t       *gates;
    ngx_http_pgate_main_conf_t  *pmcf;

    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE) {
        return NGX_OK;          /* cache manager and loader: no requests, no gate */
    }

    pmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_promotion_gate_module);
    if (pmcf == NULL || pmcf->gates.nelts == 0) {
        return NGX_OK;
    }

    err = NULL;
    st = pgate_set_log_callback(ngx_http_pgate_log_callback, NULL, PGATE_LOG_LEVEL_INFO,
                                &err);
    if (st != PGATE_STATUS_OK) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "promotion gate: no library log lines: %s", pgate_error_message(err));
        pgate_error_free(err);
    }

    gates = pmcf->gates.elts;

    for (i = 0; i < pmcf->gates.nelts; i++) {
        gates[i].ring = gates[i].zone->data;
        gates[i].epoch = gates[i].opened->epoch;

        err = NULL;
        st = ngx_http_pgate_open(cycle->log, &gates[i], &err);
        if (st != PGATE_STATUS_OK) {
            /* once a failure streak: the timer's attempts log only their success */
            ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                          "promotion gate \"%V\": %s: %s; this worker routes every "
                          "request to stable, and tries again after 1 s, then twice as long "
                          "after each failure, up to 5 minutes", &gates[i].name,
                          pgate_status_str(st), pgate_error_message(err));
        }
        pgate_error_free(err);
    }

    pmcf->timer.handler = ngx_http_pgate_timer;
    pmcf->timer.data = pmcf;
    pmcf->timer.log = cycle->log;
    pmcf->timer.cancelable = 1;
    ngx_add_timer(&pmcf->timer, PGATE_TIMER_MS);

    ngx_http_pgate_log_drain(cycle->log);
    return NGX_OK;
}


static void
ngx_http_pgate_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                   i;
    ngx_http_pgate_gate_t       *gates;
    ngx_http_pgate_main_conf_t  *pmcf;

    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE) {
        return;
    }

    pmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_promotion_gate_module);
    if (pmcf == NULL || pmcf->gates.nelts == 0) {
        return;
    }

    gates = pmcf->gates.elts;
    for (i = 0; i < pmcf->gates.nelts; i++) {
        ngx_http_pgate_reopen_end(&gates[i]);
        if (gates[i].gate == NULL) {
            continue;
        }
        /* changes made after the timer's last look (requests finishing in a graceful exit) */
        ngx_http_pgate_log_changes(cycle->log, &gates[i]);
        (void) pgate_gate_free(gates[i].gate);     /* joins the gate's threads */
        gates[i].gate = NULL;
    }

    (void) pgate_set_log_callback(NULL, NULL, PGATE_LOG_LEVEL_INFO, NULL);
    ngx_http_pgate_log_drain(cycle->log);
}


static ngx_int_t
ngx_http_pgate_postconfiguration(ngx_conf_t *cf)
{
    ngx_uint_t                       i;
    ngx_http_handler_pt             *h;
    ngx_http_pgate_srv_conf_t       *pscf;
    ngx_http_core_main_conf_t       *cmcf;
    ngx_http_pgate_main_conf_t      *pmcf;
    ngx_http_upstream_srv_conf_t   **uscfp;
    ngx_http_upstream_main_conf_t   *umcf;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_promotion_gate_module);
    if (ngx_http_pgate_check_handlers(cf, pmcf) != NGX_OK
        || ngx_http_pgate_check_keys(cf, pmcf) != NGX_OK)
    {
        return NGX_ERROR;
    }
    if (pmcf->gates.nelts == 0) {
        return NGX_OK;
    }

    /* a reload of nginx's one process (master_process off): nginx runs no init_process for
     * the new configuration, whose gates would never open (nor does it serve it) */
    if (ngx_process == NGX_PROCESS_SINGLE && !ngx_test_config
        && !ngx_is_init_cycle(cf->cycle->old_cycle))
    {
        ngx_log_error(NGX_LOG_WARN, cf->log, 0, "promotion gate: a reload with "
                      "\"master_process off\" opens none of the new configuration's gates: "
                      "nginx starts no process for it; stop nginx and start it again");
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }
    *h = ngx_http_pgate_log_handler;
    ngx_http_pgate_add_header_filter();

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);
    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        if (uscfp[i]->peer.init == NULL) {
            continue;
        }

        if (uscfp[i]->srv_conf == NULL) {
            /* an address in proxy_pass (and the like): nginx's round robin, unless not */
            if (uscfp[i]->peer.init == ngx_http_upstream_init_round_robin_peer) {
                uscfp[i]->peer.init = ngx_http_pgate_implicit_peer_init;
            }
            continue;
        }

        pscf = ngx_http_conf_upstream_srv_conf(uscfp[i], ngx_http_promotion_gate_module);
        pscf->original_init = uscfp[i]->peer.init;
        uscfp[i]->peer.init = ngx_http_pgate_peer_init;
    }

    return NGX_OK;
}
