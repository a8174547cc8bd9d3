/* A request's path: its context, its upstream's timing, its routing and its outcome, pooled
 * with the other workers' through the gate's shared ring (and the worker timer doing so). */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <time.h>

#include "ngx_http_pgate.h"


/* How long a worker told of another worker's change asks its store again, every timer tick,
 * until its gate applied a change: the other worker's store write may land after the ask. */
#define PGATE_RESYNC_MS        1000


typedef struct {
    pgate_decision               decision;
    unsigned                     routed:1;    /* this request asked already */
    unsigned                     decided:1;   /* the library decided (else: stable) */
    unsigned                     recordable:1;  /* decided before the upstream started */
    /* the upstream whose handler routed it (proxy_pass evaluating the gate) before making its
     * request; NULL when routed elsewhere (set, if, map, an auth_request subrequest): then
     * the first upstream started after it is taken for the one it chose */
    ngx_http_upstream_t         *upstream;
} ngx_http_pgate_route_t;

/*
 * Per request: the decision of each gate and the upstream's timing. It lives for the whole
 * request: an internal redirect or a named location clears r->ctx, and
 * ngx_http_pgate_get_ctx finds it again through its pool cleanup.
 */
typedef struct {
    ngx_http_request_t          *request;
    ngx_http_pgate_route_t      *routes;
    /* how many r->upstream_states it had at its first route that may record (if it had them:
     * states_existed), see ngx_http_pgate_anchor and ngx_http_pgate_routed_first */
    ngx_uint_t                   states_before;
    unsigned                     states_existed:1;
    /* that route came while an upstream was under way, none of whose attempts is the routed
     * upstream's, or in a subrequest once the main request had made an upstream, started or
     * not (ngx_http_pgate_anchor): until the next upstream's separator is found past
     * states_before, where the anchor then moves (ngx_http_pgate_anchored), the routed
     * upstream has not started */
    unsigned                     under_way:1;
    /* the first upstream started after the route is none a gate chose (each routed by an
     * upstream that never made its request): nothing is recorded (ngx_http_pgate_wrap_peer) */
    unsigned                     unreached:1;
    /* the upstream under way or made at that route (under_way), passed over by it: when it
     * had not started then and another starts first, that one is the routed upstream
     * (ngx_http_pgate_passed_over) */
    ngx_http_upstream_t         *passed;
    /* passed had not made its request at that route (its u->writer.pool unset, see
     * ngx_http_pgate_made_request): when it makes it later, its separator is the first state
     * past states_before, not the routed upstream's (ngx_http_pgate_anchored) */
    unsigned                     passed_unmade:1;
    /* the request is not in the location whose upstream passed is, which makes no request
     * now: it had not reached its location's content phase at that route (an auth_request's
     * subrequest in an error page's location: passed is an earlier location's, left over,
     * see ngx_http_pgate_in_content_phase), or left it since (an internal redirect or a named
     * location zeroed r->ctx, ngx_http_pgate_get_ctx). Set too after a filter finalization,
     * which zeroes r->ctx in the same location (the not-modified filter's 412, image_filter's
     * 415): harmless, as a filter finalizes a response whose header was made, so passed, if
     * it is r->upstream, answered (from its peer, or from the cache without making its
     * request), and its create_request, whose reads this tells apart
     * (ngx_http_pgate_reads_for_passed), is over or never comes */
    unsigned                     left_passed:1;
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
    /* the routed upstream's own finalize_request, which the module's wraps */
    void                       (*original_finalize)(ngx_http_request_t *r, ngx_int_t rc);
    /* the routed upstream failed after its header was sent (a body cut short or malformed, a
     * read that timed out): its status, below 500, is not its outcome */
    unsigned                     failed_after_header:1;
    /* the routed upstream's gRPC answer reports a server-side failure, or no status at all
     * (ngx_http_pgate_grpc_failed): its HTTP status, 200, is not its outcome */
    unsigned                     failed_in_grpc:1;
    /* 1 + the index of the gate whose key is being read (0: none), see
     * ngx_http_pgate_key_reads_gate */
    ngx_uint_t                   keying;
    /* the routed upstream's 101 went out to the client, and was recorded then, a granted
     * upgrade or a failure (ngx_http_pgate_header_filter) */
    unsigned                     switch_recorded:1;
} ngx_http_pgate_ctx_t;


static ngx_inline void ngx_http_pgate_follow(ngx_log_t *log, ngx_http_pgate_gate_t *g);


/* nginx's own clock is cached per event loop turn in milliseconds: time upstreams here. */
static uint64_t
ngx_http_pgate_now_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000 + (uint64_t) ts.tv_nsec;
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
            ctx->left_passed = 1;
            return ctx;
        }
    }

    return NULL;
}


/*
 * The index in r->upstream_states of the routed upstream's first attempt, the routed upstream
 * being the first one the request starts after its first route that may record (a gate read
 * by a balancer's key, in an upstream already started, chose none), other than one under way
 * then, or, for a subrequest's route, made then (known once ngx_http_pgate_anchored, below,
 * finds it). nginx makes the array when a request starts its first upstream (and pushes
 * nothing yet), and every later upstream first pushes an empty separator: so the routed
 * upstream's attempts start at 0 if the request had no array at that route, else one after
 * the states it had. An upstream that gave up before trying any peer (a name no upstream{}
 * block has, with no resolver) pushed nothing: its fallback's separator then sits where the
 * routed attempts would, and nothing of the fallback is taken for the routed version's.
 */
static ngx_inline ngx_uint_t
ngx_http_pgate_routed_first(ngx_http_pgate_ctx_t *ctx)
{
    return ctx->states_existed ? ctx->states_before + 1 : 0;
}


/*
 * Whether `state` is the empty separator nginx pushes at the start of each upstream after the
 * request's first (ngx_http_upstream_init_request zeroes it, and no later write reaches it),
 * not an attempt: ngx_http_upstream_connect gives each attempt connect_time -1 at once, then
 * the peer's name once it has one, and sets connect_time only once connected. An attempt
 * whose connection could not be made at all (ngx_event_connect_peer's NGX_ERROR: no socket,
 * no free connection) keeps no peer, as a separator, but connect_time -1.
 */
static ngx_inline ngx_uint_t
ngx_http_pgate_separator(ngx_http_upstream_state_t *state)
{
    return state->peer == NULL && state->connect_time != (ngx_msec_t) -1;
}


/*
 * Whether upstream `u` has made its request: ngx_http_upstream_init_request sets
 * u->writer.pool after create_request (whose header values may still route) and just before
 * it makes r->upstream_states or pushes its separator there, with nothing between that may
 * route; nothing else sets it. One waiting on proxy_cache_lock (NGX_BUSY), on a cache file's
 * aio, or on a request body still read has not, nor one whose body read failed (400), nor one
 * answered from the cache; one finalized after it made its request keeps it.
 */
static ngx_inline ngx_uint_t
ngx_http_pgate_made_request(ngx_http_upstream_t *u)
{
    return u->writer.pool != NULL;
}


/*
 * Whether the upstream passed over by a subrequest's route before it made its request
 * (ctx->passed, made while the request had no upstream states, ngx_http_pgate_anchor) did not
 * make the request's states, which another upstream did: that one is then the routed
 * upstream, its attempts from state 0 (the first upstream a request starts makes the array
 * and pushes no separator). Told by the passed upstream itself, not by the states: one that
 * made its request made the array (none existed at the route), and the separator search
 * applies; one that did not never will once another made it (nginx's body read failing, 400,
 * leaves it unstarted, and an error page's upstream starts first). Whatever the first state
 * then is, it is the upstream's that made the array: an attempt, or, when that upstream gave
 * up before trying a peer (a name no upstream{} block has, with no resolver: an error page's
 * proxy_pass by the gate), the separator of the upstream after it, a fallback the gate did
 * not choose, where ngx_http_pgate_routed_state stops. An empty array at the peer init of an
 * upstream `starting` now was made by that one; else the upstream that made it has not tried
 * a peer yet (it resolves its name) or never will.
 */
