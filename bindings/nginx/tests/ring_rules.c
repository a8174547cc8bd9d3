/*
 * The ring's cold rules (ngx_http_pgate_ring.c) against a clock, timer ticks and a zone this
 * program sets: how long a reader waits for a slot claimed and not published
 * (ngx_http_pgate_awaited), and which ring a zone hands over (ngx_http_pgate_ring_take); and,
 * against the same clock, how often a failure that repeats is logged (ngx_http_pgate_quiet,
 * ngx_http_pgate.h).
 * Built by test.sh with the module's own compiler flags and headers (nginx's, the module's
 * ngx_http_pgate.h), linked with ngx_http_pgate_ring.c and the two things of nginx it uses
 * from outside, defined here: the cached clock, the error log's writer and the zone's
 * allocator. Prints each check; exits 1 if one failed.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <stdio.h>
#include <stdlib.h>

#include "ngx_http_pgate.h"


/* nginx's cached clock, which ngx_http_pgate_awaited reads: set by each check */
volatile ngx_msec_t  ngx_current_msec;

/* the error log's lines, by level */
static ngx_uint_t  lines[NGX_LOG_DEBUG + 1];

void ngx_cdecl
ngx_log_error_core(ngx_uint_t level, ngx_log_t *log, ngx_err_t err, const char *fmt, ...)
{
    lines[level]++;
}

/* the zone's allocator, for ngx_http_pgate_ring_take */
void *
ngx_slab_calloc(ngx_slab_pool_t *pool, size_t size)
{
    return calloc(1, size);
}


static ngx_log_t  log_all = { .log_level = NGX_LOG_DEBUG };
static int        failed;

static void
check(int ok, const char *what)
{
    printf("%s: %s\n", ok ? "ok" : "FAIL", what);
    if (!ok) {
        failed = 1;
    }
}


/* A worker's gate that saw no unpublished slot, at `now` and tick `ticks`. */
static void
fresh(ngx_http_pgate_gate_t *g, ngx_msec_t now, ngx_uint_t ticks)
{
    ngx_memzero(g, sizeof(ngx_http_pgate_gate_t));
    ngx_str_set(&g->name, "rules");
    g->ticks = ticks;
    ngx_current_msec = now;
}

/* Looks again at slot 10 (the head 2 past it) at `now`, `ticks` ticks after the first look. */
static ngx_uint_t
look(ngx_http_pgate_gate_t *g, ngx_msec_t now, ngx_uint_t ticks)
{
    ngx_current_msec = now;
    g->ticks = ticks;
    return ngx_http_pgate_awaited(&log_all, g, 10, 12);
}


static void
stall_rules(void)
{
    ngx_uint_t              skips;
    ngx_http_pgate_gate_t   g;

    /* a sighting dated by a stale cached time (a long iteration before it): at the next
     * look, one tick later, more than PGATE_RING_STALL_MS of cached time passed, but not
     * PGATE_RING_STALL_TICKS ticks: still waited for */
    fresh(&g, 1000, 5);
    check(look(&g, 1000, 5) == 1, "first sighting: waited for");
    check(look(&g, 1000 + 3 * PGATE_RING_STALL_MS, 5 + PGATE_RING_STALL_TICKS - 1) == 1,
          "stale sighting: past the stall time, a tick short: waited for");
    check(lines[NGX_LOG_INFO] == 0 && g.skipped_slots == 0, "... and nothing skipped");
    check(look(&g, 1000 + 3 * PGATE_RING_STALL_MS, 5 + PGATE_RING_STALL_TICKS) == 0,
          "past the stall time and its ticks: skipped");
    check(lines[NGX_LOG_INFO] == 1 && g.skipped_slots == 1, "... logged at info, counted");

    /* the ticks came sooner than the stall time (a sighting just before a tick): waited for
     * until the time passed too */
    fresh(&g, 2000, 7);
    skips = lines[NGX_LOG_INFO];
    check(look(&g, 2000, 7) == 1, "first sighting: waited for");
    check(look(&g, 2000 + PGATE_RING_STALL_MS - 1, 7 + 3 * PGATE_RING_STALL_TICKS) == 1,
          "past its ticks, 1 ms short of the stall time: waited for");
    check(lines[NGX_LOG_INFO] == skips && g.skipped_slots == 0, "... and nothing skipped");
    check(look(&g, 2000 + PGATE_RING_STALL_MS, 7 + 3 * PGATE_RING_STALL_TICKS) == 0,
          "at the stall time, past its ticks: skipped");

    /* the cached clock wraps between the sighting and the look */
    fresh(&g, (ngx_msec_t) -(PGATE_RING_STALL_MS / 2), 0);
    check(look(&g, (ngx_msec_t) -(PGATE_RING_STALL_MS / 2), 0) == 1, "sighting before the wrap");
    check(look(&g, PGATE_RING_STALL_MS / 4, PGATE_RING_STALL_TICKS) == 1,
          "across the clock's wrap, short of the stall time: waited for");
    check(look(&g, PGATE_RING_STALL_MS, PGATE_RING_STALL_TICKS) == 0,
          "across the clock's wrap, past the stall time: skipped");

    /* another slot is a new sighting: its own wait */
    fresh(&g, 3000, 1);
    check(look(&g, 3000, 1) == 1, "slot 10 sighted");
    ngx_current_msec = 3000 + 2 * PGATE_RING_STALL_MS;
    g.ticks = 1 + 2 * PGATE_RING_STALL_TICKS;
    check(ngx_http_pgate_awaited(&log_all, &g, 11, 12) == 1, "slot 11: a first sighting");

    /* a writer PGATE_RING_ABANDONED slots behind the head: skipped at once */
    fresh(&g, 4000, 1);
    check(ngx_http_pgate_awaited(&log_all, &g, 10, 10 + PGATE_RING_ABANDONED) == 0,
          "a slot a quarter of the ring behind: skipped at once");
}


