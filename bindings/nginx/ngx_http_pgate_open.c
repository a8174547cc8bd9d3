/* Opening a worker's gate: when the worker starts, and again, off its event loop, while it
 * could not (a reopen attempt runs on a thread of its own, its result taken by the timer). */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "ngx_http_pgate.h"


/*
 * A reopen attempt: pgate_gate_new on its own thread, with what the worker read of the ring
 * when it started the attempt. The thread writes the outcome, then `done` (release); the
 * worker reads them once it saw `done` (acquire), and joins the thread.
 */
struct ngx_http_pgate_attempt_s {
    pthread_t                    thread;
    ngx_http_pgate_gate_t       *g;           /* its documents, read by the thread */
    uint64_t                     head;
    uint64_t                     generation;
    pgate_gate                  *gate;
    pgate_error                 *err;
    pgate_status                 st;
    ngx_msec_t                   took;
    ngx_uint_t                   done;
};


/* The monotonic clock in milliseconds, on any thread (nginx's cached time is the worker's). */
static ngx_msec_t
ngx_http_pgate_clock_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (ngx_msec_t) ts.tv_sec * 1000 + (ngx_msec_t) ts.tv_nsec / 1000000;
}


/*
 * Blocks every signal on the calling thread, `before` receiving the mask it had (restored with
 * pthread_sigmask(SIG_SETMASK, before, NULL)): a thread started meanwhile (a reopen attempt's,
 * the library's sync and watch threads, which pgate_gate_new starts) inherits the full mask, so
 * nginx's signals stay the worker's, handled on its event loop's thread: taken on a library
 * thread, one would wake no epoll_wait of the worker, and would interrupt that thread's system
 * call (nginx's handlers are installed without SA_RESTART). A signal sent meanwhile waits,
 * pending, until the mask is restored.
 */
static void
ngx_http_pgate_signals_block(sigset_t *before)
{
    sigset_t  all;

    sigfillset(&all);
    (void) pthread_sigmask(SIG_SETMASK, &all, before);
}


/*
 * Readies the gate this worker just opened (`gate`), `head` and `generation` being what it read
 * of the ring before the store was read: where it reads the ring from (the ring's outcomes,
 * those of the workers before this one too: a reload, a worker that died, or those with this
 * one, for a gate opened late; ngx_http_pgate_pool skips what is older than the gate's
 * window, and the library drops what another stage routed as late), the generation (a change
 * another worker wrote while the store was read moved it past this one, and is read at once),
 * the changes it starts from and the config it reads from.
 */
static void
ngx_http_pgate_ready(ngx_log_t *log, ngx_http_pgate_gate_t *g, pgate_gate *gate,
    uint64_t head, uint64_t generation)
{
    g->gate = gate;
    g->cursor = head > PGATE_RING_OUTCOMES ? head - PGATE_RING_OUTCOMES : 0;
    g->own_from = head;         /* before it: another's, even under a reused pid */
    g->generation_seen = generation;

    /* what the gate did on opening is no news for the other workers */
    (void) pgate_change_count(g->gate, &g->changes_announced);

    /* this worker's gate may hold the store's config rather than the document's */
    g->config_seen = (uint64_t) -1;
    ngx_http_pgate_refresh_config(log, g);
}


/*
 * After a failed attempt that took `took` ms: the next one PGATE_REOPEN_MS after a streak's
 * first failure, twice the last wait after each further one, up to PGATE_REOPEN_MAX_MS; or
 * ten times what this attempt took when that is longer (a store that times out is not asked
 * more often than that).
 */
static void
ngx_http_pgate_backoff(ngx_http_pgate_gate_t *g, ngx_msec_t took)
{
    g->reopen_delay = g->open_failures == 0
                      ? PGATE_REOPEN_MS
                      : ngx_min(2 * g->reopen_delay, PGATE_REOPEN_MAX_MS);
    g->open_failures++;
    ngx_time_update();
    g->reopen_at = ngx_current_msec + ngx_max(g->reopen_delay, 10 * took);
}


/*
 * Opens this worker's gate from its documents (the store's state wins over theirs) and readies
 * it (ngx_http_pgate_ready), when the worker starts: this blocks the worker, which serves
 * nothing yet (an unreachable etcd store: up to its timeout for each endpoint), every signal
 * blocked meanwhile (ngx_http_pgate_signals_block: nginx unblocked the worker's just before,
 * and the threads the library starts would inherit that mask). On a failure,
 * `*err` (which the caller frees) says why, the gate stays NULL (its requests go to stable,
 * nothing is recorded), and the worker timer tries again (ngx_http_pgate_reopen) after a
 * backoff (ngx_http_pgate_backoff).
 */