static ngx_uint_t
ngx_http_pgate_passed_over(ngx_http_request_t *r, ngx_http_pgate_ctx_t *ctx,
    ngx_uint_t starting)
{
    if (ctx->states_existed || ctx->passed == NULL || ngx_http_pgate_made_request(ctx->passed))
    {
        return 0;
    }

    return r->upstream_states->nelts != 0 || starting;
}


/*
 * Whether the routed upstream's place in r->upstream_states is known
 * (ngx_http_pgate_routed_first). It is, unless the first route that may record came while an
 * upstream was under way or, in a subrequest, made (ctx->under_way, ngx_http_pgate_anchor):
 * that upstream's later attempts follow the states the request had then, and the routed
 * upstream is the next one the request starts, whose separator comes after them (the upstream
 * under way made the array, so every later upstream pushes one before its peer init; one
 * answered from the cache pushes nothing, and is not taken), and after the passed upstream's
 * own, when that one made its request only after the route (a wait on proxy_cache_lock in an
 * error page's location). Once found, the anchor moves to
 * it: the routed upstream's first attempt is the state after that separator, as for a route
 * made between two upstreams. Unless the upstream passed over did not make the array, which
 * another one made (ngx_http_pgate_passed_over): that one is the routed upstream, from state 0.
 * None found: the upstream under way is the last one so far, and the routed one has not
 * started. Cold: searched only while such a route waits, at a peer init (`starting`: the
 * request's r->upstream starts), a later gate's first route and the log phase.
 */
static ngx_uint_t
ngx_http_pgate_anchored(ngx_http_request_t *r, ngx_http_pgate_ctx_t *ctx,
    ngx_uint_t starting)
{
    ngx_uint_t                  i;
    ngx_http_upstream_state_t  *states;

    if (!ctx->under_way) {
        return 1;
    }

    if (r->upstream_states == NULL) {
        return 0;
    }

    if (ngx_http_pgate_passed_over(r, ctx, starting)) {
        ctx->under_way = 0;     /* states_existed stays 0: its first attempt is state 0 */
        return 1;
    }

    states = r->upstream_states->elts;

    /* the passed upstream, unmade at the route, pushed its separator first if it made its
     * request since (it is r->upstream until another is made, and then never makes it) */
    i = ctx->states_before;
    if (ctx->states_existed && ctx->passed_unmade && ngx_http_pgate_made_request(ctx->passed)) {
        i++;
    }

    for ( /* void */ ; i < r->upstream_states->nelts; i++) {
        if (ngx_http_pgate_separator(&states[i])) {
            ctx->states_existed = 1;
            ctx->states_before = i;
            ctx->under_way = 0;
            return 1;
        }
    }

    return 0;
}


/*
 * Whether the request's upstream has started since its first route that may record: a peer
 * was asked for (a wrapped one), or r->upstream_states grew past what it held then (it is
 * made, or given the next upstream's separator, after the upstream's create_request, whose
 * header values may still route); past the attempts of the upstream under way then, if one
 * was (ngx_http_pgate_anchored).
 */
static ngx_uint_t
ngx_http_pgate_upstream_started(ngx_http_request_t *r, ngx_http_pgate_ctx_t *ctx)
{
    if (!ngx_http_pgate_anchored(r, ctx, 0)) {
        return 0;
    }

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

    ngx_http_set_ctx(r, ctx, ngx_http_promotion_gate_module);
    return ctx;
}


/*
 * Whether the main request's upstream is under way: nginx sets u->cleanup once the upstream
 * has made its request (after create_request, whose header values may still route, and after
 * it made r->upstream_states or pushed its separator there) and clears it when the upstream
 * is finalized (an error page's location reached by that finalization starts with none; one
 * a filter finalized, a 412 of the not-modified filter say, starts while it is still set,
 * and the error page's own upstream finalizes it as it is made).
 */
static ngx_uint_t
ngx_http_pgate_upstream_under_way(ngx_http_request_t *r)
{
    ngx_http_upstream_t  *u;

    u = r->main->upstream;
    return u != NULL && u->cleanup != NULL;
}


/*
 * Whether a subrequest's route (`subrequest`) passes over the main request's upstream: one
 * made before the subrequest ran, so chosen by no route of the subrequest, that has not
 * made its request yet or is under way. nginx runs a mirror's subrequests once the main
 * request's content handler returned (proxy_pass made its upstream, evaluated its URL and
 * asked for the body: with `mirror_request_body off` a body still read leaves it unstarted,
 * with no u->cleanup; so does a wait on proxy_cache_lock, with the body read or not, for any
 * method cached), an SSI include's or a slice's from the body filters, while the upstream
 * answers. Not passed over: an earlier location's upstream, left over once it made its
 * request and was finalized (u->cleanup cleared), which an auth_request's subrequest finds
 * in an error page's location before that location's content handler makes the next: the
 * routed upstream is still to come (a left-over upstream that never made its request, its
 * body read failing, is passed over: it never starts, and the next is found after it). One
 * a filter finalized while it ran (the not-modified filter's 412) is still under way, and
 * passed over, as a route of the main request passes it (ngx_http_pgate_upstream_under_way).
 * A gate read in the main request's own create_request (a proxy_set_header value) after a
 * subrequest read it first was decided by that subrequest: the upstream's URL did not read
 * it.
 */
static ngx_inline ngx_uint_t
ngx_http_pgate_subrequest_passes(ngx_http_request_t *r, ngx_uint_t subrequest)
{
    ngx_http_upstream_t  *u;

    u = r->main->upstream;
    return subrequest && u != NULL && (u->cleanup != NULL || !ngx_http_pgate_made_request(u));
}


/*
 * Whether the main request `r` has reached its location's content phase: the phase engine's
 * handler it runs is a content phase's (ngx_http_core_content_phase, where r->phase_handler
 * stays while the content handler, a proxy_pass say, runs or waits, and through the log
 * phase, which nginx runs outside the engine). An internal redirect (ngx_http_handler) or a
 * named location restarts the phases, at the server or the location rewrite phase: a request
 * sent to an error page's location has not reached it there while an auth_request's
 * subrequest runs (its access phase waits for it) or a try_files path is read (precontent),
 * and its r->upstream is then an earlier location's, left over; nginx's content handlers
 * make upstreams (ngx_http_upstream_create), so that location's own is still to come.
 */
static ngx_inline ngx_uint_t
ngx_http_pgate_in_content_phase(ngx_http_request_t *r)
{
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_core_module);
    return cmcf->phase_engine.handlers[r->phase_handler].checker == ngx_http_core_content_phase;
}


/*
 * Takes the request's upstream states as they stand now as those before its routed upstream
 * (ngx_http_pgate_routed_first): done by its first route that may record, whatever routes
 * came before it that may not (ngx_http_pgate_route). While an upstream is under way, or, for
 * a subrequest's route, made (ngx_http_pgate_subrequest_passes), its later attempts come
 * after them too: the routed upstream's start is then found at its separator, or at state 0
 * when that upstream never started (ngx_http_pgate_anchored). Whether the request is then in
 * that upstream's location is told by its phase (ngx_http_pgate_in_content_phase), and by a
 * redirect since (ngx_http_pgate_get_ctx): an auth_request's subrequest reads in an error
 * page's location, after the redirect, before that location's content handler; a `set` in an
 * error page's location reads after one (ctx->left_passed).
 */
