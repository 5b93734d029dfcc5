//! `file`: appends every batch to a local file as otelcol's file exporter writes it, one OTLP/JSON
//! request object per line (or length-prefixed protobuf with `format: proto`), and rotates by size.
//! It is the plainest way to see exactly what left the agent, so each batch is written and flushed
//! before `consume` returns.

use async_trait::async_trait;
use serde::Deserialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use vigil_core::codec::encode::{json_request, proto_request};
use vigil_core::config::{duration, present};
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Exporter, Host,
    Signal, Telemetry,
};

/// How each batch is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Format {
    /// One OTLP/JSON `Export*ServiceRequest` per line.
    #[default]
    Json,
    /// A 4-byte big-endian length, then the protobuf `Export*ServiceRequest`.
    Proto,
}

/// `rotation`, with lumberjack's defaults as otelcol uses them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
struct Rotation {
    max_megabytes: u64,
    /// Backups older than this many days are removed; zero keeps them regardless of age.
    max_days: u64,
    /// At most this many backups are kept; zero keeps them all.
    max_backups: u64,
    /// Name backups after local time instead of UTC.
    localtime: bool,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_megabytes: 100,
            max_days: 0,
            max_backups: 100,
            localtime: false,
        }
    }
}

fn default_flush_interval() -> Duration {
    Duration::from_secs(1)
}

/// The `file` exporter config.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    path: String,
    #[serde(default, deserialize_with = "present")]
    rotation: Option<Rotation>,
    #[serde(default)]
    format: Format,
    /// Without rotation: keep what the file holds instead of truncating it at start.
    #[serde(default)]
    append: bool,
    // Accepted for otelcol compatibility: every batch is flushed as it is written, which is at least
    // as fresh as any interval.
    #[serde(default = "default_flush_interval", with = "duration")]
    #[allow(dead_code)]
    flush_interval: Duration,
}

impl FileConfig {
    fn validate(&self, id: &ComponentId) -> Result<(), ConfigError> {
        let err = |path: &str, msg: &str| {
            ConfigError::component(ComponentKind::Exporter, id, path, msg.to_string())
        };
        if self.path.trim().is_empty() {
            return Err(err("path", "must be non-empty"));
        }
        if let Some(r) = &self.rotation {
            if r.max_megabytes == 0 {
                return Err(err("rotation::max_megabytes", "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// The open file and its rotation state.
struct FileWriter {
    path: PathBuf,
    file: File,
    size: u64,
    /// Rotate before a write would take the file past this many bytes; `None` never rotates.
    max_bytes: Option<u64>,
    rotation: Rotation,
}

impl FileWriter {
    /// Opens `path`, creating it and its directory. With rotation the file is appended to (a
    /// restart continues the current file); without it, `append` decides.
    fn open(path: &Path, append: bool, rotation: Option<&Rotation>) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let keep = append || rotation.is_some();
        let file = open_file(path, keep)?;
        let size = file.metadata()?.len();
        Ok(FileWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes: rotation.map(|r| r.max_megabytes.saturating_mul(1024 * 1024)),
            rotation: rotation.cloned().unwrap_or_default(),
        })
    }

    /// Writes one framed record in a single call and flushes it to the OS.
    fn write_record(&mut self, record: &[u8]) -> std::io::Result<()> {
        if let Some(max) = self.max_bytes {
            // A record larger than the limit still goes into a file of its own.
            if self.size > 0 && self.size + record.len() as u64 > max {
                self.rotate()?;
            }
        }
        self.file.write_all(record)?;
        self.file.flush()?;
        self.size += record.len() as u64;
        Ok(())
    }

    /// Moves the current file to a timestamped backup, starts an empty one, and prunes old backups.
    fn rotate(&mut self) -> std::io::Result<()> {
        let mut backup = self.backup_path(SystemTime::now());
        let mut bump = 1;
        while backup.exists() {
            backup = self.backup_path(SystemTime::now() + Duration::from_millis(bump));
            bump += 1;
        }
        std::fs::rename(&self.path, &backup)?;
        self.file = open_file(&self.path, false)?;
        self.size = 0;
        if let Err(e) = self.prune_backups() {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove old backups");
        }
        Ok(())
    }

    /// `name-2006-01-02T15-04-05.000.ext`, the way lumberjack names backups.
    fn backup_path(&self, at: SystemTime) -> PathBuf {
        let stamp = if self.rotation.localtime {
            chrono::DateTime::<chrono::Local>::from(at)
                .format("%Y-%m-%dT%H-%M-%S%.3f")
                .to_string()
        } else {
            chrono::DateTime::<chrono::Utc>::from(at)
                .format("%Y-%m-%dT%H-%M-%S%.3f")
                .to_string()
        };
        let (stem, ext) = self.name_parts();
        self.path.with_file_name(format!("{stem}-{stamp}{ext}"))
    }

    /// The file name split into stem and extension (with its dot, or empty).
    fn name_parts(&self) -> (String, String) {
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = self
            .path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        (stem, ext)
    }

    fn prune_backups(&self) -> std::io::Result<()> {
        let (stem, ext) = self.name_parts();
        let prefix = format!("{stem}-");
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut backups: Vec<(String, PathBuf, SystemTime)> = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(middle) = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(ext.as_str()))
            else {
                continue;
            };
            // Only names carrying our timestamp shape: never touch a neighbour like `traces-old.json`.
            if chrono::NaiveDateTime::parse_from_str(middle, "%Y-%m-%dT%H-%M-%S%.3f").is_err() {
                continue;
            }
            let modified = entry.metadata()?.modified()?;
            backups.push((name, entry.path(), modified));
        }
        // Newest first: the timestamp in the name sorts in time order.
        backups.sort_by(|a, b| b.0.cmp(&a.0));
        let max_age = Duration::from_secs(self.rotation.max_days.saturating_mul(86_400));
        let now = SystemTime::now();
        for (i, (_, path, modified)) in backups.iter().enumerate() {
            let too_many = self.rotation.max_backups > 0 && i as u64 >= self.rotation.max_backups;
            let too_old = self.rotation.max_days > 0
                && now.duration_since(*modified).unwrap_or_default() > max_age;
            if too_many || too_old {
                std::fs::remove_file(path)?;
            }
        }
        Ok(())
    }
}

fn open_file(path: &Path, keep: bool) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true);
    if keep {
        o.append(true);
    } else {
        o.write(true).truncate(true);
    }
    o.open(path)
}

