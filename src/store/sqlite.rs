//! The SQLite store: one file on one host, in WAL mode, shared by every process that opens it
//! (nginx workers, a restarted proxy). Each gate is one row of `release` and its rows of
//! `history`; a write is one `BEGIN IMMEDIATE` transaction that checks the guard first. Each
//! call first checks that the path still names the file the store opened, and opens it again
//! when it was removed or replaced on disk; a write checks it again once it holds the file's
//! lock and once it committed. The schema is in `docs/store.md`.

use rusqlite::config::DbConfig;
use rusqlite::types::ValueRef;
use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior, params,
};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::contribution::{MAX_INSTANCE_BYTES, MAX_LATENCY_BYTES, PublishedCohort, instance_of};
use super::state::{checked_split_from, stored_version};
use super::{
    BadContribution, Commit, Contribution, Guard, MAX_INSTANCES, NewestFirst, SCHEMA_VERSION,
    Since, SqliteStoreConfig, StateStore, StoreError, StoreProblem, StoredEvent, StoredRelease,
    StoredState, StoredWrite,
};
use crate::config::{PromotionConfig, stored_json};
use crate::decision::PerCohort;
use crate::error::{MAX_SHOWN_VALUE_BYTES, Shown, quoted};
use crate::limits::{MAX_DOCUMENT_BYTES, MAX_REASON_BYTES};
use identity::FileIdentity;

mod identity;

/// The most bytes of a release's rollback counts (JSON) a read takes: every cause this build
/// counts, once each, takes under 1 KiB.
const MAX_STORED_COUNTS_BYTES: usize = 4096;

/// The most bytes of a release's rollout (JSON) a read takes, and of its first stage at its
/// split: three numbers of at most 19 digits take 94.
const MAX_STORED_ROLLOUT_BYTES: usize = 160;

/// Marks a file as ours in the SQLite header (`PRAGMA application_id`): "PGAT".
const APPLICATION_ID: i32 = 0x5047_4154;

const CREATE_SCHEMA: &str = "
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE release (
    gate TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    stage INTEGER NOT NULL,
    environment TEXT NOT NULL,
    config TEXT NOT NULL,
    rollbacks TEXT,
    rollout TEXT,
    rollout_split_from TEXT
);
CREATE TABLE history (
    gate TEXT NOT NULL,
    version INTEGER NOT NULL,
    rolled_back TEXT NOT NULL,
    feature TEXT NOT NULL,
    reason TEXT NOT NULL,
    rollback_trigger TEXT NOT NULL,
    environment TEXT NOT NULL,
    timestamp_ns INTEGER NOT NULL,
    PRIMARY KEY (gate, version)
);
";

/// Each gate instance's contribution to a stage (fleet-wide judging): made in new files with
/// the schema, and added to files of this schema made before it.
const CREATE_CONTRIBUTIONS: &str = "
CREATE TABLE IF NOT EXISTS contribution (
    gate TEXT NOT NULL,
    instance TEXT NOT NULL,
    stage INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    canary_requests INTEGER NOT NULL,
    canary_errors INTEGER NOT NULL,
    canary_compliant INTEGER NOT NULL,
    canary_latency BLOB NOT NULL,
    stable_requests INTEGER NOT NULL,
    stable_errors INTEGER NOT NULL,
    stable_compliant INTEGER NOT NULL,
    stable_latency BLOB NOT NULL,
    PRIMARY KEY (gate, instance, stage)
);
";

/// A gate's state in one SQLite file.
#[derive(Debug)]
pub(crate) struct SqliteStore {
    /// The path as the config wrote it: the store's location in errors and logs.
    path: String,
    /// The same path made absolute against the working directory when the store was opened:
    /// the one every look at the file and every open uses. A relative path looked up again at
    /// each call would name another file once the host changed its working directory (a
    /// daemon's `chdir("/")`, Python's `os.chdir`): the gate would take its file for removed,
    /// close it and create one in the new directory.
    resolved: PathBuf,
    gate: String,
    busy_timeout: Duration,
    /// The connection to the file the path named when it was last opened, and its epoch; the
    /// writer and the sync thread take turns.
    open: Mutex<Files>,
    /// The release last refused (its version, stage and texts) and why: a sync tick that reads
    /// the same row again refuses it without parsing it again (a newer build's config of a
    /// megabyte, refused for a field this build does not know, stays until every process is
    /// upgraded). The texts are compared, not their lengths: a row mended in place to the same
    /// length is read.
    last_refused: Mutex<Option<(u64, u64, ReleaseTexts, StoreError)>>,
    /// How many times a release's texts were parsed: tests count them.
    #[cfg(test)]
    parsed: std::sync::atomic::AtomicUsize,
    /// What tests run at two points of a release write.
    #[cfg(test)]
    write_hooks: WriteHooks,
}

/// Code a test runs, once each, at two points of a release write ([`SqliteStore::commit_in`]):
/// right before `BEGIN IMMEDIATE` (the path looked at, the lock not yet asked for) and right
/// before `COMMIT` (the path looked at again, the write made in the transaction), to replace
/// the file there.
#[cfg(test)]
#[derive(Default)]
struct WriteHooks {
    before_begin: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    before_commit: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

#[cfg(test)]
impl WriteHooks {
    fn run(hook: &Mutex<Option<Box<dyn FnOnce() + Send>>>) {
        let hook = hook.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(hook) = hook {
            hook();
        }
    }
}

#[cfg(test)]
impl std::fmt::Debug for WriteHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteHooks")
    }
}

/// The file the store works on, and how many it opened in place of another.
#[derive(Debug)]
struct Files {
    /// `None` after the path named another file and opening that one failed: the next call
    /// tries again.
    current: Option<OpenFile>,
    /// The epoch of the last file opened ([`Guard::epoch`]): 0 for the store's first, one
    /// more for each file opened in place of another (the path named another one, or none).
    epoch: u64,
}

/// A connection, and the file it was opened on.
#[derive(Debug)]
struct OpenFile {
    connection: Connection,
    file: FileIdentity,
    /// Its epoch ([`Guard::epoch`]). A state a caller knows of another epoch is another
    /// file's, whose version and stage tell nothing of this one's state (a file of the same
    /// numbers may hold another): [`changes_since`] reads this one's whole, and a write
    /// decided on it is refused as a conflict, not written over this file's state.
    ///
    /// [`changes_since`]: StateStore::changes_since
    epoch: u64,
}

/// The most times a write is made again because the path named another file by the time it
/// held the file's lock or had committed (a file replaced again and again).
const WRITE_ATTEMPTS: usize = 3;

