//! `file_storage`: the storage extension durable components write through (exporter sending queues,
//! filelog checkpoints, template-miner state). Each client gets its own database file under
//! `directory`, named after the component that asked, as otelcol names its bbolt files.
//!
//! Built on `redb`: a maintained, pure-Rust embedded store with ACID transactions, checksummed commit
//! slots that survive a crash mid-write, and no C dependency. That is the same role bbolt plays in
//! otelcol, and it beats a hand-written log on recovery code we would otherwise have to get right.

use async_trait::async_trait;
use redb::{Database, Durability, ReadableTableMetadata, TableDefinition};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_core::config::{decode, duration};
use vigil_core::storage::StorageOp;
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, Extension, ExtensionFactory, Host, Storage,
    StorageError,
};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStorageConfig {
    #[serde(default = "default_directory")]
    directory: PathBuf,
    /// How long to wait for the file lock of a database another process holds.
    #[serde(default = "default_timeout", with = "duration")]
    timeout: Duration,
    /// redb `Durability::Immediate` when set, `Eventual` otherwise. On Linux redb syncs the file for
    /// both (see docs/delivery.md), so every commit survives power loss either way.
    #[serde(default)]
    fsync: bool,
    #[serde(default)]
    create_directory: bool,
    #[serde(default)]
    compaction: CompactionConfig,
}

/// otelcol's compaction keys. Only `on_start` acts here (redb compacts in place); the rest are
/// accepted so that otelcol configs load unchanged.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CompactionConfig {
    #[serde(default)]
    on_start: bool,
    #[serde(default)]
    on_rebound: bool,
    #[serde(default)]
    directory: Option<PathBuf>,
    #[serde(default)]
    max_transaction_size: Option<u64>,
    #[serde(default)]
    rebound_needed_threshold_mib: Option<u64>,
    #[serde(default)]
    rebound_trigger_threshold_mib: Option<u64>,
    #[serde(default, with = "vigil_core::config::opt_duration")]
    check_interval: Option<Duration>,
    #[serde(default)]
    cleanup_on_start: Option<bool>,
}

fn default_directory() -> PathBuf {
    PathBuf::from("/var/lib/vigil/file_storage")
}
fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

struct Factory;

pub fn factory() -> Arc<dyn ExtensionFactory> {
    Arc::new(Factory)
}

impl ExtensionFactory for Factory {
    fn type_name(&self) -> &'static str {
        "file_storage"
    }

    fn validate(&self, id: &ComponentId, config: &Value) -> Result<(), ConfigError> {
        let cfg: FileStorageConfig = decode(ComponentKind::Extension, id, config)?;
        if cfg.directory.as_os_str().is_empty() {
            return Err(ConfigError::component(
                ComponentKind::Extension,
                id,
                "directory",
                "must not be empty",
            ));
        }
        // As otelcol's validate does, so that validate refuses what start would.
        if !cfg.create_directory && !cfg.directory.is_dir() {
            return Err(ConfigError::component(
                ComponentKind::Extension,
                id,
                "directory",
                format!(
                    "{} does not exist or is not a directory (create it, or set create_directory: true)",
                    cfg.directory.display()
                ),
            ));
        }
        Ok(())
    }

    fn create(&self, id: &ComponentId, config: &Value) -> Result<Arc<dyn Extension>, ConfigError> {
        self.validate(id, config)?;
        let cfg: FileStorageConfig = decode(ComponentKind::Extension, id, config)?;
        Ok(Arc::new(FileStorage {
            id: id.clone(),
            cfg,
            clients: Mutex::new(Vec::new()),
        }))
    }
}

struct FileStorage {
    id: ComponentId,
    cfg: FileStorageConfig,
    /// Open databases, so that a component asking twice for the same client shares one handle
    /// (redb allows one open handle per file and process).
    clients: Mutex<Vec<(PathBuf, Arc<RedbStorage>)>>,
}

#[async_trait]
impl Component for FileStorage {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let dir = &self.cfg.directory;
        if !dir.is_dir() {
            if self.cfg.create_directory {
                std::fs::create_dir_all(dir).map_err(|e| {
                    anyhow::anyhow!(
                        "extensions::{}::directory: cannot create {}: {e}",
                        self.id,
                        dir.display()
                    )
                })?;
            } else {
                anyhow::bail!(
                    "extensions::{}::directory: {} does not exist (create it, or set create_directory: true)",
                    self.id,
                    dir.display()
                );
            }
        }
        Ok(())
    }

    async fn shutdown(&self) -> anyhow::Result<()> {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
    }
}

