//! One connection's state: its settings (`SET`/`SHOW`/`RESET`), its transaction block
//! (`BEGIN`/`COMMIT`/`ROLLBACK`), its SQL-level prepared statements (`PREPARE`/`EXECUTE`/
//! `DEALLOCATE`) and the statement it is running (for cancel requests, disconnects and
//! timeouts).
//!
//! Transaction blocks and their transactions are described in `block.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use datafusion::sql::parser::Statement as DfStatement;
use omendb::{CancelReason, Interrupt};

use pgwire::error::{PgWireError, PgWireResult};
use tokio::sync::OwnedSemaphorePermit;

use super::block::{Block, BlockState};
use super::sqlstate;

/// The parameters `SHOW` reports and `SET` may change, with their defaults (as PostgreSQL
/// reports them; drivers read several at connect).
/// `PREPARE`d statements one session may hold.
pub const MAX_SQL_PREPARED: usize = 1000;
/// Their text together, in bytes.
pub const MAX_SQL_PREPARED_BYTES: usize = 16 << 20;
/// Custom settings (`SET myapp.x = ...`) one session may hold, and their bytes together.
pub const MAX_CUSTOM_SETTINGS: usize = 256;
/// The bytes of one session's settings together.
pub const MAX_SETTINGS_BYTES: usize = 1 << 20;
/// What the queries of one session's open portals may hold together (each suspended portal
/// keeps the batches its query computed ahead: 110 to 580 MB each were seen) before the
/// session may start another query.
pub const MAX_OPEN_QUERY_BYTES: usize = 512 << 20;

const PARAMETERS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("client_encoding", "UTF8"),
    ("client_min_messages", "notice"),
    ("datestyle", "ISO, MDY"),
    ("default_transaction_isolation", "repeatable read"),
    ("default_transaction_read_only", "off"),
    ("extra_float_digits", "1"),
    ("idle_in_transaction_session_timeout", "0"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("lock_timeout", "0"),
    ("max_identifier_length", "63"),
    ("search_path", "\"$user\", public"),
    ("server_encoding", "UTF8"),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("timezone", "UTC"),
    ("transaction_isolation", "repeatable read"),
    ("transaction_read_only", "off"),
];

/// Parameters `SHOW` reports but `SET` may not change.
const READ_ONLY: &[&str] = &[
    "integer_datetimes",
    "max_identifier_length",
    "server_encoding",
    "server_version",
    "transaction_isolation",
];

/// A setting's name and its value before a change (`None`: unset).
type SettingUndo = (String, Option<String>);

/// Bytes of setting changes one block keeps for `ROLLBACK TO`.
const MAX_SETTINGS_UNDO_BYTES: usize = 16 << 20;

/// The settings before a block changed them, and the names it set with `SET LOCAL`.
type SavedSettings = (BTreeMap<String, String>, BTreeSet<String>);

/// One connection's state.
#[derive(Debug)]
pub struct Session {
    settings: Mutex<BTreeMap<String, String>>,
    /// The transaction block, if one is open.
    pub transaction_block: Block,
    /// Warnings for the client, sent before the answer of the message that raised them.
    warnings: Mutex<Vec<String>>,
    /// Whether the message being handled is followed by a Sync the server already holds.
    sync_next: AtomicBool,
    /// The settings as they were before the open block first changed one, and the names it
    /// set with `SET LOCAL`: restored when it ends (all of them if it rolls back).
    block_settings: Mutex<Option<SavedSettings>>,
    /// The open block's setting changes, to undo at `ROLLBACK TO`: each changed name with
    /// its value before (`None`: unset), and their bytes together.
    settings_undo: Mutex<(Vec<SettingUndo>, usize)>,
    /// For each savepoint of the open block, oldest first, the length of `settings_undo`
    /// when it was set.
    savepoint_undo: Mutex<Vec<usize>>,
    running: Mutex<Option<Interrupt>>,
    /// Each with the bytes of its text.
    prepared: Mutex<HashMap<String, (DfStatement, usize)>>,
    default_timeout: Duration,
    /// Statements running in all sessions of the server.
    active: Arc<AtomicUsize>,
    /// The connection's slot: a login slot until it logs in, then a session slot.
    slot: Mutex<Option<OwnedSemaphorePermit>>,
    logged_in: AtomicBool,
    password_messages: AtomicUsize,
    /// Portals whose write ran to its end (by their state, which lives as long as they do).
    finished_writes: Mutex<Vec<std::sync::Weak<PortalState>>>,
    /// The queries this session started that may still hold memory (a suspended portal's).
    open_queries: Mutex<Vec<omendb::WeakInterrupt>>,
}

