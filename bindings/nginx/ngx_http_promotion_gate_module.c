/*
 * promotion-gates inside nginx: routes requests between a canary and a stable upstream,
 * records each upstream outcome for the gate's judge, and serves the gate's state and its
 * Prometheus metrics. Calls the C ABI of include/promotion_gates.h; see README.md beside
 * this file for the directives and the design (one gate per worker, evidence pooled through
 * a shared memory ring, microsecond upstream timing by wrapping the peer, log lines queued
 * from library threads and written by a worker timer, forcing values read from the header or
 * cookie the gate's own config names, a request's routing kept across internal redirects).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <time.h>

#include "promotion_gates.h"


/* Outcomes kept in each gate's shared ring; a worker further behind skips the oldest. */
#define PGATE_RING_OUTCOMES    4096
/* A claimed slot still unpublished this far behind the head belongs to a dead writer. */
#define PGATE_RING_ABANDONED   64
/* Library log lines held between two drains of the worker timer; more are counted, dropped. */
#define PGATE_LOG_QUEUE_LINES  64
#define PGATE_LOG_LINE_BYTES   1024
/* How often each worker drains the log queue and the other workers' outcomes. */
#define PGATE_TIMER_MS         50
#define PGATE_SEQUENCE_KEY     "\"sequence\":"  /* a change's number in pgate_changes_json */
/* The largest config or SLO document read: the library's own limit (MAX_DOCUMENT_BYTES). */
#define PGATE_DOCUMENT_MAX     (8 * 1024 * 1024)
/* How long a worker told of another worker's change asks its store again, every timer tick,
 * until its gate applied a change: the other worker's store write may land after the ask. */
#define PGATE_RESYNC_MS        1000
/* The most of one state change's JSON written on one error log line: nginx cuts a line at
 * NGX_MAX_ERROR_STR (2048) bytes, its time, level, pid and our prefix included. */
#define PGATE_CHANGE_LINE_BYTES  1536

/* An outcome's flags, in the ring and between the log handler and pgate_record. */
#define PGATE_FLAG_CANARY      1
#define PGATE_FLAG_SUCCESS     2
/* The decision's `forced` byte (pgate_forced: 0, 1 or 2), kept as it was routed, bits 2-3. */
#define PGATE_FLAG_FORCED_SHIFT  2
#define PGATE_FLAG_FORCED_MASK   3
/* The client went away before the routed upstream answered; the latency is its wait. */
#define PGATE_FLAG_ABANDONED   16


/* One upstream outcome in shared memory; `seq` is the slot's index + 1 once published. */
typedef struct {
    uint64_t                     seq;
    uint64_t                     stage;
    uint64_t                     latency_ns;
    uint64_t                     pid;
    uint64_t                     flags;
} ngx_http_pgate_outcome_t;

/*
 * A gate's shared memory zone: the ring of outcomes the workers pool, and the generation, which
 * a worker bumps when its own gate changed state (a rollback or a promotion its judge decided)
 * and every worker compares on each routed request, asking its store at once when it moved.
 * The head, written by every worker on every request, and the generation, read on every
 * request, each have a cache line of their own.
 */
typedef struct {
    uint64_t                     head;
    u_char                       head_line[NGX_CPU_CACHE_LINE - sizeof(uint64_t)];
    uint64_t                     generation;
    u_char                       generation_line[NGX_CPU_CACHE_LINE - sizeof(uint64_t)];
    ngx_http_pgate_outcome_t     outcomes[PGATE_RING_OUTCOMES];
} ngx_http_pgate_ring_t;

/*
 * How nginx -t opened a gate's store, for the zone's init to check once the whole file was
 * read. Allocated apart and pointed to by the zone: the array of gates moves as it grows.
 */
typedef struct {
    ngx_str_t                    name;
    ngx_cycle_t                 *cycle;       /* the configuration's, for its core module */
    /* the user and group it opened the store as, when it ran as root */
    ngx_uid_t                    user;
    ngx_gid_t                    group;
    unsigned                     switched:1;
} ngx_http_pgate_opened_t;

typedef struct {
    ngx_str_t                    name;
    ngx_str_t                    config_path;
    ngx_str_t                    config;
    ngx_str_t                    slo_path;    /* empty without slo= */
    ngx_str_t                    slo;
    ngx_str_t                    gate_name;   /* the document's "gate" */
    ngx_str_t                    store;       /* pgate_store_location: sqlite:<path>, etcd:... */
    ngx_array_t                 *keys;        /* ngx_http_complex_value_t */
    ngx_http_pgate_opened_t     *opened;
    ngx_shm_zone_t              *zone;
    ngx_http_pgate_ring_t       *ring;
    uint64_t                     cursor;      /* the next shared outcome this worker reads */
    pgate_gate                  *gate;        /* this worker's, from init_process */
    uint64_t                     changes_seen; /* the last change this worker logged */
    uint64_t                     changes_announced; /* the last change it looked at for
                                                     * its own, to bump the generation */
    uint64_t                     generation_seen;
    /* after an ask: the change count then, and until when to ask again (0: not asking) */
    uint64_t                     resync_count;
    ngx_msec_t                   resync_until;
    /* where this worker reads a forcing value, from its gate's config (0: not named) */
    uint64_t                     overrides_seen; /* the change count they were read at */
    size_t                       override_header_len;
    size_t                       override_cookie_len;
    u_char                       override_header[PGATE_NAME_CAPACITY];
    u_char                       override_cookie[PGATE_NAME_CAPACITY];
} ngx_http_pgate_gate_t;

/* Where a status or metrics directive set a location's content handler, checked once the
 * configuration is read: a directive after it (proxy_pass...) may have replaced it. */
typedef struct {
    ngx_http_core_loc_conf_t    *clcf;
    ngx_http_handler_pt          handler;
    ngx_str_t                    file;
    ngx_uint_t                   line;
    const char                  *directive;
} ngx_http_pgate_handler_t;

typedef struct {
    ngx_array_t                  gates;       /* ngx_http_pgate_gate_t */
    ngx_array_t                  handlers;    /* ngx_http_pgate_handler_t */
    ngx_int_t                    request_id_index;
    ngx_event_t                  timer;
} ngx_http_pgate_main_conf_t;

typedef struct {
    ngx_int_t                    status_gate; /* index, or NGX_CONF_UNSET */
} ngx_http_pgate_loc_conf_t;

/* Per upstream{} block: the peer init this module wraps. */
typedef struct {
    ngx_http_upstream_init_peer_pt  original_init;
} ngx_http_pgate_srv_conf_t;

typedef struct {
    pgate_decision               decision;
    unsigned                     routed:1;    /* this request asked already */
    unsigned                     decided:1;   /* the library decided (else: stable) */
    unsigned                     recordable:1;  /* decided before the upstream started */
} ngx_http_pgate_route_t;

/*
 * Per request: the decision of each gate and the upstream's timing. It lives for the whole
 * request: an internal redirect or a named location clears r->ctx, and
 * ngx_http_pgate_get_ctx finds it again through its pool cleanup.
 */
typedef struct {
    ngx_http_request_t          *request;
    ngx_http_pgate_route_t      *routes;
    /* how many r->upstream_states it had when first routed (if it had them: states_existed),
     * see ngx_http_pgate_routed_first */
    ngx_uint_t                   states_before;
    unsigned                     states_existed:1;
    /* 1 + the index in r->upstream_states of the timed upstream's last attempt (0: none) */
    ngx_uint_t                   timed_state_end;
    uint64_t                     upstream_start_ns;
    uint64_t                     upstream_end_ns;
    ngx_event_get_peer_pt        original_get;
    ngx_event_free_peer_pt       original_free;
    ngx_event_notify_peer_pt     original_notify;
#if (NGX_HTTP_SSL)
    ngx_event_set_peer_session_pt   original_set_session;
    ngx_event_save_peer_session_pt  original_save_session;
#endif
    void                        *original_data;
} ngx_http_pgate_ctx_t;

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


