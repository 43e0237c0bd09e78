//! The on-disk cache of compiled plugins, read as untrusted input.
//!
//! An entry is native code that the host maps and runs, so a file the host
//! did not write must never be deserialized: anything that could write
//! there would have a way out of the sandbox into the host process. Each
//! entry is sealed with an HMAC-SHA256 tag over its name and contents,
//! keyed by a per-installation secret kept beside the cache
//! (`DATA_DIR/plugin-cache.key`, mode 0600), outside every folder a plugin
//! may be granted (see `folders`). An entry is read into memory, its tag
//! checked, and deserialized from those same bytes, so it cannot change in
//! between; one whose tag does not match is recompiled, with a warning.
//! Entries are named by the wasm's sha256 and the engine's compatibility
//! hash, and the name is sealed too, so one plugin's entry cannot stand in
//! for another's.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::{debug, warn};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Bytes of the secret key and of an entry's tag.
const KEY_BYTES: usize = 32;
const TAG_BYTES: usize = 32;
/// Tags of this format only: a later format changes it, so old entries
/// fail their check instead of being read the wrong way.
const DOMAIN: &[u8] = b"openfn-microservice plugin-cache v1\0";

/// Compiles `bytes`, or loads the compiled form from `cache_dir` when a
/// sealed entry for them verifies. Returns the component, the wasm's
/// sha256, and whether it came from the cache.
///
/// With `write` false (`check` and `plugin inspect`) the cache is only
/// read: no entry, key or folder is made, and a missing key means no cache.
pub fn component(
    engine: &Engine,
    cache_dir: &Path,
    bytes: &[u8],
    write: bool,
) -> anyhow::Result<(Component, String, bool)> {
    let hash = hex::encode(Sha256::digest(bytes));
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let name = format!("{hash}-{:016x}.sealed.cwasm", engine_hash.finish());
    let path = cache_dir.join(&name);
    let key = match if write {
        key(cache_dir).map(Some)
    } else {
        existing_key(cache_dir)
    } {
        Ok(key) => key,
        Err(e) => {
            warn!(file = %key_path(cache_dir).display(), cause = %e, "the compile cache's key cannot be read or made; compiling without the cache");
            None
        }
    };
    if let Some(key) = &key
        && let Some(component) = load(engine, key, &path, &name)
    {
        return Ok((component, hash, true));
    }
    let component = Component::new(engine, bytes).map_err(anyhow::Error::from)?;
    if let Some(key) = key.as_ref().filter(|_| write) {
        match component.serialize() {
            Ok(code) => {
                if let Err(e) = write_atomically(&path, &seal(key, &name, code)) {
                    warn!(cause = %e, "could not write the compiled plugin to the cache");
                }
            }
            Err(e) => debug!(cause = %e, "could not serialize a compiled plugin"),
        }
    }
    Ok((component, hash, false))
}

/// The entry at `path`, if it exists and its seal verifies.
fn load(engine: &Engine, key: &hmac::Key, path: &Path, name: &str) -> Option<Component> {
    let sealed = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(file = %path.display(), cause = %e, "cannot read a compile-cache entry; recompiling");
            return None;
        }
    };
    let Some(code) = unseal(key, name, &sealed) else {
        warn!(file = %path.display(), "a compile-cache entry does not match its seal (altered, or not written by this installation); recompiling");
        return None;
    };
    // SAFETY: `code` is, byte for byte, what this host serialized: its tag
    // is an HMAC under a key only the host can read, and these are the
    // bytes that were checked (in memory, not re-read from the file).
    match unsafe { Component::deserialize(engine, code) } {
        Ok(component) => Some(component),
        Err(e) => {
            warn!(file = %path.display(), cause = %e, "ignoring an unreadable cache entry");
            None
        }
    }
}

fn tag(key: &hmac::Key, name: &str, code: &[u8]) -> hmac::Tag {
    let mut cx = hmac::Context::with_key(key);
    cx.update(DOMAIN);
    cx.update(name.as_bytes());
    cx.update(b"\0");
    cx.update(code);
    cx.sign()
}

/// `code` followed by its tag.
fn seal(key: &hmac::Key, name: &str, mut code: Vec<u8>) -> Vec<u8> {
    let tag = tag(key, name, &code);
    code.extend_from_slice(tag.as_ref());
    code
}