/// pgwire's execution state of a portal, which identifies it.
pub type PortalState = tokio::sync::Mutex<pgwire::api::portal::PortalExecutionState>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Session {
    /// A new session whose `statement_timeout` starts at `default_timeout` (zero: none).
    pub fn new(default_timeout: Duration, active: Arc<AtomicUsize>) -> Self {
        let session = Self {
            settings: Mutex::new(BTreeMap::new()),
            transaction_block: Block::default(),
            warnings: Mutex::new(Vec::new()),
            sync_next: AtomicBool::new(false),
            block_settings: Mutex::new(None),
            settings_undo: Mutex::new((Vec::new(), 0)),
            savepoint_undo: Mutex::new(Vec::new()),
            running: Mutex::new(None),
            prepared: Mutex::new(HashMap::new()),
            default_timeout,
            active,
            slot: Mutex::new(None),
            logged_in: AtomicBool::new(false),
            finished_writes: Mutex::new(Vec::new()),
            open_queries: Mutex::new(Vec::new()),
            password_messages: AtomicUsize::new(0),
        };
        session.reset_all();
        session
    }

    /// Holds `slot` (a login slot) for the connection until it logs in.
    pub fn hold(&self, slot: OwnedSemaphorePermit) {
        *lock(&self.slot) = Some(slot);
    }

    /// The connection ended: its slot is free for the next one (statements still finishing
    /// may hold the session a moment longer).
    pub fn release_slot(&self) {
        lock(&self.slot).take();
    }

    /// The client logged in: its login slot is released for `slot`, a session slot.
    pub fn logged_in(&self, slot: OwnedSemaphorePermit) {
        *lock(&self.slot) = Some(slot);
        self.logged_in.store(true, Ordering::SeqCst);
    }

    /// Counts a password message; whether it is the connection's first.
    pub fn first_password_message(&self) -> bool {
        self.password_messages.fetch_add(1, Ordering::SeqCst) == 0
    }

    /// Whether the client has logged in.
    pub fn is_logged_in(&self) -> bool {
        self.logged_in.load(Ordering::SeqCst)
    }

    fn reset_all(&self) {
        let mut settings = lock(&self.settings);
        settings.clear();
        for (name, value) in PARAMETERS {
            settings.insert((*name).to_string(), (*value).to_string());
        }
        settings.insert(
            "statement_timeout".into(),
            format!("{}", self.default_timeout.as_millis()),
        );
        settings.insert("server_version".into(), super::SERVER_VERSION.to_string());
    }

    /// The statement timeout in force (`None`: no limit).
    pub fn statement_timeout(&self) -> Option<Duration> {
        let settings = lock(&self.settings);
        let value = settings.get("statement_timeout")?;
        parse_duration(value).ok().filter(|d| !d.is_zero())
    }

    /// How long the session may sit idle inside a transaction block before it is closed
    /// (`idle_in_transaction_session_timeout`; `None`: outside a block, or no limit).
    pub fn idle_in_transaction_limit(&self) -> Option<Duration> {
        self.block()?;
        let settings = lock(&self.settings);
        let value = settings.get("idle_in_transaction_session_timeout")?;
        parse_duration(value).ok().filter(|d| !d.is_zero())
    }

    /// `SET name = value`.
    pub fn set(&self, name: &str, value: String) -> PgWireResult<()> {
        let name = name.to_ascii_lowercase();
        let known = PARAMETERS.iter().any(|(n, _)| *n == name) || READ_ONLY.contains(&&*name);
        if !known {
            // Unknown parameters are refused, as PostgreSQL does, unless they name a
            // namespace (`myapp.setting`), which PostgreSQL accepts as a custom variable.
            if !name.contains('.') {
                return Err(unrecognized(&name));
            }
        } else if READ_ONLY.contains(&&*name) {
            return Err(sqlstate::error(
                "55P02",
                format!("parameter \"{name}\" cannot be changed"),
            ));
        }
        if name == "default_transaction_isolation" {
            let level = value.trim().to_ascii_lowercase();
            if !matches!(
                level.as_str(),
                "read committed" | "read uncommitted" | "repeatable read" | "default"
            ) {
                return Err(sqlstate::error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!(
                        "isolation level {value:?} is not supported: OmenDB runs transactions \
                         under snapshot isolation (REPEATABLE READ), where write skew is possible"
                    ),
                ));
            }
        }
        honoured(&name, &value)?;
        if name == "timezone" && !is_time_zone(&value) {
            return Err(sqlstate::error(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!("invalid value for parameter \"TimeZone\": \"{value}\""),
            ));
        }
        if name == "statement_timeout" || name == "idle_in_transaction_session_timeout" {
            let timeout = parse_duration(&value).map_err(|reason| {
                sqlstate::error(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    format!("invalid value for parameter \"{name}\": {value:?} ({reason})"),
                )
            })?;
            lock(&self.settings).insert(name, timeout.as_millis().to_string());
            return Ok(());
        }
        let mut settings = lock(&self.settings);
        let custom = settings.keys().filter(|n| n.contains('.')).count();
        let bytes: usize = settings.iter().map(|(n, v)| n.len() + v.len()).sum();
        let new = !settings.contains_key(&name);
        if (new && name.contains('.') && custom >= MAX_CUSTOM_SETTINGS)
            || bytes + name.len() + value.len() > MAX_SETTINGS_BYTES
        {
            return Err(sqlstate::error(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "too many settings in this session: at most {MAX_CUSTOM_SETTINGS} custom \
                     ones of {} KiB together; RESET some first",
                    MAX_SETTINGS_BYTES >> 10
                ),
            ));
        }
        settings.insert(name, value);
        Ok(())
    }

    /// `SHOW name` (`None` for `SHOW ALL`): the rows (name, value).
    pub fn show(&self, name: Option<&str>) -> PgWireResult<Vec<(String, String)>> {
        let settings = lock(&self.settings);
        match name.map(str::to_ascii_lowercase) {
            None => Ok(settings
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect()),
            Some(name) => {
                let key = match name.as_str() {
                    "transaction isolation level" => "transaction_isolation",
                    "time zone" => "timezone",
                    other => other,
                };
                if key == "transaction_read_only" {
                    drop(settings);
                    let on = if self.read_only() { "on" } else { "off" };
                    return Ok(vec![(name, on.to_string())]);
                }
                let value = settings.get(key).ok_or_else(|| unrecognized(&name))?;
                let value =
                    if key == "statement_timeout" || key == "idle_in_transaction_session_timeout" {
                        show_duration(value)
                    } else {
                        value.clone()
                    };
                Ok(vec![(name, value)])
            }
        }
    }

    /// `RESET name` (`None`: `RESET ALL`).
    pub fn reset(&self, name: Option<&str>) -> PgWireResult<()> {
        let Some(name) = name.map(str::to_ascii_lowercase) else {
            self.reset_all();
            return Ok(());
        };
        if name == "statement_timeout" {
            lock(&self.settings).insert(name, self.default_timeout.as_millis().to_string());
            return Ok(());
        }
        match PARAMETERS.iter().find(|(n, _)| *n == name) {
            Some((_, default)) => {
                lock(&self.settings).insert(name, (*default).to_string());
                Ok(())
            }
            None if name.contains('.') => {
                lock(&self.settings).remove(&name);
                Ok(())
            }
            None => Err(unrecognized(&name)),
        }
    }

    /// Whether the portal of `state` ran a write to its end: as PostgreSQL, it cannot be
    /// run again (pgwire would run the write once more on each Execute).
    pub fn write_finished(&self, state: &Arc<PortalState>) -> bool {
        lock(&self.finished_writes)
            .iter()
            .any(|w| w.upgrade().is_some_and(|s| Arc::ptr_eq(&s, state)))
    }

    /// Notes that the portal of `state` ran its write to its end.
    pub fn finish_write(&self, state: &Arc<PortalState>) {
        let mut finished = lock(&self.finished_writes);
        finished.retain(|w| w.strong_count() > 0);
        finished.push(Arc::downgrade(state));
    }

    /// The open transaction block's state, if one is open.
    pub fn block(&self) -> Option<BlockState> {
        self.transaction_block.state()
    }

    /// `SET [LOCAL] name = value`, as PostgreSQL: inside a block the change is undone if the
    /// block rolls back, and a `LOCAL` one when it ends; `SET LOCAL` outside a block changes
    /// nothing (with a warning).
    pub fn set_scoped(&self, name: &str, value: String, local: bool) -> PgWireResult<()> {
        if self.block().is_none() {
            if local {
                self.warn("SET LOCAL can only be used in transaction blocks");
                return Ok(());
            }
            return self.set(name, value);
        }
        self.save_settings(local.then_some(name));
        self.undoable(|| self.set(name, value))
    }

    /// `RESET`, undone like a `SET` if the open block rolls back.
    pub fn reset_scoped(&self, name: Option<&str>) -> PgWireResult<()> {
        if self.block().is_none() {
            return self.reset(name);
        }
        self.save_settings(None);
        self.undoable(|| self.reset(name))
    }

    /// Runs `change` of the settings in the open block, noting what it changed for
    /// `ROLLBACK TO` (at most [`MAX_SETTINGS_UNDO_BYTES`] per block: beyond, `54000`).
    fn undoable(&self, change: impl FnOnce() -> PgWireResult<()>) -> PgWireResult<()> {
        let before = lock(&self.settings).clone();
        change()?;
        let settings = lock(&self.settings);
        let mut undo = lock(&self.settings_undo);
        let names = before.keys().chain(settings.keys());
        let changed: BTreeSet<&String> = names
            .filter(|name| before.get(*name) != settings.get(*name))
            .collect();
        for name in changed {
            let previous = before.get(name).cloned();
            undo.1 += name.len() + previous.as_ref().map_or(0, String::len);
            undo.0.push((name.clone(), previous));
        }
        if undo.1 > MAX_SETTINGS_UNDO_BYTES {
            return Err(sqlstate::error(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "too many setting changes in this transaction block: they keep more than \
                     {} MiB for ROLLBACK TO; end the block",
                    MAX_SETTINGS_UNDO_BYTES >> 20
                ),
            ));
        }
        Ok(())
    }

    /// `SAVEPOINT name`: also the point `ROLLBACK TO` takes the settings back to.
    pub fn savepoint(&self, name: String) -> PgWireResult<()> {
        self.transaction_block.savepoint(name)?;
        let at = lock(&self.settings_undo).0.len();
        lock(&self.savepoint_undo).push(at);
        Ok(())
    }

    /// `RELEASE name`.
    pub fn release(&self, name: &str) -> PgWireResult<()> {
        let at = self.transaction_block.release(name)?;
        lock(&self.savepoint_undo).truncate(at);
        Ok(())
    }

    /// `ROLLBACK TO name`: the writes and the settings changed since are undone.
    pub fn rollback_to(&self, name: &str) -> PgWireResult<()> {
        let at = self.transaction_block.rollback_to(name)?;
        let mut points = lock(&self.savepoint_undo);
        let Some(&length) = points.get(at) else {
            return Ok(());
        };
        points.truncate(at + 1);
        let mut undo = lock(&self.settings_undo);
        let mut settings = lock(&self.settings);
        while undo.0.len() > length {
            let Some((name, previous)) = undo.0.pop() else {
                break;
            };
            undo.1 -= name.len() + previous.as_ref().map_or(0, String::len);
            match previous {
                Some(value) => settings.insert(name, value),
                None => settings.remove(&name),
            };
        }
        Ok(())
    }

    /// Keeps the settings as they were before the open block changed one.
    fn save_settings(&self, local: Option<&str>) {
        let mut saved = lock(&self.block_settings);
        let (_, locals) =
            saved.get_or_insert_with(|| (lock(&self.settings).clone(), BTreeSet::new()));
        if let Some(name) = local {
            locals.insert(name.to_ascii_lowercase());
        }
    }

    /// The open block ended: its `SET LOCAL`s are undone, and every change if it rolled
    /// back (`committed` false).
    fn restore_settings(&self, committed: bool) {
        *lock(&self.settings_undo) = (Vec::new(), 0);
        lock(&self.savepoint_undo).clear();
        let Some((saved, locals)) = lock(&self.block_settings).take() else {
            return;
        };
        let mut settings = lock(&self.settings);
        if !committed {
            *settings = saved;
            return;
        }
        for name in locals {
            match saved.get(&name) {
                Some(value) => settings.insert(name, value.clone()),
                None => settings.remove(&name),
            };
        }
    }

    /// Ends the open block, committing it unless it failed (see [`Block::finish`]); its
    /// settings are restored as PostgreSQL restores them.
    pub async fn finish_block(&self) -> Option<Result<BlockState, omendb::Error>> {
        let finished = self.transaction_block.finish().await?;
        self.restore_settings(matches!(finished, Ok(state) if !state.failed));
        Some(finished)
    }

    /// Ends the open block, applying nothing of it.
    pub fn rollback_block(&self) {
        if self.transaction_block.take().is_some() {
            self.restore_settings(false);
        }
    }

    /// Whether writes are refused: in a `READ ONLY` block, or outside a block when
    /// `default_transaction_read_only` is on.
    pub fn read_only(&self) -> bool {
        match self.block() {
            Some(block) => block.read_only,
            None => self.default_read_only(),
        }
    }

    /// `default_transaction_read_only`.
    pub fn default_read_only(&self) -> bool {
        lock(&self.settings)
            .get("default_transaction_read_only")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "on" | "true" | "1" | "yes"))
    }

    /// Applies the settings a client sent at startup, as PostgreSQL does: `options`
    /// (`-c name=value`, `--name=value`, any setting) and the session parameters that change
    /// no answer's format (`application_name`, the timeouts, `default_transaction_read_only`;
    /// drivers also send `DateStyle`, `TimeZone` or `extra_float_digits`, which OmenDB's
    /// answers do not follow yet). One that is refused is left at its default.
    pub fn apply_startup<'a>(
        &self,
        parameters: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> PgWireResult<()> {
        const FROM_STARTUP: &[&str] = &[
            "application_name",
            "statement_timeout",
            "idle_in_transaction_session_timeout",
            "default_transaction_read_only",
        ];
        // The named parameters first, then `options`, which PostgreSQL applies after them.
        let parameters: Vec<(&String, &String)> = parameters.into_iter().collect();
        let mut settings: Vec<(String, String)> = parameters
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), (*value).clone()))
            .filter(|(name, _)| FROM_STARTUP.contains(&name.as_str()))
            .collect();
        if let Some((_, options)) = parameters
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("options"))
        {
            settings.extend(startup_options(options));
        }
        // The first refused one fails the login (PostgreSQL answers it with FATAL).
        for (setting, value) in settings {
            self.set(&setting, value)?;
        }
        Ok(())
    }

    /// Notes whether the message about to be handled is followed by a Sync already received.
    pub fn set_sync_next(&self, next: bool) {
        self.sync_next.store(next, Ordering::SeqCst);
    }

    /// Whether the message being handled is the last of its pipeline (a Sync follows).
    pub fn sync_next(&self) -> bool {
        self.sync_next.load(Ordering::SeqCst)
    }

    /// Queues a warning for the client (a few at most; more are dropped).
    pub fn warn(&self, message: impl Into<String>) {
        let mut warnings = lock(&self.warnings);
        if warnings.len() < 16 {
            warnings.push(message.into());
        }
    }

    /// The warnings queued, to send now.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.warnings))
    }

    /// Records what a statement did inside the open block (no-op outside a block).
    pub fn note(&self, wrote: bool, failed: bool) {
        self.transaction_block.note(wrote, failed);
    }

    /// `PREPARE name AS statement`.
    pub fn prepare(&self, name: String, statement: DfStatement) -> PgWireResult<()> {
        let mut prepared = lock(&self.prepared);
        if prepared.contains_key(&name) {
            return Err(sqlstate::error(
                "42P05",
                format!("prepared statement \"{name}\" already exists"),
            ));
        }
        let bytes: usize = prepared.iter().map(|(n, (_, bytes))| n.len() + bytes).sum();
        let size = statement.to_string().len();
        let adding = name.len() + size;
        if prepared.len() >= MAX_SQL_PREPARED || bytes + adding > MAX_SQL_PREPARED_BYTES {
            return Err(sqlstate::error(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "too many prepared statements in this session: at most {MAX_SQL_PREPARED} \
                     of {} MiB together; DEALLOCATE some first",
                    MAX_SQL_PREPARED_BYTES >> 20
                ),
            ));
        }
        prepared.insert(name, (statement, size));
        Ok(())
    }

    /// The statement `PREPARE`d as `name`.
    pub fn prepared(&self, name: &str) -> PgWireResult<DfStatement> {
        lock(&self.prepared)
            .get(name)
            .map(|(statement, _)| statement.clone())
            .ok_or_else(|| missing_prepared(name))
    }

    /// `DEALLOCATE name` (`None`: `ALL`).
    pub fn deallocate(&self, name: Option<&str>) -> PgWireResult<()> {
        let mut prepared = lock(&self.prepared);
        match name {
            None => {
                prepared.clear();
                Ok(())
            }
            Some(name) => prepared
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| missing_prepared(name)),
        }
    }

    /// `DISCARD ALL`: settings, prepared statements and the block back to a new session's.
    pub fn discard(&self) {
        self.reset_all();
        lock(&self.prepared).clear();
        // Rolled back, as PostgreSQL's DISCARD ALL outside a block (inside one it is refused).
        self.transaction_block.take();
    }

    /// Registers the statement about to run; it is cancelled by [`Session::cancel`], and by
    /// dropping the returned guard before it is disarmed.
    pub fn start(&self) -> Running {
        let interrupt = Interrupt::new();
        *lock(&self.running) = Some(interrupt.clone());
        self.active.fetch_add(1, Ordering::SeqCst);
        Running {
            interrupt,
            active: Arc::clone(&self.active),
            armed: true,
        }
    }

    /// Counts `query` among the session's open queries, or refuses it (`53200`) while those
    /// hold more than [`MAX_OPEN_QUERY_BYTES`] together: the memory of a client's suspended
    /// portals is bounded per session, not only by the server's total.
    pub fn admit_query(&self, query: &Interrupt) -> PgWireResult<()> {
        let mut open = lock(&self.open_queries);
        open.retain(|q| q.held_bytes().is_some());
        let held: usize = open
            .iter()
            .filter_map(omendb::WeakInterrupt::held_bytes)
            .sum();
        if held > MAX_OPEN_QUERY_BYTES {
            return Err(sqlstate::error(
                "53200",
                format!(
                    "this session's open portals hold {} MiB of computed rows, at most {} MiB: \
                     close them (Close, or end the transaction) before another query",
                    held >> 20,
                    MAX_OPEN_QUERY_BYTES >> 20
                ),
            ));
        }
        open.push(query.downgrade());
        Ok(())
    }

    /// Cancels the running statement, if any.
    pub fn cancel(&self, reason: CancelReason) {
        if let Some(interrupt) = lock(&self.running).as_ref() {
            interrupt.interrupt(reason);
        }
    }
}

