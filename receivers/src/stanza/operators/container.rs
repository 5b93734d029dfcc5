//! The `container` operator: parses the three line formats Kubernetes nodes write (Docker's JSON
//! file driver, CRI-O's and containerd's `<time> <stream> <P|F> <message>`), joins partial lines
//! (a `P` tag, or a Docker `log` without its trailing newline) into one record per stream, and takes
//! the pod's namespace, name, uid, container name and restart count from the `/var/log/pods` path.

use crate::stanza::entry::Entry;
use regex::Regex;
use std::collections::HashMap;
use std::sync::OnceLock;
use vigil_core::attrs::{kv_str, upsert};
use vigil_core::otlp::common::v1::any_value::Value;

/// Which line format to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Auto,
    Docker,
    Crio,
    Containerd,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "" | "auto" => Ok(Format::Auto),
            "docker" => Ok(Format::Docker),
            "crio" => Ok(Format::Crio),
            "containerd" => Ok(Format::Containerd),
            o => Err(format!(
                "unknown format {o:?}: expected docker, crio or containerd (or leave it empty to detect)"
            )),
        }
    }
}

/// One line, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerLine {
    pub time_unix_nano: u64,
    pub stream: String,
    pub partial: bool,
    pub message: String,
}

/// Parses one line in the given (or detected) format.
pub fn parse_line(format: Format, line: &str) -> Result<ContainerLine, String> {
    let docker = match format {
        Format::Auto => line.trim_start().starts_with('{'),
        Format::Docker => true,
        Format::Crio | Format::Containerd => false,
    };
    if docker {
        #[derive(serde::Deserialize, serde::Serialize)]
        struct D {
            log: String,
            #[serde(default)]
            stream: String,
            #[serde(default)]
            time: String,
        }
        let d: D =
            serde_json::from_str(line).map_err(|e| format!("not a Docker JSON log line: {e}"))?;
        let (message, partial) = match d.log.strip_suffix('\n') {
            Some(m) => (m.strip_suffix('\r').unwrap_or(m).to_string(), false),
            None => (d.log, true),
        };
        return Ok(ContainerLine {
            time_unix_nano: rfc3339(&d.time)?,
            stream: d.stream,
            partial,
            message,
        });
    }
    let mut parts = line.splitn(4, ' ');
    let (Some(time), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("not a CRI log line: expected \"<time> <stream> <P|F> <message>\"".into());
    };
    let message = parts.next().unwrap_or("");
    let partial = match tag.split(':').next() {
        Some("P") => true,
        Some("F") => false,
        _ => {
            return Err(format!(
                "not a CRI log line: unknown tag {tag:?} (expected P or F)"
            ))
        }
    };
    Ok(ContainerLine {
        time_unix_nano: rfc3339(time)?,
        stream: stream.to_string(),
        partial,
        message: message.strip_suffix('\r').unwrap_or(message).to_string(),
    })
}

fn rfc3339(s: &str) -> Result<u64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_nanos_opt().unwrap_or(0).max(0) as u64)
        .map_err(|e| format!("bad container log time {s:?}: {e}"))
}

/// Resource attributes taken from a pod log path, as (key, value).
pub type PodMetadata = Vec<(&'static str, String)>;

/// The resource attributes a `/var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log` path carries.
pub fn pod_metadata(path: &str) -> Option<PodMetadata> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    let re = RE
        .get_or_init(|| {
            Regex::new(
                r"/(?P<ns>[^_/]+)_(?P<pod>[^_/]+)_(?P<uid>[a-f0-9-]+)/(?P<container>[^/._][^/]*)/(?P<restart>\d+)\.log(\.[^/]*)?$",
            )
            .ok()
        })
        .as_ref()?;
    let c = re.captures(path)?;
    Some(vec![
        ("k8s.namespace.name", c["ns"].to_string()),
        ("k8s.pod.name", c["pod"].to_string()),
        ("k8s.pod.uid", c["uid"].to_string()),
        ("k8s.container.name", c["container"].to_string()),
        ("k8s.container.restart_count", c["restart"].to_string()),
    ])
}

/// Partial lines waiting for their end, per stream, with the file offset of the first piece so the
/// reader never checkpoints past an unfinished record.
#[derive(Debug, Default)]
pub struct ContainerState {
    pending: HashMap<String, (Entry, u64)>,
    /// The last path seen and what it yielded, so the regex runs once per file, not per line.
    metadata: Option<(String, Option<PodMetadata>)>,
}

