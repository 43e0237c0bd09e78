-- Flows (issue 19): a flow run made due by an upstream run's end is written
-- in the same transaction as that end, and forgotten in the same transaction
-- as its own run's end. A replica that stops in between leaves its rows;
-- when it is seen gone they are released (claimed_by NULL) and another
-- replica adopts and runs them.
CREATE TABLE pending_flows (
    id            TEXT PRIMARY KEY,
    job           TEXT NOT NULL,
    trigger       TEXT NOT NULL,
    input         TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    -- The replica carrying it out; NULL while no replica is.
    claimed_by    TEXT
);
CREATE INDEX pending_flows_unclaimed ON pending_flows (created_at_ms) WHERE claimed_by IS NULL;
CREATE INDEX pending_flows_claimed_by ON pending_flows (claimed_by);

-- Trigger plugins poll on one replica at a time: the replica holding a
-- plugin's lease (until held_until_ms, renewed while it polls) is the one
-- that calls it, so a folder on shared storage is read once.
CREATE TABLE trigger_leases (
    plugin        TEXT PRIMARY KEY,
    holder        TEXT NOT NULL,
    held_until_ms BIGINT NOT NULL
);