static void
ngx_http_pgate_anchor(ngx_http_request_t *r, ngx_http_pgate_ctx_t *ctx, ngx_uint_t subrequest)
{
    ctx->states_existed = r->upstream_states != NULL;
    ctx->states_before = ctx->states_existed ? r->upstream_states->nelts : 0;
    ctx->under_way = ngx_http_pgate_upstream_under_way(r)
                     || ngx_http_pgate_subrequest_passes(r, subrequest);
    ctx->passed = ctx->under_way ? r->main->upstream : NULL;
    ctx->passed_unmade = ctx->passed != NULL && !ngx_http_pgate_made_request(ctx->passed);
    ctx->left_passed = ctx->passed != NULL && !ngx_http_pgate_in_content_phase(r);
    ctx->unreached = 0;
}


/*
 * Whether a main request's read (not `subrequest`) is made for the upstream the first route
 * passed over before that upstream made its request (ngx_http_pgate_anchor): that one is still
 * r->upstream, still unmade, and the request is in its location (ctx->left_passed: not in an
 * error page's, where a `set` after the passed upstream's body read failed, or a try_files
 * path after an auth_request's subrequest read the first gate there, is read for the upstream
 * that location's content handler starts). So is a read in
 * its create_request (a proxy_set_header value) once a mirror's subrequest read the first
 * gate while nginx read the body: the gate read there chose the passed upstream, whose
 * outcome the first route does not record, and the module times one upstream a request,
 * the first route's: that gate records nothing.
 */
static ngx_inline ngx_uint_t
ngx_http_pgate_reads_for_passed(ngx_http_request_t *r, ngx_http_pgate_ctx_t *ctx,
    ngx_uint_t subrequest)
{
    return !subrequest && ctx->under_way && !ctx->left_passed && r->upstream == ctx->passed
           && !ngx_http_pgate_made_request(ctx->passed);
}


/* Whether one of the request's `gates` routes may record (ngx_http_pgate_route). */
static ngx_uint_t
ngx_http_pgate_any_recordable(ngx_http_pgate_ctx_t *ctx, ngx_uint_t gates)
{
    ngx_uint_t  i;

    for (i = 0; i < gates; i++) {
        if (ctx->routes[i].recordable) {
            return 1;
        }
    }

    return 0;
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
 * The grpc-status of a server's own failure (2 UNKNOWN, 4 DEADLINE_EXCEEDED, 12 UNIMPLEMENTED,
 * 13 INTERNAL, 14 UNAVAILABLE, 15 DATA_LOSS), as 5xx is for HTTP; the others are a success
 * (0) or the caller's error (3 INVALID_ARGUMENT, 5 NOT_FOUND, 16 UNAUTHENTICATED...). A value
 * that is no code (above 16, or no number) is a failure: gRPC clients read it as UNKNOWN or
 * INTERNAL.
 */
static ngx_uint_t
ngx_http_pgate_grpc_server_error(ngx_str_t *value)
{
    ngx_int_t  code;

    code = ngx_atoi(value->data, value->len);
    if (code == NGX_ERROR || code > 16) {
        return 1;
    }

    return (0xf014 >> code) & 1;    /* bits 2, 4, 12, 13, 14 and 15 */
}


/*
 * The value of the upstream's response field `name` (lowercase, '_' for '-') in `fields`, its
 * header or its trailer, found as $upstream_http_... and $upstream_trailer_... find it.
 * NGX_DECLINED when it has none; NGX_ERROR on no memory (nginx 1.23 joins repeated fields).
 */
static ngx_int_t
ngx_http_pgate_upstream_field(ngx_http_request_t *r, ngx_list_t *fields, ngx_str_t *name,
    ngx_str_t *value)
{
    ngx_http_variable_value_t  vv;

#if (nginx_version >= 1023000)
    if (ngx_http_variable_unknown_header(r, &vv, name, &fields->part, 0) != NGX_OK) {
        return NGX_ERROR;
    }
#else
    if (ngx_http_variable_unknown_header(&vv, name, &fields->part, 0) != NGX_OK) {
        return NGX_ERROR;
    }
#endif

    if (vv.not_found) {
        return NGX_DECLINED;
    }

    value->data = vv.data;
    value->len = vv.len;
    return NGX_OK;
}


/*
 * Whether nginx gave up on the request's client: a write to it failed (the client closed or
 * reset its connection, an HTTP/2 client its stream or connection: nginx marks the
 * connection's error, an HTTP/2 stream's own), the client timed out (it stopped reading the
 * answer past send_timeout, or sending its body past client_body_timeout: nginx marks the
 * connection timed out, without its error, and ends an unbuffered upstream with 408), or,
 * with buffering, the pipe stopped writing to it (such a write, or send_timeout: the pipe's
 * downstream_error, which buffering always has). Cold: asked only when nginx ends an
 * upstream with NGX_ERROR after the header, or a gRPC answer has no grpc-status.
 */
static ngx_uint_t
ngx_http_pgate_client_failed(ngx_http_request_t *r)
{
    ngx_http_upstream_t  *u = r->upstream;

    return r->connection->error || r->connection->timedout
           || (u->buffering && u->pipe->downstream_error);
}


/*
 * Whether the upstream's answer is gRPC (content-type application/grpc, alone, with a +format
 * or with parameters) and failed: every gRPC call is answered 200, and its own status is its
 * grpc-status, a header in a trailers-only answer, else a trailer (the grpc module parsed it
 * into u->headers_in.trailers). No grpc-status is a broken stream, the server's failure
 * unless nginx gave up on the client first (ngx_http_pgate_client_failed: it went away or
 * stopped reading), cutting the answer short. Only an answer whose content-type says gRPC
 * pays for the lookup.
 */
static ngx_uint_t
ngx_http_pgate_grpc_failed(ngx_http_request_t *r, ngx_http_upstream_t *u)
{
    size_t            len;
    ngx_int_t         rc;
    ngx_str_t         status;
    ngx_table_elt_t  *h;

    static ngx_str_t  name = ngx_string("grpc_status");

    h = u->headers_in.content_type;
    len = sizeof("application/grpc") - 1;

    if (h == NULL || h->value.len < len
        || ngx_strncasecmp(h->value.data, (u_char *) "application/grpc", len) != 0
        || (h->value.len > len && h->value.data[len] != '+' && h->value.data[len] != ';'))
    {
        return 0;               /* not gRPC, nor application/grpc-web's other framing */
    }

    rc = ngx_http_pgate_upstream_field(r, &u->headers_in.headers, &name, &status);
    if (rc == NGX_DECLINED) {
        rc = ngx_http_pgate_upstream_field(r, &u->headers_in.trailers, &name, &status);
    }

    if (rc == NGX_OK) {
        return ngx_http_pgate_grpc_server_error(&status);
    }

    return rc == NGX_DECLINED && !ngx_http_pgate_client_failed(r);
}


/*
 * The routed upstream's end (ngx_http_upstream_finalize_request calls it with its result
 * before it releases the peer): a failure the status does not show, once the header was sent,
 * is a result of 500 or more, nginx's 502 for a body the upstream cut short ("upstream
 * prematurely closed connection") or that failed to arrive, its 504 for one that timed out
 * (without buffering), or NGX_ERROR while the client was fine: the body's parser refused
 * what the upstream sent ("upstream sent invalid chunked response"; fastcgi's and grpc's
 * parsers too), or nginx failed itself while relaying it (a temporary file it could not
 * write, no memory), the request broken either way. NGX_ERROR with the client failed
 * (ngx_http_pgate_client_failed) is the client's doing, never the version's. A gRPC answer
 * is judged here too, on the routed upstream's own response: in the log phase, after an
 * error page, r->upstream is the fallback's.
 */
