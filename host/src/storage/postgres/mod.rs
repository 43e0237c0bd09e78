//! The PostgreSQL store: receipts, run records, job states and cron ticks
//! in one database that any number of replicas share.
//!
//! - this file: connecting (TLS when the server offers it), the pool, the
//!   probe behind `/readyz` (which is also the replica's heartbeat in the
//!   `replicas` table, and hands on what replicas that stopped beating
//!   held), the `LISTEN` connection that wakes idle replicas, and what a
//!   database error means to the caller;
//! - [`from_embedded`]: an embedded deployment's receipts, runs, job
//!   states and pending flows copied in (`migrate --from-embedded`);
//! - [`migrate`]: the schema, as SQL files run at start-up by refinery under
//!   an advisory lock (one replica migrates, the others wait);
//! - [`receipts`]: the `receipts` table (group commit, idempotency keys,
//!   leases with `FOR UPDATE SKIP LOCKED`, retries and dead letters);
//! - [`runs`]: the `runs` and `job_states` tables;
//! - [`cron`]: the `cron_ticks` table and the per-job advisory lock that
//!   keeps one cron job's runs from overlapping across replicas;
//! - [`triggers`]: the `trigger_leases` table: which replica polls each
//!   trigger plugin.
//!
//! The URL's password is never logged and never part of an error: only
//! [`Target`] (user, host, port, database) is.

pub mod cron;
pub mod from_embedded;
pub mod migrate;
pub mod receipts;
pub mod runs;
pub mod triggers;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Config};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Reachable, Storage, StorageError};

pub use cron::PgCronTicks;
pub use receipts::PgReceipts;
pub use runs::PgRuns;
pub use triggers::PgTriggerLeases;

/// The channel `NOTIFY` rings when receipts wait for a replica to lease them.
const CHANNEL: &str = "microservice_receipts";
/// Connections in the pool for requests, delivery and the API; each cron
/// job adds one, since a claimed tick holds its connection for the run.
const POOL_SIZE: usize = 16;
/// Connections whose commits do not wait for the flush (acknowledgements,
/// heartbeats): the acknowledging task writes one batch at a time.
const RELAXED_POOL_SIZE: usize = 2;
/// How long a caller waits for a connection, or for one to be made, before
/// the database counts as unavailable (`/inbox` then answers 503).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often `/readyz`'s probe asks the database.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A replica whose heartbeat is older than this is gone: its receipts'
/// leases are handed on and its running runs closed as interrupted.
const GONE_AFTER: Duration = Duration::from_secs(10);
/// What a 503 caused by the database tells the client to wait.
const RETRY_AFTER_MS: u64 = 2000;

type Tls = tokio_postgres_rustls::MakeRustlsConnect;

/// A connected pool, and what it needs to connect again.
#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
    /// Connections whose commits do not wait for the WAL flush
    /// (`synchronous_commit = off`), for writes that at-least-once lets a
    /// crash lose: acknowledgements and heartbeats. Never for a receipt,
    /// a run's end, a job's state or a flow.
    relaxed: Pool,
    config: Config,
    tls: Tls,
    target: Target,
    reachable: Reachable,
    /// This process's id in the `replicas` table (and on its leases and runs).
    replica: Arc<str>,
}

/// Where the database is, for logs and errors: everything of the URL but
/// its password.
#[derive(Clone, Debug)]
pub struct Target(String);

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A `DATABASE_URL` as given. It may hold a password, so it prints as
/// `DatabaseUrl(***)` and is only ever read by [`Postgres::new`].
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(url.into())
    }

    /// Where it points, without the password, for messages; `None` when it
    /// does not parse.
    pub fn target(&self) -> Option<Target> {
        parse_url(&self.0).ok().map(|(_, t)| t)
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(***)")
    }
}

/// Reads a `DATABASE_URL` (a `postgres://` URL or `key=value` pairs).
/// The error never repeats the URL: it may hold a password.
pub fn parse_url(url: &str) -> Result<(Config, Target), String> {
    let config = Config::from_str(url.trim()).map_err(|e| {
        format!("DATABASE_URL is not a PostgreSQL connection string ({e}); expected postgres://user:password@host:5432/database")
    })?;
    if config.get_hosts().is_empty() {
        return Err("DATABASE_URL names no host".into());
    }
    let target = target_of(&config);
    Ok((config, target))
}

