//! The memory budget of plugin calls: the memory caps of the instances
//! alive at once add up to at most `[plugins] max_memory`.
//!
//! Every trigger, notification and logging call instantiates its plugin
//! afresh. Before it does, it reserves its plugin's `memory` cap here; the
//! reservation ends with the call, when its instance is dropped and its
//! linear memory goes back to the kernel (see `runtime`). A call that does
//! not fit waits until others end (each ends by its deadline), so however
//! many runs finish at once, plugin instances never hold more than the
//! budget. The message store's one long-lived instance is not counted here:
//! it has its own cap, on top.
//!
//! Must never be asked for more than it holds (such a call would wait
//! forever): a plugin whose cap is over the budget is refused at load
//! ([`check_cap`]).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Kind;

/// The unit reservations are counted in: one wasm page.
const PAGE: usize = 64 * 1024;
/// Instances at once, whatever their caps: the pooling allocator has room
/// for 200 (the message store's and `plugin inspect`'s included).
pub const MAX_INSTANCES: usize = 128;

pub struct MemoryBudget {
    bytes: usize,
    pages: Arc<Semaphore>,
    instances: Arc<Semaphore>,
}

/// Held for the life of one call's instance.
pub struct Reservation {
    _pages: OwnedSemaphorePermit,
    _instance: OwnedSemaphorePermit,
}

impl MemoryBudget {
    pub fn new(bytes: usize) -> MemoryBudget {
        MemoryBudget {
            bytes,
            pages: Arc::new(Semaphore::new(pages(bytes) as usize)),
            instances: Arc::new(Semaphore::new(MAX_INSTANCES)),
        }
    }

    /// The whole budget, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes reserved by calls under way.
    #[cfg(test)]
    fn reserved(&self) -> usize {
        (pages(self.bytes) as usize - self.pages.available_permits()) * PAGE
    }

    /// Waits until `cap` bytes (and an instance) are free, and holds them
    /// until the reservation is dropped.
    pub async fn reserve(&self, cap: usize) -> Reservation {
        let instance = self.instances.clone().acquire_owned().await;
        let pages = self.pages.clone().acquire_many_owned(pages(cap)).await;
        Reservation {
            _pages: pages.expect("the budget's semaphore is never closed"),
            _instance: instance.expect("the budget's semaphore is never closed"),
        }
    }
}

/// Refuses a plugin of `kind` whose memory cap does not fit in the budget
/// (`max_memory` bytes): none of its calls could ever start. The message
/// store is not called under the budget.
pub fn check_cap(kind: Kind, cap: usize, max_memory: usize) -> Result<(), String> {
    if kind == Kind::Persistence || pages(cap) <= pages(max_memory) {
        return Ok(());
    }
    Err(format!(
        "its memory cap ({} MiB, `memory` in its [plugins.<name>] table) is more than all plugin calls may hold at once ([plugins] max_memory = {} MiB); lower the one or raise the other",
        cap.div_ceil(1 << 20),
        max_memory >> 20
    ))
}

/// `bytes` in whole pages, rounded up.
fn pages(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(PAGE)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn calls_wait_for_memory_and_give_it_back() {
        let budget = MemoryBudget::new(100 << 20);
        assert!(check_cap(Kind::Notification, 100 << 20, budget.bytes()).is_ok());
        assert!(check_cap(Kind::Trigger, (100 << 20) + 1, budget.bytes()).is_err());
        assert!(check_cap(Kind::Persistence, 512 << 20, budget.bytes()).is_ok());
        let first = budget.reserve(64 << 20).await;
        assert_eq!(budget.reserved(), 64 << 20);
        // A second 64 MiB call does not fit beside the first: it waits.
        let waiting = tokio::time::timeout(Duration::from_millis(50), budget.reserve(64 << 20));
        assert!(waiting.await.is_err(), "reserved beyond the budget");
        let small = budget.reserve(1).await;
        assert_eq!(budget.reserved(), (64 << 20) + PAGE);
        drop(first);
        let second = budget.reserve(64 << 20).await;
        drop((small, second));
        assert_eq!(budget.reserved(), 0);
    }
}