static void
ngx_http_pgate_finalize(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_pgate_ctx_t  *ctx;

    /* r owns the upstream that was wrapped, so its context is found (the check is for the
     * reader: nginx's proxy, fastcgi, grpc... finalize_request only write a debug line) */
    ctx = ngx_http_pgate_get_ctx(r);
    if (ctx == NULL) {
        return;
    }

    if (r->upstream->header_sent
        && (rc >= NGX_HTTP_INTERNAL_SERVER_ERROR
            || (rc == NGX_ERROR && !ngx_http_pgate_client_failed(r))))
    {
        ctx->failed_after_header = 1;
    }

    if (ngx_http_pgate_grpc_failed(r, r->upstream)) {
        ctx->failed_in_grpc = 1;
    }

    if (ctx->upstream_start_ns != 0 && ctx->upstream_end_ns == 0
        && r->upstream->peer.sockaddr == NULL)
    {
        /* it gave up without ever holding a peer (no live upstreams): its time ends here,
         * not after an error_page fallback (a request that held one is timed by its free,
         * which follows) */
        ctx->upstream_end_ns = ngx_http_pgate_now_ns();
    }

    ctx->original_finalize(r, rc);
}


/*
 * Wraps the peer of the routed upstream, just made by its peer init: the first upstream a
 * routed request starts after it was routed (ngx_http_pgate_routed_first: no attempt of any
 * upstream pushed since, but those of an upstream under way then, ngx_http_pgate_anchored,
 * whose peer init came before the route). A later upstream of the same request (a named
 * location that error_page sends to stable, say, also after a routed upstream that never tried
 * a peer) is not the routed one and is left alone. A gate read by an upstream's own handler
 * (proxy_pass evaluating $promotion_gate_<name> before it makes its request) chose that
 * upstream object (route->upstream): if another one starts first, the chosen one never started
 * (nginx answered an error first, a request body the client cut short or malformed, 400, before
 * proxy_pass could send it, and error_page sent that answer to a location that proxies), and
 * that upstream's outcome is not the gate's: the route is made unrecordable, and a request left
 * with none records nothing (unreached). A gate read before (set, if, a map they read) chose no
 * upstream object: the first upstream started after it is the one it chose, also through an
 * error page (`if (...) { return 418; }` with `error_page 418 = @canary`).
 */
static ngx_int_t
ngx_http_pgate_wrap_peer(ngx_http_request_t *r)
{
    ngx_uint_t                  i, reached;
    ngx_peer_connection_t      *peer;
    ngx_http_pgate_ctx_t       *ctx;
    ngx_http_pgate_route_t     *route;
    ngx_http_pgate_main_conf_t *pmcf;

    ctx = ngx_http_pgate_get_ctx(r);
    if (ctx == NULL || ctx->original_get != NULL || ctx->unreached
        || !ngx_http_pgate_anchored(r, ctx, 1)
        || r->upstream_states->nelts != ngx_http_pgate_routed_first(ctx))
    {
        return NGX_OK;          /* not routed, or not the routed upstream */
    }

    peer = &r->upstream->peer;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_promotion_gate_module);
    reached = 0;

    for (i = 0; i < pmcf->gates.nelts; i++) {
        route = &ctx->routes[i];
        if (route->upstream != NULL && route->upstream != r->upstream) {
            route->recordable = 0;  /* its upstream never started: this one is another's */
        } else if (route->recordable) {
            reached = 1;
        }
    }

    if (!reached) {
        ctx->unreached = 1;
        return NGX_OK;
    }

    ctx->original_get = peer->get;
    ctx->original_free = peer->free;
    ctx->original_notify = peer->notify;
    ctx->original_data = peer->data;

    peer->data = ctx;
    peer->get = ngx_http_pgate_peer_get;
    peer->free = ngx_http_pgate_peer_free;
    peer->notify = ctx->original_notify ? ngx_http_pgate_peer_notify : NULL;

    if (r->upstream->finalize_request != NULL) {
        ctx->original_finalize = r->upstream->finalize_request;
        r->upstream->finalize_request = ngx_http_pgate_finalize;
    }

#if (NGX_HTTP_SSL)
    ctx->original_set_session = peer->set_session;
    ctx->original_save_session = peer->save_session;
    peer->set_session = ctx->original_set_session ? ngx_http_pgate_peer_set_session : NULL;
    peer->save_session = ctx->original_save_session ? ngx_http_pgate_peer_save_session
                                                    : NULL;
#endif

    return NGX_OK;
}


/*
 * The request whose upstream{} block's own peer init runs (NULL: none), which may evaluate a
 * balancer's key (`hash $promotion_gate_<name>;`, or a hash over a map of it): a gate first
 * read there is read once the upstream has started (nginx made the request's
 * r->upstream_states, or pushed the new upstream's separator, just before), and chose no
 * version (ngx_http_pgate_route). A worker runs one peer init at a time; the key's variables
 * are evaluated within it. A subrequest's balancer (its request is not the main one, whose
 * decision the gate makes) reads the gate as any evaluation in a subrequest does.
 */
static ngx_http_request_t  *ngx_http_pgate_balancing;


/* The peer init of an upstream{} block: the block's own, then the wrap. */
ngx_int_t
ngx_http_pgate_peer_init(ngx_http_request_t *r, ngx_http_upstream_srv_conf_t *us)
{
    ngx_int_t                   rc;
    ngx_http_request_t         *balancing;
    ngx_http_pgate_srv_conf_t  *pscf;

    pscf = ngx_http_conf_upstream_srv_conf(us, ngx_http_promotion_gate_module);

    balancing = ngx_http_pgate_balancing;
    ngx_http_pgate_balancing = r;
    rc = pscf->original_init(r, us);
    ngx_http_pgate_balancing = balancing;

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_pgate_wrap_peer(r);
}


/*
 * The peer init of an implicit upstream (an address written in proxy_pass, which has no
 * module configuration to keep an original in): always nginx's round robin, then the wrap.
 */
ngx_int_t
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
 * The cookie rules every host follows (docs/overrides.md, "Reading the forcing value"; the Go
 * middleware's cookieValue, net/http's): the Cookie lines in order, each split at ';', a
 * cookie's name and the line trimmed of SP, HTAB, CR, LF; the name compared exactly (RFC
 * 6265), a name alone is an empty value, one pair of surrounding double quotes stripped, and
 * a value holding a byte a cookie value may not (below 0x20, above 0x7e, '"', '\\') skipped:
 * the first valid one counts. More than PGATE_MAX_COOKIES cookies in all: none (net/http's
 * default limit). nginx's own parser (ngx_http_parse_multi_header_lines) ignores the name's
 * case, keeps the quotes and takes the first of the name, valid or not.
 */
#define PGATE_MAX_COOKIES  3000

static ngx_uint_t
ngx_http_pgate_cookie_space(u_char c)
{
    return c == ' ' || c == '\t' || c == CR || c == LF;
}


/* [start, end) trimmed of cookie space */
static void
ngx_http_pgate_cookie_trim(u_char **start, u_char **end)
{
    while (*start < *end && ngx_http_pgate_cookie_space(**start)) {
        (*start)++;
    }
    while (*end > *start && ngx_http_pgate_cookie_space(*(*end - 1))) {
        (*end)--;
    }
}