/// A statement being run: counted while it lives; cancelled if dropped while armed (the
/// future running it was dropped: the client went away or the server is stopping).
#[derive(Debug)]
pub struct Running {
    interrupt: Interrupt,
    active: Arc<AtomicUsize>,
    armed: bool,
}

impl Running {
    /// The statement's cancel signal.
    pub fn interrupt(&self) -> &Interrupt {
        &self.interrupt
    }

    /// The statement ended: dropping the guard no longer cancels it.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
        if self.armed {
            self.interrupt.interrupt(CancelReason::UserRequest);
        }
    }
}

/// The `-c name=value` and `--name=value` settings of a startup `options` string (dashes in
/// names are underscores, as PostgreSQL reads them).
fn startup_options(options: &str) -> Vec<(String, String)> {
    // Words are split at spaces; a backslash keeps the character after it (`a\ b`).
    let mut words_owned = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_ascii_whitespace() => {
                if !word.is_empty() {
                    words_owned.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words_owned.push(word);
    }
    let mut found = Vec::new();
    let mut words = words_owned.iter().map(String::as_str);
    while let Some(word) = words.next() {
        let setting = if word == "-c" {
            words.next()
        } else if let Some(rest) = word.strip_prefix("-c") {
            Some(rest)
        } else {
            word.strip_prefix("--")
        };
        if let Some((name, value)) = setting.and_then(|s| s.split_once('=')) {
            found.push((
                name.replace('-', "_").to_ascii_lowercase(),
                value.to_string(),
            ));
        }
    }
    found
}

/// Refuses a value of a setting that changes how answers are read or printed where OmenDB
/// would not follow it: an accepted `SET` must not be a silent no-op (`SET
/// standard_conforming_strings = off` was accepted and backslashes stayed literal; `SET
/// client_encoding = 'LATIN1'` was accepted and Latin-1 bytes became U+FFFD).
fn honoured(name: &str, value: &str) -> PgWireResult<()> {
    let normal = value.trim().trim_matches(['\'', '"']).to_ascii_lowercase();
    let (followed, what) = match name {
        "client_encoding" => (
            matches!(normal.as_str(), "utf8" | "utf-8" | "unicode" | "default"),
            "OmenDB reads and writes UTF8 only; convert on the client",
        ),
        "standard_conforming_strings" => (
            matches!(normal.as_str(), "on" | "true" | "yes" | "1" | "default"),
            "backslashes in string literals are always literal (use E'...' for escapes)",
        ),
        "datestyle" => (
            normal == "default" || normal.split(',').any(|part| part.trim() == "iso"),
            "dates print in the ISO style only",
        ),
        "intervalstyle" => (
            matches!(normal.as_str(), "postgres" | "default"),
            "intervals print in the postgres style only",
        ),
        "extra_float_digits" => {
            let digits = normal.parse::<i32>();
            if normal != "default" && !digits.as_ref().is_ok_and(|d| (-15..=3).contains(d)) {
                return Err(sqlstate::error(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    format!(
                        "invalid value for parameter \"extra_float_digits\": \"{value}\" \
                         (an integer from -15 to 3)"
                    ),
                ));
            }
            (
                normal == "default" || digits.is_ok_and(|d| d >= 1),
                "floats print their shortest exact text, as PostgreSQL does at 1 to 3",
            )
        }
        _ => (true, ""),
    };
    if followed {
        return Ok(());
    }
    Err(sqlstate::error(
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!("{name} = {value} is not supported: {what}"),
    ))
}

fn unrecognized(name: &str) -> PgWireError {
    sqlstate::error(
        "42704",
        format!("unrecognized configuration parameter \"{name}\""),
    )
}

fn missing_prepared(name: &str) -> PgWireError {
    sqlstate::error(
        "26000",
        format!("prepared statement \"{name}\" does not exist"),
    )
}

/// A duration as PostgreSQL's time parameters take it: a number of milliseconds, or a
/// number with a unit (`us`, `ms`, `s`, `min`, `h`, `d`).
fn parse_duration(text: &str) -> Result<Duration, &'static str> {
    let text = text.trim().trim_matches('\'');
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| "not a number")?;
    let millis = match unit.trim() {
        "" | "ms" => number,
        "us" => number / 1000.0,
        "s" => number * 1000.0,
        "min" => number * 60_000.0,
        "h" => number * 3_600_000.0,
        "d" => number * 86_400_000.0,
        _ => return Err("valid units are us, ms, s, min, h and d"),
    };
    if !(0.0..=i32::MAX as f64).contains(&millis) {
        return Err("out of range: 0 to 2147483647 ms");
    }
    Ok(Duration::from_micros((millis * 1000.0) as u64))
}

