-- The PostgreSQL store's schema (issue 19). Times are Unix milliseconds
-- (BIGINT) where the service compares them, and RFC 3339 text where the API
-- shows them as the service wrote them. JSON is kept as TEXT, not JSONB:
-- states must come back digit for digit and key for key, as they were given.

-- Replicas: each says it is alive every second. One that has not for a
-- while is gone: its leases are handed on and its running runs closed.
CREATE TABLE replicas (
    id            TEXT PRIMARY KEY,
    started_at_ms BIGINT NOT NULL,
    seen_at_ms    BIGINT NOT NULL
);

-- Receipts: one row per stored receipt, from /inbox or a trigger plugin.
CREATE TABLE receipts (
    id              TEXT PRIMARY KEY,
    body            TEXT NOT NULL,
    source          TEXT NOT NULL,
    -- [[key, value], ...] as JSON text, given back on lease.
    metadata        TEXT NOT NULL DEFAULT '[]',
    -- Unique while the receipt is kept: a re-send, to any replica, is a no-op.
    idempotency_key TEXT UNIQUE,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'leased', 'done', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    enqueued_at_ms  BIGINT NOT NULL,
    -- A retry's delay: not leased before.
    not_before_ms   BIGINT NOT NULL,
    -- When it may be leased next: not_before_ms while pending, the lease's
    -- end while leased (a replica that died lets it lapse).
    due_ms          BIGINT,
    -- The replica holding the lease.
    leased_by       TEXT,
    -- When it was acknowledged or dead-lettered; compaction forgets done
    -- receipts by it.
    finished_at_ms  BIGINT,
    last_error      TEXT,
    -- Its jobs that need no further attempt ([{"job", "failure"}] as JSON),
    -- so a retry leased by any replica runs only the others.
    settled         TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX receipts_due ON receipts (due_ms, id) WHERE status IN ('pending', 'leased');
CREATE INDEX receipts_leased_by ON receipts (leased_by) WHERE status = 'leased';
CREATE INDEX receipts_done ON receipts (finished_at_ms) WHERE status = 'done';
CREATE INDEX receipts_by_status ON receipts (status, enqueued_at_ms, id);

-- Run records, with their input state (to run them again), log and final state.
CREATE TABLE runs (
    id           TEXT PRIMARY KEY,
    job          TEXT NOT NULL,
    trigger      TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('running', 'success', 'failure')),
    exit_code    INTEGER,
    reason       TEXT,
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    finished_ms  BIGINT,
    duration_ms  BIGINT,
    log          TEXT,
    state        TEXT,
    input        TEXT,
    -- The replica running it, while it runs.
    replica      TEXT
);
CREATE INDEX runs_running ON runs (replica) WHERE status = 'running';
CREATE INDEX runs_by_job ON runs (job, id);
CREATE INDEX runs_by_finished ON runs (finished_ms);

-- Each job's last successful final state: where its next cron run starts.
CREATE TABLE job_states (
    job        TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- One row per cron job and tick: the replica that inserts it runs the tick.
CREATE TABLE cron_ticks (
    job           TEXT NOT NULL,
    tick_ms       BIGINT NOT NULL,
    claimed_at_ms BIGINT NOT NULL,
    PRIMARY KEY (job, tick_ms)
);