fn target_of(config: &Config) -> Target {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    Target(format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    ))
}

/// TLS: used when the server offers it (`sslmode=prefer`, the default) or
/// demands it (`require`); `disable` skips it. The server's certificate is
/// checked against the webpki roots, or against the CA certificates (PEM)
/// in the file `PGSSLROOTCERT` names, as libpq's variable does (a database
/// with a private CA).
fn tls() -> anyhow::Result<Tls> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let roots = match std::env::var_os("PGSSLROOTCERT").filter(|p| !p.is_empty()) {
        None => rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let shown = std::path::Path::new(&path).display().to_string();
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(&path)
                .map_err(|e| anyhow::anyhow!("PGSSLROOTCERT {shown}: {e}"))?;
            for cert in certs {
                let cert = cert.map_err(|e| anyhow::anyhow!("PGSSLROOTCERT {shown}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| anyhow::anyhow!("PGSSLROOTCERT {shown}: {e}"))?;
            }
            anyhow::ensure!(
                !roots.is_empty(),
                "PGSSLROOTCERT {shown} holds no certificate"
            );
            roots
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A pool of at most `size` connections made with `config`, lazily.
fn new_pool(config: &Config, tls: &Tls, size: usize) -> anyhow::Result<Pool> {
    let manager = Manager::from_config(
        config.clone(),
        tls.clone(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| anyhow::anyhow!("could not build the database pool: {e}"))
}

impl Postgres {
    /// Parses the URL and builds the pool (room for `cron_jobs` held
    /// claims besides); connects lazily (the first call, or
    /// [`Postgres::migrate`], makes the first connection).
    pub fn new(url: &DatabaseUrl, cron_jobs: usize) -> anyhow::Result<Postgres> {
        let (mut config, target) = parse_url(&url.0).map_err(anyhow::Error::msg)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("microservice");
        }
        let tls = tls()?;
        let pool = new_pool(&config, &tls, POOL_SIZE + cron_jobs)?;
        let mut relaxed_config = config.clone();
        relaxed_config.options(match config.get_options() {
            Some(given) => format!("{given} -c synchronous_commit=off"),
            None => "-c synchronous_commit=off".to_string(),
        });
        let relaxed = new_pool(&relaxed_config, &tls, RELAXED_POOL_SIZE)?;
        Ok(Postgres {
            pool,
            relaxed,
            config,
            tls,
            target,
            reachable: Reachable::new(true),
            replica: uuid::Uuid::now_v7().to_string().into(),
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Runs the migrations (waiting for another replica that runs them).
    pub async fn migrate(&self) -> anyhow::Result<migrate::Report> {
        migrate::run(&self.config, self.tls.clone(), &self.target).await
    }

    /// Run records, job states and cron ticks over this pool.
    pub fn storage(&self) -> Storage {
        Storage {
            runs: Arc::new(PgRuns::new(self.clone())),
            cron: Arc::new(PgCronTicks::new(self.clone())),
            triggers: Arc::new(PgTriggerLeases::new(self.clone())),
            reachable: self.reachable.clone(),
            shared: true,
        }
    }

    /// Receipts over this pool, woken by other replicas' `NOTIFY`s, with
    /// `commits` group commits in flight at once.
    pub fn receipts(&self, stop: &CancellationToken, commits: usize) -> PgReceipts {
        let wake = Arc::new(Notify::new());
        tokio::spawn(listen(self.clone(), wake.clone(), stop.clone()));
        PgReceipts::new(self.clone(), wake, commits)
    }

    /// Says this replica is alive (the `replicas` table): done once before
    /// the service takes work, then every second by [`Postgres::probe`].
    /// Committed without waiting for the flush: a lost beat is one more
    /// second of age, far inside `GONE_AFTER`.
    pub async fn heartbeat(&self) -> Result<(), StorageError> {
        let client = self.relaxed_client().await?;
        let now = crate::clock::now_ms().cast_signed();
        client
            .execute(
                "INSERT INTO replicas (id, started_at_ms, seen_at_ms) VALUES ($1, $2, $2)
                 ON CONFLICT (id) DO UPDATE SET seen_at_ms = excluded.seen_at_ms",
                &[&self.replica.as_ref(), &now],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Beats every second (which is also whether the database answers, for
    /// `/readyz`, said in the log when it changes), and hands on what
    /// replicas that stopped beating held.
    pub fn probe(&self, stop: CancellationToken) {
        let this = self.clone();
        tokio::spawn(async move {
            // Since when this replica has reached the database without a
            // break: only one that has for longer than GONE_AFTER judges
            // others gone (after an outage everyone's heartbeat is old).
            let mut connected_since: Option<tokio::time::Instant> = None;
            loop {
                let up = this.heartbeat().await.is_ok();
                let was = this.reachable.set(up);
                match (was, up) {
                    (true, false) => {
                        warn!(database = %this.target, "the database cannot be reached; /inbox answers 503 until it is back")
                    }
                    (false, true) => {
                        info!(database = %this.target, "the database is reachable again")
                    }
                    _ => {}
                }
                let now = tokio::time::Instant::now();
                let since = if up {
                    *connected_since.get_or_insert(now)
                } else {
                    connected_since = None;
                    now
                };
                if up && now.duration_since(since) > GONE_AFTER {
                    this.hand_on().await;
                }
                tokio::select! {
                    _ = tokio::time::sleep(PROBE_EVERY) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
    }

    /// Forgets replicas that stopped beating; their leased receipts become
    /// due at once, their running runs are closed as interrupted, and their
    /// pending flows are released for another replica to adopt. One
    /// statement, so whichever replica deletes a gone one's row hands on
    /// everything it held.
    async fn hand_on(&self) {
        let Ok(client) = self.client().await else {
            return;
        };
        let now = crate::clock::now_ms().cast_signed();
        let before = now - GONE_AFTER.as_millis() as i64;
        // Asked first, read-only: nearly always no one is gone, and the
        // statement below then reads no receipt (their `leased_by` has no
        // index of its own; it is found among the due ones).
        let anyone_gone = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM replicas WHERE seen_at_ms < $1 AND id <> $2)",
                &[&before, &self.replica.as_ref()],
            )
            .await
            .map(|row| row.get::<_, bool>(0));
        if !matches!(anyone_gone, Ok(true)) {
            return;
        }
        let handed = client
            .query_one(
                "WITH gone AS (
                    DELETE FROM replicas WHERE seen_at_ms < $1 AND id <> $3 RETURNING id
                 ), freed AS (
                    UPDATE receipts SET due_ms = $2
                    WHERE status = 'leased' AND leased_by IN (SELECT id FROM gone)
                    RETURNING 1
                 ), closed AS (
                    UPDATE runs SET status = 'failure', reason = 'interrupted: its replica stopped during the run'
                    WHERE status = 'running' AND replica IN (SELECT id FROM gone)
                    RETURNING 1
                 ), released AS (
                    UPDATE pending_flows SET claimed_by = NULL
                    WHERE claimed_by IN (SELECT id FROM gone)
                    RETURNING 1
                 ), woke AS (
                    SELECT pg_notify('microservice_receipts', '') WHERE EXISTS (SELECT 1 FROM freed)
                 )
                 SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM freed), (SELECT count(*) FROM closed), (SELECT count(*) FROM woke), (SELECT count(*) FROM released)",
                &[&before, &now, &self.replica.as_ref()],
            )
            .await;
        match handed {
            Ok(row) => {
                let (gone, freed, closed, flows): (i64, i64, i64, i64) =
                    (row.get(0), row.get(1), row.get(2), row.get(4));
                if gone > 0 {
                    warn!(
                        replicas = gone,
                        receipts = freed,
                        interrupted_runs = closed,
                        pending_flows = flows,
                        "replicas stopped saying they are alive; their leased receipts are delivered again and their pending flows run"
                    );
                }
            }
            Err(e) => debug!(cause = %e, "could not look for gone replicas"),
        }
    }

    /// A pooled connection, or why the database is unavailable.
    async fn client(&self) -> Result<deadpool_postgres::Object, StorageError> {
        self.client_of(&self.pool).await
    }

    /// A connection of the `relaxed` pool (see [`Postgres`]).
    async fn relaxed_client(&self) -> Result<deadpool_postgres::Object, StorageError> {
        self.client_of(&self.relaxed).await
    }

    async fn client_of(&self, pool: &Pool) -> Result<deadpool_postgres::Object, StorageError> {
        pool.get().await.map_err(|e| {
            let e = pool_error(e, &self.target);
            if matches!(e, StorageError::Unavailable { .. }) {
                self.reachable.set(false);
            }
            e
        })
    }
}

/// An error with its causes (`error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer`): tokio-postgres keeps the why in the source.
/// None of them holds the URL's password.
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn unavailable(message: String) -> StorageError {
    StorageError::Unavailable {
        message,
        retry_after_ms: Some(RETRY_AFTER_MS),
    }
}

fn pool_error(e: PoolError, target: &Target) -> StorageError {
    match e {
        PoolError::Backend(e) => db_error(e),
        PoolError::Timeout(_) => unavailable(format!(
            "the database at {target} did not answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        )),
        other => unavailable(format!("the database at {target} is unavailable: {other}")),
    }
}

/// What a database error means to the caller: the connection or the server
/// going away is a moment to wait out (503); anything else is a failure.
pub(crate) fn db_error(e: tokio_postgres::Error) -> StorageError {
    let transient = match e.code() {
        None => true,
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::TOO_MANY_CONNECTIONS,
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                ]
                .contains(code)
        }
    };
    let e = with_causes(&e);
    if transient {
        unavailable(format!("the database is unavailable: {e}"))
    } else {
        StorageError::Failed(format!("the database failed: {e}"))
    }
}

/// Holds one connection that `LISTEN`s for receipts stored by other
/// replicas and rings `wake` for each notification (and after a
/// reconnection, in case one was missed while it was gone).
async fn listen(pg: Postgres, wake: Arc<Notify>, stop: CancellationToken) {
    let mut quiet = false;
    while !stop.is_cancelled() {
        // A connection of its own, outside the pool.
        match pg.config.connect(pg.tls.clone()).await {
            Ok((client, mut connection)) => {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                let listening = async {
                    client
                        .batch_execute(&format!("LISTEN {CHANNEL}"))
                        .await
                        .map_err(db_error)
                };
                // The connection's messages must be polled for the LISTEN
                // to be answered: both run together until it is.
                let mut listening = std::pin::pin!(listening);
                let ok = loop {
                    tokio::select! {
                        r = &mut listening => break r.is_ok(),
                        m = messages.next() => if m.is_none() { break false },
                    }
                };
                if ok {
                    debug!("listening for receipts stored by other replicas");
                    quiet = false;
                    wake.notify_one();
                    loop {
                        tokio::select! {
                            m = messages.next() => match m {
                                Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
                                Some(Ok(_)) => {}
                                Some(Err(_)) | None => break,
                            },
                            _ = stop.cancelled() => return,
                        }
                    }
                }
            }
            Err(e) => {
                if !quiet {
                    debug!(database = %pg.target, cause = %e, "cannot listen for other replicas' receipts yet");
                    quiet = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_never_holds_the_password() {
        let (_, target) = parse_url("postgres://app:s3cret-pw@db.internal:6543/queue").unwrap();
        assert_eq!(target.to_string(), "app@db.internal:6543/queue");
        let err = parse_url("postgres://app:s3cret-pw@db:5432/q?sslmode=sometimes").unwrap_err();
        assert!(!err.contains("s3cret-pw"), "{err}");
        let err = parse_url("postgres://app:s3cret-pw@db:notaport/q").unwrap_err();
        assert!(!err.contains("s3cret-pw"), "{err}");
    }
}