static void
layout_rules(void)
{
    ngx_uint_t              notices;
    ngx_shm_zone_t          zone;
    ngx_slab_pool_t         pool;
    ngx_http_pgate_ring_t  *old, *ring;

    static ngx_str_t  name = ngx_string("rules");

    ngx_memzero(&zone, sizeof(ngx_shm_zone_t));
    ngx_memzero(&pool, sizeof(ngx_slab_pool_t));
    ngx_str_set(&zone.shm.name, "promotion_gate_rules");
    zone.shm.addr = (u_char *) &pool;
    zone.shm.log = &log_all;

    old = ngx_http_pgate_ring_take(&zone, NULL, &name);
    check(old != NULL && old->layout == PGATE_RING_LAYOUT && pool.data == old,
          "a new zone: a new ring, stamped");

    old->head = 7;
    check(ngx_http_pgate_ring_take(&zone, old, &name) == old && old->head == 7,
          "a reload handing over a ring of this layout: taken as it is");

    notices = lines[NGX_LOG_NOTICE];
    old->layout = PGATE_RING_LAYOUT - 1;
    ring = ngx_http_pgate_ring_take(&zone, old, &name);
    check(ring != NULL && ring != old && ring->layout == PGATE_RING_LAYOUT
          && ring->head == 0 && pool.data == ring,
          "a reload handing over a ring of another layout: a new ring, stamped");
    check(old->layout == PGATE_RING_LAYOUT - 1 && old->head == 7,
          "... the old ring left as it was, for the old workers");
    check(lines[NGX_LOG_NOTICE] == notices + 1, "... and the reason logged at notice");

    /* a ring of the layout before the stamps: its head where the stamp is */
    notices = lines[NGX_LOG_NOTICE];
    old->layout = 12345;
    check(ngx_http_pgate_ring_take(&zone, old, &name) != old
          && lines[NGX_LOG_NOTICE] == notices + 1,
          "a ring without a stamp (its head first): not taken, logged at notice");
}


/* ngx_http_pgate_quiet at `now`: whether it logs, with what it kept quiet and since when */
static ngx_uint_t
quiet_at(ngx_http_pgate_quiet_t *q, ngx_msec_t now, uint64_t *quieted, ngx_msec_t *ago)
{
    ngx_current_msec = now;
    *quieted = (uint64_t) -1;
    *ago = (ngx_msec_t) -1;
    return ngx_http_pgate_quiet(q, quieted, ago);
}


/*
 * How often a failure that repeats is logged (ngx_http_pgate_quiet): the first at once, then
 * one line every PGATE_QUIET_LOG_MS at most, each counting what the previous one kept quiet
 * and dating that line; a run that ended is not counted as the next run's (a build returning
 * "how many since the last line" gave a run's first line, an hour later, the count of a run
 * that ended within seconds of its line).
 */
static void
quiet_rules(void)
{
    uint64_t                quieted;
    ngx_msec_t              ago;
    ngx_http_pgate_quiet_t  q;

    ngx_memzero(&q, sizeof(ngx_http_pgate_quiet_t));

    check(quiet_at(&q, 5000, &quieted, &ago) == 1 && quieted == 0 && ago == 0,
          "a failure's first occurrence: logged at once, nothing kept quiet before");
    check(quiet_at(&q, 5001, &quieted, &ago) == 0 && quiet_at(&q, 8000, &quieted, &ago) == 0
          && quiet_at(&q, 5000 + PGATE_QUIET_LOG_MS - 1, &quieted, &ago) == 0,
          "... then quiet until PGATE_QUIET_LOG_MS after its line");
    check(quiet_at(&q, 5000 + PGATE_QUIET_LOG_MS, &quieted, &ago) == 1 && quieted == 3
          && ago == PGATE_QUIET_LOG_MS,
          "a failure that persists: a line each PGATE_QUIET_LOG_MS, with the 3 kept quiet "
          "since the line before, dated by it");

    /* a run that ends within PGATE_QUIET_LOG_MS of its line, and another an hour later */
    check(quiet_at(&q, 30000, &quieted, &ago) == 1 && quieted == 0,
          "a new run, past PGATE_QUIET_LOG_MS: logged at once, nothing kept quiet since");
    check(quiet_at(&q, 31000, &quieted, &ago) == 0 && quiet_at(&q, 32000, &quieted, &ago) == 0,
          "... 2 more kept quiet, then the run ends");
    check(quiet_at(&q, 30000 + 3600000, &quieted, &ago) == 1 && quieted == 2 && ago == 3600000,
          "the next run, an hour later: logged at once, the 2 of the run before dated by that "
          "run's line (an hour ago), not counted as its own");
    check(quiet_at(&q, 30000 + 3600000 + PGATE_QUIET_LOG_MS, &quieted, &ago) == 1
          && quieted == 0 && ago == PGATE_QUIET_LOG_MS,
          "... and its next line counts only what came since");
}


int
main(void)
{
    stall_rules();
    layout_rules();
    quiet_rules();
    return failed;
}