/* The valid value of cookie `name` in one line, NGX_DECLINED when the line has none. */
static ngx_int_t
ngx_http_pgate_cookie_in_line(ngx_str_t *line, ngx_str_t *name, ngx_str_t *value)
{
    u_char  *p, *last, *part, *part_end, *eq, *v, *v_end, *c;

    p = line->data;
    last = line->data + line->len;

    while (p < last) {
        part = p;
        part_end = ngx_strlchr(p, last, ';');
        if (part_end == NULL) {
            part_end = last;
        }
        p = part_end < last ? part_end + 1 : last;

        ngx_http_pgate_cookie_trim(&part, &part_end);

        eq = ngx_strlchr(part, part_end, '=');
        v = eq ? eq + 1 : part_end;
        v_end = part_end;
        if (eq == NULL) {
            eq = part_end;
        }
        ngx_http_pgate_cookie_trim(&part, &eq);

        if ((size_t) (eq - part) != name->len || ngx_memcmp(part, name->data, name->len) != 0)
        {
            continue;
        }

        if (v_end - v > 1 && *v == '"' && *(v_end - 1) == '"') {
            v++;
            v_end--;
        }

        for (c = v; c < v_end; c++) {
            if (*c < 0x20 || *c >= 0x7f || *c == '"' || *c == ';' || *c == '\\') {
                break;
            }
        }
        if (c < v_end) {
            continue;           /* not a valid value: the next of the name may be */
        }

        value->data = v;
        value->len = v_end - v;
        return NGX_OK;
    }

    return NGX_DECLINED;
}


/* The request's forcing cookie `name`, by the rules above. */
static ngx_int_t
ngx_http_pgate_forcing_cookie(ngx_http_request_t *r, ngx_str_t *name, ngx_str_t *value)
{
    u_char           *c;
    ngx_uint_t        count;
    ngx_table_elt_t  *h;
#if (nginx_version < 1023000)
    ngx_uint_t        i;
    ngx_table_elt_t **lines;
#endif

    /* net/http counts a line's ';' and one more, whatever they separate */
    count = 0;
#if (nginx_version >= 1023000)
    for (h = r->headers_in.cookie; h; h = h->next) {
#else
    lines = r->headers_in.cookies.elts;
    for (i = 0; i < r->headers_in.cookies.nelts; i++) {
        h = lines[i];
#endif
        count += 1;
        for (c = h->value.data; c < h->value.data + h->value.len; c++) {
            count += (*c == ';');
        }
    }
    if (count > PGATE_MAX_COOKIES) {
        return NGX_DECLINED;
    }

#if (nginx_version >= 1023000)
    for (h = r->headers_in.cookie; h; h = h->next) {
#else
    for (i = 0; i < r->headers_in.cookies.nelts; i++) {
        h = lines[i];
#endif
        if (ngx_http_pgate_cookie_in_line(&h->value, name, value) == NGX_OK) {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * The request's forcing value: the first header named `overrides.header` (ASCII case
 * ignored, as HTTP field names are), else the cookie named `overrides.cookie`, by the rules
 * above. Points into the request's headers: no copy, no allocation. NGX_DECLINED when it has
 * none.
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
                ngx_http_pgate_trim_ows(value);
                return NGX_OK;
            }
        }
    }

    if (g->override_cookie_len == 0) {
        return NGX_DECLINED;
    }

    cookie.data = g->override_cookie;
    cookie.len = g->override_cookie_len;

    return ngx_http_pgate_forcing_cookie(r, &cookie, value);
}


/*
 * A gate's key that reads a gate's decision: `promotion_gate` refuses a key naming a declared
 * gate's $promotion_gate_<name>, but a map, a set or another module's variable can hide one.
 * Then every request has one of two keys, "canary" or "stable" (its own decision, while it is
 * being made, is "stable"), and the gate routes its requests as two users. Found when it happens, and
 * logged once per worker and gate, at error level: the routing stays as configured. Seen
 * only when the key is what reads that decision first in the request: nginx keeps a
 * variable's value once read, and later reads do not reach the module.
 */
static void
ngx_http_pgate_key_reads_gate(ngx_http_request_t *r, ngx_http_pgate_gate_t *keyed,
    ngx_http_pgate_gate_t *read)
{
    if (keyed->key_reads_gate_logged) {
        return;
    }
    keyed->key_reads_gate_logged = 1;

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "promotion gate \"%V\": its key reads the decision of gate \"%V\"%s "
                  "(through a map, a set or another variable): every request gets one of two "
                  "keys, so the gate routes its requests as two users; make the key of the "
                  "request alone (a header, a cookie, $request_id). Logged once per worker",
                  &keyed->name, &read->name, keyed == read ? ", its own" : "");
}


/* The request's decision for gate `index`, made once per request. NULL on no memory. */
static ngx_http_pgate_route_t *
ngx_http_pgate_route(ngx_http_request_t *r, ngx_uint_t index)
{
    ngx_str_t                    id, value;
    ngx_uint_t                   i, keying, subrequest;
    pgate_status                 st;
    ngx_http_pgate_ctx_t        *ctx;
    ngx_http_pgate_gate_t       *g;
    ngx_http_pgate_route_t      *route;
    ngx_http_complex_value_t    *keys;
    ngx_http_variable_value_t   *vv;
    ngx_http_pgate_main_conf_t  *pmcf;

    /* The decision is the main request's, whichever request asks first: a subrequest
     * (auth_request, SSI include, mirror) shares the main request's variable values, so it
     * reads the main request's decision, made for the main request, whose routed upstream's
     * outcome is the one recorded. A subrequest's own upstream is never wrapped nor recorded
     * (ngx_http_pgate_get_ctx finds no context of its own), with log_subrequest on too.
     * Nor is an upstream the main request made before the subrequest read the gate
     * (ngx_http_pgate_subrequest_passes). */
    subrequest = r != r->main;
    r = r->main;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_promotion_gate_module);

    ctx = ngx_http_pgate_get_ctx(r);
    if (ctx == NULL) {
        ctx = ngx_http_pgate_create_ctx(r, pmcf->gates.nelts);
        if (ctx == NULL) {
            return NULL;
        }
    }

    g = &((ngx_http_pgate_gate_t *) pmcf->gates.elts)[index];

    if (ctx->keying) {
        ngx_http_pgate_key_reads_gate(r,
            &((ngx_http_pgate_gate_t *) pmcf->gates.elts)[ctx->keying - 1], g);
    }

    route = &ctx->routes[index];
    if (route->routed) {
        return route;
    }
    route->routed = 1;

    if (g->gate == NULL) {
        return route;           /* the worker could not open its gate: stable */
    }

    ngx_http_pgate_follow(r->connection->log, g);

    ngx_str_null(&id);
    keys = g->keys->elts;
    keying = ctx->keying;
    ctx->keying = index + 1;

    for (i = 0; i < g->keys->nelts && id.len == 0; i++) {
        if (ngx_http_complex_value(r, &keys[i], &id) != NGX_OK) {
            ctx->keying = keying;
            return NULL;
        }
        ngx_http_pgate_trim_ows(&id);
    }

    ctx->keying = keying;

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

        /* a value passed and not forcing is exactly one the library ignored: counted for
         * the whole nginx (the worker's own gate counts only its own) */
        if (st == PGATE_STATUS_OK && route->decision.forced == PGATE_FORCED_NONE) {
            (void) __atomic_fetch_add(&g->ring->counts.ignored_override_values, 1,
                                      __ATOMIC_RELAXED);
        }

    } else {
        st = pgate_route(g->gate, id.data, id.len, &route->decision);
    }
    if (st != PGATE_STATUS_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "promotion gate \"%V\": route: %s", &g->name, pgate_status_str(st));
        ngx_memzero(&route->decision, sizeof(pgate_decision));
        return route;
    }

    if (r->upstream != NULL && r->upstream->conf == NULL) {
        /* read by an upstream's own handler evaluating its URL (proxy_pass, grpc_pass...:
         * between ngx_http_upstream_create and the handler setting u->conf): that upstream
         * object, not one an error page starts later, is the one it chose. An upstream left
         * over from an earlier location (its body's read failed) has its conf: a gate read
         * in the error page's set or if is not taken for that one's */
        route->upstream = r->upstream;
    }

    route->decided = 1;

    if (ngx_http_pgate_balancing == r) {
        /* a balancer's key, read in its block's peer init, once the upstream has started
         * (its states may not have grown yet): that upstream was not chosen by this decision,
         * so its outcome is not this gate's to judge */
        route->recordable = 0;

    } else if (!ngx_http_pgate_any_recordable(ctx, pmcf->gates.nelts)) {
        /* the request's first route that may record: any upstream started before it was
         * chosen by no gate (none routed, or only by a balancer's key, or a route whose
         * upstream never started: unreached), and the first upstream started from now on is
         * this decision's, an error page's too. One under way now (a mirror's subrequest
         * read between its attempts, a variable read for each attempt, an error page's set
         * that a filter finalized while it ran), or one a subrequest finds made, started or
         * not (a mirror's subrequest read while nginx reads the body or waits on a cache
         * lock), is none of them: its attempts are not this decision's, the next upstream the
         * request starts is (ngx_http_pgate_anchor) */
        route->recordable = 1;
        ngx_http_pgate_anchor(r, ctx, subrequest);

    } else {
        /* asked once the routed upstream had started (a second gate's variable in a
         * log_format or an add_header, say): that upstream is another gate's choice. So is
         * the upstream a subrequest finds made (ngx_http_pgate_subrequest_passes), started or
         * not (a mirror's read while nginx reads the body for the upstream the first gate's
         * proxy_pass made), unless it is the one the first route passed over too (that route
         * still waits for the next: ctx->under_way), the routed upstream then still to come.
         * An earlier location's upstream, left over and finalized, is not passed over: the
         * routed upstream is still to come (an auth_request's read in an error page's
         * location). And so is the upstream the first route passed over, read by the main
         * request for it (ngx_http_pgate_reads_for_passed): this gate chose that one, the
         * first the next */
        route->recordable = !ngx_http_pgate_upstream_started(r, ctx)
                            && (!ngx_http_pgate_subrequest_passes(r, subrequest)
                                || (ctx->under_way && r->upstream == ctx->passed))
                            && !ngx_http_pgate_reads_for_passed(r, ctx, subrequest);
    }

    return route;
}