/// Frames one batch as a record of the configured format.
fn frame(format: Format, data: &Telemetry) -> Result<Vec<u8>, String> {
    match format {
        Format::Json => {
            let mut line = json_request(data).map_err(|e| format!("cannot encode as JSON: {e}"))?;
            line.push(b'\n');
            Ok(line)
        }
        Format::Proto => {
            let body = proto_request(data);
            let len = u32::try_from(body.len())
                .map_err(|_| format!("a batch of {} bytes is over 4 GiB", body.len()))?;
            let mut out = Vec::with_capacity(4 + body.len());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&body);
            Ok(out)
        }
    }
}

struct FileExporter {
    id: String,
    cfg: FileConfig,
    writer: Arc<Mutex<Option<FileWriter>>>,
    obs: vigil_core::ExporterObs,
}

#[async_trait]
impl Component for FileExporter {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let path = PathBuf::from(&self.cfg.path);
        let w =
            FileWriter::open(&path, self.cfg.append, self.cfg.rotation.as_ref()).map_err(|e| {
                anyhow::anyhow!(
                    "exporters::{}: cannot open {}: {e}",
                    self.id,
                    path.display()
                )
            })?;
        *vigil_core::lock(&self.writer) = Some(w);
        Ok(())
    }

    async fn shutdown_by(&self, _deadline: std::time::Instant) -> anyhow::Result<()> {
        // Each record was flushed when written; dropping the handle closes the file.
        vigil_core::lock(&self.writer).take();
        Ok(())
    }
}

impl FileExporter {
    /// Writes one batch. A failed write (a full disk) is refused as retryable, so the client resends.
    async fn write(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let signal = data.signal();
        let items = data.item_count();
        let record = match frame(self.cfg.format, &data) {
            Ok(r) => r,
            Err(reason) => {
                self.obs.send_failed(signal, items as u64);
                tracing::error!(exporter = %self.id, %reason, "dropping {signal}");
                return Err(ConsumeError::permanent(reason, items));
            }
        };
        drop(data);
        let writer = Arc::clone(&self.writer);
        let written = tokio::task::spawn_blocking(move || {
            let mut guard = vigil_core::lock(&writer);
            match guard.as_mut() {
                Some(w) => w.write_record(&record).map_err(|e| e.to_string()),
                None => Err("the exporter is not started".to_string()),
            }
        })
        .await
        .unwrap_or_else(|e| Err(format!("the write task failed: {e}")));
        match written {
            Ok(()) => {
                self.obs.sent(signal, items as u64);
                Ok(())
            }
            Err(e) => {
                // A full disk or a removed directory may recover; let the sender try again.
                self.obs.send_failed(signal, items as u64);
                tracing::warn!(exporter = %self.id, path = %self.cfg.path, error = %e, "cannot write {signal}");
                Err(ConsumeError::retryable(format!(
                    "cannot write to {}: {e}",
                    self.cfg.path
                )))
            }
        }
    }
}

#[async_trait]
impl Consumer for FileExporter {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        self.write(data).await
    }
}

struct Factory;

/// The `file` exporter factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = FileConfig;

    fn type_name(&self) -> &'static str {
        "file"
    }

    fn validate(&self, id: &ComponentId, cfg: &FileConfig) -> Result<(), ConfigError> {
        cfg.validate(id)
    }
}