static void *ngx_http_pgate_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_pgate_create_srv_conf(ngx_conf_t *cf);
static void *ngx_http_pgate_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_pgate_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child);
static ngx_int_t ngx_http_pgate_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_pgate_init_process(ngx_cycle_t *cycle);
static void ngx_http_pgate_exit_process(ngx_cycle_t *cycle);
static char *ngx_http_pgate_check_pooling(ngx_conf_t *cf, ngx_http_pgate_gate_t *g);
static char *ngx_http_pgate_check_name(ngx_conf_t *cf, ngx_http_pgate_gate_t *g);
static char *ngx_http_pgate_declare(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_pgate_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_pgate_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);


static ngx_http_pgate_log_queue_t  ngx_http_pgate_log_queue = {
    PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, {{ 0, 0, { 0 } }}
};


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


/* nginx's own clock is cached per event loop turn in milliseconds: time upstreams here. */
static uint64_t
ngx_http_pgate_now_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000 + (uint64_t) ts.tv_nsec;
}


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


/* Reads a whole file (a config or SLO document) at configuration time. */
static char *
ngx_http_pgate_read_document(ngx_conf_t *cf, ngx_str_t *path, ngx_str_t *out)
{
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_file_info_t  fi;

    if (ngx_conf_full_name(cf->cycle, path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* Before it is opened: a FIFO would block the open, and nginx -t with it. */
    if (ngx_file_info(path->data, &fi) != NGX_FILE_ERROR && !ngx_is_file(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is not a regular file (a directory, a FIFO, a device): "
                           "a gate's document is a JSON file", path);
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", path);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > PGATE_DOCUMENT_MAX)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is not a readable document of at most %d bytes",
                           path, PGATE_DOCUMENT_MAX);
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    if (ngx_file_size(&fi) == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is empty: a gate's document is a JSON object "
                           "(\"{}\" for every default)", path);
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    out->len = (size_t) ngx_file_size(&fi);
    out->data = ngx_pnalloc(cf->pool, out->len + 1);
    if (out->data == NULL) {
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_fd(fd, out->data, out->len);
    ngx_close_file(fd);

    if (n < 0 || (size_t) n != out->len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "reading \"%V\" failed", path);
        return NGX_CONF_ERROR;
    }

    out->data[out->len] = '\0';
    return NGX_CONF_OK;
}


/* Refuses a gate's documents with the library's message, which names the field and value. */
static char *
ngx_http_pgate_refuse(ngx_conf_t *cf, ngx_http_pgate_gate_t *g, pgate_status st,
    pgate_error *err)
{
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "promotion_gate \"%V\": %s: %s (in \"%V\"%s%V%s)", &g->name,
                       pgate_status_str(st), pgate_error_message(err),
                       &g->config_path, g->slo_path.len ? " or \"" : "",
                       &g->slo_path, g->slo_path.len ? "\"" : "");
    return NGX_CONF_ERROR;
}


/*
 * Reads where the document's store keeps the gate's state (pgate_store_location: from the
 * document alone, before any gate opens the store) and refuses what the workers cannot share:
 * no store (each worker would keep a state of its own, and a reload or a restarted worker
 * would start from the document again, a rolled-back canary taking traffic again), and a
 * relative SQLite path (opened against the working directory of whichever process opens it,
 * not against the configuration's: nginx -t run elsewhere would leave a stray database).
 */
static char *
ngx_http_pgate_check_store(ngx_conf_t *cf, ngx_http_pgate_gate_t *g)
{
    char         *rv;
    size_t        cap, len;
    u_char       *location;
    pgate_error  *err;
    pgate_status  st;

    /* the location is the document's path or prefix behind a short scheme: it fits */
    cap = g->config.len + sizeof("sqlite:");
    location = ngx_pnalloc(cf->pool, cap);
    if (location == NULL) {
        return NGX_CONF_ERROR;
    }

    err = NULL;
    st = pgate_store_location(g->config.data, g->config.len, (char *) location, cap, &len,
                              &err);
    if (st != PGATE_STATUS_OK) {
        rv = ngx_http_pgate_refuse(cf, g, st, err);
        pgate_error_free(err);
        return rv;
    }

    if (len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "promotion_gate \"%V\": \"%V\" has no \"store\": each worker would "
                           "keep a release state of its own, and a reload or a restarted "
                           "worker would start again from the document (a rolled-back canary "
                           "taking traffic again): add e.g. \"store\": {\"sqlite\": "
                           "{\"path\": \"/var/lib/promotion-gates/%V.db\", "
                           "\"fleet_judging\": false}}", &g->name, &g->config_path, &g->name);
        return NGX_CONF_ERROR;
    }

    if (len > sizeof("sqlite:") - 1
        && ngx_strncmp(location, "sqlite:", sizeof("sqlite:") - 1) == 0
        && location[sizeof("sqlite:") - 1] != '/')
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "promotion_gate \"%V\": invalid store.sqlite.path = \"%s\" in "
                           "\"%V\": a relative path is opened against the working directory "
                           "of the process that opens it (nginx -t's, the master's), not the "
                           "configuration's: write an absolute path", &g->name,
                           location + sizeof("sqlite:") - 1, &g->config_path);
        return NGX_CONF_ERROR;
    }

    g->store.data = location;
    g->store.len = len;
    return NGX_CONF_OK;
}


/*
 * Validates a gate's documents by making a gate and freeing it (its store is opened, so a
 * bad store path fails here too). What the config document alone can refuse (no store or a
 * relative path, a store that judges the fleet, the name of another declaration's gate) is
 * refused first, read from the document: making the gate creates the store's file and, when
 * the store is empty, writes the document's state into it, so a refused declaration would
 * leave its state for the corrected one to start from. When the master runs as root, the
 * gate is made with the workers' user and group, so that a SQLite file it creates belongs to
 * them: those of the `user` directive, or without one (yet) nginx's defaults, which the core
 * module sets only after the whole file was read. The user and group used are kept: a `user`
 * directive after the http block is refused when the zone is made (ngx_http_pgate_check_user).
 */
static char *
ngx_http_pgate_validate(ngx_conf_t *cf, ngx_http_pgate_gate_t *g)
{
    char             *rv;
    pgate_gate       *gate;
    pgate_error      *err;
    pgate_status      st;
    ngx_core_conf_t  *ccf;
    ngx_uint_t        switched;
    ngx_uid_t         user;
    ngx_gid_t         group;
    struct passwd    *pwd;
    struct group     *grp;

    if (ngx_http_pgate_check_store(cf, g) != NGX_CONF_OK
        || ngx_http_pgate_check_pooling(cf, g) != NGX_CONF_OK
        || ngx_http_pgate_check_name(cf, g) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cf->cycle->conf_ctx, ngx_core_module);
    switched = 0;

    if (geteuid() == 0) {
        user = ccf->user;
        group = ccf->group;

        if (user == (ngx_uid_t) NGX_CONF_UNSET_UINT) {
            pwd = getpwnam(NGX_USER);
            grp = getgrnam(NGX_GROUP);
            if (pwd == NULL || grp == NULL) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "promotion_gate \"%V\": no \"user\" directive before "
                                   "http, and nginx's default user \"" NGX_USER "\" or "
                                   "group \"" NGX_GROUP "\" does not exist", &g->name);
                return NGX_CONF_ERROR;
            }
            user = pwd->pw_uid;
            group = grp->gr_gid;
        }

        if (setegid(group) == -1 || seteuid(user) == -1) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               "promotion_gate \"%V\": cannot take the workers' user "
                               "to open the store", &g->name);
            (void) setegid(0);
            return NGX_CONF_ERROR;
        }
        switched = 1;
        g->opened->user = user;
        g->opened->group = group;
        g->opened->switched = 1;
    }

    gate = NULL;
    err = NULL;
    st = pgate_gate_new(g->config.data, g->config.len, g->slo.data, g->slo.len,
                        &gate, &err);

    if (switched && (seteuid(0) == -1 || setegid(0) == -1)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "promotion_gate \"%V\": cannot become root again", &g->name);
        rv = NGX_CONF_ERROR;
        goto done;
    }

    rv = st == PGATE_STATUS_OK ? NGX_CONF_OK : ngx_http_pgate_refuse(cf, g, st, err);

done:

    pgate_error_free(err);
    (void) pgate_gate_free(gate);
    return rv;
}