impl SqliteStore {
    /// Opens (creating when missing) the file at `config.path`, in WAL mode, and checks that
    /// it is a promotion-gates store of a schema this version reads.
    pub(crate) fn open(config: &SqliteStoreConfig, gate: &str) -> Result<Self, StoreError> {
        // `file_name`'s `./` first, so that a path SQLite would read as a URI or a special name
        // is made absolute as the file name SQLite is given.
        let resolved = std::path::absolute(file_name(&config.path).as_ref()).map_err(|e| {
            StoreError::new(
                config.path.clone(),
                StoreProblem::Unavailable,
                format!("cannot make the path absolute against the working directory: {e}"),
            )
        })?;
        let store = Self {
            path: config.path.clone(),
            resolved,
            gate: gate.to_string(),
            busy_timeout: Duration::from_millis(config.busy_timeout_ms),
            open: Mutex::new(Files {
                current: None,
                epoch: 0,
            }),
            last_refused: Mutex::new(None),
            #[cfg(test)]
            parsed: std::sync::atomic::AtomicUsize::new(0),
            #[cfg(test)]
            write_hooks: WriteHooks::default(),
        };
        let file = store.open_file(0)?;
        store.lock().current = Some(file);
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Files> {
        // A panic while holding the connection leaves no transaction open: rusqlite rolls an
        // unfinished one back when it is dropped during the unwind.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `operation` on a connection to the file the path names now (see
    /// [`follow_path`](Self::follow_path)), held for the whole operation.
    ///
    /// The wait for the connection counts in the busy timeout: the operation's wait for
    /// another process's lock is what is left of it (none when the wait took it all: the lock
    /// is then tried once). The other holder is this process's other store call (the sync
    /// thread's publish, say), which may itself have waited out the timeout on another
    /// process's lock: a host's write behind it would otherwise wait twice the timeout.
    fn on_current_file<T>(
        &self,
        operation: impl FnOnce(&mut OpenFile) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let asked = Instant::now();
        let mut open = self.lock();
        operation(self.follow_path(&mut open, asked)?)
    }

    /// The file the path names now, with its connection: the open one while the path still
    /// names its file (one `stat`), else a new one, opened as [`open`](Self::open) does,
    /// replacing it, of the next [`epoch`](OpenFile::epoch). A file removed or replaced
    /// on disk while open (an operator's `rm` to reset, a restored backup moved over it) would
    /// otherwise go on being read and written by this process, unseen by every process that
    /// opens the path afterwards. Its busy timeout is what is left of the store's since the
    /// call was `asked` (see [`on_current_file`](Self::on_current_file)).
    fn follow_path<'a>(
        &self,
        files: &'a mut Files,
        asked: Instant,
    ) -> Result<&'a mut OpenFile, StoreError> {
        let now = self.file_now()?;
        let file = match files.current.take() {
            Some(file) if Some(file.file) == now => file,
            stale => {
                // Gone already (`None`) only when opening the path failed after a switch.
                if let Some(stale) = stale {
                    self.log_left(stale.file, now);
                    close_detached(stale.connection);
                }
                let file = self.open_file(files.epoch + 1)?;
                files.epoch = file.epoch;
                file
            }
        };
        let file = files.current.insert(file);
        let left = self.busy_timeout.saturating_sub(asked.elapsed());
        file.connection
            .busy_timeout(left)
            .map_err(|e| failure(&self.path, &e))?;
        Ok(file)
    }

    /// Whether the path still names `file` (the one a connection was opened on).
    fn still_names(&self, file: FileIdentity) -> Result<bool, StoreError> {
        Ok(self.file_now()? == Some(file))
    }

    /// The file the path names now, if any.
    fn file_now(&self) -> Result<Option<FileIdentity>, StoreError> {
        FileIdentity::of(&self.resolved).map_err(|e| {
            self.error(
                StoreProblem::Unavailable,
                format!("cannot tell which file the path names: {e}"),
            )
        })
    }

    fn log_left(&self, was: FileIdentity, now: Option<FileIdentity>) {
        match now {
            Some(now) => tracing::warn!(
                store = %self.path,
                old_inode = was.inode(),
                new_inode = now.inode(),
                "promotion.store the file was replaced on disk (another file has its path now): the gate closes the old one and follows the new one's state"
            ),
            None => tracing::warn!(
                store = %self.path,
                old_inode = was.inode(),
                "promotion.store the file was removed on disk: the gate closes it and opens its path again, created afresh when missing"
            ),
        }
    }

    /// Opens the file the path names (creating it when missing) and prepares it; with the
    /// file it was opened on: the one the path named before and after opening it (created
    /// here, or replaced meanwhile: opened again, on the one it names now), of `epoch`.
    fn open_file(&self, epoch: u64) -> Result<OpenFile, StoreError> {
        let fail = |e: rusqlite::Error| failure(&self.path, &e);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        for _ in 0..3 {
            let before = self.file_now()?;
            let mut connection =
                Connection::open_with_flags(&self.resolved, flags).map_err(fail)?;
            // SQLite falls back to reading a file this process may not write: every write
            // would then fail, and a rollback wait forever to be written.
            if connection.is_readonly(rusqlite::MAIN_DB).map_err(fail)? {
                return Err(self.error(
                    StoreProblem::Unavailable,
                    "the file cannot be written by this process (no write permission, or an immutable file): a store must be writable",
                ));
            }
            connection.busy_timeout(self.busy_timeout).map_err(fail)?;
            let prepared = self.prepare(&mut connection);
            let same = match (before, self.file_now()?) {
                (Some(before), Some(after)) if before == after => Some(after),
                _ => None,
            };
            match (prepared, same) {
                (Ok(()), Some(file)) => {
                    return Ok(OpenFile {
                        connection,
                        file,
                        epoch,
                    });
                }
                // Closed as any connection (the path still names its file).
                (Err(error), Some(_)) => return Err(error),
                (Err(error), None) => {
                    close_detached(connection);
                    return Err(error);
                }
                (Ok(()), None) => close_detached(connection),
            }
        }
        Err(self.error(
            StoreProblem::Unavailable,
            "the path named another file each time it was opened (replaced again and again)",
        ))
    }

