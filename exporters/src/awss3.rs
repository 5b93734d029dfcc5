//! `awss3`: writes each batch as one object in an S3 bucket, the raw layer of a data lake. Keys are
//! partitioned by the time of upload (`s3_partition_format`, Hive-style `year=…/month=…` by
//! default) so that a query engine reading `s3://bucket/prefix/year=2026/month=12/…` prunes the
//! rest. The body is the OTLP export request as JSON (`otlp_json`, one object a line readers such
//! as DuckDB's `read_json` take) or protobuf (`otlp_proto`), optionally gzip-compressed.
//!
//! Requests are signed with AWS Signature V4 by `rusty-s3` (a presigned PUT sent with the
//! exporters' reqwest client). It is chosen over `aws-sdk-s3` because one PUT is all this needs:
//! the SDK brings its own HTTP stack and well over a hundred crates, minutes of build on the
//! two cores CI has, while rusty-s3 only signs and uses aws-lc-rs, the crypto we already have.
//! Credentials come from the standard environment variables or the shared credentials file, as
//! the AWS SDKs read them; `role_arn` (STS) is refused rather than ignored.
//!
//! An object's key is fixed when the batch is queued, so every retry writes the same key: a
//! retry after a lost answer overwrites the object instead of duplicating the data.

use crate::helper::aws::CredentialSource;
use crate::helper::queue::{signal_from_tag, signal_tag, Persist};
use crate::helper::{
    Delivered, QueueConfig, RetryConfig, SendError, SendSettings, SendStack, Sender,
};
use async_trait::async_trait;
use bytes::Bytes;
use rusty_s3::{Bucket, S3Action, UrlStyle};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use vigil_core::codec::encode::{json_request, proto_request};
use vigil_core::config::{duration, TlsClientConfig};
use vigil_core::factory::{DynExporterFactory, ExporterFactory, FactoryBase};
use vigil_core::{
    ComponentId, ConfigError, Exporter, Host, Settings, Signal, Stability, Telemetry,
};

fn default_region() -> String {
    "us-east-1".into()
}
fn default_partition() -> String {
    "year=%Y/month=%m/day=%d/hour=%H/minute=%M".into()
}
fn default_storage_class() -> String {
    "STANDARD".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// `s3uploader`, with otelcol's keys and defaults.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Uploader {
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default)]
    pub s3_bucket: String,
    /// Prepended to every key (`prefix/year=…`).
    #[serde(default)]
    pub s3_prefix: String,
    /// strftime over the upload time (UTC).
    #[serde(default = "default_partition")]
    pub s3_partition_format: String,
    /// Before the file name (`<file_prefix>traces_<id>.json`).
    #[serde(default)]
    pub file_prefix: String,
    /// Another S3-compatible service (MinIO, Ceph, a local server); AWS's regional endpoint
    /// otherwise.
    #[serde(default)]
    pub endpoint: String,
    /// `endpoint/bucket/key` rather than `bucket.endpoint/key`.
    #[serde(default)]
    pub s3_force_path_style: bool,
    /// `http://` for an `endpoint` written without a scheme, and for AWS's.
    #[serde(default)]
    pub disable_ssl: bool,
    #[serde(default)]
    pub compression: S3Compression,
    /// Sent as `x-amz-storage-class` when not `STANDARD`.
    #[serde(default = "default_storage_class")]
    pub storage_class: String,
    /// An STS role to assume; vigil has no STS client, so a value is refused.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role_arn: String,
}

/// `s3uploader::compression`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum S3Compression {
    #[default]
    None,
    Gzip,
}

/// `marshaler`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Marshaler {
    #[default]
    OtlpJson,
    OtlpProto,
}

impl Marshaler {
    fn extension(self) -> &'static str {
        match self {
            Marshaler::OtlpJson => "json",
            Marshaler::OtlpProto => "binpb",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Marshaler::OtlpJson => "application/json",
            Marshaler::OtlpProto => "application/x-protobuf",
        }
    }
}

/// The `awss3` exporter config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AwsS3Config {
    pub s3uploader: Option<S3Uploader>,
    #[serde(default)]
    pub marshaler: Marshaler,
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    #[serde(default)]
    pub sending_queue: QueueConfig,
}

impl AwsS3Config {
    fn uploader(&self) -> Result<&S3Uploader, ConfigError> {
        self.s3uploader
            .as_ref()
            .ok_or_else(|| ConfigError::at("s3uploader", "is required (s3_bucket at least)"))
    }