/*
 * Refuses a configuration whose workers would not run as the user nginx -t opened the store
 * as: a `user` directive written after the http block was not read yet when promotion_gate
 * opened it, so the store's file could belong to a user the workers are not. Run when the
 * gate's zone is made, after the whole file was read and the core module set its defaults
 * (an error here fails nginx -t, and a reload keeps the running configuration; an
 * init_module hook could only exit the master).
 */
static ngx_int_t
ngx_http_pgate_check_user(ngx_log_t *log, ngx_http_pgate_opened_t *opened)
{
    ngx_core_conf_t  *ccf;

    if (!opened->switched) {
        return NGX_OK;          /* not root: the workers run as nginx -t did */
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(opened->cycle->conf_ctx, ngx_core_module);

    if (ccf->user == opened->user && ccf->group == opened->group) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_EMERG, log, 0,
                  "promotion_gate \"%V\": the store was opened as uid %d gid %d, the users "
                  "known when the directive was read, but the workers run as \"user %s\" "
                  "(uid %d gid %d): write the \"user\" directive before the http block",
                  &opened->name, (int) opened->user, (int) opened->group,
                  ccf->username ? ccf->username : "?", (int) ccf->user, (int) ccf->group);
    return NGX_ERROR;
}


/*
 * Reads the gate's override names again when its state changed since the last read (a config
 * swap, this worker's or one applied from the store, may rename them): one atomic load when
 * nothing changed. Run at init_process and from the worker timer, never per request.
 */
static void
ngx_http_pgate_refresh_overrides(ngx_log_t *log, ngx_http_pgate_gate_t *g)
{
    size_t        header_len, cookie_len, old_len;
    uint64_t      count;
    pgate_status  st;
    u_char        old[PGATE_NAME_CAPACITY];

    if (pgate_change_count(g->gate, &count) != PGATE_STATUS_OK
        || count == g->overrides_seen)
    {
        return;
    }

    old_len = g->override_header_len;
    ngx_memcpy(old, g->override_header, old_len);

    /* PGATE_NAME_CAPACITY bytes always hold a name and its NUL */
    st = pgate_override_names(g->gate, (char *) g->override_header, PGATE_NAME_CAPACITY,
                              &header_len, (char *) g->override_cookie,
                              PGATE_NAME_CAPACITY, &cookie_len);
    if (st != PGATE_STATUS_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "promotion gate \"%V\": override names: %s; "
                      "forcing values read as before", &g->name, pgate_status_str(st));
        return;
    }

    g->override_header_len = header_len;
    g->override_cookie_len = cookie_len;
    g->overrides_seen = count;

    /* nginx drops request headers with an underscore unless underscores_in_headers is on */
    if (header_len
        && (header_len != old_len || ngx_memcmp(old, g->override_header, header_len) != 0)
        && ngx_strlchr(g->override_header, g->override_header + header_len, '_') != NULL)
    {
        ngx_log_error(NGX_LOG_WARN, log, 0, "promotion gate \"%V\": overrides.header "
                      "\"%*s\" has an underscore: nginx ignores such request headers unless "
                      "the server sets \"underscores_in_headers on\" (or "
                      "\"ignore_invalid_headers off\")",
                      &g->name, header_len, g->override_header);
    }
}


/*
 * The workers pool their outcomes through the gate's shared memory ring, so a store that also
 * sums every process's counts (fleet-wide judging) would count each outcome once per worker:
 * the document's store must say "fleet_judging": false (the library's default is true). Read
 * from the document (pgate_document_fleet_judging), before any gate opens the store.
 */
static char *
ngx_http_pgate_check_pooling(ngx_conf_t *cf, ngx_http_pgate_gate_t *g)
{
    char         *rv;
    bool          fleet_judging;
    pgate_error  *err;
    pgate_status  st;

    err = NULL;
    st = pgate_document_fleet_judging(g->config.data, g->config.len, &fleet_judging, &err);
    if (st != PGATE_STATUS_OK) {
        rv = ngx_http_pgate_refuse(cf, g, st, err);
        pgate_error_free(err);
        return rv;
    }

    if (fleet_judging) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "promotion_gate \"%V\": invalid store fleet_judging = true in \"%V\": "
                           "the workers pool their outcomes through shared memory, so the "
                           "store must not sum them again: write \"fleet_judging\": false",
                           &g->name, &g->config_path);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * Two gates whose documents name one gate would share one state in a store and repeat each
 * other's series in the metrics: the later declaration is refused. The name is read from the
 * document (pgate_document_gate_name, what pgate_gate_name answers for its gate), before any
 * gate opens the store, and kept for the gate's shared memory key.
 */