impl Extension for FileStorage {
    fn storage_client(
        &self,
        owner: &ComponentId,
        name: &str,
    ) -> Option<Result<Arc<dyn Storage>, StorageError>> {
        let file = format!(
            "{}_{}_{}",
            sanitize(owner.type_name()),
            sanitize(owner.name().unwrap_or("")),
            sanitize(name)
        );
        let path = self.cfg.directory.join(file);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = clients.iter().find(|(p, _)| *p == path) {
            return Some(Ok(c.clone() as Arc<dyn Storage>));
        }
        Some(
            RedbStorage::open(
                &path,
                self.cfg.fsync,
                self.cfg.compaction.on_start,
                self.cfg.timeout,
            )
            .map(|s| {
                let s = Arc::new(s);
                clients.push((path, s.clone()));
                s as Arc<dyn Storage>
            }),
        )
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One redb database file used as an ordered key-value store.
pub struct RedbStorage {
    db: Database,
    durability: Durability,
    /// `<file>.records`: the number of keys after the last commit. redb cannot salvage anything from a
    /// file it refuses to open, so this is how the log can still say how many records such a file
    /// held. It is not fsynced: it is an account of the loss, not part of the data.
    records: Option<std::fs::File>,
}

fn records_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".records");
    PathBuf::from(p)
}

/// The record count a previous run left next to `db`, if it is readable.
fn read_records(db: &Path) -> Option<u64> {
    let bytes = std::fs::read(records_path(db)).ok()?;
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

impl RedbStorage {
    fn write_records(&self, n: u64) {
        use std::os::unix::fs::FileExt;
        if let Some(f) = &self.records {
            // Eight bytes at offset zero: one write, never a torn count in practice.
            let _ = f.write_all_at(&n.to_le_bytes(), 0);
        }
    }
}

fn io_or_other(e: impl std::fmt::Display, raw: Option<&std::io::Error>) -> StorageError {
    match raw {
        // A full disk must reach the caller as "full", so that new data is refused as retryable.
        Some(io)
            if io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28) =>
        {
            StorageError::Full(e.to_string())
        }
        _ => StorageError::Other(e.to_string()),
    }
}

fn map_storage_err(e: redb::StorageError) -> StorageError {
    match &e {
        redb::StorageError::Io(io) => io_or_other(&e, Some(io)),
        _ => io_or_other(&e, None),
    }
}

impl RedbStorage {
    /// Opens or creates the database. A file that redb cannot open (for example one truncated by
    /// hand) is moved aside as `<file>.corrupt-<unix time>` and a fresh one is started, so that the
    /// agent keeps running; the loss is logged with the file's path.
    pub fn open(
        path: &Path,
        fsync: bool,
        compact: bool,
        timeout: Duration,
    ) -> Result<RedbStorage, StorageError> {
        let started = std::time::Instant::now();
        let db = loop {
            // redb asserts on some damaged files (one truncated by hand, say) instead of returning an
            // error; a damaged file must not take the agent down, so such a panic counts as corruption.
            let opened = std::panic::catch_unwind(|| Database::create(path)).unwrap_or_else(|_| {
                Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(
                    "redb refused the file layout".into(),
                )))
            });
            match opened {
                Ok(db) => break db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if started.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(redb::DatabaseError::Storage(redb::StorageError::Io(io))) => {
                    return Err(io_or_other(
                        format!("cannot open {}: {io}", path.display()),
                        Some(&io),
                    ));
                }
                Err(e) if path.exists() => {
                    let aside = path.with_extension(format!(
                        "corrupt-{}",
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0)
                    ));
                    let held = read_records(path);
                    let held_text = held.map_or_else(
                        || "an unknown number of records".to_string(),
                        |n| format!("{n} records"),
                    );
                    tracing::error!(
                        file = %path.display(),
                        records = held,
                        "storage file {} is unreadable ({e}); moved it to {} and started a new one; \
                         it held {held_text}, which are lost (skipped {held_text})",
                        path.display(),
                        aside.display()
                    );
                    metrics::counter!("vigil_storage_corrupt_files").increment(1);
                    metrics::counter!("vigil_storage_corrupt_records").increment(held.unwrap_or(0));
                    std::fs::rename(path, &aside).map_err(|re| {
                        StorageError::Other(format!(
                            "cannot move corrupt {} aside: {re}",
                            path.display()
                        ))
                    })?;
                }
                Err(e) => {
                    return Err(StorageError::Other(format!(
                        "cannot open {}: {e}",
                        path.display()
                    )))
                }
            }
        };
        let mut db = db;
        if compact {
            if let Err(e) = db.compact() {
                tracing::warn!("compaction of {} failed: {e}", path.display());
            }
        }
        let records = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(records_path(path))
            .map_err(|e| {
                tracing::warn!(
                    "cannot keep the record count of {} ({e}); a damaged file will be reported \
                     without its count",
                    path.display()
                )
            })
            .ok();
        let storage = RedbStorage {
            db,
            durability: if fsync {
                Durability::Immediate
            } else {
                Durability::Eventual
            },
            records,
        };
        storage.write_records(storage.count().unwrap_or(0));
        Ok(storage)
    }

    /// Keys in the store (O(1): redb keeps the length in the table header).
    fn count(&self) -> Result<u64, StorageError> {
        let tx = self
            .db
            .begin_read()
            .map_err(|e| StorageError::Other(e.to_string()))?;
        match tx.open_table(TABLE) {
            Ok(t) => t.len().map_err(map_storage_err),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(StorageError::Other(e.to_string())),
        }
    }
}

