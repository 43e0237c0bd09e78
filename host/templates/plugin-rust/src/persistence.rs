//! {{name}}: a persistence plugin, the service's message store when
//! `[inbox] store = "{{name}}"`. The host keeps one instance of it: `open`
//! first, then every other call on that same instance, one at a time, so
//! the messages are kept in memory here. Each change is appended to
//! `<dir>/store.log` (one line per message state) and synced before the
//! call returns, and `open` replays that file: a restart loses nothing
//! but leases (leased messages are pending again).
//!
//! Config: `dir`, the granted folder's guest path (default `/{{folder}}`).
//! A simple store to start from: the file only grows until `compact`.

wit_bindgen::generate!({
    path: "wit",
    world: "persistence",
});

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};

use exports::openfn::microservice::message_store::{
    Guest, MessageStatus, StoreStats, StoredMessage,
};
use openfn::microservice::host;
use openfn::microservice::types::{Level, Message, PluginError};

struct Plugin;

struct Store {
    file: File,
    /// Messages by id; ids sort in enqueue order.
    messages: BTreeMap<String, Entry>,
    next: u64,
}

#[derive(Clone)]
struct Entry {
    stored: StoredMessage,
    lease_until: u64,
    finished_at: u64,
}

thread_local! {
    static STORE: RefCell<Option<Store>> = const { RefCell::new(None) };
}

fn path() -> String {
    let dir = host::get_config("dir").unwrap_or_else(|| "/{{folder}}".to_string());
    format!("{}/store.log", dir.trim_end_matches('/'))
}

fn unavailable(e: std::io::Error) -> PluginError {
    PluginError::Unavailable(format!("{}: {e}", path()))
}

fn with<T>(f: impl FnOnce(&mut Store) -> Result<T, PluginError>) -> Result<T, PluginError> {
    STORE.with(|s| match s.borrow_mut().as_mut() {
        Some(store) => f(store),
        None => Err(PluginError::Other("the store is not open".into())),
    })
}

// --- one line per message state: fields separated by tabs, text escaped ---

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn status_code(s: MessageStatus) -> &'static str {
    match s {
        MessageStatus::Pending => "pending",
        MessageStatus::Leased => "leased",
        MessageStatus::Done => "done",
        MessageStatus::Dead => "dead",
    }
}

fn encode(e: &Entry) -> String {
    let m = &e.stored;
    let mut fields = vec![
        escape(&m.id),
        status_code(m.status).to_string(),
        m.attempts.to_string(),
        m.enqueued_at_ms.to_string(),
        m.not_before_ms.to_string(),
        e.finished_at.to_string(),
        m.last_error.as_deref().map_or("-".into(), |x| format!("+{}", escape(x))),
        escape(&m.message.body),
        escape(&m.message.source),
    ];
    for (k, v) in &m.message.metadata {
        fields.push(escape(k));
        fields.push(escape(v));
    }
    fields.join("\t")
}

fn decode(line: &str) -> Option<Entry> {
    let f: Vec<&str> = line.split('\t').collect();
    if f.len() < 9 || (f.len() - 9) % 2 != 0 {
        return None;
    }
    let status = match f[1] {
        "pending" | "leased" => MessageStatus::Pending,
        "done" => MessageStatus::Done,
        "dead" => MessageStatus::Dead,
        _ => return None,
    };
    let metadata = f[9..]
        .chunks(2)
        .map(|kv| (unescape(kv[0]), unescape(kv[1])))
        .collect();
    Some(Entry {
        stored: StoredMessage {
            id: unescape(f[0]),
            message: Message {
                body: unescape(f[7]),
                source: unescape(f[8]),
                metadata,
            },
            status,
            attempts: f[2].parse().ok()?,
            enqueued_at_ms: f[3].parse().ok()?,
            not_before_ms: f[4].parse().ok()?,
            last_error: f[6].strip_prefix('+').map(unescape),
        },
        lease_until: 0,
        finished_at: f[5].parse().ok()?,
    })
}

impl Store {
    /// Appends the current state of `ids` and syncs.
    fn save(&mut self, ids: &[String]) -> Result<(), PluginError> {
        let mut text = String::new();
        for id in ids {
            if let Some(e) = self.messages.get(id) {
                text.push_str(&encode(e));
                text.push('\n');
            }
        }
        self.file.write_all(text.as_bytes()).map_err(unavailable)?;
        self.file.sync_data().map_err(unavailable)
    }

    fn entry(&mut self, id: &str) -> Result<&mut Entry, PluginError> {
        self.messages
            .get_mut(id)
            .ok_or_else(|| PluginError::Reject(format!("no message {id}")))
    }

    fn stats(&self) -> StoreStats {
        let mut s = StoreStats {
            pending: 0,
            leased: 0,
            done: 0,
            dead: 0,
            skipped_records: 0,
        };
        for e in self.messages.values() {
            match e.stored.status {
                MessageStatus::Pending => s.pending += 1,
                MessageStatus::Leased => s.leased += 1,
                MessageStatus::Done => s.done += 1,
                MessageStatus::Dead => s.dead += 1,
            }
        }
        s
    }
}