ngx_int_t
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
 * goes to pgate_record_abandoned_as, which records a wait longer than the SLO's latency target
 * as a slow success and a shorter one not at all. Returns whether the library took the outcome
 * (an abandoned request it left out need not be shared: every worker reads the same SLO; one
 * it refused, with a status other than OK, is not shared either); then, if `as` is not NULL,
 * it holds what the library did with it (counted, late, foreign, forced), else it is left as
 * it was.
 */
static ngx_uint_t
ngx_http_pgate_record(ngx_log_t *log, ngx_http_pgate_gate_t *g, uint64_t stage,
    uint64_t flags, uint64_t latency_ns, pgate_recorded *as)
{
    bool            recorded;
    pgate_status    st;
    pgate_decision  decision;

    ngx_memzero(&decision, sizeof(pgate_decision));
    decision.stage = stage;
    decision.is_canary = (flags & PGATE_FLAG_CANARY) ? true : false;
    decision.forced = (pgate_forced) ((flags >> PGATE_FLAG_FORCED_SHIFT)
                                      & PGATE_FLAG_FORCED_MASK);

    if (flags & PGATE_FLAG_ABANDONED) {
        recorded = false;
        st = pgate_record_abandoned_as(g->gate, &decision, latency_ns, &recorded, as);

    } else {
        recorded = true;
        st = pgate_record(g->gate, &decision, (flags & PGATE_FLAG_SUCCESS) ? true : false,
                          latency_ns, as);
    }

    if (st != PGATE_STATUS_OK) {
        /* a refusal that persists would otherwise write a line per request */
        ngx_http_pgate_log_quiet(log, g, &g->refused, "record", st,
                                 "the outcome refused, neither judged nor shared",
                                 "outcomes refused");
        return 0;
    }

    return recorded;
}


/*
 * Counts this worker's own outcome, as its gate classified it, in the zone's counters: once for
 * the whole nginx (a worker pooling it from the ring does not count it again). Nothing for a
 * counted outcome, the common case.
 */
static ngx_inline void
ngx_http_pgate_count(ngx_http_pgate_gate_t *g, pgate_recorded as)
{
    uint64_t  *counter;

    switch (as) {
    case PGATE_RECORDED_LATE:
        counter = &g->ring->counts.late_outcomes;
        break;
    case PGATE_RECORDED_FOREIGN:
        counter = &g->ring->counts.foreign_outcomes;
        break;
    case PGATE_RECORDED_FORCED:
        counter = &g->ring->counts.forced_outcomes;
        break;
    default:
        return;
    }

    (void) __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
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
    __atomic_store_n(&slot->at, (uint64_t) ngx_current_msec, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->stage, stage, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->latency_ns, latency_ns, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->pid, (uint64_t) ngx_pid, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->flags, (uint64_t) flags, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->epoch, g->epoch, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->seq, index + 1, __ATOMIC_RELEASE);
}


/*
 * Records into this worker's gate the outcomes other workers put in the ring since its last
 * look (since its gate opened: the ring's outcomes of the workers before it too, which a new
 * worker takes up, ngx_http_pgate_open). An outcome shared longer ago than the gate's
 * rollback_window_seconds is in no worker's window any more: skipped (the ring may hold
 * outcomes of hours ago when traffic is low). So is one shared by a worker of a later
 * configuration (its epoch above this worker's): after a reload that kept the zone, a worker
 * of the old configuration, still draining, would judge the new workers' traffic by its old
 * SLO, and could roll the release back where the new SLO does not. The new workers take up
 * the old workers' outcomes, those they share while draining too.
 */
static void
ngx_http_pgate_pool(ngx_log_t *log, ngx_http_pgate_gate_t *g)
{
    uint64_t                   head, index, seq, at, stage, latency_ns, pid, flags, epoch;
    ngx_http_pgate_outcome_t  *slot;

    head = __atomic_load_n(&g->ring->head, __ATOMIC_ACQUIRE);

    if (head - g->cursor > PGATE_RING_OUTCOMES) {
        g->cursor = head - PGATE_RING_OUTCOMES;
    }

    for (index = g->cursor; index < head; index++) {
        slot = &g->ring->outcomes[index % PGATE_RING_OUTCOMES];

        seq = __atomic_load_n(&slot->seq, __ATOMIC_ACQUIRE);
        if (seq != index + 1) {
            if (seq < index + 1 && ngx_http_pgate_awaited(log, g, index, head)) {
                break;          /* still being written: read it next time */
            }
            continue;           /* overwritten, or abandoned by its writer */
        }

        at = __atomic_load_n(&slot->at, __ATOMIC_RELAXED);
        stage = __atomic_load_n(&slot->stage, __ATOMIC_RELAXED);
        latency_ns = __atomic_load_n(&slot->latency_ns, __ATOMIC_RELAXED);
        pid = __atomic_load_n(&slot->pid, __ATOMIC_RELAXED);
        flags = __atomic_load_n(&slot->flags, __ATOMIC_RELAXED);
        epoch = __atomic_load_n(&slot->epoch, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);

        if (__atomic_load_n(&slot->seq, __ATOMIC_RELAXED) != index + 1
            || epoch > g->epoch
            || (pid == (uint64_t) ngx_pid && index >= g->own_from)
            || (g->window_ms
                && (ngx_msec_int_t) (ngx_current_msec - (ngx_msec_t) at)
                   > (ngx_msec_int_t) g->window_ms))
        {
            continue;
        }

        /* another worker's outcome: counted by that worker (ngx_http_pgate_count) */
        (void) ngx_http_pgate_record(log, g, stage, flags, latency_ns, NULL);
    }

    g->cursor = index;
}