/// A stored millisecond count as `SHOW` prints it.
fn show_duration(millis: &str) -> String {
    match millis.parse::<u64>() {
        Ok(0) | Err(_) => "0".to_string(),
        Ok(ms) if ms % 1000 == 0 => format!("{}s", ms / 1000),
        Ok(ms) => format!("{ms}ms"),
    }
}

/// The sessions of a server, by the client's address (which the handlers are given) and by
/// the process id their cancel key carries.
#[derive(Debug, Default)]
pub struct Sessions {
    /// Statements running in all sessions.
    pub active: Arc<AtomicUsize>,
    by_peer: Mutex<HashMap<SocketAddr, Arc<Session>>>,
    /// pid → (secret key, peer).
    keys: Mutex<HashMap<i32, (Vec<u8>, SocketAddr)>>,
}

impl Sessions {
    /// No sessions yet; `active` counts the statements running in them.
    pub fn new(active: Arc<AtomicUsize>) -> Self {
        Self {
            active,
            ..Self::default()
        }
    }

    /// Registers the session of a new connection from `peer`.
    pub fn open(&self, peer: SocketAddr, session: Arc<Session>) {
        lock(&self.by_peer).insert(peer, session);
    }

    /// Statements running now.
    pub fn running(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Cancels the running statement of every session.
    pub fn cancel_all(&self, reason: CancelReason) {
        for session in lock(&self.by_peer).values() {
            session.cancel(reason);
        }
    }

    /// Forgets the connection from `peer`.
    pub fn close(&self, peer: SocketAddr) {
        lock(&self.by_peer).remove(&peer);
        lock(&self.keys).retain(|_, (_, p)| *p != peer);
    }

    /// The session of the connection from `peer`.
    pub fn get(&self, peer: SocketAddr) -> Option<Arc<Session>> {
        lock(&self.by_peer).get(&peer).cloned()
    }

    /// Records the cancel key given to the connection from `peer`.
    pub fn key(&self, pid: i32, secret: Vec<u8>, peer: SocketAddr) {
        lock(&self.keys).insert(pid, (secret, peer));
    }

    /// A cancel request: cancels the running statement of the session the key names (a
    /// wrong secret is ignored, as PostgreSQL does).
    pub fn cancel(&self, pid: i32, secret: &[u8]) -> bool {
        let peer = match lock(&self.keys).get(&pid) {
            Some((s, peer)) if s == secret => *peer,
            _ => return false,
        };
        match self.get(peer) {
            Some(session) => {
                session.cancel(CancelReason::UserRequest);
                true
            }
            None => false,
        }
    }
}

/// Whether PostgreSQL could take `value` as a `TimeZone`: a name of the time zone database
/// (in any case), `LOCAL`/`DEFAULT`, or an offset or POSIX rule (anything with a digit,
/// `+05`, `UTC+3`, `PST8PDT`). A word that names no zone (`'nowhere'`) is refused, as
/// PostgreSQL refuses it.
fn is_time_zone(value: &str) -> bool {
    let value = value.trim().trim_matches('\'');
    let lower = value.to_ascii_lowercase();
    matches!(lower.as_str(), "local" | "default" | "localtime" | "z")
        || value.bytes().any(|b| b.is_ascii_digit())
        || value.parse::<chrono_tz::Tz>().is_ok()
        || chrono_tz::TZ_VARIANTS
            .iter()
            .any(|zone| zone.name().eq_ignore_ascii_case(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_postgresql_takes_them() {
        assert_eq!(parse_duration("1500"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("'2s'"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1min"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        assert_eq!(show_duration("2000"), "2s");
        assert_eq!(show_duration("250"), "250ms");
    }

    #[test]
    fn settings_set_show_and_reset() {
        let session = Session::new(Duration::ZERO, Arc::default());
        assert_eq!(session.statement_timeout(), None);
        session.set("statement_timeout", "250".into()).expect("set");
        assert_eq!(
            session.statement_timeout(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            session.show(Some("statement_timeout")).expect("show")[0].1,
            "250ms"
        );
        assert!(session.set("no_such_thing", "1".into()).is_err());
        assert!(session.set("myapp.flag", "1".into()).is_ok());
        assert!(session.set("server_version", "1".into()).is_err());
        session.reset(Some("statement_timeout")).expect("reset");
        assert_eq!(session.statement_timeout(), None);
        assert_eq!(
            session
                .show(Some("transaction isolation level"))
                .expect("show")[0]
                .1,
            "repeatable read"
        );
    }
}