impl Guest for Plugin {
    fn open() -> Result<StoreStats, PluginError> {
        let path = path();
        let mut messages = BTreeMap::new();
        let mut skipped = 0u64;
        if let Ok(file) = File::open(&path) {
            for line in BufReader::new(file).lines() {
                match line.ok().as_deref().and_then(decode) {
                    Some(e) => {
                        messages.insert(e.stored.id.clone(), e);
                    }
                    None => skipped += 1,
                }
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(unavailable)?;
        let next = messages.len() as u64;
        let store = Store {
            file,
            messages,
            next,
        };
        let mut stats = store.stats();
        stats.skipped_records = skipped;
        host::log(
            Level::Info,
            &format!("opened {path}: {} messages", store.messages.len()),
        );
        STORE.with(|s| *s.borrow_mut() = Some(store));
        Ok(stats)
    }

    fn enqueue(
        messages: Vec<Message>,
        lease_first: u32,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<String>, PluginError> {
        with(|store| {
            let mut ids = Vec::with_capacity(messages.len());
            for (i, message) in messages.into_iter().enumerate() {
                store.next += 1;
                let id = format!("{now_ms:013}-{:010}", store.next);
                let leased = (i as u32) < lease_first;
                let entry = Entry {
                    stored: StoredMessage {
                        id: id.clone(),
                        message,
                        status: if leased {
                            MessageStatus::Leased
                        } else {
                            MessageStatus::Pending
                        },
                        attempts: u32::from(leased),
                        enqueued_at_ms: now_ms,
                        not_before_ms: now_ms,
                        last_error: None,
                    },
                    lease_until: if leased { now_ms + lease_ms } else { 0 },
                    finished_at: 0,
                };
                store.messages.insert(id.clone(), entry);
                ids.push(id);
            }
            store.save(&ids)?;
            Ok(ids)
        })
    }

    fn lease(max: u32, lease_ms: u64, now_ms: u64) -> Result<Vec<StoredMessage>, PluginError> {
        with(|store| {
            let mut out = Vec::new();
            for e in store.messages.values_mut() {
                if out.len() >= max as usize {
                    break;
                }
                let free = match e.stored.status {
                    MessageStatus::Pending => e.stored.not_before_ms <= now_ms,
                    MessageStatus::Leased => e.lease_until <= now_ms,
                    _ => false,
                };
                if free {
                    e.stored.status = MessageStatus::Leased;
                    e.stored.attempts += 1;
                    e.lease_until = now_ms + lease_ms;
                    out.push(e.stored.clone());
                }
            }
            Ok(out)
        })
    }

    fn ack(id: String, now_ms: u64) -> Result<(), PluginError> {
        with(|store| {
            let e = store.entry(&id)?;
            e.stored.status = MessageStatus::Done;
            e.finished_at = now_ms;
            store.save(&[id])
        })
    }

    fn ack_many(ids: Vec<String>, now_ms: u64) -> Result<(), PluginError> {
        with(|store| {
            let mut known = Vec::new();
            for id in ids {
                if let Some(e) = store.messages.get_mut(&id)
                    && e.stored.status != MessageStatus::Done
                {
                    e.stored.status = MessageStatus::Done;
                    e.finished_at = now_ms;
                    known.push(id);
                }
            }
            store.save(&known)
        })
    }

    fn nack(id: String, retry_after_ms: u64, error: String, now_ms: u64) -> Result<(), PluginError> {
        with(|store| {
            let e = store.entry(&id)?;
            e.stored.status = MessageStatus::Pending;
            e.stored.not_before_ms = now_ms + retry_after_ms;
            e.stored.last_error = Some(error);
            store.save(&[id])
        })
    }

    fn dead_letter(id: String, reason: String, now_ms: u64) -> Result<(), PluginError> {
        with(|store| {
            let e = store.entry(&id)?;
            e.stored.status = MessageStatus::Dead;
            e.stored.last_error = Some(reason);
            e.finished_at = now_ms;
            store.save(&[id])
        })
    }

    fn requeue(id: String, now_ms: u64) -> Result<(), PluginError> {
        with(|store| {
            let e = store.entry(&id)?;
            e.stored.status = MessageStatus::Pending;
            e.stored.attempts = 0;
            e.stored.not_before_ms = now_ms;
            store.save(&[id])
        })
    }

    fn list_messages(status: MessageStatus, limit: u32) -> Result<Vec<StoredMessage>, PluginError> {
        with(|store| {
            Ok(store
                .messages
                .values()
                .filter(|e| e.stored.status == status)
                .take(limit as usize)
                .map(|e| e.stored.clone())
                .collect())
        })
    }

    fn get(id: String) -> Result<Option<StoredMessage>, PluginError> {
        with(|store| Ok(store.messages.get(&id).map(|e| e.stored.clone())))
    }

    fn stats() -> Result<StoreStats, PluginError> {
        with(|store| Ok(store.stats()))
    }

    fn compact(before_ms: u64) -> Result<u64, PluginError> {
        with(|store| {
            let old: Vec<String> = store
                .messages
                .iter()
                .filter(|(_, e)| e.stored.status == MessageStatus::Done && e.finished_at < before_ms)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &old {
                store.messages.remove(id);
            }
            // Rewrite the file with what is left, then swap it in.
            let path = path();
            let tmp = format!("{path}.tmp");
            let mut text = String::new();
            for e in store.messages.values() {
                text.push_str(&encode(e));
                text.push('\n');
            }
            std::fs::write(&tmp, text).map_err(unavailable)?;
            std::fs::rename(&tmp, &path).map_err(unavailable)?;
            store.file = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(unavailable)?;
            Ok(old.len() as u64)
        })
    }
}

export!(Plugin);