impl ContainerState {
    /// The lowest file offset of a held partial line.
    pub fn held_from(&self) -> Option<u64> {
        self.pending.values().map(|(_, o)| *o).min()
    }

    /// Takes every held record, joined so far, for a flush.
    pub fn drain(&mut self) -> Vec<Entry> {
        self.pending.drain().map(|(_, (e, _))| e).collect()
    }
}

/// The operator itself.
#[derive(Debug, Clone)]
pub struct ContainerOp {
    pub format: Format,
    pub add_metadata_from_filepath: bool,
    /// A joined record stops growing at this many bytes (0: no limit).
    pub max_log_size: usize,
}

impl ContainerOp {
    /// Parses `e`'s body. Returns the entry to pass on, or `None` when it is held as a partial line.
    /// Nothing is taken from `e` on error, so that `on_error: send` passes it on unchanged.
    pub fn apply(
        &self,
        e: &mut Entry,
        offset: u64,
        path: Option<&str>,
        st: &mut ContainerState,
    ) -> Result<Option<Entry>, String> {
        let Value::StringValue(line) = &e.body else {
            return Err("container: the body is not a string".into());
        };
        let parsed = parse_line(self.format, line)?;
        let mut e = std::mem::replace(e, Entry::text(String::new(), 0));
        if self.add_metadata_from_filepath {
            if let Some(p) = path {
                let stale = st.metadata.as_ref().is_none_or(|(cached, _)| cached != p);
                if stale {
                    st.metadata = Some((p.to_string(), pod_metadata(p)));
                }
                if let Some((_, Some(md))) = &st.metadata {
                    for (k, v) in md {
                        upsert(&mut e.resource, k, Value::StringValue(v.clone()));
                    }
                }
            }
        }
        match st.pending.remove(&parsed.stream) {
            Some((mut first, first_offset)) => {
                if let Value::StringValue(b) = &mut first.body {
                    if self.max_log_size == 0 || b.len() < self.max_log_size {
                        b.push_str(&parsed.message);
                    }
                }
                if parsed.partial {
                    st.pending.insert(parsed.stream, (first, first_offset));
                    Ok(None)
                } else {
                    Ok(Some(first))
                }
            }
            None => {
                e.body = Value::StringValue(parsed.message);
                e.timestamp = parsed.time_unix_nano;
                e.attributes
                    .push(kv_str("log.iostream", parsed.stream.clone()));
                if parsed.partial {
                    st.pending.insert(parsed.stream, (e, offset));
                    Ok(None)
                } else {
                    Ok(Some(e))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_runtime() {
        let d = parse_line(
            Format::Auto,
            r#"{"log":"hello\n","stream":"stderr","time":"2024-03-01T10:00:00.5Z"}"#,
        )
        .unwrap();
        assert_eq!(
            (d.message.as_str(), d.stream.as_str(), d.partial),
            ("hello", "stderr", false)
        );
        assert_eq!(d.time_unix_nano, 1_709_287_200_500_000_000);
        let c = parse_line(
            Format::Auto,
            "2024-03-01T10:00:00.000000001Z stdout P part one",
        )
        .unwrap();
        assert_eq!((c.message.as_str(), c.partial), ("part one", true));
        let o = parse_line(Format::Auto, "2024-03-01T11:00:00.1+01:00 stdout F x y").unwrap();
        assert_eq!(o.time_unix_nano, 1_709_287_200_100_000_000);
        assert!(parse_line(Format::Auto, "garbage").is_err());
        assert!(parse_line(Format::Docker, "{\"nolog\":1}").is_err());
    }

    #[test]
    fn pod_path_metadata() {
        let md = pod_metadata("/var/log/pods/kube-system_coredns-5d78c9869d-abcde_0f1e2d3c-aaaa-bbbb-cccc-0123456789ab/coredns/2.log").unwrap();
        assert_eq!(md[0], ("k8s.namespace.name", "kube-system".to_string()));
        assert_eq!(md[1].1, "coredns-5d78c9869d-abcde");
        assert_eq!(md[2].1, "0f1e2d3c-aaaa-bbbb-cccc-0123456789ab");
        assert_eq!(md[3].1, "coredns");
        assert_eq!(md[4].1, "2");
        assert!(pod_metadata("/var/log/syslog").is_none());
    }
}