static char *
ngx_http_pgate_check_name(ngx_conf_t *cf, ngx_http_pgate_gate_t *g)
{
    char                        *rv;
    size_t                       len;
    u_char                       name[PGATE_NAME_CAPACITY];
    ngx_uint_t                   i;
    pgate_error                 *err;
    pgate_status                 st;
    ngx_http_pgate_gate_t       *gates;
    ngx_http_pgate_main_conf_t  *pmcf;

    /* PGATE_NAME_CAPACITY bytes always hold a name and its NUL */
    err = NULL;
    st = pgate_document_gate_name(g->config.data, g->config.len, (char *) name,
                                  PGATE_NAME_CAPACITY, &len, &err);
    if (st != PGATE_STATUS_OK) {
        rv = ngx_http_pgate_refuse(cf, g, st, err);
        pgate_error_free(err);
        return rv;
    }

    g->gate_name.data = ngx_pnalloc(cf->pool, len);
    if (g->gate_name.data == NULL) {
        return NGX_CONF_ERROR;
    }
    ngx_memcpy(g->gate_name.data, name, len);
    g->gate_name.len = len;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_promotion_gate_module);
    gates = pmcf->gates.elts;

    for (i = 0; i < pmcf->gates.nelts; i++) {
        if (&gates[i] != g && gates[i].gate_name.len == len
            && ngx_memcmp(gates[i].gate_name.data, name, len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "promotion_gate \"%V\": \"%V\" names gate \"%V\", as the "
                               "document of promotion_gate \"%V\" does: two gates of one name "
                               "would share one state in a store and repeat each other's "
                               "metric series", &g->name, &g->config_path, &g->gate_name,
                               &gates[i].name);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static ngx_int_t ngx_http_pgate_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_inline void ngx_http_pgate_follow(ngx_log_t *log, ngx_http_pgate_gate_t *g);
static void ngx_http_pgate_announce(ngx_log_t *log, ngx_http_pgate_gate_t *g);
static ngx_int_t ngx_http_pgate_init_zone(ngx_shm_zone_t *zone, void *data);
static uint64_t ngx_http_pgate_identity(ngx_str_t *gate_name, ngx_str_t *store);


/*
 * promotion_gate <name> <config.json> [slo=<slo.json>] [key=<value>]...;
 */
static char *
ngx_http_pgate_declare(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pgate_main_conf_t  *pmcf = conf;

    u_char                            *p;
    ngx_str_t                         *value, var, zone;
    ngx_uint_t                         i;
    ngx_http_variable_t               *v;
    ngx_http_pgate_gate_t             *g, *gates;
    ngx_http_complex_value_t          *key;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;

    if (value[1].len == 0) {
        goto bad_name;
    }

    for (i = 0; i < value[1].len; i++) {
        p = &value[1].data[i];
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '_'))
        {
            goto bad_name;
        }
    }

    gates = pmcf->gates.elts;
    for (i = 0; i < pmcf->gates.nelts; i++) {
        if (gates[i].name.len != value[1].len
            || ngx_strncasecmp(gates[i].name.data, value[1].data, value[1].len) != 0)
        {
            continue;
        }
        if (ngx_strncmp(gates[i].name.data, value[1].data, value[1].len) == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate gate \"%V\" in \"%V\" directive",
                               &value[1], &cmd->name);
        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "gate \"%V\" in \"%V\" directive differs from gate \"%V\" "
                               "only in case: nginx variable names ignore case",
                               &value[1], &cmd->name, &gates[i].name);
        }
        return NGX_CONF_ERROR;
    }

    g = ngx_array_push(&pmcf->gates);
    if (g == NULL) {
        return NGX_CONF_ERROR;
    }
    ngx_memzero(g, sizeof(ngx_http_pgate_gate_t));

    g->name = value[1];
    g->config_path = value[2];

    g->opened = ngx_pcalloc(cf->pool, sizeof(ngx_http_pgate_opened_t));
    if (g->opened == NULL) {
        return NGX_CONF_ERROR;
    }
    g->opened->name = g->name;
    g->opened->cycle = cf->cycle;

    if (ngx_http_pgate_read_document(cf, &g->config_path, &g->config) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    g->keys = ngx_array_create(cf->pool, 2, sizeof(ngx_http_complex_value_t));
    if (g->keys == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 3; i < cf->args->nelts; i++) {

        if (value[i].len > 4 && ngx_strncmp(value[i].data, "slo=", 4) == 0) {
            if (g->slo_path.len) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "duplicate parameter \"%V\" in \"%V\" directive: "
                                   "the gate already has slo=%V", &value[i], &cmd->name,
                                   &g->slo_path);
                return NGX_CONF_ERROR;
            }
            g->slo_path.data = value[i].data + 4;
            g->slo_path.len = value[i].len - 4;
            if (ngx_http_pgate_read_document(cf, &g->slo_path, &g->slo) != NGX_CONF_OK) {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if (value[i].len > 4 && ngx_strncmp(value[i].data, "key=", 4) == 0) {
            /* A gate's decision as a key: routed by another routing (or, for its own gate,
             * by the "stable" a request gets while it is being routed). */
            if (ngx_strlcasestrn(value[i].data + 4, value[i].data + value[i].len,
                                 (u_char *) "promotion_gate_",
                                 sizeof("promotion_gate_") - 2) != NULL)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\" in \"%V\" directive: a key "
                                   "cannot read a gate's decision ($promotion_gate_...)",
                                   &value[i], &cmd->name);
                return NGX_CONF_ERROR;
            }

            key = ngx_array_push(g->keys);
            if (key == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
            ccv.cf = cf;
            ccv.value = &value[i];
            ccv.value->data += 4;
            ccv.value->len -= 4;
            ccv.complex_value = key;

            if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
                return NGX_CONF_ERROR;
            }
            if (key->lengths == NULL) {
                ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                                   "parameter \"key=%V\" in \"%V\" directive has no "
                                   "variable: every request has that key, so all of them "
                                   "reach one version", ccv.value, &cmd->name);
            }
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"%V\" directive: "
                           "expected slo=<file> or key=<value>", &value[i], &cmd->name);
        return NGX_CONF_ERROR;
    }

    /*
     * $promotion_gate_<name>: canary or stable. Made before the gate is validated, which opens
     * its store: a refusal here leaves no store behind. A map, split_clients or set of that
     * name made before would come back from ngx_http_add_variable (nginx lets those be
     * redefined) and lose its value to the gate's without a word: refused.
     */
    var.len = sizeof("promotion_gate_") - 1 + g->name.len;
    var.data = ngx_pnalloc(cf->pool, var.len);
    if (var.data == NULL) {
        return NGX_CONF_ERROR;
    }
    ngx_sprintf(var.data, "promotion_gate_%V", &g->name);

    v = ngx_http_add_variable(cf, &var, 0);
    if (v == NULL) {
        return NGX_CONF_ERROR;
    }
    if (v->get_handler != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "variable \"$%V\" of gate \"%V\" in \"%V\" directive is already "
                           "defined (by map, split_clients or set): a gate's variable is its own",
                           &var, &g->name, &cmd->name);
        return NGX_CONF_ERROR;
    }
    v->get_handler = ngx_http_pgate_variable;
    v->data = pmcf->gates.nelts - 1;

    if (ngx_http_pgate_validate(cf, g) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (pmcf->request_id_index == NGX_ERROR) {
        ngx_str_set(&var, "request_id");
        pmcf->request_id_index = ngx_http_get_variable_index(cf, &var);
        if (pmcf->request_id_index == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }
    }

    /*
     * The zone through which the workers pool their outcomes, named by the gate and where its
     * state is kept: a reload keeps it (and its outcomes) while both stay, and gives a gate
     * whose document names another gate or another store a zone of its own, which neither the
     * old workers still draining nor the old release's outcomes reach.
     */
    zone.len = sizeof("promotion_gate__") - 1 + g->name.len + 16;
    zone.data = ngx_pnalloc(cf->pool, zone.len);
    if (zone.data == NULL) {
        return NGX_CONF_ERROR;
    }
    ngx_sprintf(zone.data, "promotion_gate_%V_%016xL", &g->name,
                ngx_http_pgate_identity(&g->gate_name, &g->store));

    g->zone = ngx_shared_memory_add(cf, &zone,
                                    2 * sizeof(ngx_http_pgate_ring_t) + 8 * ngx_pagesize,
                                    &ngx_http_promotion_gate_module);
    if (g->zone == NULL) {
        return NGX_CONF_ERROR;
    }
    g->zone->init = ngx_http_pgate_init_zone;
    g->zone->data = g->opened;

    return NGX_CONF_OK;

bad_name:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid gate name \"%V\" in \"%V\" directive: "
                       "letters, digits and _ only", &value[1], &cmd->name);
    return NGX_CONF_ERROR;
}


/* Finds a declared gate by name for promotion_gate_status. */
static ngx_int_t
ngx_http_pgate_find(ngx_conf_t *cf, ngx_command_t *cmd, ngx_str_t *name)
{
    ngx_uint_t                   i;
    ngx_http_pgate_gate_t       *gates;
    ngx_http_pgate_main_conf_t  *pmcf;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_promotion_gate_module);
    gates = pmcf->gates.elts;

    for (i = 0; i < pmcf->gates.nelts; i++) {
        if (gates[i].name.len == name->len
            && ngx_strncmp(gates[i].name.data, name->data, name->len) == 0)
        {
            return (ngx_int_t) i;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "unknown gate \"%V\" in \"%V\" directive: declare it first with "
                       "\"promotion_gate %V <config.json>\" in the http block",
                       name, &cmd->name, name);
    return NGX_ERROR;
}


static ngx_int_t ngx_http_pgate_status_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_pgate_metrics_handler(ngx_http_request_t *r);

/* What a status or metrics directive says in a location that already has a content handler
 * (one of them, or proxy_pass, return... before it): one of the two would be lost. */
#define PGATE_HANDLER_TAKEN                                                               \
    "is in a location that already has a content handler (a promotion_gate_status, "      \
    "promotion_gate_metrics, proxy_pass...): one location serves one of them"


/*
 * Sets the location's content handler for a status or metrics directive, and notes where, for
 * ngx_http_pgate_check_handlers. NULL, or the directive's error.
 */
static char *
ngx_http_pgate_set_handler(ngx_conf_t *cf, ngx_command_t *cmd, ngx_http_handler_pt handler)
{
    ngx_http_pgate_handler_t    *set;
    ngx_http_core_loc_conf_t    *clcf;
    ngx_http_pgate_main_conf_t  *pmcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    if (clcf->handler != NULL) {
        return PGATE_HANDLER_TAKEN;
    }

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_promotion_gate_module);
    set = ngx_array_push(&pmcf->handlers);
    if (set == NULL) {
        return NGX_CONF_ERROR;
    }
    set->clcf = clcf;
    set->handler = handler;
    set->file = cf->conf_file->file.name;
    set->line = cf->conf_file->line;
    set->directive = (const char *) cmd->name.data;

    clcf->handler = handler;
    return NGX_CONF_OK;
}


/*
 * Refuses a status or metrics location whose content handler a directive after ours replaced
 * (proxy_pass, fastcgi_pass...): nginx keeps the last one silently.
 */
static ngx_int_t
ngx_http_pgate_check_handlers(ngx_conf_t *cf, ngx_http_pgate_main_conf_t *pmcf)
{
    ngx_uint_t                 i;
    ngx_http_pgate_handler_t  *set;

    set = pmcf->handlers.elts;
    for (i = 0; i < pmcf->handlers.nelts; i++) {
        if (set[i].clcf->handler != set[i].handler) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"%s\" in %V:%ui is in a location whose content handler a later "
                          "directive replaced (proxy_pass...): one location serves one of them",
                          set[i].directive, &set[i].file, set[i].line);
            return NGX_ERROR;
        }
    }
    return NGX_OK;
}


