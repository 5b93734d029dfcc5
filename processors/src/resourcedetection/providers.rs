//! The detectors otelcol-contrib added for smaller platforms: `heroku` and `lambda` (the
//! environment variables those platforms set), `dynatrace` (the properties file the OneAgent
//! writes) and the link-local metadata services of `upcloud`, `vultr`, `nova` (OpenStack),
//! `digitalocean`, `hetzner` and `scaleway`. Like the detectors in [`super::cloud`], each finds nothing, quietly, off its
//! platform.
//!
//! Tests (`cloud_tests.rs`) run the metadata detectors against local doubles that answer on the
//! providers' documented paths with the documented response shapes; no such cloud is reachable
//! in CI.

use super::cloud::{call, client, json, list, probe, s, Endpoints, Miss, Out};
use super::Found;
use regex::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The Dynatrace enrichment directory: `%ProgramData%\dynatrace\enrichment` on Windows
/// (`C:\ProgramData` when the variable is unset), `/var/lib/dynatrace/enrichment` elsewhere.
pub fn dynatrace_dir(env: &(dyn Fn(&str) -> Option<String> + Sync)) -> String {
    if cfg!(windows) {
        let base = env("ProgramData")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| r"C:\ProgramData".into());
        format!(r"{base}\dynatrace\enrichment")
    } else {
        "/var/lib/dynatrace/enrichment".into()
    }
}

/// The file in [`dynatrace_dir`] and the keys otelcol takes from it; other keys are ignored.
pub const DYNATRACE_FILE: &str = "dt_host_metadata.properties";
const DYNATRACE_KEYS: &[&str] = &["dt.entity.host", "host.name", "dt.smartscape.host"];

/// Heroku: the dyno metadata variables (set when the `runtime-dyno-metadata` lab feature is on).
/// `HEROKU_DYNO_ID` decides whether this is a dyno.
pub fn heroku(env: &(dyn Fn(&str) -> Option<String> + Sync)) -> Out {
    let Some(dyno) = env("HEROKU_DYNO_ID") else {
        return Err(Miss::Absent("HEROKU_DYNO_ID is not set".into()));
    };
    let mut out: Found = vec![
        ("cloud.provider".into(), s("heroku")),
        ("service.instance.id".into(), s(dyno.clone())),
        ("heroku.dyno.id".into(), s(dyno)),
    ];
    for (var, key) in [
        ("HEROKU_APP_ID", "heroku.app.id"),
        ("HEROKU_APP_NAME", "heroku.app.name"),
        (
            "HEROKU_RELEASE_CREATED_AT",
            "heroku.release.creation_timestamp",
        ),
        ("HEROKU_RELEASE_VERSION", "heroku.release.version"),
        ("HEROKU_SLUG_COMMIT", "heroku.release.commit"),
    ] {
        if let Some(v) = env(var) {
            out.push((key.into(), s(v)));
        }
    }
    Ok(out)
}

/// AWS Lambda: the runtime's reserved environment variables; a function name decides.
pub fn lambda(env: &(dyn Fn(&str) -> Option<String> + Sync)) -> Out {
    let Some(name) = env("AWS_LAMBDA_FUNCTION_NAME").filter(|v| !v.is_empty()) else {
        return Err(Miss::Absent("AWS_LAMBDA_FUNCTION_NAME is not set".into()));
    };
    let mut out: Found = vec![
        ("cloud.provider".into(), s("aws")),
        ("cloud.platform".into(), s("aws_lambda")),
    ];
    if let Some(r) = env("AWS_REGION") {
        out.push(("cloud.region".into(), s(r)));
    }
    out.push(("faas.name".into(), s(name)));
    let stream = env("AWS_LAMBDA_LOG_STREAM_NAME");
    for (var, key) in [
        ("AWS_LAMBDA_FUNCTION_VERSION", "faas.version"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "faas.instance"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "faas.max_memory"),
    ] {
        if let Some(v) = env(var) {
            out.push((key.into(), s(v)));
        }
    }
    if let Some(g) = env("AWS_LAMBDA_LOG_GROUP_NAME") {
        out.push(("aws.log.group.names".into(), list(vec![g])));
    }
    if let Some(st) = stream {
        out.push(("aws.log.stream.names".into(), list(vec![st])));
    }
    Ok(out)
}