    /// WAL mode, full sync, and the schema: created in an empty file, checked in ours,
    /// refused in anything else. Another program's file is refused on a first look, before
    /// WAL mode is asked for, so that it is left as it was (its header, its journal mode, no
    /// `-wal` or `-shm` beside it); the look is made again in the transaction that creates or
    /// checks the schema, which decides.
    fn prepare(&self, connection: &mut Connection) -> Result<(), StoreError> {
        let fail = |e: rusqlite::Error| failure(&self.path, &e);
        {
            let look = connection.transaction().map_err(fail)?;
            let (application_id, tables) = owner(&look).map_err(fail)?;
            self.refuse_theirs(application_id, tables)?;
        }
        let journal = wal_mode(connection, self.busy_timeout).map_err(fail)?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(self.error(
                StoreProblem::Unavailable,
                format!("the file cannot be put in WAL mode (journal_mode is {journal})"),
            ));
        }
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(fail)?;
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        let (application_id, tables) = owner(&tx).map_err(fail)?;
        self.refuse_theirs(application_id, tables)?;
        match (application_id, tables) {
            (0, 0) => {
                tx.execute_batch(CREATE_SCHEMA).map_err(fail)?;
                tx.execute_batch(CREATE_CONTRIBUTIONS).map_err(fail)?;
                tx.execute(
                    "INSERT INTO schema_version (version) VALUES (?1)",
                    [SCHEMA_VERSION],
                )
                .map_err(fail)?;
                tx.pragma_update(None, "application_id", APPLICATION_ID)
                    .map_err(fail)?;
            }
            (APPLICATION_ID, _) => {
                // A value that is no integer is named (read within its bound), before `max`
                // would read every value whole.
                let not_integer = tx
                    .query_row(
                        "SELECT octet_length(version),
                             CASE WHEN octet_length(version) <= ?1 THEN version END
                         FROM schema_version WHERE typeof(version) != 'integer' LIMIT 1",
                        [NUMBER_TEXT_BYTES],
                        |row| Ok(bounded_integer(row, 0, "schema_version.version")),
                    )
                    .optional()
                    .map_err(fail)?;
                if let Some(Err(e)) = not_integer {
                    return Err(self.error(StoreProblem::NotOurs, e));
                }
                let version = tx
                    .query_row("SELECT max(version) FROM schema_version", [], |row| {
                        Ok(match row.get_ref(0) {
                            Ok(ValueRef::Null) => Ok(None),
                            _ => integer(row, 0, "schema_version.version").map(Some),
                        })
                    })
                    .map_err(|e| self.error(StoreProblem::NotOurs, e))?
                    .map_err(|e| self.error(StoreProblem::NotOurs, e))?;
                if version != Some(i64::from(SCHEMA_VERSION)) {
                    return Err(self.error(
                        StoreProblem::NotOurs,
                        format!(
                            "schema version {} (this build reads {SCHEMA_VERSION})",
                            version.map_or("none".to_string(), |v| v.to_string())
                        ),
                    ));
                }
                tx.execute_batch(CREATE_CONTRIBUTIONS).map_err(fail)?;
                add_release_columns(&tx).map_err(fail)?;
                self.check_tables(&tx)?;
            }
            // Refused above.
            _ => {}
        }
        tx.commit().map_err(fail)
    }

    /// Refuses a file that is neither empty nor marked as ours ([`owner`]'s answer).
    fn refuse_theirs(&self, application_id: i32, tables: i64) -> Result<(), StoreError> {
        match (application_id, tables) {
            (0, 0) | (APPLICATION_ID, _) => Ok(()),
            (0, _) => Err(self.error(
                StoreProblem::NotOurs,
                format!("another program's database ({tables} tables, no promotion-gates application id)"),
            )),
            (other, _) => Err(self.error(
                StoreProblem::NotOurs,
                format!("another program's database (application_id {other:#x})"),
            )),
        }
    }

    fn error(&self, problem: StoreProblem, detail: impl std::fmt::Display) -> StoreError {
        StoreError::new(self.path.clone(), problem, detail)
    }

    /// Checks that a file marked as ours has every table and column this build reads and
    /// writes (those [`CREATE_SCHEMA`] and [`CREATE_CONTRIBUTIONS`] make): one dropped or
    /// altered by hand is refused as not ours, naming it, rather than failing every call later
    /// as if the store were unavailable.
    fn check_tables(&self, connection: &Connection) -> Result<(), StoreError> {
        let fail = |e: rusqlite::Error| failure(&self.path, &e);
        let ours = Connection::open_in_memory().map_err(fail)?;
        ours.execute_batch(CREATE_SCHEMA).map_err(fail)?;
        ours.execute_batch(CREATE_CONTRIBUTIONS).map_err(fail)?;
        let expected: Vec<Column> = ours
            .prepare(
                "SELECT m.name, c.name, c.type, c.pk, c.\"notnull\"
                 FROM sqlite_schema AS m, pragma_table_info(m.name) AS c
                 WHERE m.type = 'table' ORDER BY m.name, c.cid",
            )
            .and_then(|mut statement| {
                statement
                    .query_map([], |row| {
                        Ok(Column {
                            table: row.get(0)?,
                            name: row.get(1)?,
                            declared: row.get(2)?,
                            key: row.get(3)?,
                            not_null: row.get(4)?,
                        })
                    })?
                    .collect()
            })
            .map_err(fail)?;
        // Only our tables are looked for in the file: what else it holds (another program's
        // tables, however many or long their names) is never read into memory here.
        let has = |sql: &str, params: &[&str]| -> Result<bool, StoreError> {
            connection
                .prepare_cached(sql)
                .and_then(|mut statement| statement.exists(rusqlite::params_from_iter(params)))
                .map_err(fail)
        };
        for Column {
            table,
            name: column,
            declared,
            key,
            not_null,
        } in expected
        {
            // A table of that very name (not a view, not another case of it) with that column,
            // declared as ours is: the same type, the same place in the primary key (the
            // writes' `ON CONFLICT` clauses need the key; a type's affinity decides what a
            // value becomes), and `NOT NULL` where ours has it (the reads select rows by
            // their numbers, which a NULL has none of: such a row would be skipped unseen).
            let column_sql = "SELECT c.type, c.pk, c.\"notnull\"
                              FROM sqlite_schema AS m, pragma_table_info(m.name) AS c
                              WHERE m.type = 'table' AND m.name = ?1 AND c.name = ?2";
            let found: Option<(String, i64, bool)> = connection
                .prepare_cached(column_sql)
                .and_then(|mut statement| {
                    statement
                        .query_row([&table, &column], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                        })
                        .optional()
                })
                .map_err(fail)?;
            let missing = match found {
                Some((theirs, their_key, their_not_null))
                    if theirs.eq_ignore_ascii_case(&declared)
                        && their_key == key
                        && their_not_null == not_null =>
                {
                    continue;
                }
                Some((theirs, their_key, their_not_null)) => format!(
                    "table {table}, column {column}: declared {} ({}), where ours is {} ({})",
                    quoted(&theirs),
                    key_place(their_key, their_not_null),
                    quoted(&declared),
                    key_place(key, not_null)
                ),
                None => {
                    let table_sql =
                        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1";
                    if has(table_sql, &[&table])? {
                        format!("table {table} has no column {column}")
                    } else {
                        format!("no table {table}")
                    }
                }
            };
            return Err(self.error(
                StoreProblem::NotOurs,
                format!("{missing}: a promotion-gates file (application_id) whose schema was changed by hand"),
            ));
        }
        Ok(())
    }

    /// The release of `version` and `stage` whose texts `read` selected, parsed and checked;
    /// the one last refused is refused again without being parsed (`last_refused`).
    fn release(
        &self,
        version: u64,
        stage: u64,
        texts: ReleaseTexts,
    ) -> Result<StoredRelease, StoreError> {
        let mut refused = self
            .last_refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((.., error)) = refused
            .as_ref()
            .filter(|(v, s, last, _)| (*v, *s) == (version, stage) && *last == texts)
        {
            return Err(error.clone());
        }
        let parsed = self.parsed_release(version, stage, &texts);
        *refused = parsed
            .as_ref()
            .err()
            .map(|error| (version, stage, texts, error.clone()));
        parsed
    }

    /// [`release`](Self::release), parsed.
    fn parsed_release(
        &self,
        version: u64,
        stage: u64,
        (config, rollbacks, rollout, split): &ReleaseTexts,
    ) -> Result<StoredRelease, StoreError> {
        #[cfg(test)]
        self.parsed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let not_ours = |e: String| self.error(StoreProblem::NotOurs, e);
        // The counts and the rollout are of a few KiB at most (their read's bounds).
        let config = PromotionConfig::parse_json(config)
            .map_err(|e| not_ours(format!("release.config: {e}")))?;
        let rollbacks = json_column(rollbacks.clone(), "release.rollbacks", "rollback counts")
            .map_err(not_ours)?;
        let rollout =
            rollout_of(rollout.clone(), split.clone(), (version, stage)).map_err(not_ours)?;
        StoredRelease {
            version,
            stage,
            config,
            rollbacks,
            rollout,
            epoch: 0,
        }
        .checked(&self.gate)
        .map_err(not_ours)
    }

    /// What the file of `epoch` holds against the `known` state (its numbers compared, its
    /// epoch not: see [`changes_since`](StateStore::changes_since)).
    fn read(&self, connection: &Connection, known: Guard, epoch: u64) -> Result<Since, StoreError> {
        let fail = |e: rusqlite::Error| failure(&self.path, &e);
        let not_ours = |e: String| self.error(StoreProblem::NotOurs, e);
        // The config is read only when the release is not the one known, and only within its
        // limit: a value above it is never held, only its length.
        let row = connection
            .query_row(
                "SELECT octet_length(version), CASE WHEN octet_length(version) <= ?5 THEN version END,
                     octet_length(stage), CASE WHEN octet_length(stage) <= ?5 THEN stage END,
                     octet_length(config),
                     CASE WHEN typeof(version) = 'integer' AND typeof(stage) = 'integer'
                         AND (version, stage) IS NOT (?2, ?3) AND octet_length(config) <= ?4
                         THEN config END,
                     octet_length(rollbacks),
                     CASE WHEN typeof(version) = 'integer' AND typeof(stage) = 'integer'
                         AND (version, stage) IS NOT (?2, ?3) AND octet_length(rollbacks) <= ?6
                         THEN rollbacks END,
                     octet_length(rollout),
                     CASE WHEN typeof(version) = 'integer' AND typeof(stage) = 'integer'
                         AND (version, stage) IS NOT (?2, ?3) AND octet_length(rollout) <= ?7
                         THEN rollout END,
                     octet_length(rollout_split_from),
                     CASE WHEN typeof(version) = 'integer' AND typeof(stage) = 'integer'
                         AND (version, stage) IS NOT (?2, ?3)
                         AND octet_length(rollout_split_from) <= ?7
                         THEN rollout_split_from END
                 FROM release WHERE gate = ?1",
                params![
                    self.gate,
                    self.signed("release.version", known.version)?,
                    self.signed("release.stage", known.stage)?,
                    i64::try_from(MAX_DOCUMENT_BYTES).unwrap_or(i64::MAX),
                    NUMBER_TEXT_BYTES,
                    i64::try_from(MAX_STORED_COUNTS_BYTES).unwrap_or(i64::MAX),
                    i64::try_from(MAX_STORED_ROLLOUT_BYTES).unwrap_or(i64::MAX)
                ],
                |row| Ok(release_of(row)),
            )
            .optional()
            .map_err(fail)?;
        let row = row.transpose().map_err(not_ours)?;
        let stored = row.as_ref().map(|(version, stage, _)| (*version, *stage));
        let (Some(since), Some((version, stage, texts))) = (Since::read_after(stored, known), row)
        else {
            return Ok(Since::unread(stored, known));
        };
        let release = self
            .release(version, stage, texts.map_err(not_ours)?)?
            .in_epoch(epoch);
        // A row numbered 0 or below (no write makes one: a file edited by hand) is refused
        // whatever the history's bound: the read below takes the newest rows, and it would
        // come after all of them. One search of the key, at its lowest number.
        connection
            .prepare_cached(HISTORY_UNNUMBERED)
            .and_then(|mut statement| {
                statement
                    .query_row(params![self.gate], |row| {
                        Ok(unnumbered(row, release.version))
                    })
                    .optional()
            })
            .map_err(fail)?
            .map_or(Ok(()), Err)
            .map_err(not_ours)?;
        // The newest events the release keeps, at most (a file written by hand may hold more).
        let mut statement = connection.prepare_cached(HISTORY_READ).map_err(fail)?;
        let bound = i64::try_from(release.history_bound()).unwrap_or(i64::MAX);
        let text_bytes = i64::try_from(HISTORY_TEXT_BYTES).unwrap_or(i64::MAX);
        let after = self.signed("release.version", since)?;
        let through = self.signed("release.version", release.version)?;
        let rows = statement
            .query_map(
                params![
                    self.gate,
                    after,
                    bound,
                    text_bytes,
                    NUMBER_TEXT_BYTES,
                    through
                ],
                |row| Ok(event_of(row)),
            )
            .map_err(fail)?;
        let mut newest = NewestFirst::new(release.history_bound());
        for row in rows {
            if !newest
                .take(row.map_err(fail)?.map_err(not_ours)?)
                .map_err(not_ours)?
            {
                break;
            }
        }
        let history = newest.oldest_first();
        StoredState { release, history }
            .checked()
            .map(|state| Since::of(state, since, known))
            .map_err(not_ours)
    }

    /// `value`, for `field`, as SQLite's integer. Beyond it, retrying cannot help: only a
    /// stored version or stage edited by hand up to `i64::MAX` leads a write there.
    fn signed(&self, field: &str, value: u64) -> Result<i64, StoreError> {
        i64::try_from(value).map_err(|_| {
            self.error(
                StoreProblem::NotOurs,
                format!(
                    "{field} = {value}: beyond SQLite's integers (at most {})",
                    i64::MAX
                ),
            )
        })
    }

    /// Stores `contribution` as published at `now` (ms) and deletes those older than `ttl`, or
    /// dated more than `ttl` ahead (written by hand, or before the host's clock was set back:
    /// the processes of one file share one clock, so no live instance publishes from there),
    /// in one transaction.
    fn publish_in(
        &self,
        connection: &mut Connection,
        contribution: &Contribution,
        now: i64,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let fail = |e: rusqlite::Error| failure(&self.path, &e);
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        let PerCohort { canary, stable } = &contribution.cohorts;
        let count = |field: &str, value: u64| self.signed(field, value);
        tx.execute(
            "INSERT OR REPLACE INTO contribution (gate, instance, stage, updated_at_ms,
                 canary_requests, canary_errors, canary_compliant, canary_latency,
                 stable_requests, stable_errors, stable_compliant, stable_latency)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                self.gate,
                contribution.instance,
                count("contribution.stage", contribution.stage)?,
                now,
                count("contribution.canary_requests", canary.requests)?,
                count("contribution.canary_errors", canary.errors)?,
                count("contribution.canary_compliant", canary.compliant)?,
                canary.latency,
                count("contribution.stable_requests", stable.requests)?,
                count("contribution.stable_errors", stable.errors)?,
                count("contribution.stable_compliant", stable.compliant)?,
                stable.latency,
            ],
        )
        .map_err(fail)?;
        tx.execute(
            "DELETE FROM contribution WHERE gate = ?1 AND (updated_at_ms < ?2 OR updated_at_ms > ?3)",
            params![
                self.gate,
                now.saturating_sub(millis(ttl)),
                now.saturating_add(millis(ttl))
            ],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)
    }

    /// Commits `write` if the stored version is still the one it was decided on, in one
    /// transaction (see [`StateStore::commit`]), on `open`'s file: refused as a conflict when
    /// it was decided on a state of another [`epoch`](OpenFile::epoch) (another file's).
    /// `None` when the path named another file by the time the write held the file's lock
    /// (nothing written) or had committed (written into a file no process reads any more):
    /// the write is not made, and is made again on the file the path names.
    fn commit_in(
        &self,
        open: &mut OpenFile,
        write: &StoredWrite,
    ) -> Result<Option<Commit>, StoreError> {
        let fail = |e: rusqlite::Error| failure(&self.path, &e);
        let OpenFile {
            connection,
            file,
            epoch,
        } = open;
        #[cfg(test)]
        WriteHooks::run(&self.write_hooks.before_begin);
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        // The lock may have been waited for (up to the busy timeout, another process's write)
        // while the file was removed or replaced: a write made now would land in a file no
        // process reads again. Rolled back (dropped) instead.
        if !self.still_names(*file)? {
            return Ok(None);
        }
        let stored = tx
            .query_row(
                "SELECT octet_length(version), CASE WHEN octet_length(version) <= ?2 THEN version END,
                     octet_length(stage), CASE WHEN octet_length(stage) <= ?2 THEN stage END
                 FROM release WHERE gate = ?1",
                params![self.gate, NUMBER_TEXT_BYTES],
                |row| {
                    Ok(bounded_count(row, 0, "release.version")
                        .and_then(stored_version)
                        .and_then(|version| Ok((version, bounded_count(row, 2, "release.stage")?))))
                },
            )
            .optional()
            .map_err(fail)?
            .transpose()
            .map_err(|e| self.error(StoreProblem::NotOurs, e))?
            .unwrap_or((0, 0));
        // The version and the stage: a store replaced by a copy (a backup moved over the file)
        // may hold the version the write was decided on at another stage.
        let (stored_version, stored_stage) = stored;
        // A state decided on in another file: this one may hold another state at its very
        // numbers, which tell nothing across files.
        let another_file = write.guard.of_another_file(*epoch);
        if stored_version != write.guard.version
            || (stored_version != 0 && stored_stage != write.guard.stage)
            || another_file
        {
            return Ok(Some(Commit::Conflict {
                stored_version,
                another_file,
            }));
        }
        let release = &write.release;
        if stored_version == 0 {
            // The first release: history rows left without one (a release deleted by hand)
            // are no history of it, and their versions would clash with its own.
            tx.execute("DELETE FROM history WHERE gate = ?1", [&self.gate])
                .map_err(fail)?;
        } else {
            // Rows from this write's version on are no history of the release either: a
            // later state's, left when the release was put back alone to an older version (a
            // row written by hand). Reads skip them; this write's own event takes the place
            // of the one of its version.
            tx.execute(
                "DELETE FROM history WHERE gate = ?1 AND version >= ?2",
                params![self.gate, self.signed("release.version", release.version)?],
            )
            .map_err(fail)?;
        }
        let unavailable = |e: serde_json::Error| self.error(StoreProblem::Unavailable, e);
        let config = serde_json::to_string(&release.config).map_err(unavailable)?;
        let rollbacks = optional_json(release.rollbacks.as_ref()).map_err(unavailable)?;
        let (rollout, split) = RolloutColumn::split(release.rollout);
        let rollout = optional_json(rollout.as_ref()).map_err(unavailable)?;
        let split = optional_json(split.as_ref()).map_err(unavailable)?;
        tx.execute(
            "INSERT INTO release (gate, version, stage, environment, config, rollbacks, rollout,
                                  rollout_split_from)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (gate) DO UPDATE SET
                 version = excluded.version, stage = excluded.stage,
                 environment = excluded.environment, config = excluded.config,
                 rollbacks = excluded.rollbacks, rollout = excluded.rollout,
                 rollout_split_from = excluded.rollout_split_from",
            params![
                self.gate,
                self.signed("release.version", release.version)?,
                self.signed("release.stage", release.stage)?,
                release.config.environment.to_string(),
                config,
                rollbacks,
                rollout,
                split
            ],
        )
        .map_err(fail)?;
        if let Some(event) = &write.event {
            let environment = serde_json::to_string(&event.environment)
                .map_err(|e| self.error(StoreProblem::Unavailable, e))?;
            tx.execute(
                "INSERT INTO history (gate, version, rolled_back, feature, reason, rollback_trigger, environment, timestamp_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    self.gate,
                    self.signed("history.version", event.version)?,
                    event.rolled_back,
                    event.feature,
                    event.reason,
                    event.trigger,
                    environment,
                    event.timestamp_ns
                ],
            )
            .map_err(fail)?;
        }
        let bound = i64::try_from(write.history_bound.max(1)).unwrap_or(i64::MAX);
        tx.execute(
            "DELETE FROM history WHERE gate = ?1 AND version NOT IN
                 (SELECT version FROM history WHERE gate = ?1 ORDER BY version DESC LIMIT ?2)",
            params![self.gate, bound],
        )
        .map_err(fail)?;
        #[cfg(test)]
        WriteHooks::run(&self.write_hooks.before_commit);
        tx.commit().map_err(fail)?;
        Ok(self.committed(self.still_names(*file), *epoch))
    }

    /// What a write committed in the file of `epoch` reports, by whether the path still names
    /// that file (`names`, looked at once committed). Replaced or removed since the write took
    /// the lock: the write is in the old file, lost to every process, and not reported made
    /// (`None`: made again on the new file). A look that failed tells nothing of a
    /// replacement: the write committed in the file the path named when it took the lock, and
    /// is reported made (reported unavailable, a host's promotion tried again would meet a
    /// conflict, read the state it made, and promote once more); the next call looks again.
    fn committed(&self, names: Result<bool, StoreError>, epoch: u64) -> Option<Commit> {
        match names {
            Ok(true) => Some(Commit::Written { epoch }),
            Ok(false) => None,
            Err(error) => {
                tracing::warn!(
                    store = %self.path,
                    %error,
                    "promotion.store a write committed, then the path could not be checked: reported made, in the file the path named when the write took the lock"
                );
                Some(Commit::Written { epoch })
            }
        }
    }

    /// Refuses, as a conflict, contributions to a stage of the state `known` when `open` is
    /// another file than that state's ([`Guard::of_another_file`], as a write decided on it
    /// is refused: the path's file replaced on disk since that state was read): its stage
    /// numbers are another state's, whose counts are not this stage's. The error names both
    /// epochs. `done`: what is not done to them there ("published", "read").
    fn of_the_file(&self, open: &OpenFile, known: Guard, done: &str) -> Result<(), StoreError> {
        if !known.of_another_file(open.epoch) {
            return Ok(());
        }
        Err(self.error(
            StoreProblem::Conflict,
            format!(
                "the file was replaced on disk: contributions to a stage of the file before (epoch {}, of the state the gate knows) are not {done} in the one the path names now (epoch {}), whose stage of that number is another state's (the gate follows the new file at its next read)",
                known.epoch, open.epoch
            ),
        ))
    }

    /// The live contributions to `stage` of instances other than `except` (see
    /// [`StateStore::contributions`]).
    fn contributions_in(
        &self,
        connection: &Connection,
        stage: u64,
        except: &str,
        ttl: Duration,
    ) -> Result<Vec<Result<Contribution, BadContribution>>, StoreError> {
        let fail = |e: rusqlite::Error| failure(&self.path, &e);
        let mut statement = connection
            .prepare_cached(contribution_read())
            .map_err(fail)?;
        // Live rows only: none older than the time to live, and none dated beyond it ahead.
        let now = now_ms();
        let (cutoff, ahead) = (
            now.saturating_sub(millis(ttl)),
            now.saturating_add(millis(ttl)),
        );
        let bound = i64::try_from(MAX_LATENCY_BYTES).unwrap_or(i64::MAX);
        let limit = i64::try_from(MAX_INSTANCES).unwrap_or(i64::MAX);
        let rows = statement
            .query_map(
                params![
                    self.gate,
                    self.signed("contribution.stage", stage)?,
                    except,
                    cutoff,
                    bound,
                    limit,
                    ahead,
                    i64::try_from(MAX_INSTANCE_BYTES).unwrap_or(i64::MAX),
                    NUMBER_TEXT_BYTES
                ],
                |row| Ok(contribution_of(row, stage)),
            )
            .map_err(fail)?;
        rows.map(|row| row.map_err(fail)).collect()
    }
}

