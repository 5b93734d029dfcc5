//! The key-value store that durable components write through (sending queues, filelog checkpoints,
//! template-miner state). The `file_storage` extension implements it; callers run it on a blocking
//! thread because a commit may fsync. `SealedStorage` encrypts the values of any store at rest.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use std::sync::Arc;

/// A failed storage operation.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The disk is full or the store refuses writes: new data must be refused as retryable.
    #[error("storage is full: {0}")]
    Full(String),
    #[error("storage error: {0}")]
    Other(String),
}

/// One write in an atomic batch.
#[derive(Debug, Clone)]
pub enum StorageOp {
    Set(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// Keys and values in key order, as `scan_prefix` returns them.
pub type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// A namespaced, ordered key-value store. Writes in one `batch` commit together or not at all.
pub trait Storage: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    fn batch(&self, ops: Vec<StorageOp>) -> Result<(), StorageError>;
    /// Every key and value whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<KeyValues, StorageError>;

    fn set(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.batch(vec![StorageOp::Set(key.to_vec(), value.to_vec())])
    }
    fn delete(&self, key: &[u8]) -> Result<(), StorageError> {
        self.batch(vec![StorageOp::Delete(key.to_vec())])
    }
}

/// The first byte of a sealed value, so that a format change can be told apart later.
const SEALED_V1: u8 = 0xA1;
/// What sealing adds to a value: the version byte, the nonce and GCM's 16-byte tag.
pub const SEALED_OVERHEAD: usize = 1 + NONCE_LEN + 16;

/// A 256-bit key for `SealedStorage`.
pub struct SealingKey(LessSafeKey);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself: config dumps and error chains end up in logs.
        f.write_str("SealingKey(..)")
    }
}

impl SealingKey {
    /// Reads a key written as 64 hexadecimal digits (`openssl rand -hex 32`), surrounding white
    /// space ignored. The error never repeats the text, which may be a slightly wrong secret.
    pub fn from_hex(text: &str) -> Result<SealingKey, String> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(format!(
                "an AES-256 key is 64 hexadecimal digits (32 bytes; `openssl rand -hex 32` makes \
                 one), got {} characters",
                text.chars().count()
            ));
        }
        let mut bytes = [0u8; 32];
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let digits = std::str::from_utf8(pair).ok();
            bytes[i] = digits
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or("an AES-256 key is 64 hexadecimal digits; this one has other characters")?;
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| "invalid AES-256 key")?;
        Ok(SealingKey(LessSafeKey::new(key)))
    }

    /// Encrypts `value` under this key, bound to `key` (the record's key is the additional data,
    /// so a value copied under another key does not open). A fresh random nonce per value: at 2^32
    /// values per key the chance of a repeat stays below NIST's 2^-32 bound.
    pub fn seal(&self, key: &[u8], value: &[u8]) -> Result<Vec<u8>, StorageError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| StorageError::Other("no randomness for a nonce".into()))?;
        // One buffer, encrypted where it lies: a queued request is copied once, not three times.
        let mut out = Vec::with_capacity(value.len() + SEALED_OVERHEAD);
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(value);
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key),
                &mut out[1 + NONCE_LEN..],
            )
            .map_err(|_| StorageError::Other("encryption failed".into()))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts a value `seal` made for `key`; `None` if it was made with another key, under another
    /// record key, or was damaged.
    pub fn open(&self, key: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (&version, rest) = sealed.split_first()?;
        if version != SEALED_V1 {
            return None;
        }
        let (nonce, body) = rest.split_first_chunk::<NONCE_LEN>()?;
        let mut body = body.to_vec();
        let plain = self
            .0
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(key),
                &mut body,
            )
            .ok()?
            .len();
        body.truncate(plain);
        Some(body)
    }
}

/// A `Storage` whose values are encrypted with AES-256-GCM before they reach `inner`; keys stay as
/// they are (they are record ids, not telemetry). A value that does not open (damaged, or moved
/// under another key) is treated like a record that does not decode: it is deleted, counted in
/// `vigil_storage_corrupt_records` and logged, and the others are returned.
///
/// A wrong key would fail every record, so it must be caught before this wrapper is used: the
/// `file_storage` extension keeps a sealed check value beside the data for that.
pub struct SealedStorage {
    inner: Arc<dyn Storage>,
    key: SealingKey,
    /// Who owns the store, for log lines.
    name: String,
}

impl SealedStorage {
    pub fn new(inner: Arc<dyn Storage>, key: SealingKey, name: impl Into<String>) -> Self {
        SealedStorage {
            inner,
            key,
            name: name.into(),
        }
    }

    fn discard(&self, keys: Vec<Vec<u8>>) {
        let n = keys.len();
        metrics::counter!("vigil_storage_corrupt_records").increment(n as u64);
        tracing::error!(
            store = %self.name,
            skipped = n,
            "storage: skipped {n} records that fail decryption (damaged or tampered with; deleted, \
             their data is lost)"
        );
        if let Err(e) = self
            .inner
            .batch(keys.into_iter().map(StorageOp::Delete).collect())
        {
            tracing::warn!(store = %self.name, error = %e, "storage: records that fail decryption could not be deleted; they will be skipped again");
        }
    }
}