/// Dynatrace: `key=value` lines (split at the first `=`); only the host keys are taken. No file
/// means no OneAgent on this host.
pub async fn dynatrace(ep: &Endpoints) -> Out {
    let path = std::path::Path::new(&ep.dynatrace_dir).join(DYNATRACE_FILE);
    let text = match tokio::fs::read(&path).await {
        Ok(b) if b.len() > super::cloud::MAX_BODY => {
            return Err(Miss::Failed(format!(
                "{} is larger than {} bytes",
                path.display(),
                super::cloud::MAX_BODY
            )))
        }
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Miss::Absent(format!("no {}", path.display())))
        }
        Err(e) => return Err(Miss::Failed(format!("{}: {e}", path.display()))),
    };
    let mut out: Found = Vec::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            if !line.trim().is_empty() {
                tracing::warn!("dynatrace detector: skipping {line:?}, not key=value");
            }
            continue;
        };
        if k.is_empty() || v.is_empty() || !DYNATRACE_KEYS.contains(&k) {
            continue;
        }
        out.push((k.trim().to_string(), s(v.trim())));
    }
    Ok(out)
}

/// `GET <link_local>/metadata/v1.json`, which both UpCloud and DigitalOcean serve.
async fn metadata_v1(ep: &Endpoints, timeout: Duration) -> Result<String, Miss> {
    let c = client(timeout, None)?;
    let (_, body) = probe(c.get(format!("{}/metadata/v1.json", ep.link_local))).await?;
    Ok(body)
}

#[derive(Deserialize)]
struct UpCloud {
    #[serde(default)]
    cloud_name: String,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    instance_id: String,
    #[serde(default)]
    region: String,
}

/// UpCloud: `/metadata/v1.json`; `cloud_name` (`upcloud`) is the provider. An answer without it
/// is another provider's service on the same path (DigitalOcean's), so this is not UpCloud.
pub async fn upcloud(ep: &Endpoints, timeout: Duration) -> Out {
    let m: UpCloud = json("UpCloud metadata", &metadata_v1(ep, timeout).await?)?;
    if m.cloud_name.is_empty() {
        return Err(Miss::Absent("the answer has no cloud_name".into()));
    }
    Ok(vec![
        ("cloud.provider".into(), s(m.cloud_name)),
        ("cloud.region".into(), s(m.region)),
        ("host.id".into(), s(m.instance_id)),
        ("host.name".into(), s(m.hostname)),
    ])
}

#[derive(Deserialize)]
struct Droplet {
    droplet_id: Option<u64>,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    region: String,
}