static char *
ngx_http_pgate_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pgate_loc_conf_t  *plcf = conf;

    ngx_str_t                 *value;

    if (plcf->status_gate != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;
    plcf->status_gate = ngx_http_pgate_find(cf, cmd, &value[1]);
    if (plcf->status_gate == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_pgate_set_handler(cf, cmd, ngx_http_pgate_status_handler);
}


static char *
ngx_http_pgate_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    return ngx_http_pgate_set_handler(cf, cmd, ngx_http_pgate_metrics_handler);
}


/* 64-bit FNV-1a of the gate's name and its store location: what a gate's zone is named by. */
static uint64_t
ngx_http_pgate_identity(ngx_str_t *gate_name, ngx_str_t *store)
{
    size_t     i;
    uint64_t   hash;
    ngx_str_t *part[2];
    ngx_uint_t n;

    hash = 0xcbf29ce484222325ULL;
    part[0] = gate_name;
    part[1] = store;

    for (n = 0; n < 2; n++) {
        for (i = 0; i < part[n]->len; i++) {
            hash = (hash ^ part[n]->data[i]) * 0x100000001b3ULL;
        }
        hash = (hash ^ 0) * 0x100000001b3ULL;     /* the end of a part */
    }

    return hash;
}


/*
 * Makes the gate's zone, or takes the old cycle's on a reload (`data`: same name, so the same
 * gate and store, and the same size). zone->data is how nginx -t opened the gate's store until
 * then, and the ring afterwards, which the workers and a later reload are handed. The
 * configuration's users are final here: the store's owner is checked first.
 */
static ngx_int_t
ngx_http_pgate_init_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t          *shpool;
    ngx_http_pgate_ring_t    *ring;
    ngx_http_pgate_opened_t  *opened = zone->data;

    if (ngx_http_pgate_check_user(zone->shm.log, opened) != NGX_OK) {
        return NGX_ERROR;
    }

    shpool = (ngx_slab_pool_t *) zone->shm.addr;

    if (data) {
        ring = data;

    } else if (zone->shm.exists) {
        ring = shpool->data;

    } else {
        ring = ngx_slab_calloc(shpool, sizeof(ngx_http_pgate_ring_t));
        if (ring == NULL) {
            return NGX_ERROR;
        }
        shpool->data = ring;
    }

    zone->data = ring;
    return NGX_OK;
}


/* ---- the request's context, kept across redirects -------------------------------- */

/* Marks the pool cleanup that holds a request's context; nothing to free. */
static void
ngx_http_pgate_ctx_cleanup(void *data)
{
}


/*
 * The request's context, or NULL before it was routed. An internal redirect (error_page to a
 * URI, X-Accel-Redirect, a try_files fallback), a named location or a filter finalization
 * zeroes r->ctx; the context is then found again through the cleanup it was made with on
 * the request's pool (a subrequest shares that pool, hence the request test) and set back,
 * so a request is routed once and its outcome recorded once, whatever redirects happen.
 */
static ngx_http_pgate_ctx_t *
ngx_http_pgate_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t    *cln;
    ngx_http_pgate_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_promotion_gate_module);
    if (ctx != NULL || !(r->internal || r->filter_finalize)) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler != ngx_http_pgate_ctx_cleanup) {
            continue;
        }

        ctx = cln->data;
        if (ctx->request == r) {
            ngx_http_set_ctx(r, ctx, ngx_http_promotion_gate_module);
            return ctx;
        }
    }

    return NULL;
}


/*
 * The index in r->upstream_states of the routed upstream's first attempt, the routed upstream
 * being the first one the request starts after it was routed. nginx makes the array when a
 * request starts its first upstream (and pushes nothing yet), and every later upstream first
 * pushes an empty separator: so the routed upstream's attempts start at 0 if the request had
 * no array when it was routed, else one after the states it had. An upstream that gave up
 * before trying any peer (a name no upstream{} block has, with no resolver) pushed nothing:
 * its fallback's separator then sits where the routed attempts would, and nothing of the
 * fallback is taken for the routed version's.
 */
static ngx_inline ngx_uint_t
ngx_http_pgate_routed_first(ngx_http_pgate_ctx_t *ctx)
{
    return ctx->states_existed ? ctx->states_before + 1 : 0;
}


/*
 * Whether the request's upstream has started since its first route: a peer was asked for
 * (a wrapped one), or r->upstream_states grew past what it held then (it is made, or given
 * the next upstream's separator, after the upstream's create_request, whose header values may
 * still route).
 */
static ngx_uint_t
ngx_http_pgate_upstream_started(ngx_http_request_t *r, ngx_http_pgate_ctx_t *ctx)
{
    if (ctx->upstream_start_ns != 0) {
        return 1;
    }

    if (r->upstream_states == NULL) {
        return 0;
    }

    return !ctx->states_existed || r->upstream_states->nelts > ctx->states_before;
}


/* Makes the request's context with the pool cleanup that lets it outlive r->ctx. */
static ngx_http_pgate_ctx_t *
ngx_http_pgate_create_ctx(ngx_http_request_t *r, ngx_uint_t gates)
{
    ngx_pool_cleanup_t    *cln;
    ngx_http_pgate_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_pgate_ctx_t)
                      + gates * sizeof(ngx_http_pgate_route_t));
    if (ctx == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_pgate_ctx_cleanup;
    cln->data = ctx;

    ctx->request = r;
    ctx->routes = (ngx_http_pgate_route_t *) (ctx + 1);

    if (r->upstream_states != NULL) {
        ctx->states_before = r->upstream_states->nelts;
        ctx->states_existed = 1;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_promotion_gate_module);
    return ctx;
}


/* ---- peer wrapping: the upstream's time, in nanoseconds --------------------------- */

static ngx_int_t
ngx_http_pgate_peer_get(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_pgate_ctx_t  *ctx = data;

    if (ctx->upstream_start_ns == 0) {
        ctx->upstream_start_ns = ngx_http_pgate_now_ns();
    }

    return ctx->original_get(pc, ctx->original_data);
}


static void
ngx_http_pgate_peer_free(ngx_peer_connection_t *pc, void *data, ngx_uint_t state)
{
    ngx_http_pgate_ctx_t  *ctx = data;

    ctx->upstream_end_ns = ngx_http_pgate_now_ns();
    /* this attempt's state is the last one: the next attempt or upstream pushes its own */
    ctx->timed_state_end = ctx->request->upstream_states->nelts;
    ctx->original_free(pc, ctx->original_data, state);
}


static void
ngx_http_pgate_peer_notify(ngx_peer_connection_t *pc, void *data, ngx_uint_t type)
{
    ngx_http_pgate_ctx_t  *ctx = data;

    ctx->original_notify(pc, ctx->original_data, type);
}


#if (NGX_HTTP_SSL)

static ngx_int_t
ngx_http_pgate_peer_set_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_pgate_ctx_t  *ctx = data;

    return ctx->original_set_session(pc, ctx->original_data);
}


static void
ngx_http_pgate_peer_save_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_pgate_ctx_t  *ctx = data;

    ctx->original_save_session(pc, ctx->original_data);
}

#endif


/*
 * Wraps the peer of the routed upstream, just made by its peer init: the first upstream a
 * routed request starts after it was routed (ngx_http_pgate_routed_first: no attempt of any
 * upstream pushed since). A later upstream of the same request (a named location that
 * error_page sends to stable, say, also after a routed upstream that never tried a peer) is
 * not the routed one and is left alone.
 */
static ngx_int_t
ngx_http_pgate_wrap_peer(ngx_http_request_t *r)
{
    ngx_peer_connection_t      *peer;
    ngx_http_pgate_ctx_t       *ctx;

    ctx = ngx_http_pgate_get_ctx(r);
    if (ctx == NULL || ctx->original_get != NULL
        || r->upstream_states->nelts != ngx_http_pgate_routed_first(ctx))
    {
        return NGX_OK;          /* not routed, or not the routed upstream */
    }

    peer = &r->upstream->peer;

    ctx->original_get = peer->get;
    ctx->original_free = peer->free;
    ctx->original_notify = peer->notify;
    ctx->original_data = peer->data;

    peer->data = ctx;
    peer->get = ngx_http_pgate_peer_get;
    peer->free = ngx_http_pgate_peer_free;
    peer->notify = ctx->original_notify ? ngx_http_pgate_peer_notify : NULL;

#if (NGX_HTTP_SSL)
    ctx->original_set_session = peer->set_session;
    ctx->original_save_session = peer->save_session;
    peer->set_session = ctx->original_set_session ? ngx_http_pgate_peer_set_session : NULL;
    peer->save_session = ctx->original_save_session ? ngx_http_pgate_peer_save_session
                                                    : NULL;
#endif

    return NGX_OK;
}


