/* The gate's shared ring outside the request's hot path: which ring a zone hands over (its
 * layout stamp), and how long a reader waits for a slot claimed and not yet published. Both
 * cold; tests/ring_rules.c runs the wait's rule against a clock and ticks it sets. */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_pgate.h"


/*
 * The gate's ring in its zone, when the zone is made or handed over by a reload (`data`, the
 * old cycle's ring: nginx hands a zone over when its name, its size and its tag, the module's
 * address, are the same) or found existing (shm.exists, on platforms whose zones outlive the
 * master): taken when it carries this build's PGATE_RING_LAYOUT, else a new ring, stamped, is
 * made in the zone (its size holds two) and the reason logged at notice. The old ring is left
 * as it was, for the old workers still draining; the new workers take up none of its
 * outcomes. NULL when the zone has no room (logged): the reload or the start fails, the
 * running configuration stays.
 */
ngx_http_pgate_ring_t *
ngx_http_pgate_ring_take(ngx_shm_zone_t *zone, void *data, ngx_str_t *name)
{
    uint64_t                layout;
    ngx_slab_pool_t        *shpool;
    ngx_http_pgate_ring_t  *ring;

    shpool = (ngx_slab_pool_t *) zone->shm.addr;
    ring = data != NULL ? data : zone->shm.exists ? shpool->data : NULL;

    if (ring != NULL) {
        /* every layout keeps its stamp first; one before the stamps had its head there */
        layout = __atomic_load_n(&ring->layout, __ATOMIC_ACQUIRE);
        if (layout == PGATE_RING_LAYOUT) {
            return ring;
        }

        ngx_log_error(NGX_LOG_NOTICE, zone->shm.log, 0, "promotion gate \"%V\": the ring in "
                      "zone \"%V\" has layout %016xL, not this build's %016xL: a new ring is "
                      "made, and the outcomes of the ring before are not taken up", name,
                      &zone->shm.name, layout, (uint64_t) PGATE_RING_LAYOUT);
    }

    ring = ngx_slab_calloc(shpool, sizeof(ngx_http_pgate_ring_t));
    if (ring == NULL) {
        ngx_log_error(NGX_LOG_EMERG, zone->shm.log, 0, "promotion gate \"%V\": no room for "
                      "a new ring in zone \"%V\"; restart nginx", name, &zone->shm.name);
        return NULL;
    }

    __atomic_store_n(&ring->layout, PGATE_RING_LAYOUT, __ATOMIC_RELEASE);
    shpool->data = ring;
    return ring;
}


/*
 * Whether to wait for ring slot `index`, claimed (the head is past it) but not published: its
 * writer publishes it a few instructions after claiming it, unless it was preempted or died
 * in between (a worker killed by SIGKILL, or crashing). Waited for until this worker has seen
 * it unpublished for PGATE_RING_STALL_MS (its own clock: no claim time is shared, so no other
 * field of the slot need be read) and PGATE_RING_STALL_TICKS timer ticks after the first
 * sighting, or until PGATE_RING_ABANDONED later slots were claimed; then skipped for good: a
 * writer that publishes it later has its outcome left out of this worker's gate. The ticks:
 * the first sighting's time is the event loop's cached one, which may be well behind the
 * clock (a long iteration), so 100 ms of it alone could pass at the next look; the second
 * tick of the 50 ms timer after the sighting comes 50 ms of real time after it at least
 * (100 ms for a sighting the timer made). Each skip is logged at info, with how many slots
 * this worker skipped in all (one a PGATE_RING_STALL_MS per gate at most, but for a writer
 * PGATE_RING_ABANDONED slots behind). Without the time bound, a dead writer's slot held up
 * this worker's pooling of every later outcome until that many more arrived, minutes with
 * little traffic. Cold: called only for a slot seen unpublished.
 */
ngx_uint_t
ngx_http_pgate_awaited(ngx_log_t *log, ngx_http_pgate_gate_t *g, uint64_t index,
    uint64_t head)
{
    if (head - index < PGATE_RING_ABANDONED) {
        if (g->stalled_at != index + 1) {
            g->stalled_at = index + 1;
            g->stalled_since = ngx_current_msec;
            g->stalled_tick = g->ticks;
            return 1;
        }

        if ((ngx_msec_int_t) (ngx_current_msec - g->stalled_since) < PGATE_RING_STALL_MS
            || g->ticks - g->stalled_tick < PGATE_RING_STALL_TICKS)
        {
            return 1;
        }
    }

    g->skipped_slots++;
    ngx_log_error(NGX_LOG_INFO, log, 0, "promotion gate \"%V\": ring slot %uL skipped, "
                  "claimed and not published (its writer died or stalled): its outcome is left "
                  "out of this worker's gate; slots this worker skipped: %uL", &g->name, index,
                  g->skipped_slots);
    return 0;
}
