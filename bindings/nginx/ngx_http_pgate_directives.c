/* The directives: reading and checking a gate's documents, declaring it, and setting the
 * status and metrics locations. */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <grp.h>

#include "ngx_http_pgate.h"


/* The largest config or SLO document read: the library's own limit (MAX_DOCUMENT_BYTES). */
#define PGATE_DOCUMENT_MAX     (8 * 1024 * 1024)


static char *ngx_http_pgate_check_pooling(ngx_conf_t *cf, ngx_http_pgate_gate_t *g);
static char *ngx_http_pgate_check_name(ngx_conf_t *cf, ngx_http_pgate_gate_t *g);


/*
 * Reads a whole file (a config or SLO document) at configuration time. `param` names the
 * directive's parameter it comes from, as the errors name it: "config " (the second argument)
 * or "slo=". Each error names the directive, the gate, the parameter and the file's path, with
 * the system's errno where a call failed.
 */
static char *
ngx_http_pgate_read_document(ngx_conf_t *cf, ngx_http_pgate_gate_t *g, const char *param,
    ngx_str_t *path, ngx_str_t *out)
{
    size_t           got;
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_file_info_t  fi;

    if (ngx_conf_full_name(cf->cycle, path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* Before it is opened: a FIFO would block the open, and nginx -t with it. */
    if (ngx_file_info(path->data, &fi) != NGX_FILE_ERROR && !ngx_is_file(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "promotion_gate \"%V\": %s\"%V\" is not a regular file (a "
                           "directory, a FIFO, a device): a gate's document is a JSON file",
                           &g->name, param, path);
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "promotion_gate \"%V\": " ngx_open_file_n " %s\"%V\" failed",
                           &g->name, param, path);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "promotion_gate \"%V\": " ngx_fd_info_n " %s\"%V\" failed",
                           &g->name, param, path);
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    if (ngx_file_size(&fi) > PGATE_DOCUMENT_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "promotion_gate \"%V\": %s\"%V\" holds %O bytes, more than a "
                           "document may: at most %d (the library's MAX_DOCUMENT_BYTES)",
                           &g->name, param, path, ngx_file_size(&fi), PGATE_DOCUMENT_MAX);
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    if (ngx_file_size(&fi) == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "promotion_gate \"%V\": %s\"%V\" is empty: a gate's document is "
                           "a JSON object (\"{}\" for every default)", &g->name, param, path);
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    out->len = (size_t) ngx_file_size(&fi);
    out->data = ngx_pnalloc(cf->pool, out->len + 1);
    if (out->data == NULL) {
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    /* read() may return less than asked before the end; 0 is the end */
    for (got = 0, n = 1; got < out->len && n > 0; got += n) {
        n = ngx_read_fd(fd, out->data + got, out->len - got);
        if (n == NGX_FILE_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               "promotion_gate \"%V\": " ngx_read_fd_n " %s\"%V\" failed",
                               &g->name, param, path);
            ngx_close_file(fd);
            return NGX_CONF_ERROR;
        }
    }
    ngx_close_file(fd);

    if (got != out->len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "promotion_gate \"%V\": %s\"%V\": a short read, %uz of the %uz "
                           "bytes its size says (the file changed while it was read, or "
                           "its file system reports a size it does not hold)",
                           &g->name, param, path, got, out->len);
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
 * Validates a gate's documents without opening its store: what the config document alone can
 * refuse (a field's value, no store or a relative path, a store that judges the fleet, the
 * name of another declaration's gate) is read from it, and the SLO document (the default one
 * without slo=) is validated against the config document (its interval against the
 * document's rollback_window_seconds, pgate_document_check_slo), as the gate will be opened
 * from the pair. The store is opened only when the gate's zone is made
 * (ngx_http_pgate_open_store), after the whole configuration was read:
 * opening it creates its file and, when the store is empty, writes the document's state into
 * it, so a configuration refused after this directive (an unknown variable, another
 * directive's error) would leave that state for the corrected one to start from.
 */
static char *
ngx_http_pgate_validate(ngx_conf_t *cf, ngx_http_pgate_gate_t *g)
{
    char          *rv;
    pgate_error   *err;
    pgate_status   st;

    if (ngx_http_pgate_check_store(cf, g) != NGX_CONF_OK
        || ngx_http_pgate_check_pooling(cf, g) != NGX_CONF_OK
        || ngx_http_pgate_check_name(cf, g) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    g->opened->config_path = g->config_path;
    g->opened->config = g->config;
    g->opened->slo_path = g->slo_path;
    g->opened->slo = g->slo;

    /* the SLO (the default one without slo=) against this config document: the gate is
     * opened from the pair, so its interval must fit the document's rollback window */
    err = NULL;
    st = pgate_document_check_slo(g->config.data, g->config.len, g->slo.data, g->slo.len,
                                  &err);
    rv = st == PGATE_STATUS_OK ? NGX_CONF_OK : ngx_http_pgate_refuse(cf, g, st, err);
    pgate_error_free(err);
    return rv;
}


/*
 * Opens a gate's store from its documents and closes it again, when the gate's zone is made:
 * after the whole configuration was read and the core module set its defaults, so a
 * configuration refused while it is read leaves no store behind (one that fails later, at
 * another gate's store, another module's zone or a listening socket, keeps the stores opened
 * before: each from a document already accepted), and an error here fails nginx -t
 * while a reload keeps the running configuration (an init_module hook could only exit the
 * master). A bad store path, a store that cannot be opened and stored state the library
 * refuses fail here. When the master runs as root, the store is opened as the workers' user
 * and group (the `user` directive's, or nginx's defaults) with the user's supplementary
 * groups, as a worker has them, so that a SQLite file it creates belongs to them and a store
 * the workers could not write fails here.
 */
static ngx_int_t
ngx_http_pgate_open_store(ngx_log_t *log, ngx_http_pgate_opened_t *opened)
{
    int               ngroups;
    gid_t            *groups;
    ngx_int_t         rc;
    pgate_gate       *gate;
    pgate_error      *err;
    pgate_status      st;
    ngx_uint_t        switched;
    ngx_core_conf_t  *ccf;

    ccf = (ngx_core_conf_t *) ngx_get_conf(opened->cycle->conf_ctx, ngx_core_module);
    switched = 0;
    groups = NULL;
    ngroups = 0;

    if (geteuid() == 0 && ccf->user != (ngx_uid_t) NGX_CONF_UNSET_UINT) {
        /* the workers' supplementary groups too (ngx_worker_process_init calls initgroups):
         * the master's (root's, under sudo) would let it create files the workers cannot */
        ngroups = getgroups(0, NULL);
        if (ngroups == -1) {
            ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                          "promotion_gate \"%V\": getgroups() failed", &opened->name);
            return NGX_ERROR;
        }

        groups = ngx_alloc((ngroups + 1) * sizeof(gid_t), log);
        if (groups == NULL) {
            return NGX_ERROR;
        }
        ngroups = getgroups(ngroups + 1, groups);

        if (ngroups == -1
            || initgroups(ccf->username, ccf->group) == -1
            || setegid(ccf->group) == -1 || seteuid(ccf->user) == -1)
        {
            ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                          "promotion_gate \"%V\": cannot take the workers' user \"%s\" "
                          "(uid %d gid %d) to open the store", &opened->name,
                          ccf->username ? ccf->username : "?", (int) ccf->user,
                          (int) ccf->group);
            (void) setegid(0);
            if (ngroups != -1) {
                (void) setgroups(ngroups, groups);
            }
            ngx_free(groups);
            return NGX_ERROR;
        }
        switched = 1;
    }

    gate = NULL;
    err = NULL;
    st = pgate_gate_new(opened->config.data, opened->config.len, opened->slo.data,
                        opened->slo.len, &gate, &err);

    if (switched && (seteuid(0) == -1 || setegid(0) == -1 || setgroups(ngroups, groups) == -1)) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "promotion_gate \"%V\": cannot become root again", &opened->name);
        rc = NGX_ERROR;
        goto done;
    }

    rc = NGX_OK;
    if (st != PGATE_STATUS_OK) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "promotion_gate \"%V\": %s: %s (in \"%V\"%s%V%s)", &opened->name,
                      pgate_status_str(st), pgate_error_message(err), &opened->config_path,
                      opened->slo_path.len ? " or \"" : "", &opened->slo_path,
                      opened->slo_path.len ? "\"" : "");
        rc = NGX_ERROR;
    }

