-- A flow run's upstream run (issue 22: the dashboard's Workflows tab draws
-- a run's path through its workflow): the run whose end started it, kept
-- with the run and with the pending flow that becomes it. NULL for runs
-- started by a receipt, a cron tick or a retry, and for runs kept before.

ALTER TABLE runs ADD COLUMN upstream TEXT;
ALTER TABLE pending_flows ADD COLUMN upstream TEXT;

-- The runs one run started (`GET /api/runs?upstream=`): an entry for flow
-- runs only, so a receipt's run takes no more index entries than before.
CREATE INDEX runs_by_upstream ON runs (upstream) WHERE upstream IS NOT NULL;