impl vigil_core::factory::ExporterFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[
            (Signal::Traces, vigil_core::Stability::Alpha),
            (Signal::Metrics, vigil_core::Stability::Alpha),
            (Signal::Logs, vigil_core::Stability::Alpha),
        ]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: FileConfig,
    ) -> Result<Arc<dyn Exporter>, ConfigError> {
        let id = &set.id;
        Ok(Arc::new(FileExporter {
            id: id.to_string(),
            obs: set.exporter_obs(),
            cfg,
            writer: Arc::new(Mutex::new(None)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helper::encode::tests::{sample_logs, sample_metrics, sample_traces};
    use serde_json::json;
    use serde_json::Value;
    use vigil_core::codec::encode::{decode_json_request, decode_proto_request};

    fn id() -> ComponentId {
        ComponentId::parse("file/out").unwrap()
    }

    async fn started(config: Value) -> Arc<dyn Exporter> {
        let e = factory().create(&id(), &config).unwrap();
        e.start(&Host::detached()).await.unwrap();
        e
    }

    /// Reads an OTLP/JSON lines file back, telling the signal from the top-level key.
    fn read_json_lines(path: &Path) -> Vec<Telemetry> {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).unwrap();
                let signal = if v.get("resourceSpans").is_some() {
                    Signal::Traces
                } else if v.get("resourceMetrics").is_some() {
                    Signal::Metrics
                } else {
                    Signal::Logs
                };
                decode_json_request(signal, line.as_bytes()).unwrap()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_failed_write_is_refused_as_retryable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        // Not started: there is no file to write to, which fails like a full disk would.
        let e = factory()
            .create(&id(), &json!({"path": path.to_str().unwrap()}))
            .unwrap();
        let r = e.consume(sample_traces(2)).await.unwrap_err();
        assert!(r.is_retryable());
    }

    #[tokio::test]
    async fn json_lines_decode_back_to_the_same_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.json");
        let e = started(json!({"path": path.to_str().unwrap()})).await;
        let batches = vec![sample_traces(3), sample_metrics(), sample_logs()];
        for b in &batches {
            e.consume(b.clone()).await.unwrap();
        }
        // Readable before shutdown: each batch is flushed as written.
        assert_eq!(read_json_lines(&path), batches);
        e.shutdown().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("null"));
    }

    #[tokio::test]
    async fn proto_is_length_prefixed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.pb");
        let e = started(json!({"path": path.to_str().unwrap(), "format": "proto"})).await;
        e.consume(sample_traces(2)).await.unwrap();
        e.consume(sample_traces(5)).await.unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mut rest = &bytes[..];
        let mut got = vec![];
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            got.push(decode_proto_request(Signal::Traces, &rest[4..4 + len]).unwrap());
            rest = &rest[4 + len..];
        }
        assert_eq!(got, vec![sample_traces(2), sample_traces(5)]);
    }

    #[tokio::test]
    async fn truncates_unless_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        std::fs::write(&path, "old\n").unwrap();
        let e = started(json!({"path": path.to_str().unwrap(), "append": true})).await;
        e.consume(sample_logs()).await.unwrap();
        e.shutdown().await.unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().starts_with("old\n"));
        let e = started(json!({"path": path.to_str().unwrap()})).await;
        e.consume(sample_logs()).await.unwrap();
        assert_eq!(read_json_lines(&path), vec![sample_logs()]);
    }

    #[test]
    fn rotates_by_size_and_keeps_max_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("traces.json");
        std::fs::write(dir.path().join("traces-old.json"), "not ours").unwrap();
        let rotation = Rotation {
            max_backups: 2,
            ..Rotation::default()
        };
        let mut w = FileWriter::open(&path, false, Some(&rotation)).unwrap();
        let record = frame(Format::Json, &sample_logs()).unwrap();
        // Room for one record and a half: every write after the first in a file rotates.
        w.max_bytes = Some(record.len() as u64 * 3 / 2);
        for _ in 0..5 {
            w.write_record(&record).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        // The live file, two backups, and the unrelated file left alone.
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(names.contains(&"traces.json".to_string()));
        assert!(names.contains(&"traces-old.json".to_string()));
        let backups: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with("traces-2") && n.ends_with(".json"))
            .collect();
        assert_eq!(backups.len(), 2, "{names:?}");
        for b in backups {
            assert_eq!(std::fs::read(dir.path().join(b)).unwrap(), record);
        }
    }

    #[test]
    fn config() {
        let f = factory();
        let e = f.validate(&id(), &json!({})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "exporters::file/out::path: must be non-empty"
        );
        let e = f
            .validate(&id(), &json!({"path": "x", "format": "yaml"}))
            .unwrap_err();
        assert!(
            e.to_string().starts_with("exporters::file/out::format:"),
            "{e}"
        );
        let e = f
            .validate(&id(), &json!({"path": "x", "rotation": {"max_mb": 1}}))
            .unwrap_err();
        assert!(e.to_string().contains("has invalid keys: max_mb"), "{e}");
        let cfg: FileConfig =
            serde_json::from_value(json!({"path": "x", "rotation": null, "flush_interval": "5s"}))
                .unwrap();
        assert_eq!(cfg.rotation, Some(Rotation::default()));
    }
}