impl Storage for SealedStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(sealed) = self.inner.get(key)? else {
            return Ok(None);
        };
        match self.key.open(key, &sealed) {
            Some(v) => Ok(Some(v)),
            None => {
                self.discard(vec![key.to_vec()]);
                Ok(None)
            }
        }
    }

    fn batch(&self, ops: Vec<StorageOp>) -> Result<(), StorageError> {
        let ops = ops
            .into_iter()
            .map(|op| match op {
                StorageOp::Set(k, v) => {
                    let sealed = self.key.seal(&k, &v)?;
                    Ok(StorageOp::Set(k, sealed))
                }
                delete => Ok(delete),
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        self.inner.batch(ops)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<KeyValues, StorageError> {
        let mut bad = Vec::new();
        let mut out = Vec::new();
        for (k, sealed) in self.inner.scan_prefix(prefix)? {
            match self.key.open(&k, &sealed) {
                Some(v) => out.push((k, v)),
                None => bad.push(k),
            }
        }
        if !bad.is_empty() {
            self.discard(bad);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Mem(Mutex<BTreeMap<Vec<u8>, Vec<u8>>>);

    impl Storage for Mem {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        fn batch(&self, ops: Vec<StorageOp>) -> Result<(), StorageError> {
            let mut m = self.0.lock().unwrap();
            for op in ops {
                match op {
                    StorageOp::Set(k, v) => {
                        m.insert(k, v);
                    }
                    StorageOp::Delete(k) => {
                        m.remove(&k);
                    }
                }
            }
            Ok(())
        }
        fn scan_prefix(&self, prefix: &[u8]) -> Result<KeyValues, StorageError> {
            let m = self.0.lock().unwrap();
            Ok(m.iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
    }

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn keys_are_64_hex_digits_and_never_echoed() {
        assert!(SealingKey::from_hex(&format!(" {KEY}\n")).is_ok());
        let secretish = "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        let e = SealingKey::from_hex(secretish).unwrap_err();
        assert!(!e.contains(secretish), "{e}");
        assert!(SealingKey::from_hex("abcd").unwrap_err().contains("64"));
        assert_eq!(
            format!("{:?}", SealingKey::from_hex(KEY).unwrap()),
            "SealingKey(..)"
        );
    }

    #[test]
    fn values_are_encrypted_at_rest_and_read_back() {
        let inner = Arc::new(Mem::default());
        let s = SealedStorage::new(inner.clone(), SealingKey::from_hex(KEY).unwrap(), "t");
        let span = b"service.name=checkout secret-attribute".to_vec();
        s.set(b"q1", &span).unwrap();
        s.set(b"q2", b"two").unwrap();
        let raw = inner.get(b"q1").unwrap().unwrap();
        assert_eq!(raw.len(), span.len() + SEALED_OVERHEAD);
        assert!(
            !raw.windows(8).any(|w| w == &span[..8]),
            "no plaintext on disk"
        );
        // The same value sealed twice differs (a fresh nonce each time).
        s.set(b"q3", &span).unwrap();
        assert_ne!(inner.get(b"q3").unwrap().unwrap()[1..], raw[1..]);
        assert_eq!(s.get(b"q1").unwrap(), Some(span.clone()));
        let scan = s.scan_prefix(b"q").unwrap();
        assert_eq!(scan.len(), 3);
        assert_eq!(scan[1], (b"q2".to_vec(), b"two".to_vec()));
    }

    #[test]
    fn damaged_moved_or_foreign_values_are_skipped_and_deleted() {
        let inner = Arc::new(Mem::default());
        let s = SealedStorage::new(inner.clone(), SealingKey::from_hex(KEY).unwrap(), "t");
        for k in [b"q1", b"q2", b"q3", b"q4"] {
            s.set(k, b"value").unwrap();
        }
        let mut flipped = inner.get(b"q1").unwrap().unwrap();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        inner.set(b"q1", &flipped).unwrap();
        // A valid value under the wrong record key does not open either.
        let moved = inner.get(b"q4").unwrap().unwrap();
        inner.set(b"q2", &moved).unwrap();
        let other = SealingKey::from_hex(&KEY.replace('0', "f")).unwrap();
        inner
            .set(b"q3", &other.seal(b"q3", b"value").unwrap())
            .unwrap();
        let scan = s.scan_prefix(b"q").unwrap();
        assert_eq!(scan, vec![(b"q4".to_vec(), b"value".to_vec())]);
        assert_eq!(inner.0.lock().unwrap().len(), 1, "the bad ones are deleted");
        inner.set(b"q5", b"plaintext").unwrap();
        assert_eq!(s.get(b"q5").unwrap(), None);
        assert_eq!(inner.get(b"q5").unwrap(), None);
    }
}
