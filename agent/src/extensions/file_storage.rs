//! `file_storage`: the storage extension durable components write through (exporter sending queues,
//! filelog checkpoints, template-miner state). Each client gets its own database file under
//! `directory`, named after the component that asked, as otelcol names its bbolt files.
//!
//! Built on `redb`: a maintained, pure-Rust embedded store with ACID transactions, checksummed commit
//! slots that survive a crash mid-write, and no C dependency. That is the same role bbolt plays in
//! otelcol, and it beats a hand-written log on recovery code we would otherwise have to get right.

use async_trait::async_trait;
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Deserialize;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_core::config::duration;
use vigil_core::storage::{SealedStorage, SealingKey, StorageOp};
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, Extension, Host, Storage, StorageError,
};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
/// Facts about the file itself, kept apart from the clients' records (and out of their count).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// In `META`: a known text sealed with the encryption key, to tell a wrong key from damaged records.
const KEY_CHECK: &str = "key_check";
const KEY_CHECK_TEXT: &[u8] = b"vigil file_storage key check";

/// Modes for what the extension creates, as otelcol's file_storage: queued telemetry is readable by
/// the agent's user only.
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
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
    /// Encrypts stored values with AES-256-GCM (a vigil addition; otelcol has no such key).
    #[serde(default)]
    encryption: Option<EncryptionConfig>,
}

/// Where the 256-bit key comes from: a file or an environment variable holding 64 hex digits.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct EncryptionConfig {
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    key_env: Option<String>,
}

