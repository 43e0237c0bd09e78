//! `[library] remotes`: the libraries of other deployments, fetched in the
//! background and merged into this one's answers, each entry marked with
//! the remote it came from (`origin`).
//!
//! Each remote's `GET /api/library?origin=self&limit=100` (its own
//! entries, best first; the remote must be `[library] public = true`) is
//! fetched at start-up and every `remote_refresh`, each fetch bounded by
//! `remote_timeout`; the last good answer of each remote is kept and
//! searched from memory. A query never waits on a remote: one that is down,
//! slow or answers nonsense only keeps its previous entries (or none) and
//! is logged once when it goes down and once when it comes back. This
//! module must never send anything of this deployment to a remote (a
//! fetch carries no key and no query but the fixed one) nor let a remote's
//! answer replace a local entry.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Catalog, Found};

/// The most entries taken from one remote (its `/api/library` limit).
pub const PER_REMOTE: usize = 100;
/// The most bytes read of one remote's answer.
const MAX_BYTES: u64 = 8 << 20;

/// A remote's entry with the [`super::folder::hash`] of its expression.
pub type Hashed = (String, Found);

/// Every remote's last good answer, by origin (the remote's base URL).
#[derive(Default)]
pub struct Cache {
    by_origin: RwLock<BTreeMap<String, Arc<Vec<Hashed>>>>,
}

impl Cache {
    /// Every remote's cached entries.
    pub fn entries(&self) -> Vec<Arc<Vec<Hashed>>> {
        self.by_origin
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn keep(&self, origin: &str, found: Vec<Found>) {
        let hashed = found
            .into_iter()
            .map(|f| (super::folder::hash(&f.expression), f))
            .collect();
        self.by_origin
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(origin.to_string(), Arc::new(hashed));
    }
}

/// Fetches every remote of `catalog` now and every `refresh` until `stop`.
pub async fn keep_fetched(
    catalog: Arc<Catalog>,
    remotes: Vec<String>,
    timeout: Duration,
    refresh: Duration,
    stop: CancellationToken,
) {
    if remotes.is_empty() {
        return;
    }
    let mut down: BTreeMap<String, bool> = BTreeMap::new();
    loop {
        // All at once, each kept as it comes: a slow remote holds no
        // other back.
        let mut pending: FuturesUnordered<_> = remotes
            .iter()
            .map(|r| async move { (r, fetch(r.clone(), timeout).await) })
            .collect();
        loop {
            let next = tokio::select! {
                next = pending.next() => next,
                _ = stop.cancelled() => return,
            };
            let Some((remote, fetched)) = next else {
                break;
            };
            let was_down = down.insert(remote.clone(), fetched.is_err());
            match fetched {
                Ok(found) => {
                    if was_down != Some(false) {
                        info!(remote = %remote, entries = found.len(), "remote library fetched");
                    }
                    catalog.remote.keep(remote, found);
                }
                Err(why) if was_down != Some(true) => {
                    warn!(remote = %remote, cause = %why, "remote library could not be fetched; its last entries (if any) are kept")
                }
                Err(_) => {}
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(refresh) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// One remote's own entries, marked with its origin.
async fn fetch(remote: String, timeout: Duration) -> Result<Vec<Found>, String> {
    let url = format!("{remote}/api/library?origin=self&limit={PER_REMOTE}");
    // A thread of its own, not tokio's blocking pool: the runtime waits
    // for that pool at shutdown, and a remote that hangs must not hold
    // the service's exit.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("library-remote".into())
        .spawn(move || {
            let _ = tx.send(get(&url, timeout));
        })
        .map_err(|e| format!("no thread for the fetch: {e}"))?;
    // The agent's own timeout bounds the call; this one bounds it too.
    let found = match tokio::time::timeout(timeout + Duration::from_secs(1), rx).await {
        Ok(Ok(result)) => result?,
        Ok(Err(_)) => return Err("the fetch failed".to_string()),
        Err(_) => return Err(format!("no answer within {timeout:?}")),
    };
    Ok(found
        .into_iter()
        // Only what the remote has itself: no entries passed on from its
        // own remotes (no loops, no copies).
        .filter(|f| f.origin == "self")
        .take(PER_REMOTE)
        .map(|mut f| {
            f.origin = remote.clone();
            // Names of another deployment's jobs are its business.
            f.job = None;
            f
        })
        .collect())
}

fn get(url: &str, timeout: Duration) -> Result<Vec<Found>, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let mut res = agent
        .get(url)
        .header("accept", "application/json")
        .call()
        .map_err(|e| e.to_string())?;
    if res.status() != 200 {
        return Err(format!(
            "it answered {} (a remote must set [library] public = true)",
            res.status()
        ));
    }
    res.body_mut()
        .with_config()
        .limit(MAX_BYTES)
        .read_json::<Vec<Found>>()
        .map_err(|e| format!("its answer is not a library list: {e}"))
}