/*
 * The state of the routed upstream's last attempt, or NULL if the request never reached it.
 * r->upstream_states holds every upstream of the request, across redirects (each upstream
 * after the first starts with an empty separator state): the last one may be that of a
 * fallback the canary's failure was redirected to (`error_page 502 = @fallback` proxying to
 * stable), whose success is not the routed version's. The routed upstream is the first one
 * the request started after it was routed, none if only the one under way then ran on
 * (ngx_http_pgate_routed_first, ngx_http_pgate_anchored): for a wrapped peer
 * (an upstream{} block, an address in proxy_pass), the attempt it released last; else (a
 * name resolved at run time) the last attempt of that upstream, none if it tried no peer.
 */
static ngx_http_upstream_state_t *
ngx_http_pgate_routed_state(ngx_http_request_t *r, ngx_http_pgate_ctx_t *ctx)
{
    ngx_uint_t                  i;
    ngx_http_upstream_state_t  *states, *last;

    if (r->upstream_states == NULL || ctx->unreached || !ngx_http_pgate_anchored(r, ctx, 0)) {
        return NULL;            /* or no upstream started after the one under way */
    }

    states = r->upstream_states->elts;

    if (ctx->original_get != NULL && ctx->timed_state_end) {
        return &states[ctx->timed_state_end - 1];
    }

    /* else a name resolved at run time, or a wrapped peer that never obtained one: "no live
     * upstreams" (every server of the block marked failed by max_fails) pushed a state with
     * the block's name as its peer and nginx's 502 as its status, the routed version's failure */

    last = NULL;
    i = ngx_http_pgate_routed_first(ctx);

    for ( /* void */ ; i < r->upstream_states->nelts && states[i].peer != NULL; i++) {
        last = &states[i];
    }

    return last;
}


/*
 * Records the request's outcome in every gate that routed it before its upstream started
 * (the log phase's, and a 101's as it goes out).
 */
static void
ngx_http_pgate_record_routes(ngx_http_request_t *r, ngx_http_pgate_ctx_t *ctx,
    ngx_uint_t outcome, uint64_t latency_ns)
{
    ngx_uint_t                   i, flags;
    pgate_recorded               as;
    ngx_http_pgate_gate_t       *gates;
    ngx_http_pgate_route_t      *route;
    ngx_http_pgate_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_promotion_gate_module);
    gates = pmcf->gates.elts;

    for (i = 0; i < pmcf->gates.nelts; i++) {
        route = &ctx->routes[i];
        if (!route->recordable || gates[i].gate == NULL
            || (route->upstream != NULL && route->upstream->peer.get == NULL))
        {
            /* not routed before the upstream started, or the upstream it chose never got
             * to its peers (the state read is another upstream's: an error page's proxying
             * to a name resolved at run time, never wrapped) */
            continue;
        }

        flags = (route->decision.is_canary ? PGATE_FLAG_CANARY : 0) | outcome
                | (((ngx_uint_t) route->decision.forced & PGATE_FLAG_FORCED_MASK)
                   << PGATE_FLAG_FORCED_SHIFT);

        as = PGATE_RECORDED_COUNTED;

        if (ngx_http_pgate_record(r->connection->log, &gates[i], route->decision.stage,
                                  flags, latency_ns, &as))
        {
            ngx_http_pgate_count(&gates[i], as);
            ngx_http_pgate_share(&gates[i], route->decision.stage, flags, latency_ns);
        }
        ngx_http_pgate_pool(r->connection->log, &gates[i]);
        ngx_http_pgate_announce(r->connection->log, &gates[i]);
    }
}


static ngx_http_output_header_filter_pt  ngx_http_pgate_next_header_filter;


/*
 * The protocol a request or a 101 upgrades to, read as Go's ReverseProxy reads it
 * (net/http/httputil's upgradeType), so that the module and the Go middleware judge a 101 by
 * one rule: the value of the first Upgrade header when a Connection header lists the token
 * "upgrade" (case-insensitively, among its comma-separated tokens, spaces and tabs around
 * each ignored); none (an empty string) otherwise. A header removed from the list (its hash
 * 0) is not read.
 */
static ngx_str_t
ngx_http_pgate_upgrade_type(ngx_list_t *headers)
{
    u_char           *p, *end, *next, *token, *last;
    ngx_str_t         type;
    ngx_uint_t        i, listed, found;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    ngx_str_null(&type);
    listed = 0;
    found = 0;

    for (part = &headers->part; part != NULL; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash == 0) {
                continue;
            }

            if (!found && h[i].key.len == sizeof("Upgrade") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "Upgrade", sizeof("Upgrade") - 1)
                   == 0)
            {
                type = h[i].value;
                found = 1;
                continue;
            }

            if (listed || h[i].key.len != sizeof("Connection") - 1
                || ngx_strncasecmp(h[i].key.data, (u_char *) "Connection",
                                   sizeof("Connection") - 1) != 0)
            {
                continue;
            }

            p = h[i].value.data;
            end = p + h[i].value.len;

            /* each comma-separated token, [token, last) once trimmed */
            for ( ;; ) {
                for (next = p; next < end && *next != ','; next++) { /* void */ }

                for (token = p; token < next && (*token == ' ' || *token == '\t'); token++) {
                    /* void */
                }

                for (last = next; last > token && (last[-1] == ' ' || last[-1] == '\t'); last--)
                {
                    /* void */
                }

                listed = last - token == sizeof("upgrade") - 1
                         && ngx_strncasecmp(token, (u_char *) "upgrade", sizeof("upgrade") - 1)
                            == 0;

                if (listed || next == end) {
                    break;
                }

                p = next + 1;
            }
        }
    }

    if (!listed) {
        ngx_str_null(&type);
    }

    return type;
}


/*
 * Whether the routed upstream's 101 (r->upstream's, now sent on) grants the upgrade the
 * request asked for, by the Go middleware's rule (its ReverseProxy's handleUpgradeResponse):
 * the request asked one (ngx_http_pgate_upgrade_type), and the 101 names the same protocol,
 * printable ASCII (bytes 0x20 to 0x7e), equal to the request's as a whole value, ASCII
 * case-insensitively ("WebSocket" grants "websocket"; "h2c", or "websocket" to a request that
 * asked "websocket, h2c", does not) - and nginx switches to it (u->upgrade: the request has
 * an Upgrade header; only proxy_pass switches). Any other 101 is one the client cannot use.
 */
static ngx_uint_t
ngx_http_pgate_upgrade_granted(ngx_http_request_t *r)
{
    ngx_str_t   asked, answered;
    ngx_uint_t  i;

    if (!r->upstream->upgrade) {
        return 0;
    }

    asked = ngx_http_pgate_upgrade_type(&r->headers_in.headers);
    answered = ngx_http_pgate_upgrade_type(&r->upstream->headers_in.headers);

    if (asked.len == 0 || answered.len != asked.len) {
        return 0;
    }

    for (i = 0; i < answered.len; i++) {
        if (answered.data[i] < 0x20 || answered.data[i] > 0x7e
            || ngx_tolower(answered.data[i]) != ngx_tolower(asked.data[i]))
        {
            return 0;
        }
    }

    return 1;
}


/*
 * Records the routed upstream's 101 as it is sent on to the client, at once, timed to this
 * moment for a wrapped peer, or, for a name resolved at run time, by the header time of the
 * attempt that is the routed state (nginx's header_time, set before the header is sent, in
 * milliseconds). The routed upstream is the one whose peer the module wrapped (its data is
 * the context), or the one whose attempt is the routed state.
 *
 * A 101 that grants the upgrade the request asked for (ngx_http_pgate_upgrade_granted: a
 * WebSocket's) is a success; the log phase comes only once the upgraded connection ends
 * (minutes or hours later: the window would see its refusals and not its grants meanwhile,
 * and a grant outliving its stage would come late), and the peer is released then too.
 * Any other 101 is a failure, as in the Go middleware: one to a request that asked no upgrade
 * (nginx does not switch, passes it on as an answer and waits for its body until
 * proxy_read_timeout), one naming another protocol than the one asked (nginx switches to it
 * all the same), or an invalid one: the upstream answered what the client cannot use.
 */