/// The read of the live contributions to stage `?2` of instances other than `?3`, the newest
/// `?6` of them: each value column with its length before it (`octet_length`, which SQLite
/// answers without reading the value), the value read only within its bound (`?9` for a count,
/// `?5` for a latency blob); of an instance id above its bound (`?8`), only its first
/// characters, and its length last. Made once.
fn contribution_read() -> &'static str {
    static READ: OnceLock<String> = OnceLock::new();
    READ.get_or_init(|| {
        let bounded = |column: String, bound: &str| {
            format!("octet_length({column}), CASE WHEN octet_length({column}) <= {bound} THEN {column} END")
        };
        let cohort = |name: &str| {
            let mut columns: Vec<String> = ["requests", "errors", "compliant"]
                .iter()
                .map(|count| bounded(format!("{name}_{count}"), "?9"))
                .collect();
            columns.push(bounded(format!("{name}_latency"), "?5"));
            columns.join(",\n")
        };
        format!(
            "SELECT CASE WHEN length(CAST(instance AS BLOB)) <= ?8 THEN instance
                 ELSE substr(instance, 1, 32) END,
             {},
             {},
             length(CAST(instance AS BLOB))
             FROM contribution
             WHERE gate = ?1 AND stage = ?2 AND instance <> ?3
                 AND updated_at_ms BETWEEN ?4 AND ?7
             ORDER BY updated_at_ms DESC LIMIT ?6",
            cohort("canary"),
            cohort("stable")
        )
    })
}

