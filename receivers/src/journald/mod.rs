//! `journald` (keys and behaviour in README.md beside this file): reads the systemd journal as
//! otelcol's journald receiver does, by running
//! `journalctl --utc --output=json --follow` with the config's filters (`units`, `identifiers`,
//! `matches`, `priority`, `grep`, `dmesg`, `namespace`, `directory` or `files`, `all`, `merge`) and
//! turning each JSON line into a log record whose body is the entry's field map, timed by
//! `__REALTIME_TIMESTAMP`. vigil does not parse journal files itself: the format is systemd's to
//! change (compression, keyed hashes), and journalctl is what reads it correctly, as in otelcol.
//!
//! The cursor of the last entry the pipeline accepted is kept (in `storage` when set, else in
//! memory), and a journalctl that exits is started again after 2 s with `--after-cursor`, so
//! nothing is read twice or skipped across restarts. `root_path` runs journalctl chrooted there
//! (a host's journalctl from a container), `journalctl_path` names the binary.

use crate::filelog::config::RetryOnFailure;
use crate::stanza::entry::{json_to_value, Entry};
use crate::stanza::operators::{OperatorConfig, Pipeline, PipelineState};
use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;
use vigil_core::attrs::{kv, kv_str};
use vigil_core::otlp::common::v1::any_value::Value;
use vigil_core::otlp::common::v1::{KeyValue, KeyValueList};
use vigil_core::storage::Storage;
use vigil_core::time::now_nanos;
use vigil_core::{
    lock, Component, ComponentId, ConfigError, Host, NextConsumers, Receiver, ReceiverObs, Signal,
};

/// The longest JSON line taken from journalctl; a longer entry (a huge MESSAGE with `all`) is
/// skipped and counted in `vigil_journald_entries_too_large`. stanza reads lines unbounded.
pub const MAX_LINE: usize = 4 * 1024 * 1024;
/// Entries read at once while journalctl has more ready, handed to the pipeline as one batch.
const MAX_BATCH: usize = 1000;
/// otelcol waits this long before starting an exited journalctl again.
const RESTART_AFTER: Duration = Duration::from_secs(2);
/// The storage key of the last accepted entry's cursor, as otelcol names it.
const CURSOR_KEY: &[u8] = b"lastReadCursor";

/// `receivers::journald`, key for key as otelcol's (stanza's `journald_input`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournaldConfig {
    /// A journal directory (`--directory`); without it and `files`, the system journal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// Journal files (`--file`, repeated), used when `directory` is not set.
    pub files: Vec<String>,
    /// `end` (default): only entries written from now on; `beginning`: the whole journal.
    pub start_at: String,
    pub units: Vec<String>,
    pub identifiers: Vec<String>,
    /// Field matches: the fields of one map are ANDed, the maps ORed (`journalctl A=1 + B=2`).
    pub matches: Vec<BTreeMap<String, String>>,
    /// `--priority`: a level name or number, or a range `err..info`; default `info`.
    pub priority: String,
    pub grep: String,
    pub dmesg: bool,
    pub all: bool,
    pub merge: bool,
    pub namespace: String,
    /// A MESSAGE journalctl prints as a byte array (not valid UTF-8) becomes a string.
    pub convert_message_bytes: bool,
    /// A storage extension that keeps the cursor across restarts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// Runs journalctl chrooted into this directory (`/hostfs` in a container).
    pub root_path: String,
    /// The journalctl binary (inside `root_path` when set).
    pub journalctl_path: String,
    pub retry_on_failure: RetryOnFailure,
    pub operators: Vec<OperatorConfig>,
    /// Attributes and resource attributes added to every record.
    pub attributes: HashMap<String, Json>,
    pub resource: HashMap<String, Json>,
}

