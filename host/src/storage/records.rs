//! Run records and job states as the API shows them and the dispatcher
//! writes them: plain data, the same for every storage implementation.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Success,
    Failure,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Failure => "failure",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(RunStatus::Running),
            "success" => Some(RunStatus::Success),
            "failure" => Some(RunStatus::Failure),
            _ => None,
        }
    }
}

/// One row of `GET /api/runs`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunSummary {
    pub id: String,
    pub job: String,
    pub trigger: String,
    pub status: RunStatus,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    /// The run whose end started this one, for a flow run (a job after
    /// another); `null` for a run started by a receipt, a cron tick or a
    /// retry, and for flow runs recorded before upstream runs were kept.
    pub upstream: Option<String>,
}

/// How a run's start is written.
#[derive(Debug, Clone, Copy)]
pub struct RunStart<'a> {
    pub id: &'a str,
    pub job: &'a str,
    pub trigger: &'a str,
    /// RFC 3339.
    pub started_at: &'a str,
    /// The initial state (no `configuration`), kept so the run can be run again.
    pub input: &'a Value,
    /// The run whose end started this one (a flow run's).
    pub upstream: Option<&'a str>,
}

/// `GET /api/runs/{id}`: the summary plus what the run printed and produced.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    pub summary: RunSummary,
    pub log: Vec<String>,
    pub state: Option<Value>,
}

/// How a finished run is written back.
#[derive(Debug, Clone)]
pub struct RunEnd<'a> {
    pub id: &'a str,
    pub job: &'a str,
    pub status: RunStatus,
    pub exit_code: Option<i32>,
    pub reason: Option<&'a str>,
    pub finished_at: &'a str,
    pub duration_ms: i64,
    pub log: &'a [String],
    /// The final state; on success it also becomes the job's state.
    pub state: Option<&'a Value>,
    /// The flow runs this end makes due, kept in the same transaction, so
    /// a process that stops before starting them leaves them to another.
    pub flows: &'a [PendingFlow],
    /// The pending flow this run carried out: forgotten in the same
    /// transaction, since its run's end is now kept.
    pub settles: Option<&'a str>,
}

/// A flow run that an upstream run's end made due and whose own end is not
/// yet kept. It is written with the upstream run's end and forgotten with
/// its own, so a process that stops between the two loses no flow: another
/// (or the next start) adopts it (see [`crate::storage::Runs::adopt_flows`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PendingFlow {
    /// Its own id (UUIDv7), not a run's: each attempt is a run of its own.
    pub id: String,
    pub job: String,
    /// The flow trigger that fired it.
    pub trigger: String,
    /// The initial state (no `configuration`).
    pub input: Value,
    /// The run whose end made it due; `None` for one kept before upstream
    /// runs were.
    pub upstream: Option<String>,
}

/// A finished run as the dashboard's per-minute statistics count it.
#[derive(Debug, Clone, Copy)]
pub struct FinishedRun {
    /// Unix minute (seconds / 60) of `finished_at`.
    pub minute: i64,
    pub success: bool,
    pub duration_ms: i64,
}

/// The newest run of a job, for `GET /api/jobs`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LastRun {
    pub id: String,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
}

/// How a job has been doing lately: its newest run and its last finished ones.
#[derive(Debug, Clone, Default)]
pub struct JobHealth {
    pub last_run: Option<LastRun>,
    /// Finished runs counted (at most the `recent` asked for).
    pub finished: u64,
    pub succeeded: u64,
}

/// How one job's finished runs went over a period (the jobs library's
/// figures): nothing of their states or logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobRuns {
    pub job: String,
    /// Runs that finished in the period.
    pub finished: u64,
    pub succeeded: u64,
}

#[derive(Debug, Default)]
pub struct RunFilter {
    pub job: Option<String>,
    pub status: Option<RunStatus>,
    /// Only the runs this run's end started (its flows).
    pub upstream: Option<String>,
    pub limit: usize,
}

/// A run record whole, as one store copies it to another (`migrate
/// --from-embedded`): JSON columns stay the text they were stored as.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub summary: RunSummary,
    /// JSON array of lines.
    pub log: Option<String>,
    /// JSON: the final state.
    pub state: Option<String>,
    /// JSON: the input state.
    pub input: Option<String>,
}

/// A job's state as kept: JSON text, the run that left it, when (RFC 3339).
#[derive(Debug, Clone)]
pub struct JobStateRecord {
    pub job: String,
    pub state: String,
    pub run_id: String,
    pub updated_at: String,
}