pgate_status
ngx_http_pgate_open(ngx_log_t *log, ngx_http_pgate_gate_t *g, pgate_error **err)
{
    sigset_t      before;
    uint64_t      head, generation;
    ngx_msec_t    start;
    pgate_gate   *gate;
    pgate_status  st;

    head = __atomic_load_n(&g->ring->head, __ATOMIC_ACQUIRE);
    generation = __atomic_load_n(&g->ring->generation, __ATOMIC_ACQUIRE);

    start = ngx_http_pgate_clock_ms();
    gate = NULL;
    ngx_http_pgate_signals_block(&before);
    st = pgate_gate_new(g->config.data, g->config.len, g->slo.data, g->slo.len, &gate, err);
    (void) pthread_sigmask(SIG_SETMASK, &before, NULL);
    if (st != PGATE_STATUS_OK) {
        ngx_http_pgate_backoff(g, ngx_http_pgate_clock_ms() - start);
        return st;
    }

    ngx_http_pgate_ready(log, g, gate, head, generation);
    return PGATE_STATUS_OK;
}


/* A reopen attempt's thread: the library's open, timed. */
static void *
ngx_http_pgate_attempt_run(void *data)
{
    ngx_msec_t                 start;
    ngx_http_pgate_attempt_t  *a = data;
    ngx_http_pgate_gate_t     *g = a->g;

    start = ngx_http_pgate_clock_ms();
    a->st = pgate_gate_new(g->config.data, g->config.len, g->slo.data, g->slo.len, &a->gate,
                           &a->err);
    a->took = ngx_http_pgate_clock_ms() - start;
    __atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
    return NULL;
}


/*
 * Starts a reopen attempt on a thread of its own, every signal blocked there
 * (ngx_http_pgate_signals_block). NGX_ERROR when no thread could be made
 * (logged), counted as a failed attempt.
 */
static ngx_int_t
ngx_http_pgate_attempt_start(ngx_log_t *log, ngx_http_pgate_gate_t *g)
{
    int                        rc;
    sigset_t                   before;
    ngx_http_pgate_attempt_t  *a;

    a = ngx_calloc(sizeof(ngx_http_pgate_attempt_t), log);
    if (a == NULL) {
        return NGX_ERROR;
    }

    a->g = g;
    a->head = __atomic_load_n(&g->ring->head, __ATOMIC_ACQUIRE);
    a->generation = __atomic_load_n(&g->ring->generation, __ATOMIC_ACQUIRE);

    ngx_http_pgate_signals_block(&before);
    rc = pthread_create(&a->thread, NULL, ngx_http_pgate_attempt_run, a);
    (void) pthread_sigmask(SIG_SETMASK, &before, NULL);

    if (rc != 0) {
        ngx_log_error(NGX_LOG_ERR, log, rc, "promotion gate \"%V\": pthread_create() for "
                      "a reopen attempt failed", &g->name);
        ngx_free(a);
        return NGX_ERROR;
    }

    g->attempt = a;
    return NGX_OK;
}


/*
 * Tries again to open a gate this worker could not open (ngx_http_pgate_open says when), from
 * the worker timer, off the event loop: the attempt runs on a thread of its own
 * (ngx_http_pgate_attempt_start), which may take up to the store's timeouts (an unreachable
 * etcd store: 2 s for each endpoint; a locked SQLite file: its busy_timeout_ms), while the
 * worker goes on serving, routing the gate's requests to stable; a later tick takes its
 * result. A failed attempt is not logged (the streak's first failure was, in init_process);
 * the open is, with the attempts that failed before it.
 */
void
ngx_http_pgate_reopen(ngx_log_t *log, ngx_http_pgate_gate_t *g)
{
    ngx_http_pgate_attempt_t  *a = g->attempt;

    if (a == NULL) {
        if ((ngx_msec_int_t) (ngx_current_msec - g->reopen_at) >= 0
            && ngx_http_pgate_attempt_start(log, g) != NGX_OK)
        {
            ngx_http_pgate_backoff(g, 0);
        }
        return;
    }

    if (!__atomic_load_n(&a->done, __ATOMIC_ACQUIRE)) {
        return;                 /* still under way */
    }

    (void) pthread_join(a->thread, NULL);
    g->attempt = NULL;

    if (a->st == PGATE_STATUS_OK) {
        ngx_http_pgate_ready(log, g, a->gate, a->head, a->generation);
        ngx_log_error(NGX_LOG_WARN, log, 0, "promotion gate \"%V\": opened after %ui failed "
                      "attempts; this worker routes and records by the gate again",
                      &g->name, g->open_failures);
        g->open_failures = 0;

    } else {
        ngx_http_pgate_backoff(g, a->took);
    }

    pgate_error_free(a->err);
    ngx_free(a);
}


/*
 * Ends a reopen attempt still under way or not taken when the worker exits: waits for it (up
 * to the store's timeouts) and frees the gate it may have opened, which the worker no longer
 * uses.
 */
void
ngx_http_pgate_reopen_end(ngx_http_pgate_gate_t *g)
{
    ngx_http_pgate_attempt_t  *a = g->attempt;

    if (a == NULL) {
        return;
    }

    (void) pthread_join(a->thread, NULL);
    g->attempt = NULL;
    (void) pgate_gate_free(a->gate);
    pgate_error_free(a->err);
    ngx_free(a);
}