impl Default for JournaldConfig {
    fn default() -> Self {
        JournaldConfig {
            directory: None,
            files: Vec::new(),
            start_at: "end".into(),
            units: Vec::new(),
            identifiers: Vec::new(),
            matches: Vec::new(),
            priority: "info".into(),
            grep: String::new(),
            dmesg: false,
            all: false,
            merge: false,
            namespace: String::new(),
            convert_message_bytes: false,
            storage: None,
            root_path: String::new(),
            journalctl_path: "journalctl".into(),
            retry_on_failure: RetryOnFailure::default(),
            operators: Vec::new(),
            attributes: HashMap::new(),
            resource: HashMap::new(),
        }
    }
}

/// What a checked config runs with.
#[derive(Debug)]
struct Checked {
    raw: JournaldConfig,
    args: Vec<String>,
    storage: Option<ComponentId>,
    pipeline: Pipeline,
}

const LEVELS: &[&str] = &[
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// A `--priority` value journalctl accepts: a level or a range of levels.
fn valid_priority(p: &str) -> bool {
    let level = |s: &str| {
        LEVELS.contains(&s)
            || (s.len() == 1 && ('0'..='7').contains(&s.chars().next().unwrap_or('x')))
    };
    match p.split_once("..") {
        Some((a, b)) => (a.is_empty() || level(a)) && (b.is_empty() || level(b)),
        None => level(p),
    }
}

/// journalctl's arguments, in otelcol's order (the cursor is added per run).
fn build_args(c: &JournaldConfig) -> Vec<String> {
    let mut a: Vec<String> = vec!["--utc".into(), "--output=json".into(), "--follow".into()];
    if c.start_at == "beginning" {
        a.push("--no-tail".into());
    }
    for u in &c.units {
        a.extend(["--unit".into(), u.clone()]);
    }
    for i in &c.identifiers {
        a.extend(["--identifier".into(), i.clone()]);
    }
    a.extend(["--priority".into(), c.priority.clone()]);
    if !c.grep.is_empty() {
        a.extend(["--grep".into(), c.grep.clone()]);
    }
    if c.dmesg {
        a.push("--dmesg".into());
    }
    if !c.namespace.is_empty() {
        a.extend(["--namespace".into(), c.namespace.clone()]);
    }
    if let Some(d) = &c.directory {
        a.extend(["--directory".into(), d.clone()]);
    } else {
        for f in &c.files {
            a.extend(["--file".into(), f.clone()]);
        }
    }
    for (i, m) in c.matches.iter().enumerate() {
        if i > 0 {
            a.push("+".into());
        }
        // BTreeMap: keys sorted, as otelcol sorts them.
        a.extend(m.iter().map(|(k, v)| format!("{k}={v}")));
    }
    if c.all {
        a.push("--all".into());
    }
    if c.merge {
        a.push("--merge".into());
    }
    a
}

fn check(c: JournaldConfig) -> Result<Checked, ConfigError> {
    let mut errors = Vec::new();
    if !["end", "beginning"].contains(&c.start_at.as_str()) {
        errors.push(ConfigError::at(
            "start_at",
            format!("invalid value {:?}: expected beginning or end", c.start_at),
        ));
    }
    if !valid_priority(&c.priority) {
        errors.push(ConfigError::at(
            "priority",
            format!(
                "invalid priority {:?}: expected one of {} or 0-7, or a range such as err..info",
                c.priority,
                LEVELS.join(", ")
            ),
        ));
    }
    for (i, m) in c.matches.iter().enumerate() {
        for k in m.keys() {
            let ok = !k.is_empty() && k.chars().all(|ch| ch == '_' || ch.is_ascii_uppercase());
            if !ok {
                errors.push(ConfigError::at(
                    format!("matches::{i}::{k}"),
                    format!("{k:?} is not a valid systemd field name (expected [_A-Z]+)"),
                ));
            }
        }
    }
    if c.journalctl_path.is_empty() {
        errors.push(ConfigError::at(
            "journalctl_path",
            "expected a path to journalctl",
        ));
    }
    if !c.root_path.is_empty() && !std::path::Path::new(&c.root_path).is_dir() {
        errors.push(ConfigError::host_path(
            "root_path",
            format!("\"{}\" is not a directory", c.root_path),
        ));
    }
    let retry = &c.retry_on_failure;
    if retry.enabled && retry.initial_interval.is_zero() {
        errors.push(ConfigError::at(
            "retry_on_failure::initial_interval",
            "must be greater than 0 when retry_on_failure is enabled",
        ));
    }
    let storage = match &c.storage {
        None => None,
        Some(s) => match ComponentId::parse(s) {
            Ok(id) => Some(id),
            Err(e) => {
                errors.push(ConfigError::at("storage", e.to_string()));
                None
            }
        },
    };
    let pipeline = match Pipeline::build_all(&c.operators) {
        Ok(p) => p,
        Err(errs) => {
            errors.extend(errs.into_iter().map(|(p, m)| ConfigError::at(p, m)));
            Pipeline::default()
        }
    };
    if let Some(e) = ConfigError::join(errors) {
        return Err(e);
    }
    Ok(Checked {
        args: build_args(&c),
        raw: c,
        storage,
        pipeline,
    })
}

struct Factory;

/// The `journald` receiver factory.
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = JournaldConfig;

    fn type_name(&self) -> &'static str {
        "journald"
    }

    fn validate(&self, _id: &ComponentId, cfg: &JournaldConfig) -> Result<(), ConfigError> {
        check(cfg.clone()).map(|_| ())
    }
}