/* The peer init of an upstream{} block: the block's own, then the wrap. */
static ngx_int_t
ngx_http_pgate_peer_init(ngx_http_request_t *r, ngx_http_upstream_srv_conf_t *us)
{
    ngx_int_t                   rc;
    ngx_http_pgate_srv_conf_t  *pscf;

    pscf = ngx_http_conf_upstream_srv_conf(us, ngx_http_promotion_gate_module);

    rc = pscf->original_init(r, us);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_pgate_wrap_peer(r);
}


/*
 * The peer init of an implicit upstream (an address written in proxy_pass, which has no
 * module configuration to keep an original in): always nginx's round robin, then the wrap.
 */
static ngx_int_t
ngx_http_pgate_implicit_peer_init(ngx_http_request_t *r, ngx_http_upstream_srv_conf_t *us)
{
    ngx_int_t  rc;

    rc = ngx_http_upstream_init_round_robin_peer(r, us);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_pgate_wrap_peer(r);
}


/* ---- routing ----------------------------------------------------------------------- */

/*
 * The request's forcing value: the first header named `overrides.header` (ASCII case
 * ignored), else the cookie named `overrides.cookie`, found by nginx's own cookie parser.
 * Points into the request's headers: no copy, no allocation. NGX_DECLINED when it has none.
 */
static ngx_int_t
ngx_http_pgate_forcing_value(ngx_http_request_t *r, ngx_http_pgate_gate_t *g,
    ngx_str_t *value)
{
    ngx_str_t         cookie;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (g->override_header_len) {
        part = &r->headers_in.headers.part;
        h = part->elts;

        for (i = 0; /* void */; i++) {
            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }
                part = part->next;
                h = part->elts;
                i = 0;
            }

            if (h[i].hash == 0) {
                continue;       /* deleted by another module */
            }

            if (h[i].key.len == g->override_header_len
                && ngx_strncasecmp(h[i].key.data, g->override_header,
                                   g->override_header_len) == 0)
            {
                *value = h[i].value;
                return NGX_OK;
            }
        }
    }

    if (g->override_cookie_len == 0) {
        return NGX_DECLINED;
    }

    cookie.data = g->override_cookie;
    cookie.len = g->override_cookie_len;

#if (nginx_version >= 1023000)
    if (ngx_http_parse_multi_header_lines(r, r->headers_in.cookie, &cookie, value) == NULL) {
        return NGX_DECLINED;
    }
#else
    if (ngx_http_parse_multi_header_lines(&r->headers_in.cookies, &cookie, value)
        == NGX_DECLINED)
    {
        return NGX_DECLINED;
    }
#endif

    return NGX_OK;
}


/* The request's decision for gate `index`, made once per request. NULL on no memory. */
static ngx_http_pgate_route_t *
ngx_http_pgate_route(ngx_http_request_t *r, ngx_uint_t index)
{
    ngx_str_t                    id, value;
    ngx_uint_t                   i;
    pgate_status                 st;
    ngx_http_pgate_ctx_t        *ctx;
    ngx_http_pgate_gate_t       *g;
    ngx_http_pgate_route_t      *route;
    ngx_http_complex_value_t    *keys;
    ngx_http_variable_value_t   *vv;
    ngx_http_pgate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_promotion_gate_module);

    ctx = ngx_http_pgate_get_ctx(r);
    if (ctx == NULL) {
        ctx = ngx_http_pgate_create_ctx(r, pmcf->gates.nelts);
        if (ctx == NULL) {
            return NULL;
        }
    }

    route = &ctx->routes[index];
    if (route->routed) {
        return route;
    }
    route->routed = 1;

    g = &((ngx_http_pgate_gate_t *) pmcf->gates.elts)[index];
    if (g->gate == NULL) {
        return route;           /* the worker could not open its gate: stable */
    }

    ngx_http_pgate_follow(r->connection->log, g);

    ngx_str_null(&id);
    keys = g->keys->elts;

    for (i = 0; i < g->keys->nelts && id.len == 0; i++) {
        if (ngx_http_complex_value(r, &keys[i], &id) != NGX_OK) {
            return NULL;
        }
    }

    if (id.len == 0) {
        vv = ngx_http_get_indexed_variable(r, pmcf->request_id_index);
        if (vv != NULL && !vv->not_found) {
            id.data = vv->data;
            id.len = vv->len;
        }
    }

    if (ngx_http_pgate_forcing_value(r, g, &value) == NGX_OK) {
        /* present, even empty: the library counts a value it ignores */
        st = pgate_route_forced(g->gate, id.data, id.len,
                                value.data ? value.data : (u_char *) "", value.len,
                                &route->decision);
    } else {
        st = pgate_route(g->gate, id.data, id.len, &route->decision);
    }
    if (st != PGATE_STATUS_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "promotion gate \"%V\": route: %s", &g->name, pgate_status_str(st));
        ngx_memzero(&route->decision, sizeof(pgate_decision));
        return route;
    }

    route->decided = 1;
    /* Asked once the request's upstream had started (a second gate's variable in a
     * log_format or an add_header, say): the upstream was not chosen by this decision, so its
     * outcome is not this gate's to judge. */
    route->recordable = !ngx_http_pgate_upstream_started(r, ctx);
    return route;
}


static ngx_int_t
ngx_http_pgate_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_http_pgate_route_t  *route;

    route = ngx_http_pgate_route(r, data);
    if (route == NULL) {
        return NGX_ERROR;
    }

    if (route->decided && route->decision.is_canary) {
        v->data = (u_char *) "canary";
        v->len = sizeof("canary") - 1;
    } else {
        v->data = (u_char *) "stable";
        v->len = sizeof("stable") - 1;
    }

    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    return NGX_OK;
}


/* ---- recording and pooling -------------------------------------------------------- */

/*
 * Records an outcome (PGATE_FLAG_*): the decision's stage, cohort and `forced` byte as routed,
 * so a forced outcome is counted apart by the library, in neither cohort. An abandoned request
 * goes to pgate_record_abandoned, which records a wait longer than the SLO's latency target as
 * a slow success and a shorter one not at all. Returns whether the library took the outcome
 * (an abandoned request it left out need not be shared: every worker reads the same SLO).
 */
static ngx_uint_t
ngx_http_pgate_record(ngx_log_t *log, ngx_http_pgate_gate_t *g, uint64_t stage,
    uint64_t flags, uint64_t latency_ns)
{
    bool            recorded;
    pgate_status    st;
    pgate_decision  decision;

    ngx_memzero(&decision, sizeof(pgate_decision));
    decision.stage = stage;
    decision.is_canary = (flags & PGATE_FLAG_CANARY) ? true : false;
    decision.forced = (pgate_forced) ((flags >> PGATE_FLAG_FORCED_SHIFT)
                                      & PGATE_FLAG_FORCED_MASK);

    recorded = true;

    if (flags & PGATE_FLAG_ABANDONED) {
        st = pgate_record_abandoned(g->gate, &decision, latency_ns, &recorded);

    } else {
        st = pgate_record(g->gate, &decision, (flags & PGATE_FLAG_SUCCESS) ? true : false,
                          latency_ns, NULL);
    }

    if (st != PGATE_STATUS_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "promotion gate \"%V\": record: %s",
                      &g->name, pgate_status_str(st));
    }

    return recorded;
}


/* Puts this worker's outcome in the gate's ring for the other workers. Lock-free. */
static void
ngx_http_pgate_share(ngx_http_pgate_gate_t *g, uint64_t stage, ngx_uint_t flags,
    uint64_t latency_ns)
{
    uint64_t                   index;
    ngx_http_pgate_outcome_t  *slot;

    index = __atomic_fetch_add(&g->ring->head, 1, __ATOMIC_RELAXED);
    slot = &g->ring->outcomes[index % PGATE_RING_OUTCOMES];

    __atomic_store_n(&slot->seq, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&slot->stage, stage, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->latency_ns, latency_ns, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->pid, (uint64_t) ngx_pid, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->flags, (uint64_t) flags, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->seq, index + 1, __ATOMIC_RELEASE);
}