done:

    if (groups != NULL) {
        ngx_free(groups);
    }
    pgate_error_free(err);
    (void) pgate_gate_free(gate);
    return rc;
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


static ngx_int_t ngx_http_pgate_init_zone(ngx_shm_zone_t *zone, void *data);
static uint64_t ngx_http_pgate_identity(ngx_str_t *gate_name, ngx_str_t *store);


/* A character of a variable's name, as nginx's script compiler reads one after '$' (and so of
 * a gate's name, which makes its variable's). */
static ngx_inline ngx_uint_t
ngx_http_pgate_name_char(u_char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || c == '_';
}


/*
 * Notes each variable $promotion_gate_<name> (or ${promotion_gate_<name>}, case ignored as
 * nginx ignores it) that a key= parameter reads, for ngx_http_pgate_check_keys: a gate's
 * decision as a key routes by another routing (or, for its own gate, by the "stable" a request
 * gets while it is being routed). Which names are gates is known only once every gate is
 * declared (one may be declared after the key); any other variable so named (a map's) is a
 * key like any other, and $http_x_promotion_gate_id is a header.
 */
static char *
ngx_http_pgate_note_key_reads(ngx_conf_t *cf, ngx_http_pgate_main_conf_t *pmcf,
    ngx_str_t *param)
{
    u_char                     *p, *last, *name;
    ngx_http_pgate_key_read_t  *read;

    static u_char  prefix[] = "promotion_gate_";

    last = param->data + param->len;

    for (p = param->data + 4; p < last; p++) {
        if (*p != '$') {
            continue;
        }

        name = p + 1 + (p + 1 < last && p[1] == '{');
        if ((size_t) (last - name) < sizeof(prefix) - 1
            || ngx_strncasecmp(name, prefix, sizeof(prefix) - 1) != 0)
        {
            continue;
        }

        name += sizeof(prefix) - 1;
        for (p = name; p < last && ngx_http_pgate_name_char(*p); p++) { /* void */ }

        read = ngx_array_push(&pmcf->key_reads);
        if (read == NULL) {
            return NGX_CONF_ERROR;
        }
        read->name.data = name;
        read->name.len = p - name;
        read->param = *param;
        read->file = cf->conf_file->file.name;
        read->line = cf->conf_file->line;
        p--;                    /* the loop's p++ reads the character after the name */
    }

    return NGX_CONF_OK;
}