impl Drop for SqliteStore {
    /// Closes the connection, without its checkpoint when the path names another file by now
    /// (see [`close_detached`]).
    fn drop(&mut self) {
        let open = self
            .open
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .current
            .take();
        if let Some(open) = open
            && !matches!(FileIdentity::of(&self.resolved), Ok(Some(now)) if now == open.file)
        {
            close_detached(open.connection);
        }
    }
}

impl StateStore for SqliteStore {
    fn location(&self) -> &str {
        &self.path
    }

    /// A state `known` of another epoch than the open file's (another file's: its numbers
    /// tell nothing of this one's) is answered as a store that went back, with this file's
    /// whole state, whatever its numbers; the state handed back carries the file's epoch, and
    /// so does a write decided on it.
    fn changes_since(&self, known: Guard) -> Result<Since, StoreError> {
        self.on_current_file(|open| {
            // One read transaction: the release and its history from the same commit.
            let tx = open
                .connection
                .transaction()
                .map_err(|e| failure(&self.path, &e))?;
            let state = if known.epoch == open.epoch {
                self.read(&tx, known, open.epoch)?
            } else {
                of_another_file(self.read(&tx, Guard::EMPTY, open.epoch)?, known)
            };
            tx.commit().map_err(|e| failure(&self.path, &e))?;
            Ok(state)
        })
    }

    /// Made on the file the path names when it holds the lock and when it has committed
    /// ([`commit_in`](Self::commit_in)): again on the new file otherwise, where a write decided
    /// on a state (the old file's, of another epoch) is refused as a conflict; the caller reads
    /// the new file's state and decides again.
    fn commit(&self, write: &StoredWrite) -> Result<Commit, StoreError> {
        write
            .numbers_checked()
            .map_err(|e| self.error(StoreProblem::NotOurs, e))?;
        let asked = Instant::now();
        let mut open = self.lock();
        for _ in 0..WRITE_ATTEMPTS {
            let file = self.follow_path(&mut open, asked)?;
            if let Some(commit) = self.commit_in(file, write)? {
                return Ok(commit);
            }
        }
        Err(self.error(
            StoreProblem::Unavailable,
            "the path named another file each time the write was made (replaced again and again): nothing was written",
        ))
    }

