//! What the server keeps in memory about certificates it has seen (`tls::chain_cache`,
//! `mgmt`'s certificate facts): values by a SHA-256 key, bounded — two generations of at most
//! [`GENERATION`] entries, the older dropped when the newer fills; a value found in the older
//! moves to the newer, so what is in use stays.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Entries a generation holds before it becomes the older one.
pub(crate) const GENERATION: usize = 65_536;

/// A SHA-256.
pub(crate) type Key = [u8; 32];

/// The SHA-256 of `bytes`.
pub(crate) fn key_of(bytes: &[u8]) -> Key {
    Sha256::digest(bytes).into()
}

/// Values by [`Key`], bounded (see the module).
#[derive(Debug)]
pub(crate) struct Kept<V>(Mutex<Generations<V>>);

#[derive(Debug)]
struct Generations<V> {
    newer: HashMap<Key, V>,
    older: HashMap<Key, V>,
}

impl<V: Clone> Default for Kept<V> {
    fn default() -> Self {
        Self(Mutex::new(Generations {
            newer: HashMap::new(),
            older: HashMap::new(),
        }))
    }
}

impl<V: Clone> Kept<V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Generations<V>> {
        // A panic while holding the lock cannot leave the maps half-changed in a way that
        // matters: every entry is a value computed in full.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many values are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let kept = self.lock();
        kept.newer.len() + kept.older.len()
    }

    pub(crate) fn get(&self, key: &Key) -> Option<V> {
        let mut kept = self.lock();
        if let Some(value) = kept.newer.get(key) {
            return Some(value.clone());
        }
        let value = kept.older.remove(key)?;
        insert(&mut kept, *key, value.clone());
        Some(value)
    }

    pub(crate) fn insert(&self, key: Key, value: V) {
        insert(&mut self.lock(), key, value);
    }
}

fn insert<V>(kept: &mut Generations<V>, key: Key, value: V) {
    if kept.newer.len() >= GENERATION {
        kept.older = std::mem::take(&mut kept.newer);
    }
    kept.newer.insert(key, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_two_generations_are_kept_and_what_is_in_use_stays() {
        let kept = Kept::default();
        let key = |i: usize| key_of(&i.to_be_bytes());
        kept.insert(key(0), 0);
        for i in 1..GENERATION {
            kept.insert(key(i), i);
        }
        // The first generation is full: the next insert makes it the older one.
        kept.insert(key(GENERATION), GENERATION);
        // Read while in the older generation: moved to the newer one.
        assert_eq!(kept.get(&key(0)), Some(0));
        for i in GENERATION + 1..2 * GENERATION + 10 {
            kept.insert(key(i), i);
        }
        assert!(kept.len() <= 2 * GENERATION);
        assert_eq!(kept.get(&key(2 * GENERATION + 9)), Some(2 * GENERATION + 9));
        assert_eq!(kept.get(&key(0)), Some(0), "in use, so kept");
        assert_eq!(
            kept.get(&key(1)),
            None,
            "unused, dropped with its generation"
        );
    }
}