    fn validate(&self, id: &ComponentId) -> Result<(), ConfigError> {
        let u = self.uploader()?;
        if u.s3_bucket.trim().is_empty() {
            return Err(ConfigError::at(
                "s3uploader::s3_bucket",
                "is required (the bucket objects are written to)",
            ));
        }
        if u.region.trim().is_empty() {
            return Err(ConfigError::at("s3uploader::region", "must not be empty"));
        }
        if !u.role_arn.is_empty() {
            return Err(ConfigError::at(
                "s3uploader::role_arn",
                "assuming a role is not supported by vigil: give the role's credentials through \
                 AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN (or a shared \
                 credentials file) instead",
            ));
        }
        check_partition_format(&u.s3_partition_format)
            .map_err(|e| ConfigError::at("s3uploader::s3_partition_format", e))?;
        if u.file_prefix.contains('/') {
            return Err(ConfigError::at(
                "s3uploader::file_prefix",
                format!(
                    "{:?} must not contain '/': put folders in s3_prefix",
                    u.file_prefix
                ),
            ));
        }
        bucket(u).map_err(|e| ConfigError::at("s3uploader::endpoint", e))?;
        self.settings().validate(id)
    }

    fn settings(&self) -> SendSettings {
        SendSettings {
            timeout: self.timeout,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
        }
    }
}

/// Refuses a format chrono cannot render, so that a typo is a config error and not a runtime one.
fn check_partition_format(format: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(format).any(|i| matches!(i, Item::Error)) {
        return Err(format!("{format:?} is not a valid strftime format"));
    }
    if format.starts_with('/') || format.ends_with('/') {
        return Err(format!("{format:?} must not start or end with '/'"));
    }
    Ok(())
}

/// The bucket's URL: `endpoint` if set (with `http://` or `https://` added by `disable_ssl` when
/// it has no scheme), else AWS's regional endpoint.
fn bucket(u: &S3Uploader) -> Result<Bucket, String> {
    let scheme = if u.disable_ssl { "http" } else { "https" };
    let raw = if u.endpoint.trim().is_empty() {
        format!("{scheme}://s3.{}.amazonaws.com", u.region.trim())
    } else if u.endpoint.contains("://") {
        u.endpoint.trim().to_string()
    } else {
        format!("{scheme}://{}", u.endpoint.trim())
    };
    let url: url::Url = raw
        .parse()
        .map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    let style = if u.s3_force_path_style {
        UrlStyle::Path
    } else {
        UrlStyle::VirtualHost
    };
    Bucket::new(
        url,
        style,
        u.s3_bucket.trim().to_string(),
        u.region.trim().to_string(),
    )
    .map_err(|e| {
        format!(
            "cannot address bucket {:?} at {raw:?}: {e} (an IP address or a local endpoint \
                 needs s3_force_path_style: true)",
            u.s3_bucket
        )
    })
}

/// The object key of a batch uploaded at `now`: `prefix/partition/<file_prefix><signal>_<id>.<ext>`.
pub fn object_key(
    u: &S3Uploader,
    marshaler: Marshaler,
    signal: Signal,
    now: chrono::DateTime<chrono::Utc>,
    unique: u64,
) -> String {
    let mut key = String::new();
    let prefix = u.s3_prefix.trim_matches('/');
    if !prefix.is_empty() {
        key.push_str(prefix);
        key.push('/');
    }
    key.push_str(&now.format(&u.s3_partition_format).to_string());
    key.push('/');
    key.push_str(&u.file_prefix);
    key.push_str(signal.as_str());
    key.push_str(&format!("_{unique:016x}.{}", marshaler.extension()));
    if u.compression == S3Compression::Gzip {
        key.push_str(".gz");
    }
    key
}

/// One object to write.
pub struct S3Object {
    signal: Signal,
    key: String,
    body: Bytes,
}

/// Stored as the signal tag, the key's length (u32, big-endian), the key, then the body.
impl Persist for S3Object {
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.key.len() + self.body.len());
        out.push(signal_tag(self.signal));
        out.extend_from_slice(&(self.key.len() as u32).to_be_bytes());
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&tag, rest) = bytes.split_first()?;
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        let key = std::str::from_utf8(rest.get(..len)?).ok()?.to_string();
        Some(S3Object {
            signal: signal_from_tag(tag)?,
            key,
            body: Bytes::copy_from_slice(rest.get(len..)?),
        })
    }
}

/// How long a presigned PUT stays valid: longer than any attempt (`timeout`), short enough that a
/// leaked URL is useless soon.
const PRESIGN_FOR: Duration = Duration::from_secs(300);

/// The S3 transport.
pub struct S3Sender {
    uploader: S3Uploader,
    marshaler: Marshaler,
    bucket: Bucket,
    client: reqwest::Client,
    credentials: CredentialSource,
}

#[async_trait]
impl Sender for S3Sender {
    type Request = S3Object;

