//! The key-value store that durable components write through (sending queues, filelog checkpoints,
//! template-miner state). The `file_storage` extension implements it; callers run it on a blocking
//! thread because a commit may fsync.

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