/// DigitalOcean: the droplet's `/metadata/v1.json`. An answer without `droplet_id` is not a
/// droplet's (UpCloud serves the same path).
pub async fn digitalocean(ep: &Endpoints, timeout: Duration) -> Out {
    let m: Droplet = json("DigitalOcean metadata", &metadata_v1(ep, timeout).await?)?;
    let Some(id) = m.droplet_id else {
        return Err(Miss::Absent("the answer has no droplet_id".into()));
    };
    Ok(vec![
        ("cloud.provider".into(), s("digitalocean")),
        ("host.id".into(), s(id.to_string())),
        ("host.name".into(), s(m.hostname)),
        ("cloud.region".into(), s(m.region)),
    ])
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct VultrRegion {
    regioncode: String,
}

#[derive(Deserialize)]
struct Vultr {
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    instanceid: String,
    #[serde(default, rename = "instance-v2-id")]
    instance_v2_id: String,
    #[serde(default)]
    region: VultrRegion,
}

/// Vultr: `/v1.json`. The v2 instance UUID is the host id (the legacy `instanceid` when there is
/// none); the region code is upper case there and lower case in the attribute, as otelcol's.
/// A 4xx is something other than Vultr's service answering, so not Vultr.
pub async fn vultr(ep: &Endpoints, timeout: Duration) -> Out {
    let c = client(timeout, None)?;
    let (_, body) = probe(c.get(format!("{}/v1.json", ep.link_local))).await?;
    let m: Vultr = json("Vultr metadata", &body)?;
    let id = if m.instance_v2_id.is_empty() {
        m.instanceid
    } else {
        m.instance_v2_id
    };
    let mut out: Found = vec![
        ("cloud.provider".into(), s("vultr")),
        ("cloud.platform".into(), s("vultr_cloud_compute")),
    ];
    for (k, v) in [
        ("host.id", id),
        ("host.name", m.hostname),
        ("cloud.region", m.region.regioncode.to_lowercase()),
    ] {
        if !v.is_empty() {
            out.push((k.into(), s(v)));
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Nova {
    #[serde(default)]
    uuid: String,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    availability_zone: String,
    #[serde(default)]
    project_id: String,
    #[serde(default)]
    meta: BTreeMap<String, String>,
}

/// OpenStack Nova: `/openstack/latest/meta_data.json`, and the flavor from the EC2-compatible
/// `/latest/meta-data/instance-type` when the cloud serves it. `labels` pick instance `meta` keys
/// for `openstack.nova.meta.<key>`. A document without `uuid` is not Nova's.
pub async fn nova(ep: &Endpoints, timeout: Duration, labels: &[Regex]) -> Out {
    let c = client(timeout, None)?;
    let (_, body) =
        probe(c.get(format!("{}/openstack/latest/meta_data.json", ep.link_local))).await?;
    let m: Nova = json("OpenStack meta_data.json", &body)?;
    if m.uuid.is_empty() {
        return Err(Miss::Absent("meta_data.json has no uuid".into()));
    }
    if m.hostname.is_empty() {
        return Err(Miss::Failed("meta_data.json has no hostname".into()));
    }
    let mut out: Found = vec![
        ("cloud.provider".into(), s("openstack")),
        ("cloud.platform".into(), s("openstack_nova")),
        ("cloud.account.id".into(), s(m.project_id)),
        ("cloud.availability_zone".into(), s(m.availability_zone)),
        ("host.id".into(), s(m.uuid)),
        ("host.name".into(), s(m.hostname)),
    ];
    match call(c.get(format!("{}/latest/meta-data/instance-type", ep.link_local))).await {
        Ok((_, t)) if !t.trim().is_empty() => out.push(("host.type".into(), s(t.trim()))),
        Ok(_) => {}
        Err(Miss::Absent(e) | Miss::Failed(e)) => {
            tracing::debug!("nova detector: no EC2-compatible instance type: {e}")
        }
    }
    for (k, v) in m.meta {
        if labels.iter().any(|r| r.is_match(&k)) {
            out.push((format!("openstack.nova.meta.{k}"), s(v)));
        }
    }
    Ok(out)
}

/// Hetzner Cloud: the plain-text values under `<link_local>/hetzner/v1/metadata`, as the hcloud
/// metadata client reads them. `hostname` answering decides that this is a Hetzner server; the
/// other values that do not answer are left out, as otelcol logs and skips them.
pub async fn hetzner(ep: &Endpoints, timeout: Duration) -> Out {
    let c = client(timeout, None)?;
    let get = |p: &str| c.get(format!("{}/hetzner/v1/metadata/{p}", ep.link_local));
    let (_, hostname) = probe(get("hostname")).await?;
    let mut out: Found = vec![
        ("cloud.provider".into(), s("hetzner")),
        ("host.name".into(), s(hostname.trim())),
    ];
    for (p, key) in [
        ("instance-id", "host.id"),
        ("region", "cloud.region"),
        ("availability-zone", "cloud.availability_zone"),
    ] {
        match call(get(p)).await {
            Ok((_, v)) if !v.trim().is_empty() => out.push((key.into(), s(v.trim()))),
            Ok(_) => {}
            Err(Miss::Absent(e) | Miss::Failed(e)) => {
                tracing::debug!("hetzner detector: {p}: {e}")
            }
        }
    }
    Ok(out)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ScalewayImage {
    id: String,
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ScalewayLocation {
    zone_id: String,
}

#[derive(Deserialize)]
struct Scaleway {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    organization: String,
    #[serde(default)]
    commercial_type: String,
    #[serde(default)]
    image: ScalewayImage,
    #[serde(default)]
    location: ScalewayLocation,
}

/// Scaleway: `<scaleway>/conf?format=json`, the instance's own view of itself. The region is the
/// zone without its last `-` part (`nl-ams-1` is in `nl-ams`). Provider and platform are
/// `scaleway_cloud` and `scaleway_cloud_compute`, otelcol's values.
pub async fn scaleway(ep: &Endpoints, timeout: Duration) -> Out {
    let c = client(timeout, None)?;
    let (_, body) = probe(c.get(format!("{}/conf?format=json", ep.scaleway))).await?;
    let m: Scaleway = json("Scaleway metadata", &body)?;
    let zone = m.location.zone_id;
    let region = zone
        .rsplit_once('-')
        .map(|(r, _)| r.to_string())
        .filter(|r| !r.is_empty());
    let mut out: Found = vec![
        ("cloud.provider".into(), s("scaleway_cloud")),
        ("cloud.platform".into(), s("scaleway_cloud_compute")),
    ];
    for (k, v) in [
        ("cloud.account.id", m.organization),
        ("cloud.availability_zone", zone),
        ("cloud.region", region.unwrap_or_default()),
        ("host.id", m.id),
        ("host.image.id", m.image.id),
        ("host.image.name", m.image.name),
        ("host.name", m.name),
        ("host.type", m.commercial_type),
    ] {
        if !v.is_empty() {
            out.push((k.into(), s(v)));
        }
    }
    Ok(out)
}