/*
 * Refuses a key= parameter that reads a declared gate's variable, $promotion_gate_<name>
 * (ngx_http_pgate_note_key_reads), naming the parameter, the directive and where it is. Run
 * once the http block was read, when every gate is declared.
 */
ngx_int_t
ngx_http_pgate_check_keys(ngx_conf_t *cf, ngx_http_pgate_main_conf_t *pmcf)
{
    ngx_uint_t                  i, j;
    ngx_http_pgate_gate_t      *gates;
    ngx_http_pgate_key_read_t  *read;

    read = pmcf->key_reads.elts;
    gates = pmcf->gates.elts;

    for (i = 0; i < pmcf->key_reads.nelts; i++) {
        for (j = 0; j < pmcf->gates.nelts; j++) {
            if (gates[j].name.len != read[i].name.len
                || ngx_strncasecmp(gates[j].name.data, read[i].name.data, read[i].name.len)
                   != 0)
            {
                continue;
            }

            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "invalid parameter \"%V\" in \"promotion_gate\" directive in "
                          "%V:%ui: a key cannot read a gate's decision ($promotion_gate_%V is "
                          "gate \"%V\"'s)", &read[i].param, &read[i].file, read[i].line,
                          &read[i].name, &gates[j].name);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Warns of a key written after a key with no variable (`constant`, never empty): the constant
 * is always taken, so this key is never read (a fallback such as key=$http_x_user
 * key=anonymous is the constant's own use, and warned of by no one).
 */
static void
ngx_http_pgate_unread_key(ngx_conf_t *cf, ngx_command_t *cmd, ngx_http_pgate_gate_t *g,
    ngx_str_t *key, ngx_str_t *constant)
{
    ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                       "parameter \"key=%V\" of gate \"%V\" in \"%V\" directive is never "
                       "read: the parameter \"key=%V\" before it has no variable and is "
                       "never empty",
                       key, &g->name, &cmd->name, constant);
}


/*
 * promotion_gate <name> <config.json> [slo=<slo.json>] [key=<value>]...;
 */
char *
ngx_http_pgate_declare(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pgate_main_conf_t  *pmcf = conf;

    ngx_str_t                         *value, var, zone, trimmed, constant;
    ngx_uint_t                         i;
    ngx_http_variable_t               *v;
    ngx_http_pgate_gate_t             *g, *gates;
    ngx_http_complex_value_t          *key;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;
    ngx_str_null(&constant);

    if (value[1].len == 0) {
        goto bad_name;
    }

    for (i = 0; i < value[1].len; i++) {
        if (!ngx_http_pgate_name_char(value[1].data[i])) {
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

    if (ngx_http_pgate_read_document(cf, g, "config ", &g->config_path, &g->config)
        != NGX_CONF_OK)
    {
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
            if (ngx_http_pgate_read_document(cf, g, "slo=", &g->slo_path, &g->slo)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if (value[i].len > 4 && ngx_strncmp(value[i].data, "key=", 4) == 0) {
            if (ngx_http_pgate_note_key_reads(cf, pmcf, &value[i]) != NGX_CONF_OK) {
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

            /*
             * The first key not empty once trimmed is taken (ngx_http_pgate_route): a key
             * with no variable that trims to nothing is never taken, and one that does not
             * is always taken, so no key after it is ever read.
             */
            if (key->lengths != NULL) {
                if (constant.data != NULL) {
                    ngx_http_pgate_unread_key(cf, cmd, g, ccv.value, &constant);
                }
                continue;
            }

            trimmed = key->value;
            ngx_http_pgate_trim_ows(&trimmed);
            if (trimmed.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"key=%V\" of gate \"%V\" in \"%V\" "
                                   "directive: a key with no variable that is empty once its "
                                   "spaces and tabs are trimmed is never taken (each request "
                                   "would go on to the next key or $request_id)",
                                   ccv.value, &g->name, &cmd->name);
                return NGX_CONF_ERROR;
            }

            if (constant.data != NULL) {
                ngx_http_pgate_unread_key(cf, cmd, g, ccv.value, &constant);

            } else if (g->keys->nelts == 1) {
                ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                                   "parameter \"key=%V\" of gate \"%V\" in \"%V\" directive "
                                   "has no variable: every request has that key, so all of "
                                   "them reach one version", ccv.value, &g->name, &cmd->name);
            }

            if (constant.data == NULL) {
                constant = *ccv.value;
            }
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"%V\" directive: "
                           "expected slo=<file> or key=<value>", &value[i], &cmd->name);
        return NGX_CONF_ERROR;
    }

    /*
     * $promotion_gate_<name>: canary or stable. A map, split_clients or set of that
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
     * old workers still draining nor the old release's outcomes reach. Its size holds two
     * rings and the slab allocator's own pages: a reload that finds a ring of another layout
     * in it makes a new one beside it (ngx_http_pgate_ring_take).
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
ngx_int_t
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


char *
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


char *
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
 * gate and store, and the same size; its ring if of this build's layout, see
 * ngx_http_pgate_ring_take). zone->data is the gate's documents until then, and the
 * ring afterwards, which the workers and a later reload are handed. The whole configuration
 * was read and its users are final here: the store is opened first (ngx_http_pgate_open_store).
 * The configuration takes the ring's next epoch, its workers' (ngx_http_pgate_pool): a later
 * one than any configuration whose workers share the ring (a reload refused after this takes
 * a number that none uses).
 */
static ngx_int_t
ngx_http_pgate_init_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_http_pgate_ring_t    *ring;
    ngx_http_pgate_opened_t  *opened = zone->data;

    if (ngx_http_pgate_open_store(zone->shm.log, opened) != NGX_OK) {
        return NGX_ERROR;
    }

    ring = ngx_http_pgate_ring_take(zone, data, &opened->name);
    if (ring == NULL) {
        return NGX_ERROR;
    }

    opened->epoch = __atomic_add_fetch(&ring->epochs, 1, __ATOMIC_ACQ_REL);
    zone->data = ring;
    return NGX_OK;
}
