//! The metadata services otelcol-contrib added last: `akamai` (Linode's token-guarded service),
//! `alibaba_ecs` (token-guarded, plain text), `tencent_cvm` (plain text), `ibmcloud_vpc` (an
//! instance identity token, then JSON) and `ibmcloud_classic` (SoftLayer's resource metadata
//! API, plain text). Like the detectors in [`super::cloud`], each finds nothing, quietly, off its
//! platform: the first request failing in any way means "not here".
//!
//! Tests (`cloud_tests.rs`) run them against local doubles that answer on the providers'
//! documented paths, require the documented token headers, and serve the documented response
//! shapes; none of these clouds is reachable in CI.

use super::cloud::{call, client, json, probe, s, Endpoints, Miss, Out};
use super::Found;
use serde::Deserialize;
use std::time::Duration;

/// Pushes the non-empty values, in order.
fn push_all(out: &mut Found, pairs: impl IntoIterator<Item = (&'static str, String)>) {
    for (k, v) in pairs {
        let v = v.trim();
        if !v.is_empty() {
            out.push((k.into(), s(v)));
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LinodeImage {
    id: String,
    label: String,
}

/// The fields of Linode's `GET /v1/instance` that otelcol reads.
#[derive(Deserialize)]
struct LinodeInstance {
    id: i64,
    #[serde(default)]
    label: String,
    #[serde(default)]
    region: String,
    #[serde(default, rename = "type")]
    kind: String,
    /// `null` for an instance created without an image.
    #[serde(default)]
    image: Option<LinodeImage>,
    #[serde(default)]
    account_euuid: String,
}

/// Akamai (Linode): a token from `PUT <link_local>/v1/token` (expiry header, as Linode's
/// go-metadata client sends it), then `GET /v1/instance` with it.
pub async fn akamai(ep: &Endpoints, timeout: Duration) -> Out {
    let c = client(timeout, None)?;
    let (_, token) = probe(
        c.put(format!("{}/v1/token", ep.link_local))
            .header("Content-Type", "text/plain")
            .header("X-Metadata-Token-Expiry-Seconds", "3600"),
    )
    .await?;
    let (_, body) = call(
        c.get(format!("{}/v1/instance", ep.link_local))
            .header("X-Metadata-Token", token.trim())
            .header("Accept", "application/json"),
    )
    .await?;
    let m: LinodeInstance = json("Akamai instance metadata", &body)?;
    let image = m.image.unwrap_or_default();
    let mut out: Found = vec![
        ("cloud.provider".into(), s("akamai_cloud")),
        ("cloud.platform".into(), s("akamai_cloud.compute")),
    ];
    push_all(
        &mut out,
        [
            ("cloud.account.id", m.account_euuid),
            ("cloud.region", m.region),
            ("host.id", m.id.to_string()),
            ("host.image.id", image.id),
            ("host.image.name", image.label),
            ("host.name", m.label),
            ("host.type", m.kind),
        ],
    );
    Ok(out)
}

/// Alibaba Cloud ECS: a token from `PUT <alibaba>/latest/api/token` (hardened mode needs it,
/// normal mode accepts it), then the plain-text values under `/latest/meta-data/`. otelcol
/// needs every value; so does this.
pub async fn alibaba_ecs(ep: &Endpoints, timeout: Duration) -> Out {
    let c = client(timeout, None)?;
    let (_, token) = probe(
        c.put(format!("{}/latest/api/token", ep.alibaba))
            .header("X-aliyun-ecs-metadata-token-ttl-seconds", "21600"),
    )
    .await?;
    let token = token.trim().to_string();
    let get = |p: &str| {
        c.get(format!("{}/latest/meta-data/{p}", ep.alibaba))
            .header("X-aliyun-ecs-metadata-token", token.as_str())
    };
    let mut v = Vec::new();
    for p in [
        "hostname",
        "image-id",
        "instance-id",
        "instance/instance-type",
        "owner-account-id",
        "region-id",
        "zone-id",
    ] {
        let (_, body) = call(get(p))
            .await
            .map_err(|m| with_path(m, "alibaba_ecs", p))?;
        v.push(body);
    }
    let [host, image, id, kind, account, region, zone] = take7(v);
    let mut out: Found = vec![
        ("cloud.provider".into(), s("alibaba_cloud")),
        ("cloud.platform".into(), s("alibaba_cloud_ecs")),
    ];
    push_all(
        &mut out,
        [
            ("cloud.account.id", account),
            ("cloud.region", region),
            ("cloud.availability_zone", zone),
            ("host.id", id),
            ("host.name", host),
            ("host.image.id", image),
            ("host.type", kind),
        ],
    );
    Ok(out)
}

/// Tencent Cloud CVM: the plain-text values under `<tencent>/latest/meta-data/`; no token.
/// `instance-id` answering decides, and then otelcol needs every value, as does this.
pub async fn tencent_cvm(ep: &Endpoints, timeout: Duration) -> Out {
    let c = client(timeout, None)?;
    let get = |p: &str| c.get(format!("{}/latest/meta-data/{p}", ep.tencent));
    let (_, id) = probe(get("instance-id")).await?;
    let mut v = vec![id];
    for p in [
        "instance-name",
        "instance/image-id",
        "instance/instance-type",
        "app-id",
        "placement/region",
        "placement/zone",
    ] {
        let (_, body) = call(get(p))
            .await
            .map_err(|m| with_path(m, "tencent_cvm", p))?;
        v.push(body);
    }
    let [id, name, image, kind, app, region, zone] = take7(v);
    let mut out: Found = vec![
        ("cloud.provider".into(), s("tencent_cloud")),
        ("cloud.platform".into(), s("tencent_cloud_cvm")),
    ];
    push_all(
        &mut out,
        [
            ("cloud.account.id", app),
            ("cloud.region", region),
            ("cloud.availability_zone", zone),
            ("host.id", id),
            ("host.name", name),
            ("host.image.id", image),
            ("host.type", kind),
        ],
    );
    Ok(out)
}

fn with_path(m: Miss, detector: &str, path: &str) -> Miss {
    match m {
        Miss::Absent(e) => Miss::Absent(format!("{detector}: {path}: {e}")),
        Miss::Failed(e) => Miss::Failed(format!("{detector}: {path}: {e}")),
    }
}

fn take7(v: Vec<String>) -> [String; 7] {
    let mut it = v.into_iter();
    std::array::from_fn(|_| it.next().unwrap_or_default())
}

/// The IBM Cloud VPC metadata API version otelcol asks for (a `version` date, required by the
/// service).
pub const IBM_VPC_API_VERSION: &str = "2026-01-30";

#[derive(Deserialize)]
struct IbmToken {
    access_token: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Named {
    id: String,
    name: String,
}

/// The fields of the VPC instance object that otelcol reads.
#[derive(Deserialize)]
struct IbmInstance {
    id: String,
    #[serde(default)]
    crn: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    profile: Named,
    #[serde(default)]
    zone: Named,
    #[serde(default)]
    image: Named,
}

/// IBM Cloud VPC: `PUT <protocol>://<ibm_vpc_host>/identity/v1/token?version=…` with
/// `Metadata-Flavor: ibm` and `{"expires_in":300}` for an instance identity token, then
/// `GET /metadata/v1/instance?version=…` with it as a bearer token. The region is the zone
/// without its last `-` part; the account is the CRN's seventh field without its `a/`.
pub async fn ibmcloud_vpc(ep: &Endpoints, timeout: Duration, protocol: &str) -> Out {
    let c = client(timeout, None)?;
    let base = format!("{protocol}://{}", ep.ibm_vpc_host);
    let (_, tok) = probe(
        c.put(format!(
            "{base}/identity/v1/token?version={IBM_VPC_API_VERSION}"
        ))
        .header("Metadata-Flavor", "ibm")
        .header("Accept", "application/json")
        .header("Content-Type", "application/json")
        .body(r#"{"expires_in":300}"#),
    )
    .await?;
    let tok: IbmToken = json("IBM Cloud VPC identity token", &tok)?;
    let (_, body) = call(
        c.get(format!(
            "{base}/metadata/v1/instance?version={IBM_VPC_API_VERSION}"
        ))
        .bearer_auth(tok.access_token)
        .header("Accept", "application/json"),
    )
    .await?;
    let m: IbmInstance = json("IBM Cloud VPC instance metadata", &body)?;
    let zone = m.zone.name;
    let region = match zone.rfind('-') {
        Some(i) if i > 0 => zone[..i].to_string(),
        _ => zone.clone(),
    };
    let account = m
        .crn
        .split(':')
        .nth(6)
        .map(|a| a.trim_start_matches("a/").to_string())
        .unwrap_or_default();
    let mut out: Found = vec![
        ("cloud.provider".into(), s("ibm_cloud")),
        ("cloud.platform".into(), s("ibm_cloud.vpc")),
    ];
    push_all(
        &mut out,
        [
            ("cloud.region", region),
            ("cloud.availability_zone", zone),
            ("cloud.account.id", account),
            ("cloud.resource_id", m.crn),
            ("host.id", m.id),
            ("host.image.id", m.image.id),
            ("host.image.name", m.image.name),
            ("host.name", m.name),
            ("host.type", m.profile.name),
        ],
    );
    Ok(out)
}

/// IBM Cloud Classic: SoftLayer's resource metadata API, `<ibm_classic>/getId.txt` and the other
/// `.txt` methods (plain text). The host answers over the account's private network, so, like
/// the link-local services, it is asked without a proxy from the environment.
pub async fn ibmcloud_classic(ep: &Endpoints, timeout: Duration) -> Out {
    let c = client(timeout, None)?;
    let get = |m: &str| c.get(format!("{}/{m}", ep.ibm_classic));
    // otelcol reads every value and, when any fails, finds nothing (it never fails the
    // processor for this detector): all of them are the probe.
    let mut v = Vec::new();
    for m in [
        "getId.txt",
        "getHostname.txt",
        "getDatacenter.txt",
        "getAccountId.txt",
        "getGlobalIdentifier.txt",
    ] {
        let (_, body) = probe(get(m))
            .await
            .map_err(|e| with_path(e, "ibmcloud_classic", m))?;
        v.push(body);
    }
    let mut it = v.into_iter();
    let mut next = || it.next().unwrap_or_default();
    let (id, host, dc, account, guid) = (next(), next(), next(), next(), next());
    let mut out: Found = vec![
        ("cloud.provider".into(), s("ibm_cloud")),
        ("cloud.platform".into(), s("ibm_cloud.classic")),
    ];
    push_all(
        &mut out,
        [
            ("cloud.account.id", account),
            ("cloud.availability_zone", dc),
            ("cloud.resource_id", guid),
            ("host.id", id),
            ("host.name", host),
        ],
    );
    Ok(out)
}