impl EncryptionConfig {
    /// Reads and checks the key. Errors name the source, never the key.
    fn key(&self) -> Result<SealingKey, (&'static str, String)> {
        let text = match (&self.key_file, &self.key_env) {
            (Some(path), None) => std::fs::read_to_string(path).map_err(|e| {
                (
                    "encryption::key_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?,
            (None, Some(var)) => std::env::var(var).map_err(|e| {
                (
                    "encryption::key_env",
                    format!("environment variable {var:?}: {e}"),
                )
            })?,
            _ => {
                return Err((
                    "encryption",
                    "set exactly one of key_file and key_env".into(),
                ))
            }
        };
        let source = match &self.key_file {
            Some(_) => "encryption::key_file",
            None => "encryption::key_env",
        };
        SealingKey::from_hex(&text).map_err(|e| (source, e))
    }
}

/// otelcol's compaction keys. Only `on_start` acts here (redb compacts in place); the rest are
/// accepted so that otelcol configs load unchanged.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
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

/// The `file_storage` extension factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynExtensionFactory> {
    vigil_core::factory::extension(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = FileStorageConfig;

    fn type_name(&self) -> &'static str {
        "file_storage"
    }

    fn validate(&self, id: &ComponentId, cfg: &FileStorageConfig) -> Result<(), ConfigError> {
        if cfg.directory.as_os_str().is_empty() {
            return Err(ConfigError::component(
                ComponentKind::Extension,
                id,
                "directory",
                "must not be empty",
            ));
        }
        if let Some(enc) = &cfg.encryption {
            enc.key().map_err(|(path, msg)| {
                ConfigError::component(ComponentKind::Extension, id, path, msg)
            })?;
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
}

impl vigil_core::factory::ExtensionFactory for Factory {
    fn stability(&self) -> vigil_core::Stability {
        vigil_core::Stability::Beta
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: FileStorageConfig,
    ) -> Result<Arc<dyn Extension>, ConfigError> {
        let id = &set.id;
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
    clients: Mutex<Vec<(PathBuf, Arc<dyn Storage>)>>,
}

#[async_trait]
impl Component for FileStorage {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let dir = &self.cfg.directory;
        if !dir.is_dir() {
            if self.cfg.create_directory {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(DIR_MODE)
                    .create(dir)
                    .map_err(|e| {
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

    async fn shutdown_by(&self, _deadline: std::time::Instant) -> anyhow::Result<()> {
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
            return Some(Ok(c.clone()));
        }
        Some(
            self.open_client(&path)
                .inspect(|s| clients.push((path, s.clone()))),
        )
    }
}

impl FileStorage {
    fn open_client(&self, path: &Path) -> Result<Arc<dyn Storage>, StorageError> {
        let key = match &self.cfg.encryption {
            Some(enc) => {
                if let Some(file) = &enc.key_file {
                    // A key others can read protects nothing; still run, but say so.
                    let loose =
                        std::fs::metadata(file).is_ok_and(|m| m.permissions().mode() & 0o077 != 0);
                    if loose {
                        tracing::warn!(
                            extension = %self.id,
                            "encryption::key_file {} is readable by other users: chmod 600 it",
                            file.display()
                        );
                    }
                }
                Some(enc.key().map_err(|(key, msg)| {
                    StorageError::Other(format!("extensions::{}::{key}: {msg}", self.id))
                })?)
            }
            None => None,
        };
        let db = RedbStorage::open(
            path,
            self.cfg.fsync,
            self.cfg.compaction.on_start,
            self.cfg.timeout,
        )?;
        db.check_key(key.as_ref())?;
        let db: Arc<dyn Storage> = Arc::new(db);
        Ok(match key {
            Some(key) => Arc::new(SealedStorage::new(db, key, path.display().to_string())),
            None => db,
        })
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
    /// For error messages.
    path: PathBuf,
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

/// Whether an I/O error from opening a database means the file's content is damaged (a bad magic
/// number or header, a file shorter than its header says), rather than a problem with the disk or its
/// permissions, which moving the file aside would not fix.
fn is_damage(io: &std::io::Error) -> bool {
    matches!(
        io.kind(),
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
    )
}

/// Moves a damaged database aside as `<file>.corrupt-<unix time>` (a number is added if that name
/// is taken), so that a new one can be started in its place. The loss is logged with the record
/// count a previous run left in `<file>.records`, and counted in `vigil_storage_corrupt_files` and
/// `vigil_storage_corrupt_records`. The moved file is kept for inspection and never read again.
fn set_aside(path: &Path, why: &str) -> Result<(), StorageError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let named = |n: u32| {
        // Appended to the whole name: `with_extension` would cut a name that has a dot in it.
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".corrupt-{secs}"));
        if n > 0 {
            p.push(format!(".{n}"));
        }
        PathBuf::from(p)
    };
    let aside = (0..1000)
        .map(named)
        .find(|p| !p.exists())
        .unwrap_or_else(|| named(1000));
    let held = read_records(path);
    let held_text = held.map_or_else(
        || "an unknown number of records".to_string(),
        |n| format!("{n} records"),
    );
    std::fs::rename(path, &aside).map_err(|e| {
        StorageError::Other(format!(
            "{} is unusable ({why}) and cannot be moved aside: {e}",
            path.display()
        ))
    })?;
    tracing::error!(
        file = %path.display(),
        moved_to = %aside.display(),
        records = held,
        "storage file {} is unusable ({why}); moved it to {} and started a new one; it held \
         {held_text}, which are lost (skipped {held_text})",
        path.display(),
        aside.display()
    );
    metrics::counter!("vigil_storage_corrupt_files").increment(1);
    metrics::counter!("vigil_storage_corrupt_records").increment(held.unwrap_or(0));
    Ok(())
}

/// Makes `path` readable by the agent's user only: creates it empty with mode 0600 if it does not
/// exist (redb would create it with the umask's mode), and tightens an existing file's mode.
fn restrict_file(path: &Path) -> Result<(), StorageError> {
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path);
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            tighten(path);
            Ok(())
        }
        Err(e) => Err(io_or_other(
            format!("cannot create {} with mode 0600: {e}", path.display()),
            Some(&e),
        )),
    }
}

/// Sets an existing file to 0600. A file the agent may use but not change the mode of (owned by
/// another user) is still used, as before: a warning says what is exposed.
fn tighten(path: &Path) {
    let loose = std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0);
    if !loose {
        return;
    }
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE)) {
        tracing::warn!(
            file = %path.display(),
            "storage file {} is readable by other users and its mode cannot be set to 0600: {e}",
            path.display()
        );
    }
}

impl RedbStorage {
    /// Opens or creates the database. A file that redb cannot open (a damaged header, one truncated
    /// by hand) or one that is empty is moved aside (see `set_aside`) and a fresh one is started, so
    /// that the agent keeps running; the loss is logged and counted.
    pub fn open(
        path: &Path,
        fsync: bool,
        compact: bool,
        timeout: Duration,
    ) -> Result<RedbStorage, StorageError> {
        // redb initialises an empty file as a new database without a word, which would hide the
        // loss of whatever the file held before it was cut to nothing.
        if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
            set_aside(path, "the file is empty")?;
        }
        restrict_file(path)?;
        let started = std::time::Instant::now();
        // A new file that cannot be opened either is not a damaged file: give up rather than loop.
        let mut set_aside_once = false;
        let db = loop {
            // redb asserts on some damaged files (one truncated by hand, say) instead of returning an
            // error; a damaged file must not take the agent down, so such a panic counts as corruption.
            let opened = std::panic::catch_unwind(|| Database::create(path)).unwrap_or_else(|_| {
                Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(
                    "redb refused the file layout".into(),
                )))
            });
            let damaged = match opened {
                Ok(db) => break db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if started.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                Err(redb::DatabaseError::Storage(redb::StorageError::Io(io)))
                    if !is_damage(&io) =>
                {
                    return Err(io_or_other(
                        format!("cannot open {}: {io}", path.display()),
                        Some(&io),
                    ));
                }
                Err(redb::DatabaseError::Storage(redb::StorageError::Io(io))) => {
                    format!("damaged header or layout: {io}")
                }
                Err(e) => e.to_string(),
            };
            if set_aside_once || !path.exists() {
                return Err(StorageError::Other(format!(
                    "cannot open {}: {damaged}",
                    path.display()
                )));
            }
            set_aside(path, &damaged)?;
            set_aside_once = true;
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
            .mode(FILE_MODE)
            .open(records_path(path))
            .inspect(|_| tighten(&records_path(path)))
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
            path: path.to_path_buf(),
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

