//! Idempotency keys of the receipts the journal holds, in memory.
//!
//! The journal (a plugin) knows nothing of keys: a receipt's key is kept in
//! its metadata, and this map, rebuilt from the journal at start-up, is what
//! makes a key unique. It must only be consulted and updated by one
//! `enqueue` at a time (the receipts store holds a lock around it), so a
//! key's first receipt is always stored before its second is looked up.

use std::collections::HashMap;

/// Keys remembered at most: past it (plus a tenth, so trimming is rare)
/// the oldest are forgotten before the retention period ran out, so an
/// inbox where every receipt carries a key cannot grow the map without
/// bound.
pub const MAX_KEYS: usize = 1_000_000;

/// Key → (receipt id, Unix ms it was stored).
#[derive(Default)]
pub struct Keys {
    by_key: HashMap<String, (String, u64)>,
}

impl Keys {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.by_key.get(key).map(|(id, _)| id.as_str())
    }

    /// Remembers `key` for receipt `id`; returns how many old keys were
    /// forgotten to stay under [`MAX_KEYS`].
    pub fn insert(&mut self, key: String, id: String, at_ms: u64) -> usize {
        self.by_key.insert(key, (id, at_ms));
        if self.by_key.len() > MAX_KEYS + MAX_KEYS / 10 {
            forget_oldest(&mut self.by_key, MAX_KEYS)
        } else {
            0
        }
    }

    /// Forgets keys of receipts stored before `before_ms`: compaction has
    /// removed them from the journal, so they are no longer duplicates.
    pub fn forget_before(&mut self, before_ms: u64) {
        self.by_key.retain(|_, (_, at)| *at >= before_ms);
    }
}

/// Forgets the oldest keys until at most `keep` are left; returns how many went.
fn forget_oldest(keys: &mut HashMap<String, (String, u64)>, keep: usize) -> usize {
    if keys.len() <= keep {
        return 0;
    }
    let mut times: Vec<u64> = keys.values().map(|(_, at)| *at).collect();
    let excess = times.len() - keep;
    let (_, cutoff, _) = times.select_nth_unstable(excess - 1);
    let cutoff = *cutoff;
    let before = keys.len();
    // Everything strictly older goes, and of the keys stored at the cutoff
    // time itself as many as it takes.
    let mut at_cutoff = excess - times.iter().filter(|&&t| t < cutoff).count();
    keys.retain(|_, (_, at)| {
        if *at < cutoff {
            false
        } else if *at == cutoff && at_cutoff > 0 {
            at_cutoff -= 1;
            false
        } else {
            true
        }
    });
    before - keys.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_keys_are_forgotten_first() {
        let mut keys = HashMap::new();
        for (key, at) in [("a", 5), ("b", 1), ("c", 3), ("d", 3), ("e", 9)] {
            keys.insert(key.to_string(), (format!("id-{key}"), at));
        }
        assert_eq!(forget_oldest(&mut keys, 3), 2);
        assert!(!keys.contains_key("b"));
        assert!(keys.contains_key("a") && keys.contains_key("e"));
        // One of the two stored at 3 went, the other stays.
        assert_eq!(
            ["c", "d"].iter().filter(|k| keys.contains_key(**k)).count(),
            1
        );
        assert_eq!(forget_oldest(&mut keys, 10), 0);
    }

    #[test]
    fn keys_stored_before_a_time_are_forgotten() {
        let mut keys = Keys::default();
        keys.insert("old".into(), "1".into(), 10);
        keys.insert("new".into(), "2".into(), 20);
        keys.forget_before(15);
        assert_eq!(keys.get("old"), None);
        assert_eq!(keys.get("new"), Some("2"));
    }
}