    fn publish(
        &self,
        contribution: &Contribution,
        known: Guard,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let fail = |e: rusqlite::Error| failure(&self.path, &e);
        self.on_current_file(|open| {
            self.of_the_file(open, known, "published")?;
            let connection = &mut open.connection;
            // A contribution is replaced every sync tick and worthless after a crash: its
            // commit does not wait for the disk (`synchronous = NORMAL`: in WAL mode the file
            // stays consistent, the last commits may be lost with the machine). Release writes
            // keep FULL.
            connection
                .pragma_update(None, "synchronous", "NORMAL")
                .map_err(fail)?;
            let published = self.publish_in(connection, contribution, now, ttl);
            let restored = connection.pragma_update(None, "synchronous", "FULL");
            published?;
            restored.map_err(fail)
        })
    }

    fn contributions(
        &self,
        known: Guard,
        except: &str,
        ttl: Duration,
    ) -> Result<Vec<Result<Contribution, BadContribution>>, StoreError> {
        self.on_current_file(|open| {
            self.of_the_file(open, known, "read")?;
            self.contributions_in(&open.connection, known.stage, except, ttl)
        })
    }
}

/// What a whole read of a file of another epoch than the one of the state `known` a process
/// knows (`read`, made as of no state known) means to that process: its numbers are another
/// file's, so this file's state, if any, is a store that went back ([`Since::Reset`]),
/// whatever its numbers. A process that knew no state reads it as any first read.
fn of_another_file(read: Since, known: Guard) -> Since {
    match read {
        Since::Newer(state) if known.version > 0 => Since::Reset(Some(state)),
        Since::Same if known.version > 0 => Since::Reset(None),
        read => read,
    }
}

/// A row of `contribution` (as selected by `contributions`) read as a contribution to
/// `stage`, or what in it is not.
fn contribution_of(row: &Row<'_>, stage: u64) -> Result<Contribution, BadContribution> {
    // An id of another type is shown as every column's value is: two such rows (the id is
    // the row's key) are two refusals, each logged once.
    let read = match row.get_ref(0) {
        Ok(ValueRef::Text(text)) => text,
        Ok(other) => {
            return Err(BadContribution::new(
                "?",
                "instance",
                unexpected(other, "text"),
            ));
        }
        Err(e) => return Err(BadContribution::new("?", "instance", e)),
    };
    let bytes = match row.get_ref(17) {
        Ok(ValueRef::Integer(n)) => usize::try_from(n).unwrap_or(usize::MAX),
        _ => read.len(),
    };
    let instance = instance_of(read, bytes)?;
    // Each value in column `at + 1`, its length in column `at`; a refusal shows the value as
    // the release's and the history's columns do, after the column's name.
    let bad = |field: &str, problem: String| BadContribution::new(&instance, field, problem);
    let count = |at: usize, field: &str| match (row.get_ref(at), row.get_ref(at + 1)) {
        (Ok(ValueRef::Integer(length)), _) if length > NUMBER_TEXT_BYTES => Err(bad(
            field,
            too_long(length, NUMBER_TEXT_BYTES, "an integer's"),
        )),
        (_, Ok(ValueRef::Integer(n))) => u64::try_from(n).map_err(|_| bad(field, negative(n))),
        (_, Ok(other)) => Err(bad(field, unexpected(other, "an integer"))),
        (_, Err(e)) => Err(bad(field, e.to_string())),
    };
    let latency = |at: usize, field: &str| match (row.get_ref(at), row.get_ref(at + 1)) {
        (_, Ok(ValueRef::Blob(bytes))) => Ok(bytes.to_vec()),
        (Ok(ValueRef::Integer(n)), Ok(ValueRef::Null)) => Err(bad(
            field,
            format!("{n} bytes is above {MAX_LATENCY_BYTES}"),
        )),
        (_, Ok(other)) => Err(bad(field, unexpected(other, "a blob"))),
        (_, Err(e)) => Err(bad(field, e.to_string())),
    };
    let cohort = |at: usize, name: &str| -> Result<PublishedCohort, BadContribution> {
        Ok(PublishedCohort {
            requests: count(at, &format!("{name}_requests"))?,
            errors: count(at + 2, &format!("{name}_errors"))?,
            compliant: count(at + 4, &format!("{name}_compliant"))?,
            latency: latency(at + 6, &format!("{name}_latency"))?,
        })
    };
    Ok(Contribution {
        stage,
        cohorts: PerCohort {
            canary: cohort(1, "canary")?,
            stable: cohort(9, "stable")?,
        },
        instance: instance.clone(),
    })
}

/// `value` as an optional JSON column holds it: `None` (NULL) for `None`.
fn optional_json<T: serde::Serialize>(value: Option<&T>) -> serde_json::Result<Option<String>> {
    value.map(serde_json::to_string).transpose()
}

/// The JSON column `field`'s `text` (`None`: NULL) read as `what` it holds, or why not,
/// naming the field and the value.
fn json_column<T: serde::de::DeserializeOwned>(
    text: Option<String>,
    field: &str,
    what: &str,
) -> Result<Option<T>, String> {
    text.map(|text| {
        stored_json(text.as_bytes(), "")
            .map_err(|e| format!("{field} = {}: not {what} ({e})", quoted(&text)))
    })
    .transpose()
}

/// A release's rollout as its `rollout` column holds it: only what a build before
/// `split_from` reads (whose rollout refuses a field it does not know), so that a file this
/// build writes stays readable to it; the rollout's first stage at its split has a column of
/// its own ([`SplitColumn`]).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutColumn {
    version: u64,
    started: u64,
}

/// The first stage of a release's rollout at its split and salt
/// ([`StoredRollout::split_from`](super::StoredRollout::split_from)) as its
/// `rollout_split_from` column holds it: as of the write of `version`, as the rollout is. A
/// build before it leaves the column as it was when it writes the row, as of an older version
/// than the rollout's, or beside a NULL rollout (which it writes when it knows none): it then
/// tells nothing, and is ignored ([`rollout_of`]).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitColumn {
    version: u64,
    split_from: u64,
}

impl RolloutColumn {
    /// `rollout` as the two columns hold it (each `None`: NULL).
    fn split(rollout: Option<super::StoredRollout>) -> (Option<Self>, Option<SplitColumn>) {
        let Some(rollout) = rollout else {
            return (None, None);
        };
        let split = rollout.split_from.map(|split_from| SplitColumn {
            version: rollout.version,
            split_from,
        });
        (
            Some(Self {
                version: rollout.version,
                started: rollout.started,
            }),
            split,
        )
    }
}

/// The rollout of the release of `version` at `stage` from the texts of its `rollout` and
/// `rollout_split_from` columns (each `None`: NULL), or why not, naming the field and the
/// value: its first stage at its split is known when the split column is as of the rollout's
/// version. A split column as of another version (an older one: a build before `split_from`
/// wrote the row since) or beside a NULL rollout (a build before `split_from` that knew no
/// rollout wrote NULL there) tells nothing and is left unread, but it is checked as any value
/// is: as of at most the release's version, `split_from` from 1 to the release's stage, which
/// every write's stage keeps (the stage only grows). (The rollout itself is checked with the
/// release, [`StoredRelease::checked`].)
fn rollout_of(
    rollout: Option<String>,
    split: Option<String>,
    (version, stage): (u64, u64),
) -> Result<Option<super::StoredRollout>, String> {
    let rollout: Option<RolloutColumn> = json_column(rollout, "release.rollout", "a rollout")?;
    let split: Option<SplitColumn> = json_column(
        split,
        "release.rollout_split_from",
        "a rollout's first stage at its split",
    )?;
    if let Some(split) = split {
        if split.version > version {
            return Err(format!(
                "release.rollout_split_from.version = {}: at most the release's version \
                 {version} (the write that stored it)",
                split.version
            ));
        }
        checked_split_from(
            split.split_from,
            stage,
            "release.rollout_split_from.split_from",
        )?;
    }
    Ok(rollout.map(|rollout| super::StoredRollout {
        version: rollout.version,
        started: rollout.started,
        split_from: split
            .filter(|split| split.version == rollout.version)
            .map(|split| split.split_from),
    }))
}