    /// Makes sure the file and `key` go together before any record is read: a wrong key would make
    /// every record fail to open, and `SealedStorage` deletes what fails. Without a key, a file
    /// written encrypted is refused for the same reason. A file that has no key check yet gets one,
    /// and records it holds from before encryption was turned on are encrypted in place.
    fn check_key(&self, key: Option<&SealingKey>) -> Result<(), StorageError> {
        let other = |e: &dyn std::fmt::Display| StorageError::Other(e.to_string());
        let tx = self.db.begin_read().map_err(|e| other(&e))?;
        let check = match tx.open_table(META) {
            Ok(t) => t
                .get(KEY_CHECK)
                .map_err(map_storage_err)?
                .map(|v| v.value().to_vec()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(other(&e)),
        };
        drop(tx);
        let key = match (check, key) {
            (None, None) => return Ok(()),
            (Some(check), Some(key)) => {
                if key.open(KEY_CHECK.as_bytes(), &check).as_deref() == Some(KEY_CHECK_TEXT) {
                    return Ok(());
                }
                return Err(StorageError::Other(format!(
                    "the encryption key does not open {}: it was written with another key \
                     (configure that key, or move the file away to start an empty one)",
                    self.path.display()
                )));
            }
            (Some(_), None) => {
                return Err(StorageError::Other(format!(
                    "{} is encrypted: configure file_storage's encryption with its key, or move \
                     the file away to start an empty one",
                    self.path.display()
                )))
            }
            (None, Some(key)) => key,
        };
        let mut tx = self.db.begin_write().map_err(|e| other(&e))?;
        tx.set_durability(self.durability);
        let sealed_now;
        {
            let mut table = tx.open_table(TABLE).map_err(|e| other(&e))?;
            let mut plain = Vec::new();
            for item in table.iter().map_err(map_storage_err)? {
                let (k, v) = item.map_err(map_storage_err)?;
                plain.push((k.value().to_vec(), v.value().to_vec()));
            }
            sealed_now = plain.len();
            for (k, v) in plain {
                let sealed = key.seal(&k, &v)?;
                table
                    .insert(k.as_slice(), sealed.as_slice())
                    .map_err(map_storage_err)?;
            }
            let mut meta = tx.open_table(META).map_err(|e| other(&e))?;
            let check = key.seal(KEY_CHECK.as_bytes(), KEY_CHECK_TEXT)?;
            meta.insert(KEY_CHECK, check.as_slice())
                .map_err(map_storage_err)?;
        }
        tx.commit().map_err(|e| other(&e))?;
        if sealed_now > 0 {
            tracing::info!(
                file = %self.path.display(),
                records = sealed_now,
                "storage: encrypted {sealed_now} records written before encryption was turned on"
            );
        }
        Ok(())
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
    use serde_json::Value;

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

    /// A store of `n` records at `p`, closed, with its record count on the side.
    fn filled(p: &Path, n: u32) {
        let s = RedbStorage::open(p, true, false, default_timeout()).unwrap();
        let ops = (0..n)
            .map(|i| StorageOp::Set(i.to_be_bytes().to_vec(), vec![7u8; 64]))
            .collect();
        s.batch(ops).unwrap();
    }

    fn aside_files(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains(".corrupt-"))
            .collect()
    }

    /// Opens `p` under a local recorder: the store, and the two corruption counters.
    fn open_counted(p: &Path) -> (RedbStorage, u64, u64) {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let s = metrics::with_local_recorder(&recorder, || {
            RedbStorage::open(p, true, false, default_timeout())
        })
        .unwrap();
        let (mut files, mut records) = (0, 0);
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            if let DebugValue::Counter(v) = value {
                match key.key().name() {
                    "vigil_storage_corrupt_files" => files = v,
                    "vigil_storage_corrupt_records" => records = v,
                    _ => {}
                }
            }
        }
        (s, files, records)
    }

