/* What the module's files share: its constants, its configuration and gate types, and the
 * functions one file calls in another. */

#ifndef _NGX_HTTP_PGATE_H_INCLUDED_
#define _NGX_HTTP_PGATE_H_INCLUDED_

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "promotion_gates.h"


/* Outcomes kept in each gate's shared ring; a worker further behind skips the oldest. */
#define PGATE_RING_OUTCOMES    4096
/* How often each worker drains the log queue and the other workers' outcomes. */
#define PGATE_TIMER_MS         50
/* How long a reader waits for a claimed ring slot to be published (ngx_http_pgate_awaited):
 * PGATE_RING_STALL_MS of its clock and PGATE_RING_STALL_TICKS timer ticks, unless it is this
 * far behind the head (a quarter of the ring: waiting never lets it lap). */
#define PGATE_RING_STALL_MS    100
#define PGATE_RING_STALL_TICKS 2
#define PGATE_RING_ABANDONED   (PGATE_RING_OUTCOMES / 4)
/* When a worker that could not open a gate tries again (ngx_http_pgate_open): 1 s after its
 * first failure, twice as long after each further one, up to 5 minutes. */
#define PGATE_REOPEN_MS        1000
#define PGATE_REOPEN_MAX_MS    (300 * 1000)
/* A failure that may repeat on every request or timer tick is logged once this often at most
 * per worker and gate (ngx_http_pgate_quiet). */
#define PGATE_QUIET_LOG_MS     10000


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
    uint64_t                     at;          /* ngx_current_msec when shared (monotonic) */
    uint64_t                     stage;
    uint64_t                     latency_ns;
    uint64_t                     pid;
    uint64_t                     flags;
    uint64_t                     epoch;       /* the sharing worker's configuration's epoch */
} ngx_http_pgate_outcome_t;

/*
 * The outcome counters of the gate's metrics, for the whole nginx: each late, foreign or forced
 * outcome counted once, by the worker that recorded it first (the one whose request it was),
 * and each ignored forcing value by the worker that routed it. Atomics, added to only when
 * such an outcome or value occurs: a request that is none of these touches none of them.
 */
typedef struct {
    uint64_t                     late_outcomes;
    uint64_t                     foreign_outcomes;
    uint64_t                     forced_outcomes;
    uint64_t                     ignored_override_values;
} ngx_http_pgate_counts_t;

/*
 * The layout of the ring below, stamped in its first 8 bytes (where every layout keeps it): a
 * zone handed over by a reload is taken only with this stamp (ngx_http_pgate_ring_take). "pgate"
 * and the layout's number: a change to ngx_http_pgate_ring_t or ngx_http_pgate_outcome_t takes
 * the next number (the assertions after them fail until the sizes they check are updated).
 */
#define PGATE_RING_LAYOUT      0x7067617465000003ULL

/*
 * A gate's shared memory zone: its layout stamp, the ring of outcomes the workers pool, the
 * epochs (how many configurations took the ring: nginx's start and each reload, the number of
 * the latest being its workers' epoch, see ngx_http_pgate_pool), the generation, which a
 * worker bumps when its own gate changed state (a rollback or a promotion its judge decided)
 * and every worker compares on each routed request, asking its store at once when it moved,
 * and the outcome counters. The head, written by every worker on every request, and the
 * generation, read on every request, each have a cache line of their own (the head's shared
 * only with the stamp and the epochs, written by the master on a reload); the counters,
 * written only for the outcomes and values they count, start the next line, which the ring's
 * first slot shares.
 */
typedef struct {
    uint64_t                     layout;      /* PGATE_RING_LAYOUT, read on a reload only */
    uint64_t                     head;
    uint64_t                     epochs;      /* written by the master on a reload only */
    u_char                       head_line[NGX_CPU_CACHE_LINE - 3 * sizeof(uint64_t)];
    uint64_t                     generation;
    u_char                       generation_line[NGX_CPU_CACHE_LINE - sizeof(uint64_t)];
    ngx_http_pgate_counts_t      counts;
    ngx_http_pgate_outcome_t     outcomes[PGATE_RING_OUTCOMES];
} ngx_http_pgate_ring_t;

