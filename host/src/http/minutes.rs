//! Lock-free per-minute figures for the last hour, kept in memory.
//!
//! `/inbox` bumps one of these for every receipt, so adding must stay a
//! single compare-and-swap on one word: no lock, no allocation, no clock
//! read beyond the caller's. Each slot packs the Unix minute it belongs to
//! (high 32 bits) with its value (low 32 bits); a slot holding an older
//! minute is simply overwritten, so nothing ever needs sweeping. Figures are
//! lost on restart: this must never be the only record of anything.

use std::sync::atomic::{AtomicU64, Ordering};

/// Slots in the ring: more than the 61 minutes an hour's window touches.
const SLOTS: usize = 64;
const VALUE_BITS: u32 = 32;
const VALUE_MAX: u64 = (1 << VALUE_BITS) - 1;

/// One value per minute over the last [`SLOTS`] minutes.
pub struct PerMinute {
    slots: [AtomicU64; SLOTS],
}

impl Default for PerMinute {
    fn default() -> Self {
        PerMinute {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl PerMinute {
    /// Adds one to `minute`'s count.
    pub fn count(&self, minute: u64) {
        self.update(minute, |v| v.saturating_add(1).min(VALUE_MAX));
    }

    /// Raises `minute`'s value to `value` if it is higher (a per-minute peak).
    pub fn peak(&self, minute: u64, value: u64) {
        let value = value.min(VALUE_MAX);
        self.update(minute, |v| v.max(value));
    }

    /// `minute`'s value; 0 when nothing was recorded in it (or it has been
    /// overwritten by a later minute).
    pub fn get(&self, minute: u64) -> u64 {
        let word = self.slot(minute).load(Ordering::Relaxed);
        if word >> VALUE_BITS == tag(minute) {
            word & VALUE_MAX
        } else {
            0
        }
    }

    fn slot(&self, minute: u64) -> &AtomicU64 {
        &self.slots[(minute % SLOTS as u64) as usize]
    }

    fn update(&self, minute: u64, f: impl Fn(u64) -> u64) {
        let slot = self.slot(minute);
        let tag = tag(minute);
        let mut word = slot.load(Ordering::Relaxed);
        loop {
            let current = match word >> VALUE_BITS {
                t if t == tag => word & VALUE_MAX,
                // A later minute already owns the slot: too late to count.
                t if t > tag => return,
                _ => 0,
            };
            let next = (tag << VALUE_BITS) | f(current);
            match slot.compare_exchange_weak(word, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => word = seen,
            }
        }
    }
}

/// The minute as stored in a slot's high bits (Unix minutes fit 32 bits for
/// thousands of years).
fn tag(minute: u64) -> u64 {
    minute & VALUE_MAX
}

#[cfg(test)]
mod tests {
    use super::PerMinute;
    use std::sync::Arc;

    #[test]
    fn counts_per_minute_and_forgets_overwritten_minutes() {
        let m = PerMinute::default();
        m.count(1000);
        m.count(1000);
        m.count(1001);
        assert_eq!((m.get(1000), m.get(1001), m.get(999)), (2, 1, 0));
        // 64 minutes later the slot belongs to the new minute.
        m.count(1064);
        assert_eq!((m.get(1000), m.get(1064)), (0, 1));
        // A late add for the overwritten minute does not clobber the new one.
        m.count(1000);
        assert_eq!((m.get(1000), m.get(1064)), (0, 1));
    }

    #[test]
    fn peak_keeps_the_highest_value() {
        let m = PerMinute::default();
        for v in [3, 9, 4] {
            m.peak(7, v);
        }
        assert_eq!(m.get(7), 9);
    }

    #[test]
    fn concurrent_counts_are_all_kept() {
        let m = Arc::new(PerMinute::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || (0..10_000).for_each(|_| m.count(42)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(m.get(42), 40_000);
    }
}