impl vigil_core::factory::ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[(Signal::Logs, vigil_core::Stability::Alpha)]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: JournaldConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        let checked = check(cfg)?;
        Ok(Arc::new(JournaldReceiver {
            obs: set.receiver_obs(""),
            id: set.id.clone(),
            cfg: Arc::new(checked),
            next,
            set,
            cursor: Arc::new(Mutex::new(None)),
        }))
    }
}

/// The `journald` receiver.
pub struct JournaldReceiver {
    id: ComponentId,
    cfg: Arc<Checked>,
    next: NextConsumers,
    obs: ReceiverObs,
    set: vigil_core::Settings,
    /// The last accepted entry's cursor, for restarts without storage.
    cursor: Arc<Mutex<Option<String>>>,
}

impl JournaldReceiver {
    /// journalctl's command line for a run starting after `cursor`.
    pub fn command_line(&self, cursor: Option<&str>) -> Vec<String> {
        let mut a = self.cfg.args.clone();
        if let Some(c) = cursor {
            a.extend(["--after-cursor".into(), c.to_string()]);
        }
        a
    }
}

/// Starts journalctl; an error names the binary and root.
fn spawn(cfg: &Checked, args: &[String]) -> std::io::Result<Child> {
    let mut cmd = Command::new(&cfg.raw.journalctl_path);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if !cfg.raw.root_path.is_empty() {
        let root = std::ffi::CString::new(cfg.raw.root_path.clone())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // SAFETY: only async-signal-safe calls (chroot, chdir) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
}

/// One journalctl JSON line as a stanza entry (body: the field map) and its cursor.
pub fn parse_line(line: &str, convert_message_bytes: bool) -> Result<(Entry, String), String> {
    let mut map: serde_json::Map<String, Json> =
        serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let ts = match map.remove("__REALTIME_TIMESTAMP") {
        Some(Json::String(s)) => s
            .parse::<u64>()
            .map_err(|e| format!("__REALTIME_TIMESTAMP {s:?}: {e}"))?,
        Some(_) => return Err("__REALTIME_TIMESTAMP is not a string".into()),
        None => return Err("no __REALTIME_TIMESTAMP field".into()),
    };
    let cursor = match map.get("__CURSOR") {
        Some(Json::String(s)) => s.clone(),
        Some(_) => return Err("__CURSOR is not a string".into()),
        None => return Err("no __CURSOR field".into()),
    };
    if convert_message_bytes {
        if let Some(Json::Array(bytes)) = map.get("MESSAGE") {
            let raw: Option<Vec<u8>> = bytes
                .iter()
                .map(|b| b.as_u64().and_then(|n| u8::try_from(n).ok()))
                .collect();
            if let Some(raw) = raw {
                let text = String::from_utf8_lossy(&raw).into_owned();
                map.insert("MESSAGE".into(), Json::String(text));
            }
        }
    }
    let values: Vec<KeyValue> = map
        .into_iter()
        .map(|(k, v)| match v {
            Json::String(s) => kv_str(&k, s),
            other => kv(&k, json_to_value(other)),
        })
        .collect();
    let mut e = Entry::text(String::new(), now_nanos());
    e.body = Value::KvlistValue(KeyValueList { values });
    e.timestamp = ts.saturating_mul(1000);
    Ok((e, cursor))
}

struct Runner {
    id: String,
    cfg: Arc<Checked>,
    next: Arc<dyn vigil_core::Consumer>,
    obs: ReceiverObs,
    storage: Option<Arc<dyn Storage>>,
    cursor: Arc<Mutex<Option<String>>>,
    stop: CancellationToken,
    extra_attrs: Vec<KeyValue>,
    extra_resource: Vec<KeyValue>,
}

fn json_kvs(m: &HashMap<String, Json>) -> Vec<KeyValue> {
    let mut v: Vec<KeyValue> = m
        .iter()
        .map(|(k, v)| match v {
            Json::String(s) => kv_str(k, s.clone()),
            other => kv(k, json_to_value(other.clone())),
        })
        .collect();
    v.sort_by(|a, b| a.key.cmp(&b.key));
    v
}

impl Runner {
    fn saved_cursor(&self) -> Option<String> {
        if let Some(c) = lock(&self.cursor).clone() {
            return Some(c);
        }
        let s = self.storage.as_ref()?;
        match s.get(CURSOR_KEY) {
            Ok(v) => v.and_then(|b| String::from_utf8(b).ok()),
            Err(e) => {
                tracing::warn!(receiver = %self.id, error = %e, "journald: cannot read the saved cursor; starting per start_at");
                None
            }
        }
    }

    fn save_cursor(&self, c: &str) {
        *lock(&self.cursor) = Some(c.to_string());
        if let Some(s) = &self.storage {
            if let Err(e) = s.set(CURSOR_KEY, c.as_bytes()) {
                tracing::warn!(receiver = %self.id, error = %e, "journald: cannot save the cursor");
            }
        }
    }

    /// Runs journalctl until it exits or the receiver stops, and starts it again after
    /// [`RESTART_AFTER`]; `first` is the process start() already launched.
    async fn run(self, mut first: Option<Child>) {
        loop {
            let child = match first.take() {
                Some(c) => Ok(c),
                None => {
                    let args = {
                        let c = self.saved_cursor();
                        let mut a = self.cfg.args.clone();
                        if let Some(c) = c {
                            a.extend(["--after-cursor".into(), c]);
                        }
                        a
                    };
                    spawn(&self.cfg, &args)
                }
            };
            match child {
                Ok(child) => self.follow(child).await,
                Err(e) => {
                    tracing::error!(receiver = %self.id, error = %e, "journald: cannot start journalctl")
                }
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(RESTART_AFTER) => {}
            }
        }
    }

    async fn follow(&self, mut child: Child) {
        if let Some(err) = child.stderr.take() {
            let id = self.id.clone();
            tokio::spawn(async move {
                let mut lines = FramedRead::new(err, LinesCodec::new_with_max_length(64 * 1024));
                while let Some(l) = lines.next().await {
                    if let Ok(l) = l {
                        tracing::error!(receiver = %id, stderr = %l, "journald: journalctl wrote to stderr");
                    }
                }
            });
        }
        let Some(out) = child.stdout.take() else {
            return;
        };
        let mut lines = FramedRead::new(out, LinesCodec::new_with_max_length(MAX_LINE));
        let mut state = PipelineState::default();
        loop {
            let first = tokio::select! {
                _ = self.stop.cancelled() => break,
                l = lines.next() => l,
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            // Whatever journalctl has ready joins the batch, without waiting for more.
            while batch.len() < MAX_BATCH {
                match futures::FutureExt::now_or_never(lines.next()) {
                    Some(Some(l)) => batch.push(l),
                    _ => break,
                }
            }
            self.handle(batch, &mut state).await;
        }
        let _ = child.start_kill();
        match child.wait().await {
            Ok(s) if !s.success() && !self.stop.is_cancelled() => {
                tracing::error!(receiver = %self.id, status = %s, "journald: journalctl exited")
            }
            Ok(_) => tracing::info!(receiver = %self.id, "journald: journalctl exited"),
            Err(e) => {
                tracing::error!(receiver = %self.id, error = %e, "journald: waiting for journalctl")
            }
        }
    }

    async fn handle(&self, lines: Vec<Result<String, LinesCodecError>>, st: &mut PipelineState) {
        let mut out = Vec::new();
        let mut last_cursor = None;
        for l in lines {
            let line = match l {
                Ok(l) => l,
                Err(LinesCodecError::MaxLineLengthExceeded) => {
                    metrics::counter!("vigil_journald_entries_too_large", "receiver" => self.id.clone()).increment(1);
                    tracing::warn!(receiver = %self.id, max = MAX_LINE, "journald: an entry longer than the limit was skipped");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(receiver = %self.id, error = %e, "journald: reading journalctl");
                    continue;
                }
            };
            match parse_line(&line, self.cfg.raw.convert_message_bytes) {
                Ok((mut e, cursor)) => {
                    e.attributes.extend(self.extra_attrs.iter().cloned());
                    e.resource.extend(self.extra_resource.iter().cloned());
                    self.cfg.pipeline.process(e, 0, None, st, &mut out);
                    last_cursor = Some(cursor);
                }
                Err(e) => {
                    tracing::warn!(receiver = %self.id, error = %e, "journald: failed to parse a journal entry")
                }
            }
        }
        self.cfg.pipeline.flush_due(None, st, &mut out);
        if !out.is_empty() {
            let n = out.len();
            let mut groups = crate::stanza::Grouper::default();
            for e in out {
                groups.push(e);
            }
            let r = crate::filelog::send_with_retry(
                self.next.as_ref(),
                groups.take(),
                &self.cfg.raw.retry_on_failure,
                &self.stop,
            )
            .await;
            self.obs.end_op(Signal::Logs, n, &r);
            if let Err(e) = &r {
                // The cursor stays before these entries, so a restart reads them again.
                tracing::error!(receiver = %self.id, entries = n, error = %e, "journald: entries refused by the pipeline");
                return;
            }
        }
        if let Some(c) = last_cursor {
            self.save_cursor(&c);
        }
    }
}

#[async_trait]
impl Component for JournaldReceiver {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        let Some(next) = self.next.get(Signal::Logs).cloned() else {
            anyhow::bail!(
                "receivers::{}: no logs pipeline uses this receiver",
                self.id
            );
        };
        let storage = match &self.cfg.storage {
            Some(sid) => Some(
                host.storage(sid, &self.id, "")
                    .map_err(|e| anyhow::anyhow!("receivers::{}::storage: {e}", self.id))?,
            ),
            None => None,
        };
        let runner = Runner {
            id: self.id.to_string(),
            cfg: Arc::clone(&self.cfg),
            next,
            obs: self.obs.clone(),
            storage,
            cursor: Arc::clone(&self.cursor),
            stop: self.set.tasks.stopping(),
            extra_attrs: json_kvs(&self.cfg.raw.attributes),
            extra_resource: json_kvs(&self.cfg.raw.resource),
        };
        // As otelcol: journalctl that cannot be started fails the start; one that exits later
        // is started again.
        let args = self.command_line(runner.saved_cursor().as_deref());
        let child = spawn(&self.cfg, &args).map_err(|e| {
            anyhow::anyhow!(
                "receivers::{}: cannot run journalctl ({:?}{}): {e}",
                self.id,
                self.cfg.raw.journalctl_path,
                if self.cfg.raw.root_path.is_empty() {
                    String::new()
                } else {
                    format!(" in root_path {:?}", self.cfg.raw.root_path)
                }
            )
        })?;
        self.set.tasks.spawn(runner.run(Some(child)));
        Ok(())
    }

    fn tasks(&self) -> Option<&vigil_core::task::Tasks> {
        Some(&self.set.tasks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vigil_core::otlp::common::v1::AnyValue;
    use vigil_core::ComponentKind;

    fn load(v: Json) -> Result<Checked, ConfigError> {
        let id = ComponentId::parse("journald").unwrap();
        check(vigil_core::config::decode(
            ComponentKind::Receiver,
            &id,
            &v,
        )?)
    }

    #[test]
    fn arguments_follow_otelcol() {
        let c = load(json!({
            "directory": "/run/log/journal",
            "units": ["ssh", "kubelet"],
            "identifiers": ["systemd"],
            "priority": "err..info",
            "grep": "fail",
            "matches": [{"_SYSTEMD_UNIT": "ssh"}, {"_UID": "1000", "_SYSTEMD_UNIT": "kubelet"}],
            "all": true,
            "start_at": "beginning",
            "namespace": "ns1",
        }))
        .unwrap();
        assert_eq!(
            c.args.join(" "),
            "--utc --output=json --follow --no-tail --unit ssh --unit kubelet --identifier systemd \
             --priority err..info --grep fail --namespace ns1 --directory /run/log/journal \
             _SYSTEMD_UNIT=ssh + _SYSTEMD_UNIT=kubelet _UID=1000 --all"
        );
        let d = load(json!({})).unwrap();
        assert_eq!(
            d.args.join(" "),
            "--utc --output=json --follow --priority info"
        );
        let f = load(json!({"files": ["/a.journal", "/b.journal"], "dmesg": true})).unwrap();
        assert!(f
            .args
            .join(" ")
            .ends_with("--dmesg --file /a.journal --file /b.journal"));
    }

    #[test]
    fn bad_keys_name_their_path() {
        let e = load(json!({"start_at": "middle"})).unwrap_err().to_string();
        assert!(e.contains("start_at: invalid value \"middle\""), "{e}");
        let e = load(json!({"priority": "loud"})).unwrap_err().to_string();
        assert!(e.contains("priority: invalid priority \"loud\""), "{e}");
        let e = load(json!({"matches": [{"_unit": "x"}]}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("matches::0::_unit"), "{e}");
        let e = load(json!({"root_path": "/no/such/root"}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("root_path: \"/no/such/root\" is not a directory"),
            "{e}"
        );
    }

    #[test]
    fn a_json_line_becomes_an_entry() {
        let line = r#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1700000000123456","MESSAGE":[104,105,255],"PRIORITY":"3","_PID":"42"}"#;
        let (e, cursor) = parse_line(line, true).unwrap();
        assert_eq!(cursor, "s=1;i=2");
        assert_eq!(e.timestamp, 1_700_000_000_123_456_000);
        let Value::KvlistValue(m) = &e.body else {
            panic!("map body")
        };
        let get = |k: &str| {
            m.values
                .iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| kv.value.clone())
        };
        assert_eq!(
            get("MESSAGE"),
            Some(AnyValue {
                value: Some(Value::StringValue("hi\u{fffd}".into()))
            })
        );
        assert!(get("__REALTIME_TIMESTAMP").is_none());
        assert!(
            get("__CURSOR").is_some(),
            "otelcol keeps the cursor in the body"
        );
        // Without convert_message_bytes the bytes stay an array.
        let (e, _) = parse_line(line, false).unwrap();
        let Value::KvlistValue(m) = &e.body else {
            panic!("map body")
        };
        let msg = m.values.iter().find(|kv| kv.key == "MESSAGE").unwrap();
        assert!(matches!(
            msg.value.as_ref().and_then(|v| v.value.as_ref()),
            Some(Value::ArrayValue(_))
        ));
        assert!(parse_line(r#"{"MESSAGE":"x"}"#, false).is_err());
    }
}