/* the layout PGATE_RING_LAYOUT numbers: a change here takes the next number */
_Static_assert(sizeof(ngx_http_pgate_outcome_t) == 7 * sizeof(uint64_t)
               && offsetof(ngx_http_pgate_ring_t, layout) == 0
               && offsetof(ngx_http_pgate_ring_t, epochs) == 2 * sizeof(uint64_t)
               && offsetof(ngx_http_pgate_ring_t, outcomes)
                  == 2 * NGX_CPU_CACHE_LINE + sizeof(ngx_http_pgate_counts_t)
               && PGATE_RING_LAYOUT == 0x7067617465000003ULL,
               "the ring's layout changed: give PGATE_RING_LAYOUT the next number");

/*
 * What the zone's init needs to open a gate's store once the whole configuration was read and
 * accepted: the documents, and the names a refusal gives. Allocated apart and pointed to by
 * the zone: the array of gates moves as it grows.
 */
typedef struct {
    ngx_str_t                    name;
    ngx_str_t                    config_path;
    ngx_str_t                    config;
    ngx_str_t                    slo_path;    /* empty without slo= */
    ngx_str_t                    slo;
    ngx_cycle_t                 *cycle;       /* the configuration's, for its core module */
    uint64_t                     epoch;       /* given by the zone's init: its workers' */
} ngx_http_pgate_opened_t;

/* A reopen attempt under way on its own thread (ngx_http_pgate_open.c). */
typedef struct ngx_http_pgate_attempt_s  ngx_http_pgate_attempt_t;

/* A failure logged at most once every PGATE_QUIET_LOG_MS (ngx_http_pgate_quiet): how many times
 * it happened unlogged since its last line, and when that line was written (0: never). */
typedef struct {
    uint64_t                     quieted;
    ngx_msec_t                   logged_at;
} ngx_http_pgate_quiet_t;

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
    uint64_t                     own_from;    /* the ring's head when this worker's gate
                                               * opened: its own outcomes lie past it */
    uint64_t                     epoch;       /* its configuration's (opened->epoch): it
                                               * pools no outcome of a later one */
    /* 1 + the claimed but unpublished slot this worker waits for, since when and since which
     * timer tick (ngx_http_pgate_awaited); the worker timer's ticks; the unpublished slots
     * this worker skipped, whose outcomes its gate lacks */
    uint64_t                     stalled_at;
    ngx_msec_t                   stalled_since;
    ngx_uint_t                   stalled_tick;
    ngx_uint_t                   ticks;
    uint64_t                     skipped_slots;
    /* the gate's rollback_window_seconds in ms (0: not read): an outcome shared longer ago
     * is in no worker's window, and is not pooled (ngx_http_pgate_pool) */
    ngx_msec_t                   window_ms;
    pgate_gate                  *gate;        /* this worker's (ngx_http_pgate_open) */
    /* when not opened: the attempts that failed, the wait after the last one (its backoff),
     * when the timer may try again, and the attempt under way (NULL: none) */
    ngx_uint_t                   open_failures;
    ngx_msec_t                   reopen_delay;
    ngx_msec_t                   reopen_at;
    ngx_http_pgate_attempt_t    *attempt;
    uint64_t                     changes_seen; /* the last change this worker logged */
    uint64_t                     changes_announced; /* the last change it looked at for
                                                     * its own, to bump the generation */
    uint64_t                     generation_seen;
    /* after an ask: the change count then, and until when to ask again (0: not asking) */
    uint64_t                     resync_count;
    ngx_msec_t                   resync_until;
    /* the change count at which this worker last read its gate's config (the override names,
     * window_ms: ngx_http_pgate_refresh_config) */
    uint64_t                     config_seen;
    /* where this worker reads a forcing value, from its gate's config (0: not named) */
    size_t                       override_header_len;
    size_t                       override_cookie_len;
    u_char                       override_header[PGATE_NAME_CAPACITY];
    u_char                       override_cookie[PGATE_NAME_CAPACITY];
    /* outcomes the library refused, and this worker's failures to read the override names
     * (ngx_http_pgate_refresh_config), each logged quietly (ngx_http_pgate_log_quiet) */
    ngx_http_pgate_quiet_t       refused;
    ngx_http_pgate_quiet_t       override_failures;
    /* this worker logged that the gate's key reads a gate's decision (through a map...) */
    unsigned                     key_reads_gate_logged:1;
} ngx_http_pgate_gate_t;