static ngx_int_t
ngx_http_pgate_header_filter(ngx_http_request_t *r)
{
    uint64_t                    latency_ns;
    ngx_uint_t                  outcome;
    ngx_http_pgate_ctx_t       *ctx;

    if (r->headers_out.status != NGX_HTTP_SWITCHING_PROTOCOLS || r->upstream == NULL
        || r->upstream->state == NULL || r->upstream_states == NULL)
    {
        return ngx_http_pgate_next_header_filter(r);
    }

    ctx = ngx_http_pgate_get_ctx(r);
    if (ctx != NULL && !ctx->switch_recorded
        && (ctx->original_get != NULL ? r->upstream->peer.data == ctx
                                      : r->upstream->state == ngx_http_pgate_routed_state(r, ctx)))
    {
        ctx->switch_recorded = 1;
        outcome = ngx_http_pgate_upgrade_granted(r) ? PGATE_FLAG_SUCCESS : 0;

        if (ctx->original_get != NULL) {
            latency_ns = ngx_http_pgate_now_ns() - ctx->upstream_start_ns;
            ngx_http_pgate_record_routes(r, ctx, outcome, latency_ns);

        } else if (r->upstream->state->header_time != (ngx_msec_t) -1) {
            latency_ns = (uint64_t) r->upstream->state->header_time * 1000000;
            ngx_http_pgate_record_routes(r, ctx, outcome, latency_ns);
        }
    }

    return ngx_http_pgate_next_header_filter(r);
}


/* Puts ngx_http_pgate_header_filter first in the header filters (postconfiguration). */
void
ngx_http_pgate_add_header_filter(void)
{
    ngx_http_pgate_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_pgate_header_filter;
}


ngx_int_t
ngx_http_pgate_log_handler(ngx_http_request_t *r)
{
    uint64_t                     latency_ns;
    ngx_uint_t                   status, outcome;
    ngx_http_pgate_ctx_t        *ctx;
    ngx_http_upstream_state_t   *state;

    ctx = ngx_http_pgate_get_ctx(r);
    if (ctx == NULL) {
        return NGX_OK;
    }

    status = r->err_status ? r->err_status : r->headers_out.status;

    state = ngx_http_pgate_routed_state(r, ctx);
    if (state == NULL) {
        return NGX_OK;          /* the request never reached the routed upstream */
    }

    if (state->status == NGX_HTTP_SWITCHING_PROTOCOLS) {
        /* a 101 was recorded as it went out, as the Go middleware records it
         * (ngx_http_pgate_header_filter): a granted upgrade (a WebSocket), whose upgraded
         * connection's life is no response time, and how it ends (nginx's 504 when it idles
         * past proxy_read_timeout) no failure; or a failure (unasked, another protocol),
         * timed to its header, not to the body nginx then awaits. A 101 never sent on to the
         * client (nginx refused the rest of its header) is no outcome. */
        return NGX_OK;
    }

    if (state->status != 0) {
        /* its answer or failure, even if the client then went away (a 499 before anything
         * was sent, or while error_page's fallback worked) */
        outcome = state->status < 500 && !ctx->failed_after_header && !ctx->failed_in_grpc
                  ? PGATE_FLAG_SUCCESS : 0;

    } else if (status == NGX_HTTP_CLIENT_CLOSED_REQUEST) {
        outcome = PGATE_FLAG_ABANDONED;     /* went away while the upstream worked */

    } else {
        return NGX_OK;          /* the routed upstream never answered nor failed */
    }

    if (ctx->original_get != NULL) {          /* an upstream{} block: timed here */
        if (ctx->upstream_end_ns) {
            latency_ns = ctx->upstream_end_ns - ctx->upstream_start_ns;

        } else if (ctx->upstream_start_ns) {
            /* no peer ever obtained (no live upstreams, nginx's 502) and no finalize_request
             * to stop the clock (ngx_http_pgate_finalize): the time from its first ask for a
             * peer to now; never a zero latency, which would make a dead canary look fast to
             * the latency rules */
            latency_ns = ngx_http_pgate_now_ns() - ctx->upstream_start_ns;

        } else {
            latency_ns = 0;
        }

    } else if (state->response_time != (ngx_msec_t) -1) {
        latency_ns = (uint64_t) state->response_time * 1000000;

    } else {
        return NGX_OK;
    }

    ngx_http_pgate_record_routes(r, ctx, outcome, latency_ns);

    return NGX_OK;
}


/*
 * What `get` writes of the gate (pgate_changes_json: its changes numbered above `after`; or
 * ngx_http_pgate_config_json), in memory from ngx_alloc (the caller ngx_frees it); NULL on an
 * error, logged naming `what`. Cold: called when the change count moved.
 */
u_char *
ngx_http_pgate_json(ngx_log_t *log, ngx_http_pgate_gate_t *g, ngx_http_pgate_json_pt get,
    const char *what, uint64_t after, size_t *len)
{
    u_char        *json;
    ngx_uint_t     tries;
    pgate_status   st;

    *len = 0;
    st = get(g->gate, after, NULL, 0, len);

    /* the gate may change between two calls: ask again with the new length */
    for (tries = 0; tries < 4 && st == PGATE_STATUS_BUFFER_TOO_SMALL; tries++) {
        json = ngx_alloc(*len + 1, log);
        if (json == NULL) {
            return NULL;
        }

        st = get(g->gate, after, (char *) json, *len + 1, len);
        if (st == PGATE_STATUS_OK) {
            return json;
        }
        ngx_free(json);
    }

    ngx_log_error(NGX_LOG_ERR, log, 0, "promotion gate \"%V\": %s: %s",
                  &g->name, what, pgate_status_str(st));
    return NULL;
}


/*
 * Tells the other workers when this worker's gate changed state itself (origin this_gate: a
 * rollback or a promotion its judge decided while recording, this worker's outcome or one
 * pooled from the ring, or right after a metrics scrape read the window), by bumping the
 * zone's generation. A change applied from the store (origin store) is another process's,
 * already in the store: not bumped again. One atomic load (the change count) when nothing
 * changed; run after recording, after pooling and after a scrape.
 */
void
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

    json = ngx_http_pgate_json(log, g, pgate_changes_json, "changes", g->changes_announced,
                               &len);
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


void
ngx_http_pgate_timer(ngx_event_t *ev)
{
    ngx_uint_t                   i;
    ngx_http_pgate_gate_t       *gates;
    ngx_http_pgate_main_conf_t  *pmcf = ev->data;

    ngx_http_pgate_log_drain(ev->log);

    gates = pmcf->gates.elts;
    for (i = 0; i < pmcf->gates.nelts; i++) {
        gates[i].ticks++;       /* ngx_http_pgate_awaited */

        if (gates[i].gate == NULL && !ngx_exiting) {
            ngx_http_pgate_reopen(ev->log, &gates[i]);   /* a draining worker need not */
        }

        if (gates[i].gate != NULL) {
            ngx_http_pgate_pool(ev->log, &gates[i]);
            ngx_http_pgate_announce(ev->log, &gates[i]);
            ngx_http_pgate_follow(ev->log, &gates[i]);
            if (gates[i].resync_until) {
                ngx_http_pgate_resync(ev->log, &gates[i], 0);
            }
            ngx_http_pgate_log_changes(ev->log, &gates[i]);
            ngx_http_pgate_refresh_config(ev->log, &gates[i]);
        }
    }

    /* re-armed in a draining worker too (after a reload or a quit, ngx_exiting), which goes on
     * logging, pooling and following until its last request ends: the timer is cancelable,
     * and nginx lets a worker exit once only cancelable timers are left
     * (ngx_event_no_timers_left) */
    ngx_add_timer(ev, PGATE_TIMER_MS);
}