    fn prepare(&self, data: &Telemetry) -> Result<S3Object, SendError> {
        let body = match self.marshaler {
            Marshaler::OtlpJson => {
                let mut b = json_request(data).map_err(|e| {
                    SendError::permanent(format!("cannot encode as OTLP JSON: {e}"))
                })?;
                // One request a line, so that a file of several concatenated still reads as JSON lines.
                b.push(b'\n');
                b
            }
            Marshaler::OtlpProto => proto_request(data),
        };
        let body = match self.uploader.compression {
            S3Compression::None => body,
            S3Compression::Gzip => vigil_core::codec::Compression::Gzip
                .compress(body)
                .map_err(|e| SendError::permanent(format!("cannot gzip the object: {e}")))?,
        };
        let key = object_key(
            &self.uploader,
            self.marshaler,
            data.signal(),
            chrono::Utc::now(),
            rand::random(),
        );
        Ok(S3Object {
            signal: data.signal(),
            key,
            body: Bytes::from(body),
        })
    }

    async fn send(&self, obj: &S3Object) -> Result<Delivered, SendError> {
        let creds = self.credentials.load().map_err(SendError::retryable)?;
        let mut put = self.bucket.put_object(Some(&creds), &obj.key);
        put.headers_mut()
            .insert("content-type", self.marshaler.content_type());
        let storage_class = self.uploader.storage_class.trim();
        if !storage_class.is_empty() && storage_class != "STANDARD" {
            put.headers_mut()
                .insert("x-amz-storage-class", storage_class.to_string());
        }
        let url = put.sign(PRESIGN_FOR);
        let mut req = self
            .client
            .put(url)
            .header("content-type", self.marshaler.content_type())
            .body(obj.body.clone());
        if !storage_class.is_empty() && storage_class != "STANDARD" {
            req = req.header("x-amz-storage-class", storage_class);
        }
        let resp = req.send().await.map_err(|e| {
            SendError::retryable(format!(
                "cannot reach S3 for {}: {}",
                obj.key,
                crate::helper::http::error_chain(&e)
            ))
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(Delivered::default());
        }
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                crate::helper::classify::parse_retry_after(v, std::time::SystemTime::now())
            });
        let text = resp.text().await.unwrap_or_default();
        let code = s3_error_code(&text);
        let reason = format!(
            "S3 answered {status} for {}/{}{}",
            self.uploader.s3_bucket,
            obj.key,
            code.map(|c| format!(" ({c})")).unwrap_or_default()
        );
        // 5xx and throttling are S3's "try again"; 4xx (no bucket, access denied) is not.
        if status.is_server_error()
            || status.as_u16() == 429
            || code.is_some_and(|c| c == "SlowDown" || c == "RequestTimeout")
        {
            Err(SendError::Retryable {
                reason,
                retry_after,
            })
        } else {
            Err(SendError::permanent(reason))
        }
    }

    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        // Said at start rather than only on the first batch; not a start error, since credentials
        // can appear later (a mounted secret) and every send reads them again.
        if let Err(e) = self.credentials.load() {
            tracing::error!(
                bucket = %self.uploader.s3_bucket,
                "{e}; uploads are retried until credentials appear"
            );
        }
        Ok(())
    }
}

/// The `<Code>` of an S3 XML error body.
fn s3_error_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let end = body[start..].find("</Code>")? + start;
    Some(&body[start..end])
}

fn build(set: &Settings, cfg: AwsS3Config) -> Result<SendStack<S3Sender>, ConfigError> {
    build_with(set, cfg, CredentialSource::from_env())
}

/// `build` with where credentials come from (tests give a file of their own).
fn build_with(
    set: &Settings,
    cfg: AwsS3Config,
    credentials: CredentialSource,
) -> Result<SendStack<S3Sender>, ConfigError> {
    let u = cfg.uploader()?.clone();
    let bucket = bucket(&u).map_err(|e| ConfigError::at("s3uploader::endpoint", e))?;
    let client = crate::helper::http::http_client(
        &set.id,
        &Default::default(),
        &TlsClientConfig::default(),
    )?;
    let sender = S3Sender {
        uploader: u,
        marshaler: cfg.marshaler,
        bucket,
        client,
        credentials,
    };
    Ok(SendStack::new(set, cfg.settings(), sender))
}

struct Factory;

/// The `awss3` exporter factory (`aws_s3` is accepted too).
pub fn factory() -> Arc<dyn DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl FactoryBase for Factory {
    type Config = AwsS3Config;

    fn type_name(&self) -> &'static str {
        "awss3"
    }

    fn default_config(&self) -> Option<AwsS3Config> {
        // `s3uploader::s3_bucket` has no default.
        None
    }

    fn validate(&self, id: &ComponentId, cfg: &AwsS3Config) -> Result<(), ConfigError> {
        cfg.validate(id)
    }
}

impl ExporterFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Alpha),
            (Signal::Metrics, Stability::Alpha),
            (Signal::Logs, Stability::Alpha),
        ]
    }

    fn create(&self, set: Settings, cfg: AwsS3Config) -> Result<Arc<dyn Exporter>, ConfigError> {
        Ok(Arc::new(build(&set, cfg)?))
    }
}

#[cfg(test)]
mod tests;