impl Storage for RedbStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self
            .db
            .begin_read()
            .map_err(|e| StorageError::Other(e.to_string()))?;
        let table = match tx.open_table(TABLE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(StorageError::Other(e.to_string())),
        };
        let v = table.get(key).map_err(map_storage_err)?;
        Ok(v.map(|g| g.value().to_vec()))
    }

    fn batch(&self, ops: Vec<StorageOp>) -> Result<(), StorageError> {
        let mut tx = self
            .db
            .begin_write()
            .map_err(|e| StorageError::Other(e.to_string()))?;
        tx.set_durability(self.durability);
        let count;
        {
            let mut table = tx
                .open_table(TABLE)
                .map_err(|e| StorageError::Other(e.to_string()))?;
            for op in &ops {
                match op {
                    StorageOp::Set(k, v) => {
                        table
                            .insert(k.as_slice(), v.as_slice())
                            .map_err(map_storage_err)?;
                    }
                    StorageOp::Delete(k) => {
                        table.remove(k.as_slice()).map_err(map_storage_err)?;
                    }
                }
            }
            count = table.len().map_err(map_storage_err)?;
        }
        tx.commit().map_err(|e| match e {
            redb::CommitError::Storage(s) => map_storage_err(s),
            other => StorageError::Other(other.to_string()),
        })?;
        self.write_records(count);
        Ok(())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<vigil_core::storage::KeyValues, StorageError> {
        let tx = self
            .db
            .begin_read()
            .map_err(|e| StorageError::Other(e.to_string()))?;
        let table = match tx.open_table(TABLE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::Other(e.to_string())),
        };
        let mut out = Vec::new();
        for item in table.range(prefix..).map_err(map_storage_err)? {
            let (k, v) = item.map_err(map_storage_err)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_scan_delete_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        {
            let s = RedbStorage::open(&p, false, false, default_timeout()).unwrap();
            s.batch(vec![
                StorageOp::Set(b"q/1".to_vec(), b"one".to_vec()),
                StorageOp::Set(b"q/2".to_vec(), b"two".to_vec()),
                StorageOp::Set(b"r/1".to_vec(), b"other".to_vec()),
            ])
            .unwrap();
            s.delete(b"q/1").unwrap();
        }
        let s = RedbStorage::open(&p, true, true, default_timeout()).unwrap();
        assert_eq!(s.get(b"q/2").unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(s.get(b"q/1").unwrap(), None);
        let scan = s.scan_prefix(b"q/").unwrap();
        assert_eq!(scan, vec![(b"q/2".to_vec(), b"two".to_vec())]);
    }

    #[test]
    fn truncated_file_is_moved_aside_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        {
            let s = RedbStorage::open(&p, true, false, default_timeout()).unwrap();
            for i in 0..200u32 {
                s.set(&i.to_be_bytes(), &[7u8; 512]).unwrap();
            }
            s.delete(&0u32.to_be_bytes()).unwrap();
        }
        assert_eq!(read_records(&p), Some(199));
        let len = std::fs::metadata(&p).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len / 3).unwrap();
        drop(f);
        let s = RedbStorage::open(&p, true, false, default_timeout()).unwrap();
        let kept = s.count().unwrap();
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
            .collect();
        // redb cannot salvage a truncated file: it is moved aside, and the count says what it held.
        assert_eq!((aside.len(), kept), (1, 0));
        assert_eq!(read_records(&p), Some(0), "the new file's count");
        // Either redb repaired the file or it was replaced; both leave a working store.
        s.set(b"k", b"v").unwrap();
        assert_eq!(s.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }
}