/* Records into this worker's gate the outcomes other workers put in the ring since. */
static void
ngx_http_pgate_pool(ngx_log_t *log, ngx_http_pgate_gate_t *g)
{
    uint64_t                   head, index, seq, stage, latency_ns, pid, flags;
    ngx_http_pgate_outcome_t  *slot;

    head = __atomic_load_n(&g->ring->head, __ATOMIC_ACQUIRE);

    if (head - g->cursor > PGATE_RING_OUTCOMES) {
        g->cursor = head - PGATE_RING_OUTCOMES;
    }

    for (index = g->cursor; index < head; index++) {
        slot = &g->ring->outcomes[index % PGATE_RING_OUTCOMES];

        seq = __atomic_load_n(&slot->seq, __ATOMIC_ACQUIRE);
        if (seq != index + 1) {
            if (seq < index + 1 && head - index < PGATE_RING_ABANDONED) {
                break;          /* still being written: read it next time */
            }
            continue;           /* overwritten, or its writer died */
        }

        stage = __atomic_load_n(&slot->stage, __ATOMIC_RELAXED);
        latency_ns = __atomic_load_n(&slot->latency_ns, __ATOMIC_RELAXED);
        pid = __atomic_load_n(&slot->pid, __ATOMIC_RELAXED);
        flags = __atomic_load_n(&slot->flags, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);

        if (__atomic_load_n(&slot->seq, __ATOMIC_RELAXED) != index + 1
            || pid == (uint64_t) ngx_pid)
        {
            continue;
        }

        (void) ngx_http_pgate_record(log, g, stage, flags, latency_ns);
    }

    g->cursor = index;
}


/*
 * The state of the routed upstream's last attempt, or NULL if the request never reached it.
 * r->upstream_states holds every upstream of the request, across redirects (each upstream
 * after the first starts with an empty separator state): the last one may be that of a
 * fallback the canary's failure was redirected to (`error_page 502 = @fallback` proxying to
 * stable), whose success is not the routed version's. The routed upstream is the first one
 * the request started after it was routed (ngx_http_pgate_routed_first): for a wrapped peer
 * (an upstream{} block, an address in proxy_pass), the attempt it released last; else (a
 * name resolved at run time) the last attempt of that upstream, none if it tried no peer.
 */
static ngx_http_upstream_state_t *
ngx_http_pgate_routed_state(ngx_http_request_t *r, ngx_http_pgate_ctx_t *ctx)
{
    ngx_uint_t                  i;
    ngx_http_upstream_state_t  *states, *last;

    if (r->upstream_states == NULL) {
        return NULL;
    }

    states = r->upstream_states->elts;

    if (ctx->original_get != NULL) {
        return ctx->timed_state_end ? &states[ctx->timed_state_end - 1] : NULL;
    }

    last = NULL;
    i = ngx_http_pgate_routed_first(ctx);

    for ( /* void */ ; i < r->upstream_states->nelts && states[i].peer != NULL; i++) {
        last = &states[i];
    }

    return last;
}


static ngx_int_t
ngx_http_pgate_log_handler(ngx_http_request_t *r)
{
    uint64_t                     latency_ns;
    ngx_uint_t                   i, status, outcome, flags;
    ngx_http_pgate_ctx_t        *ctx;
    ngx_http_pgate_gate_t       *gates;
    ngx_http_pgate_route_t      *route;
    ngx_http_upstream_state_t   *state;
    ngx_http_pgate_main_conf_t  *pmcf;

    ctx = ngx_http_pgate_get_ctx(r);
    if (ctx == NULL) {
        return NGX_OK;
    }

    status = r->err_status ? r->err_status : r->headers_out.status;

    state = ngx_http_pgate_routed_state(r, ctx);
    if (state == NULL) {
        return NGX_OK;          /* the request never reached the routed upstream */
    }

    if (state->status != 0) {
        /* its answer or failure, even if the client then went away (a 499 before anything
         * was sent, or while error_page's fallback worked) */
        outcome = state->status < 500 ? PGATE_FLAG_SUCCESS : 0;

    } else if (status == NGX_HTTP_CLIENT_CLOSED_REQUEST) {
        outcome = PGATE_FLAG_ABANDONED;     /* went away while the upstream worked */

    } else {
        return NGX_OK;          /* the routed upstream never answered nor failed */
    }

    if (ctx->original_get != NULL) {          /* an upstream{} block: timed here */
        if (ctx->upstream_end_ns == 0) {
            return NGX_OK;      /* no peer was ever obtained (no live upstream) */
        }
        latency_ns = ctx->upstream_end_ns - ctx->upstream_start_ns;

    } else if (state->response_time != (ngx_msec_t) -1) {
        latency_ns = (uint64_t) state->response_time * 1000000;

    } else {
        return NGX_OK;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_promotion_gate_module);
    gates = pmcf->gates.elts;

    for (i = 0; i < pmcf->gates.nelts; i++) {
        route = &ctx->routes[i];
        if (!route->recordable || gates[i].gate == NULL) {
            continue;
        }

        flags = (route->decision.is_canary ? PGATE_FLAG_CANARY : 0) | outcome
                | (((ngx_uint_t) route->decision.forced & PGATE_FLAG_FORCED_MASK)
                   << PGATE_FLAG_FORCED_SHIFT);

        if (ngx_http_pgate_record(r->connection->log, &gates[i], route->decision.stage,
                                  flags, latency_ns))
        {
            ngx_http_pgate_share(&gates[i], route->decision.stage, flags, latency_ns);
        }
        ngx_http_pgate_pool(r->connection->log, &gates[i]);
        ngx_http_pgate_announce(r->connection->log, &gates[i]);
    }

    return NGX_OK;
}


/* ---- the library's log lines ------------------------------------------------------ */

/* May run on any thread: copies the line into the queue and nothing else. */
static void
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
static void
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
 * The gate's changes numbered above `after`, pgate_changes_json's JSON array, in memory from
 * ngx_alloc (the caller ngx_frees it); NULL on an error (logged). Cold: called when the
 * change count moved.
 */