    #[test]
    fn damaged_header_is_moved_aside_counted_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("otlp_a.b_sending_queue");
        filled(&p, 42);
        // Overwrite the header, magic number included.
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[..64].fill(0xAB);
        std::fs::write(&p, &bytes).unwrap();
        let (s, files, records) = open_counted(&p);
        assert_eq!((files, records), (1, 42));
        let aside = aside_files(dir.path());
        assert_eq!(aside.len(), 1);
        // The suffix is added to the whole name, even one with dots in it.
        assert!(
            aside[0]
                .to_string_lossy()
                .contains("otlp_a.b_sending_queue.corrupt-"),
            "{aside:?}"
        );
        assert_eq!(std::fs::read(&aside[0]).unwrap(), bytes, "kept as it was");
        s.set(b"k", b"v").unwrap();
        assert_eq!(s.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn empty_file_is_reported_with_what_it_held() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        filled(&p, 17);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(0)
            .unwrap();
        let (s, files, records) = open_counted(&p);
        assert_eq!((files, records), (1, 17));
        assert_eq!(aside_files(dir.path()).len(), 1);
        assert_eq!(s.count().unwrap(), 0);
        s.set(b"k", b"v").unwrap();
        // A store that was never damaged counts nothing.
        drop(s);
        let (_, files, records) = open_counted(&p);
        assert_eq!((files, records), (0, 0));
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

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// A started `file_storage` over `dir` with `extra` config keys.
    async fn extension(dir: &Path, extra: Value) -> Arc<dyn Extension> {
        let mut cfg = serde_json::json!({"directory": dir, "create_directory": true});
        if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        let id = ComponentId::parse("file_storage/q").unwrap();
        let ext = factory().create(&id, &cfg).unwrap();
        ext.start(&Host::detached()).await.unwrap();
        ext
    }

    fn client(ext: &Arc<dyn Extension>) -> Result<Arc<dyn Storage>, StorageError> {
        let owner = ComponentId::parse("otlp/a").unwrap();
        ext.storage_client(&owner, "sending_queue").unwrap()
    }

    fn db_file(dir: &Path) -> PathBuf {
        dir.join("otlp_a_sending_queue")
    }

    #[tokio::test]
    async fn directory_is_0700_and_files_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join("b");
        let ext = extension(&dir, serde_json::json!({})).await;
        client(&ext).unwrap().set(b"k", b"v").unwrap();
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&db_file(&dir)), 0o600);
        assert_eq!(mode(&records_path(&db_file(&dir))), 0o600);
        // A file left readable by others (by an older version, or by hand) is tightened at open.
        ext.shutdown().await.unwrap();
        std::fs::set_permissions(db_file(&dir), std::fs::Permissions::from_mode(0o644)).unwrap();
        let ext = extension(&dir, serde_json::json!({})).await;
        assert_eq!(
            client(&ext).unwrap().get(b"k").unwrap().as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(mode(&db_file(&dir)), 0o600);
    }

    const KEY: &str = "8f1e0c4a2b7d6e5f8f1e0c4a2b7d6e5f8f1e0c4a2b7d6e5f8f1e0c4a2b7d6e5f";
    const OTHER_KEY: &str = "0000000000000000000000000000000000000000000000000000000000000001";

    fn key_file(tmp: &Path, name: &str, key: &str) -> Value {
        let path = tmp.join(name);
        std::fs::write(&path, format!("{key}\n")).unwrap();
        serde_json::json!({"encryption": {"key_file": path}})
    }

    #[tokio::test]
    async fn encrypted_records_hold_no_plaintext_and_need_their_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("q");
        let secret = b"user.email=alice@example.com".repeat(4);
        let ext = extension(&dir, key_file(tmp.path(), "k", KEY)).await;
        let s = client(&ext).unwrap();
        s.set(b"q1", &secret).unwrap();
        assert_eq!(s.get(b"q1").unwrap(), Some(secret.clone()));
        drop(s);
        ext.shutdown().await.unwrap();
        let raw = std::fs::read(db_file(&dir)).unwrap();
        assert!(
            !raw.windows(16).any(|w| w == &secret[..16]),
            "plaintext on disk"
        );

        // The same key reads it back after a restart.
        let ext = extension(&dir, key_file(tmp.path(), "k", KEY)).await;
        assert_eq!(
            client(&ext).unwrap().get(b"q1").unwrap(),
            Some(secret.clone())
        );
        ext.shutdown().await.unwrap();
        // Another key, or none, is refused rather than read as damage (which would delete it).
        let ext = extension(&dir, key_file(tmp.path(), "k2", OTHER_KEY)).await;
        let e = client(&ext).err().unwrap().to_string();
        assert!(e.contains("does not open"), "{e}");
        ext.shutdown().await.unwrap();
        let ext = extension(&dir, serde_json::json!({})).await;
        let e = client(&ext).err().unwrap().to_string();
        assert!(e.contains("is encrypted"), "{e}");
        ext.shutdown().await.unwrap();
        let ext = extension(&dir, key_file(tmp.path(), "k", KEY)).await;
        assert_eq!(client(&ext).unwrap().get(b"q1").unwrap(), Some(secret));
    }

    #[tokio::test]
    async fn turning_encryption_on_encrypts_what_is_there() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("q");
        let secret = b"k8s.pod.name=payments-7f9c".repeat(4);
        let ext = extension(&dir, serde_json::json!({})).await;
        client(&ext).unwrap().set(b"q1", &secret).unwrap();
        ext.shutdown().await.unwrap();
        let ext = extension(&dir, key_file(tmp.path(), "k", KEY)).await;
        let s = client(&ext).unwrap();
        assert_eq!(
            s.scan_prefix(b"q").unwrap(),
            vec![(b"q1".to_vec(), secret.clone())]
        );
        drop(s);
        ext.shutdown().await.unwrap();
        // The record is stored sealed now. (redb copies pages on write, so the old plaintext can
        // stay in free pages until they are reused: docs/delivery.md says so.)
        let raw = RedbStorage::open(&db_file(&dir), true, false, default_timeout()).unwrap();
        let stored = raw.get(b"q1").unwrap().unwrap();
        assert_eq!(
            stored.len(),
            secret.len() + vigil_core::storage::SEALED_OVERHEAD
        );
        assert!(!stored.windows(16).any(|w| w == &secret[..16]));
    }

    #[test]
    fn encryption_config_errors_name_the_key_and_never_the_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let id = ComponentId::parse("file_storage/q").unwrap();
        let check = |enc: Value| {
            let cfg = serde_json::json!({"directory": tmp.path(), "encryption": enc});
            factory().validate(&id, &cfg).err().map(|e| e.to_string())
        };
        let short = tmp.path().join("short");
        std::fs::write(&short, "abcdef").unwrap();
        let e = check(serde_json::json!({"key_file": short})).unwrap();
        assert!(
            e.contains("encryption::key_file") && e.contains("64 hexadecimal"),
            "{e}"
        );
        assert!(!e.contains("abcdef"), "{e}");
        let e = check(serde_json::json!({"key_file": tmp.path().join("missing")})).unwrap();
        assert!(e.contains("cannot read"), "{e}");
        let e = check(serde_json::json!({})).unwrap();
        assert!(e.contains("exactly one of key_file and key_env"), "{e}");
        let e = check(serde_json::json!({"key_env": "VIGIL_TEST_UNSET_KEY_VAR"})).unwrap();
        assert!(e.contains("encryption::key_env"), "{e}");
        let good = tmp.path().join("good");
        std::fs::write(&good, KEY).unwrap();
        assert_eq!(check(serde_json::json!({"key_file": good})), None);
    }
}