/// The texts of a release row: its config, its rollback counts, its rollout and the rollout's
/// first stage at its split (each `None`: a row written before it was stored).
type ReleaseTexts = (String, Option<String>, Option<String>, Option<String>);

/// A row of `release` as selected by `read` (version, stage, the lengths of its config, rollback
/// counts, rollout and split, and their texts when read), or which column holds what instead. The texts
/// are their own result: they are checked only when the release is not the one known
/// (`Since::read_after`).
fn release_of(row: &Row<'_>) -> Result<(u64, u64, Result<ReleaseTexts, String>), String> {
    let texts = || {
        let config = bounded_text(
            row,
            4,
            "release.config",
            (MAX_DOCUMENT_BYTES, "MAX_DOCUMENT_BYTES"),
        )?;
        let optional = |at: usize, field: &str, limit: (usize, &str)| match row.get_ref(at) {
            Ok(ValueRef::Null) => Ok(None),
            _ => bounded_text(row, at, field, limit).map(Some),
        };
        let rollbacks = optional(
            6,
            "release.rollbacks",
            (MAX_STORED_COUNTS_BYTES, "MAX_STORED_COUNTS_BYTES"),
        )?;
        let rollout = optional(
            8,
            "release.rollout",
            (MAX_STORED_ROLLOUT_BYTES, "MAX_STORED_ROLLOUT_BYTES"),
        )?;
        let split = optional(
            10,
            "release.rollout_split_from",
            (MAX_STORED_ROLLOUT_BYTES, "MAX_STORED_ROLLOUT_BYTES"),
        )?;
        Ok((config, rollbacks, rollout, split))
    };
    Ok((
        bounded_count(row, 0, "release.version").and_then(stored_version)?,
        bounded_count(row, 2, "release.stage")?,
        texts(),
    ))
}

/// Adds the columns of the `release` table a file made before them lacks: `rollbacks` (the
/// rollback counts; its rows keep `NULL`: their history is counted instead), `rollout` (its
/// rows keep `NULL`: a rollback waiting to be written counts stages instead) and
/// `rollout_split_from` (its rows keep `NULL`: the rollout's first stage at its split is not
/// known, and stages are counted instead). A file without the table is left to
/// [`SqliteStore::check_tables`], which names it.
fn add_release_columns(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    for column in ["rollbacks", "rollout", "rollout_split_from"] {
        let missing: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'release')
                 AND NOT EXISTS (SELECT 1 FROM pragma_table_info('release') WHERE name = ?1)",
            [column],
            |row| row.get(0),
        )?;
        if missing {
            tx.execute_batch(&format!("ALTER TABLE release ADD COLUMN {column} TEXT"))?;
        }
    }
    Ok(())
}

/// The most bytes an integer column is read with (`octet_length`, as text): an integer's
/// decimal form is at most 20 bytes; a value of another type up to this length is read and
/// shown in its error, a longer one is refused by its length alone, never read whole (a hand
/// edit may put 200 MB of text in a version, which every sync tick would otherwise read).
const NUMBER_TEXT_BYTES: i64 = MAX_SHOWN_VALUE_BYTES as i64;

/// Column `at + 1` of `row` as a count, selected only when its length (column `at`) is at
/// most [`NUMBER_TEXT_BYTES`] (see [`bounded_text`]).
fn bounded_count(row: &Row<'_>, at: usize, column: &str) -> Result<u64, String> {
    refuse_longer(row, at, column, (NUMBER_TEXT_BYTES, "an integer's"))?;
    count(row, at + 1, column)
}

/// Column `at + 1` of `row` as an integer, selected as [`bounded_count`]'s.
fn bounded_integer(row: &Row<'_>, at: usize, column: &str) -> Result<i64, String> {
    refuse_longer(row, at, column, (NUMBER_TEXT_BYTES, "an integer's"))?;
    integer(row, at + 1, column)
}

/// An error when the length in column `at` (from `octet_length`, which SQLite answers without
/// reading the value) is above `limit` (and the limit's name): the value was not selected.
fn refuse_longer(
    row: &Row<'_>,
    at: usize,
    column: &str,
    (limit, name): (i64, &str),
) -> Result<(), String> {
    match row.get_ref(at) {
        Ok(ValueRef::Integer(length)) if length > limit => {
            Err(format!("{column} = {}", too_long(length, limit, name)))
        }
        _ => Ok(()),
    }
}

/// A value of `length` bytes above a read's `limit` (and the limit's name) as a refusal shows
/// it, after the column's name.
fn too_long(length: i64, limit: i64, name: &str) -> String {
    format!("({length} bytes): more than a read takes, {limit} bytes ({name})")
}

/// The lowest history version of gate `?1` at or below 0 (with its length, as
/// [`count`]'s column), if any: no write makes one (a file edited by hand), and the read
/// refuses it before [`HISTORY_READ`], which would come to it last, if at all (the newest
/// `max_rollback_history` rows end the read). One search of the primary key.
const HISTORY_UNNUMBERED: &str = "SELECT version FROM history WHERE gate = ?1 AND version <= 0
    ORDER BY version LIMIT 1";

/// The refusal of `row`, a history row [`HISTORY_UNNUMBERED`] found, beside a release of
/// `version`, naming its version.
fn unnumbered(row: &Row<'_>, version: u64) -> String {
    match count(row, 0, "history.version") {
        Ok(found) => {
            format!("invalid history.version = {found}: from 1 to the release's version {version}")
        }
        Err(refused) => refused,
    }
}

/// The read of the newest history events after version `?2` up to the release's version `?6`,
/// at most `?3` of them, each column with its length before it, read only within `?4` bytes
/// ([`HISTORY_TEXT_BYTES`]) for text and `?5` ([`NUMBER_TEXT_BYTES`]) for the timestamp. Rows
/// whose version is not a number (text or a blob, which SQLite orders after every number; no
/// write makes one: a file edited by hand) are selected too, as the newest, so that the read
/// refuses them naming their version rather than skipping them (rows at or below 0 are refused
/// before, [`HISTORY_UNNUMBERED`], whatever the limit). Rows above the release's version are
/// not the release's history: a later state's, left when the release was put back alone to an
/// older version (a restored row, one written by hand); the next write deletes them. Two
/// ranges of the primary key, merged (SQLite's plan `MERGE (UNION ALL)`): however many rows
/// the gate has, the read visits only those it returns.
const HISTORY_READ: &str = "SELECT version,
        octet_length(rolled_back), CASE WHEN octet_length(rolled_back) <= ?4 THEN rolled_back END,
        octet_length(feature), CASE WHEN octet_length(feature) <= ?4 THEN feature END,
        octet_length(reason), CASE WHEN octet_length(reason) <= ?4 THEN reason END,
        octet_length(rollback_trigger),
        CASE WHEN octet_length(rollback_trigger) <= ?4 THEN rollback_trigger END,
        octet_length(environment), CASE WHEN octet_length(environment) <= ?4 THEN environment END,
        octet_length(timestamp_ns), CASE WHEN octet_length(timestamp_ns) <= ?5 THEN timestamp_ns END
    FROM (SELECT * FROM history WHERE gate = ?1 AND version > ?2 AND version <= ?6
        UNION ALL SELECT * FROM history WHERE gate = ?1 AND version >= '')
    ORDER BY version DESC LIMIT ?3";

/// A column of the schema, as `pragma_table_info` describes it.
struct Column {
    table: String,
    name: String,
    /// Its declared type, as written in `CREATE TABLE`.
    declared: String,
    /// Its place in the primary key, from 1; 0 when it is not part of it.
    key: i64,
    /// Whether it is declared `NOT NULL`.
    not_null: bool,
}

/// A column's place in the primary key and whether it takes NULL, as an error names them.
fn key_place(key: i64, not_null: bool) -> String {
    let nulls = if not_null { "NOT NULL" } else { "NULL allowed" };
    if key == 0 {
        format!("not in the primary key, {nulls}")
    } else {
        format!("primary key column {key}, {nulls}")
    }
}

/// The most bytes a history event's text column is read with: one above the longest reason a
/// store takes, so that a reason just too long is still read and refused by its own check
/// (naming `MAX_REASON_BYTES`); a longer value of any column is refused by its length alone.
const HISTORY_TEXT_BYTES: usize = MAX_REASON_BYTES + 1;

