/*
 * Preloaded into nginx by test.sh (LD_PRELOAD) to put a worker's gate's shared ring in the
 * states the ring's tests need, through the module's own definitions (ngx_http_pgate.h, built
 * with the module's compiler flags), so that the ring's layout is never written down here. It
 * finds the ring as the module does (the module's main configuration in nginx's cycle, the
 * gate whose pgate_gate is the one called with), and acts on a request's key (the gate's
 * `key=$arg_id`), passing every call on to the library:
 *
 * - `claim`: claims a ring slot (moves the head on) and never publishes it: what a worker
 *   killed between claiming a slot and publishing it leaves.
 * - `stale`: this worker's next own outcome (pgate_record with `recorded`) first claims a
 *   slot and blocks the worker 3 * PGATE_RING_STALL_MS, so the worker's first sighting of
 *   the slot unpublished (its pooling right after, in the same event loop iteration) is dated
 *   by a cached time that far behind the clock; the slot is published (a canary success of
 *   the outcome's stage, by no worker) at the worker's second pgate_change_count after that:
 *   its log phase asks once, then its next timer tick asks after it looked at the ring once
 *   more. A reader waiting two ticks pools it at the tick after that; one skipping the slot
 *   at the first look after PGATE_RING_STALL_MS of cached time skips it.
 * - `restamp`: gives the ring another layout stamp (PGATE_RING_LAYOUT - 1), as a ring of
 *   another build would have, for the next reload to find.
 */

#define _GNU_SOURCE
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <dlfcn.h>
#include <string.h>
#include <time.h>

#include "ngx_http_pgate.h"


/* the `stale` slot, once claimed (1 + its index), its stage, and the pgate_change_count
 * calls since */
static uint64_t    stale_armed, stale_slot, stale_stage;
static ngx_uint_t  stale_counts;


static void *
next(const char *name)
{
    return dlsym(RTLD_NEXT, name);
}


/*
 * The module's gate whose library gate is `gate`, or NULL: in the module's main configuration
 * in nginx's cycle, as ngx_http_cycle_get_module_main_conf finds it. nginx's symbols are
 * looked up when called, never linked: the module is loaded after this library, and the
 * programs the test runs with it preloaded (curl) have none.
 */
static ngx_http_pgate_gate_t *
shim_gate(const pgate_gate *gate)
{
    void                       ***conf;
    ngx_uint_t                    i;
    ngx_cycle_t                 **cycle;
    ngx_module_t                 *http, *module;
    ngx_http_pgate_gate_t        *gates;
    ngx_http_pgate_main_conf_t   *pmcf;

    cycle = dlsym(RTLD_DEFAULT, "ngx_cycle");
    http = dlsym(RTLD_DEFAULT, "ngx_http_module");
    module = dlsym(RTLD_DEFAULT, "ngx_http_promotion_gate_module");
    if (cycle == NULL || *cycle == NULL || http == NULL || module == NULL) {
        return NULL;
    }

    conf = (*cycle)->conf_ctx[http->index];
    if (conf == NULL) {
        return NULL;
    }

    pmcf = ((ngx_http_conf_ctx_t *) conf)->main_conf[module->ctx_index];
    if (pmcf == NULL) {
        return NULL;
    }

    gates = pmcf->gates.elts;
    for (i = 0; i < pmcf->gates.nelts; i++) {
        if (gates[i].gate == gate) {
            return &gates[i];
        }
    }

    return NULL;
}


static ngx_uint_t
is(const uint8_t *id, size_t id_len, const char *word)
{
    return id_len == strlen(word) && memcmp(id, word, id_len) == 0;
}


pgate_status
pgate_route(const pgate_gate *gate, const uint8_t *id, size_t id_len, pgate_decision *out)
{
    ngx_http_pgate_gate_t  *g;

    g = shim_gate(gate);
    if (g != NULL) {
        if (is(id, id_len, "claim")) {
            (void) __atomic_fetch_add(&g->ring->head, 1, __ATOMIC_ACQ_REL);

        } else if (is(id, id_len, "stale")) {
            stale_armed = 1;

        } else if (is(id, id_len, "restamp")) {
            __atomic_store_n(&g->ring->layout, PGATE_RING_LAYOUT - 1, __ATOMIC_RELEASE);
        }
    }

    return ((__typeof__(&pgate_route)) next("pgate_route"))(gate, id, id_len, out);
}


pgate_status
pgate_record(const pgate_gate *gate, const pgate_decision *decision, bool success,
    uint64_t latency_ns, pgate_recorded *recorded)
{
    struct timespec         block;
    ngx_http_pgate_gate_t  *g;

    if (stale_armed && recorded != NULL && (g = shim_gate(gate)) != NULL) {
        stale_armed = 0;
        stale_slot = 1 + __atomic_fetch_add(&g->ring->head, 1, __ATOMIC_ACQ_REL);
        stale_stage = decision->stage;
        stale_counts = 0;

        block.tv_sec = 3 * PGATE_RING_STALL_MS / 1000;
        block.tv_nsec = (3 * PGATE_RING_STALL_MS % 1000) * 1000000L;
        nanosleep(&block, NULL);
    }

    return ((__typeof__(&pgate_record)) next("pgate_record"))(gate, decision, success,
                                                               latency_ns, recorded);
}


pgate_status
pgate_change_count(const pgate_gate *gate, uint64_t *count)
{
    uint64_t                   index;
    ngx_msec_t                *now;
    ngx_http_pgate_gate_t     *g;
    ngx_http_pgate_outcome_t  *slot;

    if (stale_slot && ++stale_counts == 2 && (g = shim_gate(gate)) != NULL
        && (now = dlsym(RTLD_DEFAULT, "ngx_current_msec")) != NULL)
    {
        index = stale_slot - 1;
        stale_slot = 0;
        slot = &g->ring->outcomes[index % PGATE_RING_OUTCOMES];

        __atomic_store_n(&slot->at, (uint64_t) *now, __ATOMIC_RELAXED);
        __atomic_store_n(&slot->stage, stale_stage, __ATOMIC_RELAXED);
        __atomic_store_n(&slot->latency_ns, 1000000, __ATOMIC_RELAXED);
        __atomic_store_n(&slot->pid, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&slot->flags, PGATE_FLAG_CANARY | PGATE_FLAG_SUCCESS,
                         __ATOMIC_RELAXED);
        __atomic_store_n(&slot->epoch, g->epoch, __ATOMIC_RELAXED);
        __atomic_store_n(&slot->seq, index + 1, __ATOMIC_RELEASE);
    }

    return ((__typeof__(&pgate_change_count)) next("pgate_change_count"))(gate, count);
}