static u_char *
ngx_http_pgate_changes(ngx_log_t *log, ngx_http_pgate_gate_t *g, uint64_t after,
    size_t *len)
{
    u_char        *json;
    ngx_uint_t     tries;
    pgate_status   st;

    *len = 0;
    st = pgate_changes_json(g->gate, after, NULL, 0, len);

    /* the changes may move on between two calls: ask again with the new length */
    for (tries = 0; tries < 4 && st == PGATE_STATUS_BUFFER_TOO_SMALL; tries++) {
        json = ngx_alloc(*len + 1, log);
        if (json == NULL) {
            return NULL;
        }

        st = pgate_changes_json(g->gate, after, (char *) json, *len + 1, len);
        if (st == PGATE_STATUS_OK) {
            return json;
        }
        ngx_free(json);
    }

    ngx_log_error(NGX_LOG_ERR, log, 0, "promotion gate \"%V\": changes: %s",
                  &g->name, pgate_status_str(st));
    return NULL;
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
static void
ngx_http_pgate_log_changes(ngx_log_t *log, ngx_http_pgate_gate_t *g)
{
    u_char       *json, *p, *q, *end, *start;
    size_t        len;
    uint64_t      count, sequence, newest;
    ngx_uint_t    depth, in_string;

    if (pgate_change_count(g->gate, &count) != PGATE_STATUS_OK || count == g->changes_seen) {
        return;
    }

    json = ngx_http_pgate_changes(log, g, g->changes_seen, &len);
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
 * Tells the other workers when this worker's gate changed state itself (origin this_gate: a
 * rollback or a promotion its judge decided while recording, this worker's outcome or one
 * pooled from the ring), by bumping the zone's generation. A change applied from the store
 * (origin store) is another process's, already in the store: not bumped again. One atomic
 * load (the change count) when nothing changed; run after recording and after pooling.
 */
static void
ngx_http_pgate_announce(ngx_log_t *log, ngx_http_pgate_gate_t *g)
{
    u_char    *json;
    size_t     len;
    uint64_t   count, generation;

    if (pgate_change_count(g->gate, &count) != PGATE_STATUS_OK
        || count == g->changes_announced)
    {
        return;
    }

    json = ngx_http_pgate_changes(log, g, g->changes_announced, &len);
    if (json == NULL) {
        return;
    }

    g->changes_announced = count;

    /* the pattern cannot occur inside a JSON string, whose quotes are escaped */
    if (ngx_strnstr(json, "\"origin\":\"this_gate\"", len) != NULL) {
        generation = __atomic_add_fetch(&g->ring->generation, 1, __ATOMIC_ACQ_REL);
        if (generation == g->generation_seen + 1) {
            g->generation_seen = generation;        /* only its own bump: no need to read */
        }
    }

    ngx_free(json);
}


/*
 * Asks the gate's store sync thread to read the store now (another worker changed it), and
 * keeps asking every timer tick until this gate applied a change or PGATE_RESYNC_MS passed:
 * the other worker's judge publishes a rollback at once and its sync thread writes it, so the
 * first read may come before the write. No I/O here; asks are merged by the library.
 */
static void
ngx_http_pgate_resync(ngx_log_t *log, ngx_http_pgate_gate_t *g, ngx_uint_t first)
{
    uint64_t      count;
    pgate_status  st;

    if (pgate_change_count(g->gate, &count) != PGATE_STATUS_OK) {
        return;
    }

    if (first) {
        g->resync_count = count;
        g->resync_until = ngx_current_msec + PGATE_RESYNC_MS;
        if (g->resync_until == 0) {
            g->resync_until = 1;
        }

    } else if (count != g->resync_count
               || (ngx_msec_int_t) (ngx_current_msec - g->resync_until) >= 0)
    {
        g->resync_until = 0;    /* applied, or given up: the sync interval goes on */
        return;
    }

    st = pgate_sync_now(g->gate, NULL);
    if (st != PGATE_STATUS_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "promotion gate \"%V\": sync now: %s",
                      &g->name, pgate_status_str(st));
        g->resync_until = 0;
    }
}


/*
 * Follows the other workers' changes: one atomic load of the zone's generation; when it moved,
 * the gate reads its store at once (ngx_http_pgate_resync). Run on every routed request and
 * every timer tick.
 */
static ngx_inline void
ngx_http_pgate_follow(ngx_log_t *log, ngx_http_pgate_gate_t *g)
{
    uint64_t  generation;

    generation = __atomic_load_n(&g->ring->generation, __ATOMIC_ACQUIRE);
    if (generation != g->generation_seen) {
        g->generation_seen = generation;
        ngx_http_pgate_resync(log, g, 1);
    }
}


static void
ngx_http_pgate_timer(ngx_event_t *ev)
{
    ngx_uint_t                   i;
    ngx_http_pgate_gate_t       *gates;
    ngx_http_pgate_main_conf_t  *pmcf = ev->data;

    ngx_http_pgate_log_drain(ev->log);

    gates = pmcf->gates.elts;
    for (i = 0; i < pmcf->gates.nelts; i++) {
        if (gates[i].gate != NULL) {
            ngx_http_pgate_pool(ev->log, &gates[i]);
            ngx_http_pgate_announce(ev->log, &gates[i]);
            ngx_http_pgate_follow(ev->log, &gates[i]);
            if (gates[i].resync_until) {
                ngx_http_pgate_resync(ev->log, &gates[i], 0);
            }
            ngx_http_pgate_log_changes(ev->log, &gates[i]);
            ngx_http_pgate_refresh_overrides(ev->log, &gates[i]);
        }
    }

    if (!ngx_exiting && !ngx_quit) {
        ngx_add_timer(ev, PGATE_TIMER_MS);
    }
}


/* ---- worker life ------------------------------------------------------------------ */

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
        gates[i].cursor = __atomic_load_n(&gates[i].ring->head, __ATOMIC_ACQUIRE);
        gates[i].generation_seen = __atomic_load_n(&gates[i].ring->generation,
                                                   __ATOMIC_ACQUIRE);

        err = NULL;
        st = pgate_gate_new(gates[i].config.data, gates[i].config.len,
                            gates[i].slo.data, gates[i].slo.len, &gates[i].gate, &err);
        if (st != PGATE_STATUS_OK) {
            ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                          "promotion gate \"%V\": %s: %s; this worker routes every "
                          "request to stable", &gates[i].name, pgate_status_str(st),
                          pgate_error_message(err));
            pgate_error_free(err);
            gates[i].gate = NULL;
            continue;
        }

        /* what the gate did on opening is no news for the other workers */
        (void) pgate_change_count(gates[i].gate, &gates[i].changes_announced);

        /* this worker's gate may hold the store's config rather than the document's */
        gates[i].overrides_seen = (uint64_t) -1;
        ngx_http_pgate_refresh_overrides(cycle->log, &gates[i]);
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
    if (ngx_http_pgate_check_handlers(cf, pmcf) != NGX_OK) {
        return NGX_ERROR;
    }
    if (pmcf->gates.nelts == 0) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }
    *h = ngx_http_pgate_log_handler;

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


/* ---- the status and metrics locations --------------------------------------------- */

static ngx_int_t
ngx_http_pgate_send(ngx_http_request_t *r, ngx_str_t *type, u_char *body, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

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

    out.buf = b;
    out.next = NULL;
    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_pgate_status_handler(ngx_http_request_t *r)
{
    u_char                      *body, *p;
    size_t                       history_len, cap;
    double                       percent;
    uint64_t                     stage;
    ngx_str_t                    type = ngx_string("application/json");
    const char                  *environment;
    pgate_status                 st;
    pgate_environment            env;
    ngx_http_pgate_gate_t       *g;
    ngx_http_pgate_loc_conf_t   *plcf;
    ngx_http_pgate_main_conf_t  *pmcf;

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

    /* the history may grow between the two calls: retry with the new length */
    history_len = 0;
    body = NULL;
    cap = 0;

    for ( ;; ) {
        st = pgate_rollback_history_json(g->gate, (char *) body, cap, &history_len);
        if (st == PGATE_STATUS_OK) {
            break;
        }
        if (st != PGATE_STATUS_BUFFER_TOO_SMALL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        cap = history_len + 1;
        body = ngx_pnalloc(r->pool, cap);
        if (body == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    p = ngx_pnalloc(r->pool, history_len + g->name.len + 256);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body = ngx_sprintf(p, "{\"gate\":\"%V\",\"environment\":\"%s\","
                       "\"traffic_percent\":%.3f,\"stage\":%uL,\"library_version\":\"%s\","
                       "\"worker_pid\":%P,\"history\":%*s}\n",
                       &g->name, environment, percent, stage, pgate_version(), ngx_pid,
                       history_len, body ? body : (u_char *) "[]");

    return ngx_http_pgate_send(r, &type, p, body - p);
}


static ngx_int_t
ngx_http_pgate_metrics_handler(ngx_http_request_t *r)
{
    char                        *body;
    size_t                       len, cap;
    ngx_str_t                    type = ngx_string("text/plain; version=0.0.4");
    ngx_uint_t                   i, n;
    pgate_status                 st;
    const pgate_gate           **live;
    ngx_http_pgate_gate_t       *gates;
    ngx_http_pgate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_promotion_gate_module);
    gates = pmcf->gates.elts;

    live = ngx_palloc(r->pool, (pmcf->gates.nelts + 1) * sizeof(pgate_gate *));
    if (live == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = 0;
    for (i = 0; i < pmcf->gates.nelts; i++) {
        if (gates[i].gate != NULL) {
            live[n++] = gates[i].gate;
        }
    }

    body = NULL;
    cap = 0;
    len = 0;

    for ( ;; ) {
        st = pgate_metrics_prometheus_gates(live, n, body, cap, &len);
        if (st == PGATE_STATUS_OK) {
            break;
        }
        if (st != PGATE_STATUS_BUFFER_TOO_SMALL) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "promotion gate metrics: %s", pgate_status_str(st));
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        cap = len + 1 + 1024;           /* the text may grow a little in between */
        body = ngx_pnalloc(r->pool, cap);
        if (body == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_pgate_send(r, &type, (u_char *) body, len);
}