/// A row of `history` as selected by `read` ([`HISTORY_READ`]), or which column holds
/// what instead.
fn event_of(row: &Row<'_>) -> Result<StoredEvent, String> {
    let text = |at: usize, column: &str| {
        bounded_text(
            row,
            at,
            column,
            (HISTORY_TEXT_BYTES, "MAX_REASON_BYTES + 1"),
        )
    };
    let environment = text(9, "history.environment")?;
    Ok(StoredEvent {
        version: count(row, 0, "history.version")?,
        rolled_back: text(1, "history.rolled_back")?,
        feature: text(3, "history.feature")?,
        reason: text(5, "history.reason")?,
        trigger: text(7, "history.rollback_trigger")?,
        environment: stored_json(environment.as_bytes(), "")
            .map_err(|e| format!("history.environment = {}: {e}", quoted(&environment)))?,
        timestamp_ns: bounded_integer(row, 11, "history.timestamp_ns")?,
    })
}

/// Column `at + 1` of `row` as UTF-8 text, selected only when its length (column `at`, from
/// `octet_length`, which SQLite answers without reading the value) is at most `limit` bytes
/// (and the limit's name); a longer value is refused by its length, never read whole.
fn bounded_text(
    row: &Row<'_>,
    at: usize,
    column: &str,
    (limit, name): (usize, &str),
) -> Result<String, String> {
    refuse_longer(
        row,
        at,
        column,
        (i64::try_from(limit).unwrap_or(i64::MAX), name),
    )?;
    text(row, at + 1, column)
}

/// Column `at` of `row` as an integer, or what `column` holds instead (a column's declared
/// type does not stop a hand-made value of another: `'x'` in an INTEGER column stays text).
fn integer(row: &Row<'_>, at: usize, column: &str) -> Result<i64, String> {
    match row.get_ref(at) {
        Ok(ValueRef::Integer(n)) => Ok(n),
        other => Err(wrong_type(column, other, "an integer")),
    }
}

/// Column `at` of `row` as a count (an integer, not negative), or what `column` holds instead.
fn count(row: &Row<'_>, at: usize, column: &str) -> Result<u64, String> {
    let n = integer(row, at, column)?;
    u64::try_from(n).map_err(|_| format!("{column} = {}", negative(n)))
}

/// A negative `n` where a count is expected, as a refusal shows it after the column's name.
fn negative(n: i64) -> String {
    format!("{n}: negative, where a count is expected")
}

/// Column `at` of `row` as UTF-8 text, or what `column` holds instead.
fn text(row: &Row<'_>, at: usize, column: &str) -> Result<String, String> {
    match row.get_ref(at) {
        Ok(ValueRef::Text(bytes)) => std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| wrong_type(column, Ok(ValueRef::Text(bytes)), &format!("UTF-8 ({e})"))),
        other => Err(wrong_type(column, other, "text")),
    }
}

/// `column = value (type): expected ...`: the value shown as SQLite writes it (shortened),
/// and its type as `typeof()` names it.
fn wrong_type(column: &str, value: rusqlite::Result<ValueRef<'_>>, expected: &str) -> String {
    match value {
        Ok(value) => format!("{column} = {}", unexpected(value, expected)),
        Err(e) => format!("{column}: {e}"),
    }
}

/// `value (type): expected ...`, as [`wrong_type`] shows a value after the column's name.
fn unexpected(value: ValueRef<'_>, expected: &str) -> String {
    let (shown, kind) = match value {
        ValueRef::Null => ("NULL".to_string(), "null"),
        ValueRef::Integer(n) => (n.to_string(), "integer"),
        ValueRef::Real(x) => (x.shown(), "real"),
        ValueRef::Text(bytes) => (quoted(&String::from_utf8_lossy(bytes)), "text"),
        ValueRef::Blob(bytes) => {
            let hex: String = bytes.iter().take(16).map(|b| format!("{b:02x}")).collect();
            let more = if bytes.len() > 16 { "..." } else { "" };
            (format!("x'{hex}'{more}({} bytes)", bytes.len()), "blob")
        }
    };
    format!("{shown} ({kind}): expected {expected}")
}

/// Wall-clock milliseconds since the Unix epoch: contributions' `updated_at_ms` (0 before it).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Puts the file in WAL mode and returns the journal mode it is in. Several processes opening
/// one new file at once (the workers of a proxy starting together) contend for the lock this
/// takes, and SQLite answers `SQLITE_BUSY` at once there instead of calling the busy handler
/// (which would deadlock); so the change is retried, with a growing pause, for as long as the
/// busy timeout allows.
fn wal_mode(connection: &Connection, busy_timeout: Duration) -> rusqlite::Result<String> {
    let deadline = std::time::Instant::now() + busy_timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match connection.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0)) {
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) && std::time::Instant::now() + pause < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

/// What SQLite is given to open the file `path` names: the path itself, but for one starting
/// with `file:` (in lower case, as SQLite looks for it), which SQLite would read as a URI (the
/// bundled SQLite is built with `SQLITE_USE_URI`, which no flag of a connection turns off):
/// `file:gate.db?mode=ro` would open `gate.db`, read-only; and for one starting with `:`, which
/// SQLite reserves for special names: `:memory:` would open a database in memory, which a
/// store cannot be (no other process shares it, and it cannot be put in WAL mode). Such a path
/// is relative, so it is given as `./file:...` or `./:...`, the same file, which SQLite reads
/// as a file name (as SQLite's own docs advise for a file name starting with `:`).
fn file_name(path: &str) -> std::borrow::Cow<'_, str> {
    if path.starts_with("file:") || path.starts_with(':') {
        format!("./{path}").into()
    } else {
        path.into()
    }
}

/// Whose file `connection` is on: its application id (ours is [`APPLICATION_ID`], 0 when none
/// was set) and how many entries its schema holds (0 in an empty or new file). Only reads it.
fn owner(connection: &Connection) -> rusqlite::Result<(i32, i64)> {
    let application_id = connection.pragma_query_value(None, "application_id", |row| row.get(0))?;
    let tables =
        connection.query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))?;
    Ok((application_id, tables))
}

/// Closes a connection to a file the path may no longer name, without the checkpoint SQLite
/// makes when the last connection to a file in WAL mode closes: that checkpoint writes into a
/// file no process opens again, then deletes the `-wal` and `-shm` files *by path*, which by
/// now may be those of the file that replaced it, under its connections' feet. SQLite skips it
/// when its own look at the path (at closing) finds the file moved; this does not depend on
/// that look. The file left is not written at all (its last commits stay in its log).
fn close_detached(connection: Connection) {
    if let Err(error) = connection.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true) {
        tracing::warn!(%error, "promotion.store cannot close a file the path may no longer name without its checkpoint");
    }
    if let Err((_, error)) = connection.close() {
        tracing::warn!(%error, "promotion.store closing a file the path may no longer name failed");
    }
}

/// Sorts SQLite's failures: a file that is not a database (or a damaged one) is not ours and
/// will not get better; anything else (locked, I/O, cannot open) may.
fn failure(path: &str, error: &rusqlite::Error) -> StoreError {
    use rusqlite::Error::{FromSqlConversionFailure, IntegralValueOutOfRange, InvalidColumnType};
    let problem = match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreProblem::NotOurs,
        // A table or a column gone from the file while a gate has it open (dropped by hand):
        // retrying cannot help. SQLite's message names it.
        Some(ErrorCode::Unknown)
            if error.to_string().starts_with("no such table")
                || error.to_string().starts_with("no such column") =>
        {
            StoreProblem::NotOurs
        }
        // A value of another type than its column's (the columns are read through `integer`
        // and `text`, which name the value; this is what any other read would meet).
        None if matches!(
            error,
            InvalidColumnType(..) | FromSqlConversionFailure(..) | IntegralValueOutOfRange(..)
        ) =>
        {
            StoreProblem::NotOurs
        }
        _ => StoreProblem::Unavailable,
    };
    StoreError::new(path, problem, error)
}

#[cfg(test)]
mod tests;