/// The code of a sealed entry named `name`, if its tag verifies.
fn unseal<'a>(key: &hmac::Key, name: &str, sealed: &'a [u8]) -> Option<&'a [u8]> {
    let split = sealed.len().checked_sub(TAG_BYTES)?;
    let (code, tag_bytes) = sealed.split_at(split);
    let expected = tag(key, name, code);
    bool::from(expected.as_ref().ct_eq(tag_bytes)).then_some(code)
}

/// `DATA_DIR/plugin-cache.key` for `DATA_DIR/plugin-cache`: beside the
/// cache, not in it, so reaching the entries is not reaching the key.
fn key_path(cache_dir: &Path) -> PathBuf {
    let mut name = cache_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".key");
    cache_dir.with_file_name(name)
}

/// The installation's key if one was made, for reading the cache only;
/// one readable by others is not trusted (the service fixes that).
fn existing_key(cache_dir: &Path) -> std::io::Result<Option<hmac::Key>> {
    let path = key_path(cache_dir);
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() == KEY_BYTES => {
            let mode = std::fs::metadata(&path)?.permissions().mode();
            Ok((mode & 0o077 == 0).then(|| hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
        }
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The installation's key, made (mode 0600) the first time.
fn key(cache_dir: &Path) -> std::io::Result<hmac::Key> {
    let path = key_path(cache_dir);
    for _ in 0..2 {
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == KEY_BYTES => {
                let mode = std::fs::metadata(&path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    warn!(file = %path.display(), mode = format!("{:o}", mode & 0o777), "the compile cache's key was readable by others; made it 0600");
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                }
                return Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes));
            }
            Ok(_) => {
                warn!(file = %path.display(), "the compile cache's key is damaged; making a new one (every entry is recompiled)");
                std::fs::remove_file(&path)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut secret = [0u8; KEY_BYTES];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| std::io::Error::other("no system randomness"))?;
        // Written whole under a name of its own, then linked into place
        // (which fails if a key is there): a reader never sees a key file
        // half written, which it would take for damaged and replace while
        // plugins compiling beside it seal entries with the first one.
        let tmp = path.with_extension(format!("key-{}", hex::encode(&secret[..8])));
        {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&secret)?;
            file.sync_all()?;
        }
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => return Ok(hmac::Key::new(hmac::HMAC_SHA256, &secret)),
            // Another thread or process made it first: read theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("the key file keeps changing"))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_making_the_key_at_once_all_get_the_one_written() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let cache = dir.path().join("plugin-cache");
            let keys: Vec<Vec<u8>> = std::thread::scope(|s| {
                let making: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            let key = key(&cache).unwrap();
                            tag(&key, "entry", b"code").as_ref().to_vec()
                        })
                    })
                    .collect();
                making.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let on_disk = existing_key(&cache).unwrap().expect("a key file");
            let expected = tag(&on_disk, "entry", b"code").as_ref().to_vec();
            assert!(keys.iter().all(|k| *k == expected));
            // Nothing but the key is left beside the cache.
            let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert_eq!(names.len(), 1);
        }
    }

    #[test]
    fn a_seal_binds_the_name_and_the_contents() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("plugin-cache");
        let key = key(&cache).unwrap();
        let path = dir.path().join("plugin-cache.key");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let sealed = seal(&key, "a.cwasm", b"code".to_vec());
        assert_eq!(unseal(&key, "a.cwasm", &sealed), Some(&b"code"[..]));
        assert_eq!(unseal(&key, "b.cwasm", &sealed), None);
        let mut altered = sealed.clone();
        altered[1] ^= 1;
        assert_eq!(unseal(&key, "a.cwasm", &altered), None);
        assert_eq!(unseal(&key, "a.cwasm", &sealed[..10]), None);
        // Another installation's key does not verify this one's entries.
        let other = tempfile::tempdir().unwrap();
        let other_key = super::key(&other.path().join("plugin-cache")).unwrap();
        assert_eq!(unseal(&other_key, "a.cwasm", &sealed), None);
        // The same installation reads back the same key.
        let again = super::key(&cache).unwrap();
        assert_eq!(unseal(&again, "a.cwasm", &sealed), Some(&b"code"[..]));
    }
}