/* A call writing a gate's JSON, as pgate_changes_json does (ngx_http_pgate_json). */
typedef pgate_status (*ngx_http_pgate_json_pt)(const pgate_gate *gate, uint64_t after, char *buf,
    size_t cap, size_t *len_out);

/* Where a status or metrics directive set a location's content handler, checked once the
 * configuration is read: a directive after it (proxy_pass...) may have replaced it. */
typedef struct {
    ngx_http_core_loc_conf_t    *clcf;
    ngx_http_handler_pt          handler;
    ngx_str_t                    file;
    ngx_uint_t                   line;
    const char                  *directive;
} ngx_http_pgate_handler_t;

/* A key= parameter naming a variable $promotion_gate_<name>, checked once every gate is
 * declared: refused if <name> is a gate's (ngx_http_pgate_check_keys). */
typedef struct {
    ngx_str_t                    name;        /* <name> */
    ngx_str_t                    param;       /* the whole parameter, key=... */
    ngx_str_t                    file;
    ngx_uint_t                   line;
} ngx_http_pgate_key_read_t;

typedef struct {
    ngx_array_t                  gates;       /* ngx_http_pgate_gate_t */
    ngx_array_t                  handlers;    /* ngx_http_pgate_handler_t */
    ngx_array_t                  key_reads;   /* ngx_http_pgate_key_read_t */
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


extern ngx_module_t  ngx_http_promotion_gate_module;


/*
 * `s` trimmed of the spaces and horizontal tabs around it (RFC 9110's OWS), as Go's net/http
 * trims a header's value: nginx's HTTP/1 parser trims spaces only, and keeps a tab around the
 * value of the forcing header or of a key read from a header ($http_...). A key with no
 * variable is trimmed so when the directive is read: one left empty is refused.
 */
static ngx_inline void
ngx_http_pgate_trim_ows(ngx_str_t *s)
{
    while (s->len && (s->data[0] == ' ' || s->data[0] == '\t')) {
        s->data++;
        s->len--;
    }
    while (s->len && (s->data[s->len - 1] == ' ' || s->data[s->len - 1] == '\t')) {
        s->len--;
    }
}


/*
 * Counts one more occurrence of a failure that may repeat on every request or timer tick, and
 * returns whether to log this one: the first at once, then at most one line every
 * PGATE_QUIET_LOG_MS (a failure that persists would otherwise write a line each time). When it
 * does, *quieted holds how many occurrences it kept quiet since the last line and *ago how
 * long before now that line was written (both 0 before the first line): those all came within
 * PGATE_QUIET_LOG_MS after it (a later one is logged), so a line that comes hours after a run
 * of failures ended dates that run's count by its own line (ngx_http_pgate_log_quiet), and
 * never takes it for its own.
 */
static ngx_inline ngx_uint_t
ngx_http_pgate_quiet(ngx_http_pgate_quiet_t *q, uint64_t *quieted, ngx_msec_t *ago)
{
    if (q->logged_at != 0 && ngx_current_msec - q->logged_at < PGATE_QUIET_LOG_MS) {
        q->quieted++;
        return 0;
    }

    *quieted = q->quieted;
    *ago = q->logged_at != 0 ? ngx_current_msec - q->logged_at : 0;
    q->quieted = 0;
    q->logged_at = ngx_current_msec ? ngx_current_msec : 1;
    return 1;
}


/* The functions below are the module's own: hidden from the dynamic symbol table (nginx loads
 * modules with RTLD_GLOBAL), so that no other module's names clash with them and the calls
 * between the files are direct, not through the PLT. */
#define PGATE_LOCAL  __attribute__((visibility("hidden")))


/* ngx_http_promotion_gate_module.c */
PGATE_LOCAL void ngx_http_pgate_refresh_config(ngx_log_t *log, ngx_http_pgate_gate_t *g);

/* ngx_http_pgate_open.c */
PGATE_LOCAL pgate_status ngx_http_pgate_open(ngx_log_t *log, ngx_http_pgate_gate_t *g,
    pgate_error **err);
PGATE_LOCAL void ngx_http_pgate_reopen(ngx_log_t *log, ngx_http_pgate_gate_t *g);
PGATE_LOCAL void ngx_http_pgate_reopen_end(ngx_http_pgate_gate_t *g);

/* ngx_http_pgate_directives.c */
PGATE_LOCAL char *ngx_http_pgate_declare(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
PGATE_LOCAL char *ngx_http_pgate_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
PGATE_LOCAL char *ngx_http_pgate_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
PGATE_LOCAL ngx_int_t ngx_http_pgate_check_handlers(ngx_conf_t *cf, ngx_http_pgate_main_conf_t *pmcf);
PGATE_LOCAL ngx_int_t ngx_http_pgate_check_keys(ngx_conf_t *cf, ngx_http_pgate_main_conf_t *pmcf);

/* ngx_http_pgate_request.c */
PGATE_LOCAL ngx_int_t ngx_http_pgate_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data);
PGATE_LOCAL ngx_int_t ngx_http_pgate_peer_init(ngx_http_request_t *r, ngx_http_upstream_srv_conf_t *us);
PGATE_LOCAL ngx_int_t ngx_http_pgate_implicit_peer_init(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
PGATE_LOCAL ngx_int_t ngx_http_pgate_log_handler(ngx_http_request_t *r);
PGATE_LOCAL void ngx_http_pgate_add_header_filter(void);
PGATE_LOCAL u_char *ngx_http_pgate_json(ngx_log_t *log, ngx_http_pgate_gate_t *g,
    ngx_http_pgate_json_pt get, const char *what, uint64_t after, size_t *len);
PGATE_LOCAL void ngx_http_pgate_announce(ngx_log_t *log, ngx_http_pgate_gate_t *g);
PGATE_LOCAL void ngx_http_pgate_timer(ngx_event_t *ev);

/* ngx_http_pgate_ring.c */
PGATE_LOCAL ngx_http_pgate_ring_t *ngx_http_pgate_ring_take(ngx_shm_zone_t *zone, void *data,
    ngx_str_t *name);
PGATE_LOCAL ngx_uint_t ngx_http_pgate_awaited(ngx_log_t *log, ngx_http_pgate_gate_t *g,
    uint64_t index, uint64_t head);

/* ngx_http_pgate_log.c */
PGATE_LOCAL void ngx_http_pgate_log_callback(void *user_data, pgate_log_level level, const char *target,
    const char *message, size_t message_len);
PGATE_LOCAL void ngx_http_pgate_log_drain(ngx_log_t *log);
PGATE_LOCAL void ngx_http_pgate_log_changes(ngx_log_t *log, ngx_http_pgate_gate_t *g);
PGATE_LOCAL void ngx_http_pgate_log_quiet(ngx_log_t *log, ngx_http_pgate_gate_t *g,
    ngx_http_pgate_quiet_t *q, const char *what, pgate_status st, const char *consequence,
    const char *occurrences);

/* ngx_http_pgate_status.c */
PGATE_LOCAL ngx_int_t ngx_http_pgate_status_handler(ngx_http_request_t *r);
PGATE_LOCAL ngx_int_t ngx_http_pgate_metrics_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_PGATE_H_INCLUDED_ */
