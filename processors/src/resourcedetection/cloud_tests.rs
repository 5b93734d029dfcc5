//! The metadata-service detectors against local doubles. No cloud is reachable here, so each test
//! starts an HTTP server (or, for Docker, a Unix-socket server) that answers as the real service
//! does: the same paths, the same required headers (refusing requests without them, as the real
//! services do), and response bodies shaped as the providers document them.

use super::*;
use std::collections::HashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigil_core::attrs::{get, get_str};

struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Status, extra headers, body.
type Reply = (u16, Vec<(&'static str, String)>, String);
type Handler = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

async fn serve_conn<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S, h: Handler) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let end = loop {
        let Ok(n) = s.read(&mut tmp).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split(' ');
    let req = Req {
        method: first.next().unwrap_or_default().to_string(),
        target: first.next().unwrap_or_default().to_string(),
        headers: lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect(),
    };
    let (code, extra, body) = h(&req);
    let mut out = format!(
        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    let _ = s.write_all(out.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// An HTTP double on 127.0.0.1; returns its base URL.
async fn http(h: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let h: Handler = Arc::new(h);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_conn(s, h.clone()));
        }
    });
    format!("http://{addr}")
}

fn ok(body: &str) -> Reply {
    (200, vec![], body.to_string())
}

fn not_found() -> Reply {
    (404, vec![], "Not Found".into())
}

/// Endpoints where nothing listens: every detector is off its platform.
async fn nowhere() -> Endpoints {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    Endpoints {
        ec2: closed.clone(),
        gcp: closed.clone(),
        azure: closed.clone(),
        oracle: closed.clone(),
        docker_socket: "/nonexistent/docker.sock".into(),
        beanstalk_conf: "/nonexistent/environment.conf".into(),
        link_local: closed.clone(),
        scaleway: closed.clone(),
        alibaba: closed.clone(),
        tencent: closed.clone(),
        ibm_vpc_host: closed.trim_start_matches("http://").to_string(),
        ibm_classic: closed,
        dynatrace_dir: "/nonexistent/enrichment".into(),
        kubernetes: None,
    }
}

fn cfg(v: serde_json::Value) -> ResourceDetectionConfig {
    let id = ComponentId::parse("resourcedetection").unwrap();
    check(
        &id,
        vigil_core::config::decode(ComponentKind::Processor, &id, &v).unwrap(),
    )
    .unwrap()
}

fn env_of(m: HashMap<&'static str, String>) -> impl Fn(&str) -> Option<String> + Sync {
    move |k| m.get(k).cloned()
}

/// The example identity document from the EC2 user guide.
const IDENTITY: &str = r#"{"accountId":"123456789012","architecture":"x86_64","availabilityZone":"us-west-2b","billingProducts":null,"devpayProductCodes":null,"marketplaceProductCodes":null,"imageId":"ami-5fb8c835","instanceId":"i-1234567890abcdef0","instanceType":"t2.micro","kernelId":null,"pendingTime":"2016-11-19T16:32:11Z","privateIp":"172.31.1.23","ramdiskId":null,"region":"us-west-2","version":"2017-09-30"}"#;

/// EC2 IMDSv2: a token from PUT /latest/api/token (400 without the TTL header), then every GET
/// must carry it (401 otherwise).
fn imds(req: &Req) -> Reply {
    if req.target == "/latest/api/token" {
        if req.method != "PUT" || req.header("X-aws-ec2-metadata-token-ttl-seconds").is_none() {
            return (400, vec![], "Bad Request".into());
        }
        return ok("AQAEAFTok3n==");
    }
    if req.header("X-aws-ec2-metadata-token") != Some("AQAEAFTok3n==") {
        return (401, vec![], "Unauthorized".into());
    }
    match req.target.as_str() {
        "/latest/dynamic/instance-identity/document" => ok(IDENTITY),
        "/latest/meta-data/hostname" => ok("ip-172-31-1-23.us-west-2.compute.internal"),
        "/latest/meta-data/tags/instance" => ok("Name\nteam\neks:cluster-name"),
        "/latest/meta-data/tags/instance/Name" => ok("web-1"),
        "/latest/meta-data/tags/instance/team" => ok("payments"),
        "/latest/meta-data/tags/instance/eks:cluster-name" => ok("prod-eks"),
        _ => not_found(),
    }
}

#[tokio::test]
async fn ec2_imdsv2_token_then_identity_hostname_and_tags() {
    let ep = Endpoints {
        ec2: http(imds).await,
        ..nowhere().await
    };
    let c = cfg(serde_json::json!({"detectors": ["ec2", "system"], "ec2": {"tags": ["^team$"]}}));
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.provider"), Some("aws"));
    assert_eq!(get_str(&a, "cloud.platform"), Some("aws_ec2"));
    assert_eq!(get_str(&a, "cloud.region"), Some("us-west-2"));
    assert_eq!(get_str(&a, "cloud.account.id"), Some("123456789012"));
    assert_eq!(get_str(&a, "cloud.availability_zone"), Some("us-west-2b"));
    assert_eq!(get_str(&a, "host.id"), Some("i-1234567890abcdef0"));
    assert_eq!(get_str(&a, "host.image.id"), Some("ami-5fb8c835"));
    assert_eq!(get_str(&a, "host.type"), Some("t2.micro"));
    // ec2 is listed before system, so its host.name wins.
    assert_eq!(
        get_str(&a, "host.name"),
        Some("ip-172-31-1-23.us-west-2.compute.internal")
    );
    assert_eq!(get_str(&a, "ec2.tag.team"), Some("payments"));
    assert_eq!(
        get_str(&a, "ec2.tag.Name"),
        None,
        "only tags matching `tags`"
    );

    // A toggle turns a default-on attribute off.
    let c = cfg(serde_json::json!({"detectors": ["ec2"],
        "ec2": {"resource_attributes": {"host.name": {"enabled": false}}}}));
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "host.name"), None);
    assert_eq!(get_str(&a, "host.id"), Some("i-1234567890abcdef0"));
}

#[tokio::test]
async fn eks_needs_kubernetes_and_reads_the_cluster_tag() {
    let ep = Endpoints {
        ec2: http(imds).await,
        ..nowhere().await
    };
    let c = cfg(
        serde_json::json!({"detectors": ["eks"], "eks": {"node_from_env_var": "K8S_NODE_NAME",
        "resource_attributes": {"k8s.cluster.name": {"enabled": true}, "cloud.region": {"enabled": true}}}}),
    );
    // Off Kubernetes: nothing, and no error.
    assert!(detect(&c, &|_| None, &ep).await.unwrap().is_empty());
    let env = env_of(HashMap::from([(
        "KUBERNETES_SERVICE_HOST",
        "10.0.0.1".into(),
    )]));
    let a = detect(&c, &env, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.platform"), Some("aws_eks"));
    assert_eq!(get_str(&a, "k8s.cluster.name"), Some("prod-eks"));
    assert_eq!(get_str(&a, "cloud.region"), Some("us-west-2"));
    assert_eq!(get_str(&a, "host.id"), None, "off by default for eks");
}

/// The GCE metadata server: 403 without `Metadata-Flavor: Google`, and every answer carries it.
fn gce(req: &Req) -> Reply {
    if req.header("Metadata-Flavor") != Some("Google") {
        return (403, vec![], "Missing Metadata-Flavor:Google header.".into());
    }
    let body = match req.target.as_str() {
        "/computeMetadata/v1/instance/id" => "4520031799277581759",
        "/computeMetadata/v1/project/project-id" => "my-project",
        "/computeMetadata/v1/instance/zone" => "projects/123456789012/zones/us-central1-a",
        "/computeMetadata/v1/instance/name" => "gke-node-1",
        "/computeMetadata/v1/instance/machine-type" => {
            "projects/123456789012/machineTypes/e2-medium"
        }
        "/computeMetadata/v1/instance/attributes/cluster-name" => "prod",
        "/computeMetadata/v1/instance/attributes/cluster-location" => "us-central1",
        _ => return not_found(),
    };
    (
        200,
        vec![("Metadata-Flavor", "Google".into())],
        body.to_string(),
    )
}

#[tokio::test]
async fn gcp_compute_engine_and_kubernetes_engine() {
    let ep = Endpoints {
        gcp: http(gce).await,
        ..nowhere().await
    };
    let c = cfg(serde_json::json!({"detectors": ["gcp"], "timeout": "10s"}));
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.provider"), Some("gcp"));
    assert_eq!(get_str(&a, "cloud.platform"), Some("gcp_compute_engine"));
    assert_eq!(get_str(&a, "cloud.account.id"), Some("my-project"));
    assert_eq!(
        get_str(&a, "cloud.availability_zone"),
        Some("us-central1-a")
    );
    assert_eq!(get_str(&a, "cloud.region"), Some("us-central1"));
    assert_eq!(get_str(&a, "host.id"), Some("4520031799277581759"));
    assert_eq!(get_str(&a, "host.name"), Some("gke-node-1"));
    assert_eq!(get_str(&a, "host.type"), Some("e2-medium"));

    let env = env_of(HashMap::from([(
        "KUBERNETES_SERVICE_HOST",
        "10.0.0.1".into(),
    )]));
    let a = detect(&c, &env, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.platform"), Some("gcp_kubernetes_engine"));
    assert_eq!(get_str(&a, "k8s.cluster.name"), Some("prod"));
    assert_eq!(get_str(&a, "cloud.region"), Some("us-central1"));

    // Something else on that address (no Metadata-Flavor in the answer) is not GCE.
    let ep = Endpoints {
        gcp: http(|_| ok("hello")).await,
        ..nowhere().await
    };
    assert!(detect(&c, &|_| None, &ep).await.unwrap().is_empty());
}

/// Azure IMDS: 400 without `Metadata: true` or without `api-version`; the documented compute
/// document.
fn azure_imds(req: &Req) -> Reply {
    if req.header("Metadata") != Some("true") {
        return (
            400,
            vec![],
            r#"{"error":"Bad request. Required metadata header not specified"}"#.into(),
        );
    }
    let Some(q) = req.target.strip_prefix("/metadata/instance/compute?") else {
        return not_found();
    };
    if !q
        .split('&')
        .any(|p| p == format!("api-version={}", cloud::AZURE_API_VERSION))
    {
        return (400, vec![], r#"{"error":"Bad request. api-version is invalid or was not specified in the request."}"#.into());
    }
    ok(
        r#"{"azEnvironment":"AzurePublicCloud","location":"westus","name":"examplevmname","offer":"UbuntuServer","osType":"Linux","resourceGroupName":"MC_myrg_prodaks_westus","subscriptionId":"8d10da13-8125-4ba9-a717-bf7490507b3d","tagsList":[{"name":"Department","value":"IT"},{"name":"Environment","value":"Prod"}],"vmId":"02aab8a4-74ef-476e-8182-f6d2ba4166a6","vmScaleSetName":"crpteste9vflji9","vmSize":"Standard_A3","zone":"1"}"#,
    )
}

#[tokio::test]
async fn azure_and_aks_from_imds() {
    let ep = Endpoints {
        azure: http(azure_imds).await,
        ..nowhere().await
    };
    let c = cfg(serde_json::json!({"detectors": ["azure"], "azure": {"tags": ["^Dep"]}}));
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.provider"), Some("azure"));
    assert_eq!(get_str(&a, "cloud.platform"), Some("azure_vm"));
    assert_eq!(get_str(&a, "cloud.region"), Some("westus"));
    assert_eq!(
        get_str(&a, "cloud.account.id"),
        Some("8d10da13-8125-4ba9-a717-bf7490507b3d")
    );
    assert_eq!(get_str(&a, "cloud.availability_zone"), Some("1"));
    assert_eq!(
        get_str(&a, "host.id"),
        Some("02aab8a4-74ef-476e-8182-f6d2ba4166a6")
    );
    assert_eq!(get_str(&a, "host.name"), Some("examplevmname"));
    assert_eq!(get_str(&a, "azure.vm.size"), Some("Standard_A3"));
    assert_eq!(
        get_str(&a, "azure.vm.scaleset.name"),
        Some("crpteste9vflji9")
    );
    assert_eq!(
        get_str(&a, "azure.resourcegroup.name"),
        Some("MC_myrg_prodaks_westus")
    );
    assert_eq!(get_str(&a, "azure.tag.Department"), Some("IT"));
    assert_eq!(get_str(&a, "azure.tag.Environment"), None);

    let c = cfg(serde_json::json!({"detectors": ["aks"],
        "aks": {"resource_attributes": {"k8s.cluster.name": {"enabled": true}}}}));
    let env = env_of(HashMap::from([(
        "KUBERNETES_SERVICE_HOST",
        "10.0.0.1".into(),
    )]));
    let a = detect(&c, &env, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.platform"), Some("azure_aks"));
    assert_eq!(get_str(&a, "k8s.cluster.name"), Some("prodaks"));
}

#[tokio::test]
async fn ecs_task_metadata_v4() {
    // The task and container documents of the ECS developer guide's v4 example (trimmed to the
    // fields a detector reads plus a few it ignores).
    let base = http(|req: &Req| match req.target.as_str() {
        "/v4/abc/task" => ok(r#"{"Cluster":"default","TaskARN":"arn:aws:ecs:us-west-2:111122223333:task/default/158d1c8083dd49d6b527399fd6414f5c","Family":"curltest","Revision":"26","DesiredStatus":"RUNNING","KnownStatus":"RUNNING","AvailabilityZone":"us-west-2d","LaunchType":"EC2","Containers":[]}"#),
        "/v4/abc" => ok(r#"{"DockerId":"ea32192c8553fbff06c9340478a2ff089b2bb5646fb718b4ee206641c9086d66","Name":"curl","Image":"111122223333.dkr.ecr.us-west-2.amazonaws.com/curltest:latest","LogDriver":"awslogs","LogOptions":{"awslogs-create-group":"true","awslogs-group":"/ecs/metadata","awslogs-region":"us-west-2","awslogs-stream":"ecs/curl/8f03e41243824aea923aca126495f665"},"ContainerARN":"arn:aws:ecs:us-west-2:111122223333:container/0206b271-b33f-47ab-86c6-a0ba208a70a9"}"#),
        _ => not_found(),
    })
    .await;
    let c = cfg(serde_json::json!({"detectors": ["ecs"]}));
    let ep = nowhere().await;
    assert!(
        detect(&c, &|_| None, &ep).await.unwrap().is_empty(),
        "off ECS"
    );
    let env = env_of(HashMap::from([(
        "ECS_CONTAINER_METADATA_URI_V4",
        format!("{base}/v4/abc"),
    )]));
    let a = detect(&c, &env, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.platform"), Some("aws_ecs"));
    assert_eq!(get_str(&a, "cloud.account.id"), Some("111122223333"));
    assert_eq!(get_str(&a, "cloud.region"), Some("us-west-2"));
    assert_eq!(get_str(&a, "cloud.availability_zone"), Some("us-west-2d"));
    assert_eq!(
        get_str(&a, "aws.ecs.cluster.arn"),
        Some("arn:aws:ecs:us-west-2:111122223333:cluster/default")
    );
    assert_eq!(
        get_str(&a, "aws.ecs.task.id"),
        Some("158d1c8083dd49d6b527399fd6414f5c")
    );
    assert_eq!(get_str(&a, "aws.ecs.task.family"), Some("curltest"));
    assert_eq!(get_str(&a, "aws.ecs.task.revision"), Some("26"));
    assert_eq!(get_str(&a, "aws.ecs.launchtype"), Some("ec2"));
    let Some(Value::ArrayValue(streams)) = get(&a, "aws.log.stream.arns") else {
        panic!("aws.log.stream.arns: {a:?}");
    };
    assert_eq!(
        streams.values[0].value,
        Some(Value::StringValue(
            "arn:aws:logs:us-west-2:111122223333:log-group:/ecs/metadata:log-stream:ecs/curl/8f03e41243824aea923aca126495f665".into()
        ))
    );
}

#[tokio::test]
async fn oraclecloud_imds_v2() {
    let oracle = http(|req: &Req| {
        if req.header("Authorization") != Some("Bearer Oracle") {
            return (401, vec![], r#"{"code":"NotAuthenticated"}"#.into());
        }
        match req.target.as_str() {
            "/opc/v2/instance/" => ok(r#"{"availabilityDomain":"EMIr:PHX-AD-1","faultDomain":"FAULT-DOMAIN-3","compartmentId":"ocid1.tenancy.oc1..exampleuniqueID","displayName":"my-example-instance","hostname":"my-hostname","id":"ocid1.instance.oc1.phx.exampleuniqueID","image":"ocid1.image.oc1.phx.exampleuniqueID","region":"phx","canonicalRegionName":"us-phoenix-1","shape":"VM.Standard.E3.Flex","state":"Running"}"#),
            _ => not_found(),
        }
    })
    .await;
    let ep = Endpoints {
        oracle,
        ..nowhere().await
    };
    let c = cfg(serde_json::json!({"detectors": ["oraclecloud"]}));
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.provider"), Some("oracle_cloud"));
    assert_eq!(get_str(&a, "cloud.region"), Some("us-phoenix-1"));
    assert_eq!(
        get_str(&a, "cloud.availability_zone"),
        Some("EMIr:PHX-AD-1")
    );
    assert_eq!(get_str(&a, "host.name"), Some("my-hostname"));
    assert_eq!(get_str(&a, "host.type"), Some("VM.Standard.E3.Flex"));
}

#[tokio::test]
async fn docker_info_over_the_unix_socket_and_elastic_beanstalk_file() {
    let dir = tempdir();
    let sock = dir.join("docker.sock");
    let l = tokio::net::UnixListener::bind(&sock).unwrap();
    let h: Handler = Arc::new(|req: &Req| match req.target.as_str() {
        "/info" => ok(
            r#"{"ID":"7TRN:IPZB:QYBB:VPBQ:UWYL","Containers":3,"Name":"docker-host-1","OSType":"linux","OperatingSystem":"Debian GNU/Linux 12 (bookworm)","ServerVersion":"24.0.7"}"#,
        ),
        _ => not_found(),
    });
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_conn(s, h.clone()));
        }
    });
    let conf = dir.join("environment.conf");
    std::fs::write(
        &conf,
        r#"{"deployment_id":23,"environment_name":"BETA","version_label":"Sample Application"}"#,
    )
    .unwrap();
    let ep = Endpoints {
        docker_socket: sock.to_string_lossy().into_owned(),
        beanstalk_conf: conf.to_string_lossy().into_owned(),
        ..nowhere().await
    };
    let c = cfg(serde_json::json!({"detectors": ["docker", "elastic_beanstalk"]}));
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "host.name"), Some("docker-host-1"));
    assert_eq!(get_str(&a, "os.type"), Some("linux"));
    assert_eq!(get_str(&a, "cloud.platform"), Some("aws_elastic_beanstalk"));
    assert_eq!(get_str(&a, "deployment.environment"), Some("BETA"));
    assert_eq!(get_str(&a, "service.instance.id"), Some("23"));
    assert_eq!(get_str(&a, "service.version"), Some("Sample Application"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "vigil-rd-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn off_every_platform_detection_is_quiet_and_keeps_the_others() {
    // Nothing listens at any endpoint, no ECS or Kubernetes variables: every cloud detector finds
    // nothing, and the env detector's attributes still arrive.
    let ep = nowhere().await;
    let c = cfg(
        serde_json::json!({"detectors": ["gcp", "ecs", "ec2", "azure", "eks", "aks",
        "oraclecloud", "docker", "elastic_beanstalk", "env"], "timeout": "2s"}),
    );
    let env = env_of(HashMap::from([(
        "OTEL_RESOURCE_ATTRIBUTES",
        "service.name=api".into(),
    )]));
    let a = detect(&c, &env, &ep).await.unwrap();
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(get_str(&a, "service.name"), Some("api"));

    // Something else at the metadata address (a proxy answering 403) is not the service either.
    let deny = http(|_| (403, vec![], "resolve_deny: denied destination".into())).await;
    let ep = Endpoints {
        ec2: deny.clone(),
        azure: deny.clone(),
        oracle: deny.clone(),
        gcp: deny,
        ..nowhere().await
    };
    let c = cfg(serde_json::json!({"detectors": ["ec2", "azure", "oraclecloud", "gcp", "env"]}));
    let a = detect(&c, &env, &ep).await.unwrap();
    assert_eq!(a.len(), 1, "{a:?}");

    // A service that accepts and never answers costs its detector `timeout`, not the start.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let ep = Endpoints {
        azure: silent,
        ..nowhere().await
    };
    let c = cfg(serde_json::json!({"detectors": ["azure", "env"], "timeout": "200ms"}));
    let a = detect(&c, &env, &ep).await.unwrap();
    assert_eq!(get_str(&a, "service.name"), Some("api"));
    assert_eq!(get_str(&a, "cloud.provider"), None);
}

#[tokio::test]
async fn system_detector_cpu_interfaces_and_os() {
    let all: serde_json::Map<String, serde_json::Value> = SYSTEM_ATTRS
        .iter()
        .map(|(n, _)| (n.to_string(), serde_json::json!({"enabled": true})))
        .collect();
    let c = cfg(serde_json::json!({"detectors": ["system"],
        "system": {"hostname_sources": ["os"], "resource_attributes": all}}));
    let a = detect(&c, &|_| None, &nowhere().await).await.unwrap();
    assert_eq!(get_str(&a, "os.type"), Some("linux"));
    for k in ["host.ip", "host.mac", "host.interface"] {
        assert!(
            matches!(get(&a, k), Some(Value::ArrayValue(_))),
            "{k} is a list: {a:?}"
        );
    }
    // Whatever this host's CPU, the values match what the kernel reports.
    let cpu = host::cpu();
    assert_eq!(
        get_str(&a, "host.cpu.model.name"),
        cpu.model_name.as_deref()
    );
    if let Some(s) = cpu.stepping {
        assert_eq!(get(&a, "host.cpu.stepping"), Some(&Value::IntValue(s)));
    }
    assert_eq!(get_str(&a, "os.name"), host::os_release().name.as_deref());

    let p = host::parse_cpuinfo(
        "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n\
         model name\t: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz\nstepping\t: 7\n\
         cache size\t: 36608 KB\n\nprocessor\t: 1\nvendor_id\t: Other\n",
    );
    assert_eq!(p.vendor_id.as_deref(), Some("GenuineIntel"));
    assert_eq!(p.family.as_deref(), Some("6"));
    assert_eq!(p.model_id.as_deref(), Some("85"));
    assert_eq!(p.stepping, Some(7));
    assert_eq!(p.cache_l2_size, Some(36608 * 1024));
    let r = host::parse_os_release("NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n");
    assert_eq!(r.name.as_deref(), Some("Debian GNU/Linux"));
    assert_eq!(r.version.as_deref(), Some("12"));
    assert_eq!(host::ieee_mac("0a:1b:2c:3d:4e:5f"), "0A-1B-2C-3D-4E-5F");
}

/// UpCloud's `/metadata/v1.json` as its metadata-service guide shows it (abridged: keys, network).
const UPCLOUD_V1: &str = r#"{"cloud_name":"upcloud","instance_id":"00d5b4b1-7b8a-4d4a-a4d1-3b2e3f2a5c71","hostname":"web1.example.com","platform":"servers","subplatform":"metadata_service_v1","public_keys":[],"region":"fi-hel1","network":{"interfaces":[]},"storage":{"disks":[]},"tags":[],"user_data":"","vendor_data":""}"#;
/// A droplet's `/metadata/v1.json` as DigitalOcean's metadata API reference shows it (abridged).
const DROPLET_V1: &str = r##"{"droplet_id":2756294,"hostname":"sample-droplet","vendor_data":"#cloud-config\n","public_keys":["ssh-rsa AAAAB3Nza sammy@example.com"],"auth_key":"b0c7c1f4","region":"nyc3","interfaces":{"public":[{"ipv4":{"ip_address":"104.131.20.105","netmask":"255.255.192.0","gateway":"104.131.0.1"},"mac":"04:01:2a:0f:2a:01","type":"public"}]},"floating_ip":{"ipv4":{"active":false}},"dns":{"nameservers":["2001:4860:4860::8844","8.8.8.8"]},"features":{"dhcp_enabled":false}}"##;
/// Vultr's `/v1.json` in the shape cloud-init's Vultr datasource tests record (abridged).
const VULTR_V1: &str = r#"{"bgp":{"ipv4":{"my-address":"","my-asn":"","peer-address":"","peer-asn":""}},"hostname":"CLOUDINIT_2","instance-v2-id":"29bea708-2e6e-480a-90ad-0e6b5d5ad62f","instanceid":"42872224","interfaces":[{"ipv4":{"additional":[],"address":"45.76.7.171","gateway":"45.76.6.1","netmask":"255.255.254.0"},"mac":"56:00:03:1b:4e:ca","network-type":"public"}],"public-keys":["ssh-rsa AAAAB3NzaC1y"],"region":{"countrycode":"US","regioncode":"EWR"},"user-defined":[]}"#;
/// OpenStack's `meta_data.json` as the Nova metadata-service documentation shows it.
const NOVA_META: &str = r#"{"random_seed":"yu5ZnkqF2CqnDZVAfZgarG","uuid":"d8e02d56-2648-49a3-bf97-6be8f1204f38","availability_zone":"nova","keys":[{"data":"ssh-rsa AAAAB3Nz","type":"ssh","name":"mykey"}],"hostname":"test.novalocal","launch_index":0,"meta":{"priority":"low","role":"webserver"},"devices":[],"project_id":"f7ac731cc11f40efbc03a9f9e1d1d21f","public_keys":{"mykey":"ssh-rsa AAAAB3Nz"},"name":"test"}"#;

#[tokio::test]
async fn upcloud_and_digitalocean_share_a_path_and_tell_each_other_apart() {
    let up = http(|req: &Req| match req.target.as_str() {
        "/metadata/v1.json" => ok(UPCLOUD_V1),
        _ => not_found(),
    })
    .await;
    let ep = Endpoints {
        link_local: up,
        ..nowhere().await
    };
    let c = cfg(serde_json::json!({"detectors": ["digitalocean", "upcloud"],
        "upcloud": {"resource_attributes": {"host.name": {"enabled": false}}}}));
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.provider"), Some("upcloud"));
    assert_eq!(get_str(&a, "cloud.region"), Some("fi-hel1"));
    assert_eq!(
        get_str(&a, "host.id"),
        Some("00d5b4b1-7b8a-4d4a-a4d1-3b2e3f2a5c71")
    );
    assert_eq!(get_str(&a, "host.name"), None, "turned off");

    let d = http(|req: &Req| match req.target.as_str() {
        "/metadata/v1.json" => ok(DROPLET_V1),
        _ => not_found(),
    })
    .await;
    let ep = Endpoints {
        link_local: d,
        ..nowhere().await
    };
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.provider"), Some("digitalocean"));
    assert_eq!(get_str(&a, "host.id"), Some("2756294"));
    assert_eq!(get_str(&a, "host.name"), Some("sample-droplet"));
    assert_eq!(get_str(&a, "cloud.region"), Some("nyc3"));
}

#[tokio::test]
async fn vultr_v1_json() {
    let v = http(|req: &Req| match req.target.as_str() {
        "/v1.json" => ok(VULTR_V1),
        _ => not_found(),
    })
    .await;
    let ep = Endpoints {
        link_local: v,
        ..nowhere().await
    };
    let c = cfg(serde_json::json!({"detectors": ["vultr"]}));
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.provider"), Some("vultr"));
    assert_eq!(get_str(&a, "cloud.platform"), None, "off by default");
    assert_eq!(
        get_str(&a, "host.id"),
        Some("29bea708-2e6e-480a-90ad-0e6b5d5ad62f")
    );
    assert_eq!(get_str(&a, "host.name"), Some("CLOUDINIT_2"));
    assert_eq!(get_str(&a, "cloud.region"), Some("ewr"));
    let c = cfg(serde_json::json!({"detectors": ["vultr"],
        "vultr": {"resource_attributes": {"cloud.platform": {"enabled": true}}}}));
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.platform"), Some("vultr_cloud_compute"));
}

#[tokio::test]
async fn nova_meta_data_json_instance_type_and_labels() {
    let n = http(|req: &Req| match req.target.as_str() {
        "/openstack/latest/meta_data.json" => ok(NOVA_META),
        "/latest/meta-data/instance-type" => ok("m1.small"),
        _ => not_found(),
    })
    .await;
    let ep = Endpoints {
        link_local: n,
        ..nowhere().await
    };
    let c = cfg(serde_json::json!({"detectors": ["nova"], "nova": {"labels": ["^rol"]}}));
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.provider"), Some("openstack"));
    assert_eq!(get_str(&a, "cloud.platform"), Some("openstack_nova"));
    assert_eq!(
        get_str(&a, "cloud.account.id"),
        Some("f7ac731cc11f40efbc03a9f9e1d1d21f")
    );
    assert_eq!(get_str(&a, "cloud.availability_zone"), Some("nova"));
    assert_eq!(
        get_str(&a, "host.id"),
        Some("d8e02d56-2648-49a3-bf97-6be8f1204f38")
    );
    assert_eq!(get_str(&a, "host.name"), Some("test.novalocal"));
    assert_eq!(get_str(&a, "host.type"), Some("m1.small"));
    assert_eq!(get_str(&a, "openstack.nova.meta.role"), Some("webserver"));
    assert_eq!(get_str(&a, "openstack.nova.meta.priority"), None);
}

#[tokio::test]
async fn heroku_lambda_and_dynatrace_from_environment_and_file() {
    let ep = nowhere().await;
    let env = env_of(HashMap::from([
        (
            "HEROKU_DYNO_ID",
            "1vac4117-c29f-4312-521e-ba4d8638c1ac".into(),
        ),
        (
            "HEROKU_APP_ID",
            "9daa2797-e49b-4624-932f-ec3f9688e3da".into(),
        ),
        ("HEROKU_APP_NAME", "example-app".into()),
        ("HEROKU_RELEASE_CREATED_AT", "2015-04-02T18:00:42Z".into()),
        ("HEROKU_RELEASE_VERSION", "v42".into()),
        (
            "HEROKU_SLUG_COMMIT",
            "2c3a0b24069af49b3de35b8e8c26765c1dba9ff0".into(),
        ),
    ]));
    let c = cfg(serde_json::json!({"detectors": ["heroku"]}));
    let a = detect(&c, &env, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.provider"), Some("heroku"));
    assert_eq!(
        get_str(&a, "service.instance.id"),
        Some("1vac4117-c29f-4312-521e-ba4d8638c1ac")
    );
    assert_eq!(get_str(&a, "heroku.app.name"), Some("example-app"));
    assert_eq!(get_str(&a, "heroku.release.version"), Some("v42"));
    assert_eq!(
        get_str(&a, "heroku.release.commit"),
        Some("2c3a0b24069af49b3de35b8e8c26765c1dba9ff0")
    );
    assert!(detect(&c, &|_| None, &ep).await.unwrap().is_empty());

    let env = env_of(HashMap::from([
        ("AWS_LAMBDA_FUNCTION_NAME", "my-function".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/my-function".into(),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2024/01/01/[$LATEST]abc".into(),
        ),
        ("AWS_REGION", "us-east-1".into()),
    ]));
    let c = cfg(serde_json::json!({"detectors": ["lambda"],
        "lambda": {"resource_attributes": {"faas.max_memory": {"enabled": false}}}}));
    let a = detect(&c, &env, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.platform"), Some("aws_lambda"));
    assert_eq!(get_str(&a, "cloud.region"), Some("us-east-1"));
    assert_eq!(get_str(&a, "faas.name"), Some("my-function"));
    assert_eq!(get_str(&a, "faas.version"), Some("$LATEST"));
    assert_eq!(
        get_str(&a, "faas.instance"),
        Some("2024/01/01/[$LATEST]abc")
    );
    assert_eq!(get_str(&a, "faas.max_memory"), None, "turned off");
    assert!(get(&a, "aws.log.group.names").is_some());

    let dir = tempdir();
    std::fs::write(
        dir.join(providers::DYNATRACE_FILE),
        "dt.entity.host=HOST-1234567890ABCDEF\nhost.name=dt-host\ndt.smartscape.host=h=x\nother=ignored\nbroken line\n",
    )
    .unwrap();
    let ep = Endpoints {
        dynatrace_dir: dir.to_string_lossy().into_owned(),
        ..nowhere().await
    };
    let c = cfg(serde_json::json!({"detectors": ["dynatrace"]}));
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "dt.entity.host"), Some("HOST-1234567890ABCDEF"));
    assert_eq!(get_str(&a, "host.name"), Some("dt-host"));
    assert_eq!(get_str(&a, "dt.smartscape.host"), Some("h=x"));
    assert_eq!(a.len(), 3, "{a:?}");
    let _ = std::fs::remove_dir_all(&dir);
    // No file: nothing, no error.
    assert!(detect(&c, &|_| None, &nowhere().await)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn fail_on_missing_metadata_makes_an_absent_service_an_error() {
    let ep = nowhere().await;
    let quiet = cfg(serde_json::json!({"detectors": ["upcloud", "vultr", "nova", "digitalocean"]}));
    assert!(detect(&quiet, &|_| None, &ep).await.unwrap().is_empty());
    let c = cfg(serde_json::json!({"detectors": ["vultr"], "fail_on_missing_metadata": true}));
    let e = detect(&c, &|_| None, &ep).await.unwrap_err();
    assert!(
        e.contains("vultr detector") && e.contains("fail_on_missing_metadata"),
        "{e}"
    );
    let c =
        cfg(serde_json::json!({"detectors": ["nova"], "nova": {"fail_on_missing_metadata": true}}));
    assert!(detect(&c, &|_| None, &ep).await.is_err());
    // Not a network detector: the flag does not apply.
    let c = cfg(serde_json::json!({"detectors": ["heroku"], "fail_on_missing_metadata": true}));
    assert!(detect(&c, &|_| None, &ep).await.unwrap().is_empty());
}

/// ConfigMaps, which the API double serves as a generic core resource.
static CONFIG_MAP: vigil_tests::k8s_api::Resource = vigil_tests::k8s_api::Resource {
    api_version: "v1",
    kind: "ConfigMap",
    plural: "configmaps",
    namespaced: true,
};

/// The ClusterConfiguration `kubeadm init` (v1.33, kubeadm.k8s.io/v1beta4) stores in
/// kube-system/kubeadm-config.
const CLUSTER_CONFIGURATION: &str = "apiServer: {}\napiVersion: kubeadm.k8s.io/v1beta4\n\
caCertificateValidityPeriod: 87600h0m0s\ncertificateValidityPeriod: 8760h0m0s\n\
certificatesDir: /etc/kubernetes/pki\nclusterName: prod-east\ncontrollerManager: {}\ndns: {}\n\
encryptionAlgorithm: RSA-2048\netcd:\n  local:\n    dataDir: /var/lib/etcd\n\
imageRepository: registry.k8s.io\nkind: ClusterConfiguration\nkubernetesVersion: v1.33.2\n\
networking:\n  dnsDomain: cluster.local\n  podSubnet: 10.244.0.0/16\n  serviceSubnet: 10.96.0.0/12\n\
proxy: {}\nscheduler: {}\n";

fn kubeadm_config(data: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kubeadm-config", "namespace": "kube-system",
            "uid": vigil_tests::k8s_api::uid("cm/kube-system/kubeadm-config"),
            "creationTimestamp": "2026-11-01T00:00:00Z"},
        "data": data})
}

/// `kubeadm` against the API-server double: the name from the ClusterConfiguration in
/// kube-system/kubeadm-config, the UID from the kube-system namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeadm_reads_the_cluster_name_from_kubeadm_config_and_the_uid_from_kube_system() {
    use vigil_tests::k8s_api::{self, K8sApi, Kind};
    let api = K8sApi::start();
    api.apply(Kind::Namespace, k8s_api::namespace("kube-system"));
    api.apply(
        Kind::Other(&CONFIG_MAP),
        kubeadm_config(serde_json::json!({"ClusterConfiguration": CLUSTER_CONFIGURATION})),
    );
    let ep = Endpoints {
        kubernetes: Some(k8s::Client(
            vigil_k8s::client::client_at(&api.url()).unwrap(),
        )),
        ..nowhere().await
    };
    let c = cfg(serde_json::json!({"detectors": ["kubeadm"]}));
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "k8s.cluster.name"), Some("prod-east"));
    let uid = k8s_api::uid("ns/kube-system");
    assert_eq!(get_str(&a, "k8s.cluster.uid"), Some(uid.as_str()));
    assert!(api
        .requests()
        .iter()
        .any(|r| r.starts_with("/api/v1/namespaces/kube-system/configmaps/kubeadm-config")));

    // The UID off: the namespace is not asked for.
    let c = cfg(
        serde_json::json!({"detectors": ["kubeadm"], "kubeadm": {"auth_type": "serviceAccount",
        "resource_attributes": {"k8s.cluster.uid": {"enabled": false}}}}),
    );
    let before = api.count_requests(|r| r.starts_with("/api/v1/namespaces/kube-system?"));
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "k8s.cluster.name"), Some("prod-east"));
    assert_eq!(get_str(&a, "k8s.cluster.uid"), None);
    assert_eq!(
        api.count_requests(|r| r.starts_with("/api/v1/namespaces/kube-system?")),
        before
    );

    // A hand-written ConfigMap with a top-level clusterName, as otelcol's first reader took.
    api.apply(
        Kind::Other(&CONFIG_MAP),
        kubeadm_config(serde_json::json!({"clusterName": "lab"})),
    );
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "k8s.cluster.name"), Some("lab"));

    // The API failing: the detector finds nothing, and the processor still starts.
    api.fail("/configmaps/");
    let c = cfg(serde_json::json!({"detectors": ["kubeadm"]}));
    assert!(detect(&c, &|_| None, &ep).await.unwrap().is_empty());
}

/// OpenShift's `cluster` Infrastructure on AWS, as `oc get infrastructure cluster -o json` shows it.
fn infrastructure(platform: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"apiVersion": "config.openshift.io/v1", "kind": "Infrastructure",
        "metadata": {"name": "cluster", "uid": vigil_tests::k8s_api::uid("infrastructure/cluster"),
            "creationTimestamp": "2026-10-02T09:14:51Z", "generation": 1},
        "spec": {"cloudConfig": {"name": ""}, "platformSpec": {"type": platform["type"].clone()}},
        "status": {"apiServerInternalURI": "https://api-int.prod.example.com:6443",
            "apiServerURL": "https://api.prod.example.com:6443",
            "controlPlaneTopology": "HighlyAvailable", "cpuPartitioning": "None",
            "etcdDiscoveryDomain": "", "infrastructureName": "prod-7x2kq",
            "infrastructureTopology": "HighlyAvailable", "platform": platform["type"].clone(),
            "platformStatus": platform}})
}

static INFRASTRUCTURE: vigil_tests::k8s_api::Resource = vigil_tests::k8s_api::Resource {
    api_version: "config.openshift.io/v1",
    kind: "Infrastructure",
    plural: "infrastructures",
    namespaced: false,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openshift_reads_the_infrastructure_status_with_the_token() {
    use vigil_tests::k8s_api::{K8sApi, Kind};
    let api = K8sApi::start();
    api.apply(
        Kind::Other(&INFRASTRUCTURE),
        infrastructure(serde_json::json!({"type": "AWS", "aws": {"region": "US-East-1"}})),
    );
    let c = cfg(serde_json::json!({"detectors": ["openshift"],
        "openshift": {"address": api.url(), "token": "sha256~tok"}}));
    let a = detect(&c, &|_| None, &nowhere().await).await.unwrap();
    assert_eq!(get_str(&a, "k8s.cluster.name"), Some("prod-7x2kq"));
    assert_eq!(get_str(&a, "cloud.provider"), Some("aws"));
    assert_eq!(get_str(&a, "cloud.platform"), Some("aws_openshift"));
    assert_eq!(get_str(&a, "cloud.region"), Some("us-east-1"));
    assert!(api
        .requests()
        .iter()
        .any(|r| r.starts_with("/apis/config.openshift.io/v1/infrastructures/cluster/status")));

    // The token goes as a bearer token (a double that refuses without it), and a platform with
    // only a cloud name gives a region and nothing else.
    let url = http(|req: &Req| {
        if req.header("Authorization") != Some("Bearer sha256~tok") {
            return (
                401,
                vec![],
                r#"{"kind":"Status","status":"Failure","code":401}"#.into(),
            );
        }
        match req.target.as_str() {
            "/apis/config.openshift.io/v1/infrastructures/cluster/status" => ok(&infrastructure(
                serde_json::json!({"type": "OpenStack", "openstack": {"cloudName": "RegionOne"}}),
            )
            .to_string()),
            _ => not_found(),
        }
    })
    .await;
    let c = cfg(serde_json::json!({"detectors": ["openshift"],
        "openshift": {"address": url, "token": "sha256~tok",
            "resource_attributes": {"k8s.cluster.name": {"enabled": false}}}}));
    let a = detect(&c, &|_| None, &nowhere().await).await.unwrap();
    assert_eq!(get_str(&a, "cloud.region"), Some("regionone"));
    assert_eq!(get_str(&a, "cloud.provider"), None);
    assert_eq!(get_str(&a, "k8s.cluster.name"), None, "turned off");
    // A wrong token: refused, nothing found, no error.
    let c = cfg(serde_json::json!({"detectors": ["openshift"],
        "openshift": {"address": url, "token": "wrong"}}));
    assert!(detect(&c, &|_| None, &nowhere().await)
        .await
        .unwrap()
        .is_empty());
}

/// `GET /v1/agent/self` as Consul's agent API documentation shows it (trimmed of the debug
/// configuration and stats).
const AGENT_SELF: &str = r#"{"Config":{"Datacenter":"dc1","PrimaryDatacenter":"dc1","NodeName":"consul-client-7","NodeID":"9d754d17-d864-b1d3-e758-f3fe25a9874f","Revision":"2c56447e","Server":false,"Version":"1.20.1","BuildDate":"2024-10-29T19:04:05Z"},"Coord":{"Vec":[0,0,0,0,0,0,0,0],"Error":1.5,"Adjustment":0,"Height":1e-05},"Member":{"Name":"consul-client-7","Addr":"10.1.10.12","Port":8301,"Tags":{"build":"1.20.1:2c56447e","dc":"dc1","role":"node","segment":"","vsn":"2","vsn_max":"3","vsn_min":"2"},"Status":1,"ProtocolMin":1,"ProtocolMax":5,"ProtocolCur":2,"DelegateMin":2,"DelegateMax":5,"DelegateCur":4},"Meta":{"consul-network-segment":"","instance_type":"t2.medium","rack":"r12"},"xDS":{"SupportedProxies":{"envoy":["1.32.0"]},"Port":8502}}"#;

#[tokio::test]
async fn consul_reads_the_agent_self_with_datacenter_token_and_chosen_meta() {
    let url = http(|req: &Req| {
        if req.header("X-Consul-Token") != Some("acl-secret") {
            return (403, vec![], "ACL not found".into());
        }
        match req.target.as_str() {
            "/v1/agent/self?dc=dc1" | "/v1/agent/self" => ok(AGENT_SELF),
            _ => not_found(),
        }
    })
    .await;
    let c = cfg(serde_json::json!({"detectors": ["consul"],
        "consul": {"address": url, "datacenter": "dc1", "token": "acl-secret",
            "meta": {"rack": null, "absent": null}}}));
    let a = detect(&c, &|_| None, &nowhere().await).await.unwrap();
    assert_eq!(get_str(&a, "host.name"), Some("consul-client-7"));
    assert_eq!(get_str(&a, "cloud.region"), Some("dc1"));
    assert_eq!(
        get_str(&a, "host.id"),
        Some("9d754d17-d864-b1d3-e758-f3fe25a9874f")
    );
    assert_eq!(get_str(&a, "rack"), Some("r12"), "listed in meta");
    assert_eq!(get_str(&a, "instance_type"), None, "not listed in meta");

    // The address from CONSUL_HTTP_ADDR (host:port is http), the token from a file, a toggle off.
    let tf = std::env::temp_dir().join(format!("vigil-consul-token-{}", std::process::id()));
    std::fs::write(&tf, "acl-secret\n").unwrap();
    let c = cfg(serde_json::json!({"detectors": ["consul"],
        "consul": {"token_file": tf.to_str().unwrap(),
            "resource_attributes": {"host.id": {"enabled": false}}}}));
    let hostport = url.trim_start_matches("http://").to_string();
    let env = env_of(HashMap::from([("CONSUL_HTTP_ADDR", hostport)]));
    let a = detect(&c, &env, &nowhere().await).await.unwrap();
    assert_eq!(get_str(&a, "host.name"), Some("consul-client-7"));
    assert_eq!(get_str(&a, "host.id"), None);
    let _ = std::fs::remove_file(&tf);

    // Without the token the agent refuses: nothing, and no error.
    let c = cfg(serde_json::json!({"detectors": ["consul"], "consul": {"address": url}}));
    assert!(detect(&c, &|_| None, &nowhere().await)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn azurecontainerapps_from_the_platform_variables() {
    let c = cfg(serde_json::json!({"detectors": ["azurecontainerapps"]}));
    let env = env_of(HashMap::from([
        ("CONTAINER_APP_NAME", "checkout".to_string()),
        (
            "CONTAINER_APP_REPLICA_NAME",
            "checkout--v3-7d9f8c5b6-xk2lp".to_string(),
        ),
    ]));
    let a = detect(&c, &env, &nowhere().await).await.unwrap();
    assert_eq!(get_str(&a, "cloud.provider"), Some("azure"));
    assert_eq!(get_str(&a, "cloud.platform"), Some("azure.container_apps"));
    assert_eq!(get_str(&a, "service.name"), Some("checkout"));
    assert_eq!(
        get_str(&a, "service.instance.id"),
        Some("checkout--v3-7d9f8c5b6-xk2lp")
    );
    let c = cfg(serde_json::json!({"detectors": ["azurecontainerapps"],
        "azurecontainerapps": {"resource_attributes": {"service.name": {"enabled": false}}}}));
    let a = detect(&c, &env, &nowhere().await).await.unwrap();
    assert_eq!(get_str(&a, "service.name"), None);
    assert_eq!(a.len(), 3);
    // Off the platform: nothing, unless fail_on_missing_metadata is set.
    assert!(detect(&c, &|_| None, &nowhere().await)
        .await
        .unwrap()
        .is_empty());
    let c = cfg(
        serde_json::json!({"detectors": ["azurecontainerapps"], "fail_on_missing_metadata": true}),
    );
    let e = detect(&c, &|_| None, &nowhere().await).await.unwrap_err();
    assert!(e.contains("CONTAINER_APP_NAME"), "{e}");
}

/// Hetzner Cloud's metadata service: plain text under /hetzner/v1/metadata.
#[tokio::test]
async fn hetzner_plain_text_metadata() {
    let url = http(|req: &Req| match req.target.as_str() {
        "/hetzner/v1/metadata/hostname" => ok("web-fsn1-3"),
        "/hetzner/v1/metadata/instance-id" => ok("48305822"),
        "/hetzner/v1/metadata/region" => ok("eu-central"),
        "/hetzner/v1/metadata/availability-zone" => ok("fsn1-dc14"),
        _ => not_found(),
    })
    .await;
    let ep = Endpoints {
        link_local: url,
        ..nowhere().await
    };
    let c = cfg(serde_json::json!({"detectors": ["hetzner"]}));
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.provider"), Some("hetzner"));
    assert_eq!(get_str(&a, "host.name"), Some("web-fsn1-3"));
    assert_eq!(get_str(&a, "host.id"), Some("48305822"));
    assert_eq!(get_str(&a, "cloud.region"), Some("eu-central"));
    assert_eq!(get_str(&a, "cloud.availability_zone"), Some("fsn1-dc14"));
    assert_eq!(get_str(&a, "cloud.platform"), None);
    // Another provider's service on the address (no Hetzner path): not Hetzner.
    let other = http(|_: &Req| not_found()).await;
    let ep = Endpoints {
        link_local: other,
        ..nowhere().await
    };
    assert!(detect(&c, &|_| None, &ep).await.unwrap().is_empty());
}

/// Scaleway's `/conf?format=json`, shaped as the instance API's server object (trimmed).
const SCALEWAY_CONF: &str = r#"{"id":"5a1f3b2c-8e4d-4f6a-9b7c-2d1e0f3a4b5c","name":"api-par-2","hostname":"api-par-2","organization":"7c2e9d41-3b5a-4c8f-a1e6-0f9b2d4c6e8a","project":"7c2e9d41-3b5a-4c8f-a1e6-0f9b2d4c6e8a","commercial_type":"PRO2-S","arch":"x86_64","state":"running","image":{"id":"6f2a1c3e-4b5d-4e7f-8a9b-0c1d2e3f4a5b","name":"Debian 12 Bookworm","arch":"x86_64","zone":"fr-par-2"},"location":{"cluster_id":"38","hypervisor_id":"1201","node_id":"17","platform_id":"14","zone_id":"fr-par-2"},"public_ip":{"address":"51.158.12.34","dynamic":false},"tags":[],"zone":"fr-par-2"}"#;

#[tokio::test]
async fn scaleway_conf_json() {
    let url = http(|req: &Req| match req.target.as_str() {
        "/conf?format=json" => ok(SCALEWAY_CONF),
        _ => not_found(),
    })
    .await;
    let ep = Endpoints {
        scaleway: url,
        ..nowhere().await
    };
    let c = cfg(serde_json::json!({"detectors": ["scaleway"],
        "scaleway": {"resource_attributes": {"host.image.name": {"enabled": false}}}}));
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.provider"), Some("scaleway_cloud"));
    assert_eq!(
        get_str(&a, "cloud.platform"),
        Some("scaleway_cloud_compute")
    );
    assert_eq!(
        get_str(&a, "cloud.account.id"),
        Some("7c2e9d41-3b5a-4c8f-a1e6-0f9b2d4c6e8a")
    );
    assert_eq!(get_str(&a, "cloud.availability_zone"), Some("fr-par-2"));
    assert_eq!(get_str(&a, "cloud.region"), Some("fr-par"));
    assert_eq!(
        get_str(&a, "host.id"),
        Some("5a1f3b2c-8e4d-4f6a-9b7c-2d1e0f3a4b5c")
    );
    assert_eq!(
        get_str(&a, "host.image.id"),
        Some("6f2a1c3e-4b5d-4e7f-8a9b-0c1d2e3f4a5b")
    );
    assert_eq!(get_str(&a, "host.image.name"), None, "turned off");
    assert_eq!(get_str(&a, "host.name"), Some("api-par-2"));
    assert_eq!(get_str(&a, "host.type"), Some("PRO2-S"));
}

/// Linode's `GET /v1/instance`, shaped as Akamai's metadata service API documents it.
const LINODE_INSTANCE: &str = r#"{"id":12345678,"host_uuid":"a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4","label":"app-newark-1","region":"us-east","type":"g6-standard-2","tags":["web"],"specs":{"vcpus":2,"memory":4096,"gpus":0,"transfer":4000,"disk":81920},"backups":{"enabled":false,"status":null},"image":{"id":"linode/ubuntu22.04","label":"Ubuntu 22.04 LTS"},"account_euuid":"ABCD1234-5678-90EF-GHIJ-KLMNOPQRSTUV"}"#;

/// Akamai: a PUT for the token, then the instance with it; the double refuses a request without
/// the token, as the service does.
#[tokio::test]
async fn akamai_token_then_instance() {
    let url = http(
        |req: &Req| match (req.method.as_str(), req.target.as_str()) {
            ("PUT", "/v1/token") if req.header("X-Metadata-Token-Expiry-Seconds").is_some() => {
                ok("linode-token-1")
            }
            ("GET", "/v1/instance") if req.header("X-Metadata-Token") == Some("linode-token-1") => {
                ok(LINODE_INSTANCE)
            }
            ("GET", "/v1/instance") => (
                401,
                vec![],
                r#"{"errors":[{"reason":"Unauthorized"}]}"#.into(),
            ),
            _ => not_found(),
        },
    )
    .await;
    let ep = Endpoints {
        link_local: url,
        ..nowhere().await
    };
    let c = cfg(serde_json::json!({"detectors": ["akamai"],
        "akamai": {"resource_attributes": {"host.type": {"enabled": false}}}}));
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.provider"), Some("akamai_cloud"));
    assert_eq!(get_str(&a, "cloud.platform"), Some("akamai_cloud.compute"));
    assert_eq!(
        get_str(&a, "cloud.account.id"),
        Some("ABCD1234-5678-90EF-GHIJ-KLMNOPQRSTUV")
    );
    assert_eq!(get_str(&a, "cloud.region"), Some("us-east"));
    assert_eq!(get_str(&a, "host.id"), Some("12345678"));
    assert_eq!(get_str(&a, "host.image.id"), Some("linode/ubuntu22.04"));
    assert_eq!(get_str(&a, "host.image.name"), Some("Ubuntu 22.04 LTS"));
    assert_eq!(get_str(&a, "host.name"), Some("app-newark-1"));
    assert_eq!(get_str(&a, "host.type"), None, "turned off");
    // Another provider on the address (no token path): not Akamai, and quietly so.
    let other = http(|_: &Req| not_found()).await;
    let ep = Endpoints {
        link_local: other,
        ..nowhere().await
    };
    assert!(detect(&c, &|_| None, &ep).await.unwrap().is_empty());
}

/// Alibaba Cloud ECS in hardened mode: every metadata GET needs the token from the PUT.
#[tokio::test]
async fn alibaba_ecs_token_then_plain_text_values() {
    let url = http(|req: &Req| {
        if req.method == "PUT" {
            return match (
                req.target.as_str(),
                req.header("X-aliyun-ecs-metadata-token-ttl-seconds"),
            ) {
                ("/latest/api/token", Some("21600")) => ok("AQAEAGh1dG9rZW4"),
                _ => (400, vec![], "MissingParameter".into()),
            };
        }
        if req.header("X-aliyun-ecs-metadata-token") != Some("AQAEAGh1dG9rZW4") {
            return (403, vec![], "Forbidden".into());
        }
        match req.target.as_str() {
            "/latest/meta-data/hostname" => ok("iZbp1example0hostZ"),
            "/latest/meta-data/image-id" => ok("aliyun_3_x64_20G_alibase_20240819.vhd"),
            "/latest/meta-data/instance-id" => ok("i-bp1example0instance"),
            "/latest/meta-data/instance/instance-type" => ok("ecs.g7.large"),
            "/latest/meta-data/owner-account-id" => ok("1234567890123456"),
            "/latest/meta-data/region-id" => ok("cn-hangzhou"),
            "/latest/meta-data/zone-id" => ok("cn-hangzhou-i"),
            _ => not_found(),
        }
    })
    .await;
    let ep = Endpoints {
        alibaba: url,
        ..nowhere().await
    };
    let c = cfg(serde_json::json!({"detectors": ["alibaba_ecs"],
        "alibaba_ecs": {"fail_on_missing_metadata": false}}));
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.provider"), Some("alibaba_cloud"));
    assert_eq!(get_str(&a, "cloud.platform"), Some("alibaba_cloud_ecs"));
    assert_eq!(get_str(&a, "cloud.account.id"), Some("1234567890123456"));
    assert_eq!(get_str(&a, "cloud.region"), Some("cn-hangzhou"));
    assert_eq!(
        get_str(&a, "cloud.availability_zone"),
        Some("cn-hangzhou-i")
    );
    assert_eq!(get_str(&a, "host.id"), Some("i-bp1example0instance"));
    assert_eq!(get_str(&a, "host.name"), Some("iZbp1example0hostZ"));
    assert_eq!(
        get_str(&a, "host.image.id"),
        Some("aliyun_3_x64_20G_alibase_20240819.vhd")
    );
    assert_eq!(get_str(&a, "host.type"), Some("ecs.g7.large"));
    // Off Alibaba Cloud with the per-detector fail_on_missing_metadata: an error.
    let c = cfg(serde_json::json!({"detectors": ["alibaba_ecs"],
        "alibaba_ecs": {"fail_on_missing_metadata": true}}));
    let e = detect(&c, &|_| None, &nowhere().await).await.unwrap_err();
    assert!(
        e.contains("alibaba_ecs") && e.contains("fail_on_missing_metadata"),
        "{e}"
    );
}

/// Tencent Cloud CVM: plain text under /latest/meta-data/, no token.
#[tokio::test]
async fn tencent_cvm_plain_text_values() {
    let url = http(|req: &Req| match req.target.as_str() {
        "/latest/meta-data/instance-id" => ok("ins-3example"),
        "/latest/meta-data/instance-name" => ok("api-gz-1"),
        "/latest/meta-data/instance/image-id" => ok("img-9qabwvbn"),
        "/latest/meta-data/instance/instance-type" => ok("S5.MEDIUM4"),
        "/latest/meta-data/app-id" => ok("1250000000"),
        "/latest/meta-data/placement/region" => ok("ap-guangzhou"),
        "/latest/meta-data/placement/zone" => ok("ap-guangzhou-3"),
        _ => not_found(),
    })
    .await;
    let ep = Endpoints {
        tencent: url,
        ..nowhere().await
    };
    let c = cfg(serde_json::json!({"detectors": ["tencent_cvm"],
        "tencent_cvm": {"resource_attributes": {"cloud.account.id": {"enabled": false}}}}));
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.provider"), Some("tencent_cloud"));
    assert_eq!(get_str(&a, "cloud.platform"), Some("tencent_cloud_cvm"));
    assert_eq!(get_str(&a, "cloud.account.id"), None, "turned off");
    assert_eq!(get_str(&a, "cloud.region"), Some("ap-guangzhou"));
    assert_eq!(
        get_str(&a, "cloud.availability_zone"),
        Some("ap-guangzhou-3")
    );
    assert_eq!(get_str(&a, "host.id"), Some("ins-3example"));
    assert_eq!(get_str(&a, "host.name"), Some("api-gz-1"));
    assert_eq!(get_str(&a, "host.image.id"), Some("img-9qabwvbn"));
    assert_eq!(get_str(&a, "host.type"), Some("S5.MEDIUM4"));
}

/// IBM Cloud VPC's instance object (trimmed to the fields otelcol reads and a few around them).
const IBM_VPC_INSTANCE: &str = r#"{"id":"0717_e21b7391-2ca2-4ab5-84a8-b92157a633b0","crn":"crn:v1:bluemix:public:is:us-south-1:a/aa2432b1fa4d4ace891e9b80fc104e34::instance:0717_e21b7391-2ca2-4ab5-84a8-b92157a633b0","name":"my-instance","profile":{"href":"https://us-south.iaas.cloud.ibm.com/v1/instance/profiles/bx2-2x8","name":"bx2-2x8"},"zone":{"href":"https://us-south.iaas.cloud.ibm.com/v1/regions/us-south/zones/us-south-1","name":"us-south-1"},"vpc":{"id":"4727d842-f94f-4a2d-824a-9bc9b02c523b","crn":"crn:v1:bluemix:public:is:us-south:a/aa2432b1fa4d4ace891e9b80fc104e34::vpc:4727d842-f94f-4a2d-824a-9bc9b02c523b","name":"my-vpc"},"resource_group":{"id":"fee82deba12e4c0fb69c3b09d1f12345"},"image":{"id":"r006-02c73baf-9abb-493d-9e41-d0f1866f4051","name":"ibm-ubuntu-22-04-minimal-amd64-1"},"status":"running"}"#;

/// IBM Cloud VPC: the identity token (PUT with Metadata-Flavor: ibm), then the instance with it
/// as a bearer token; the `version` query is required.
#[tokio::test]
async fn ibmcloud_vpc_identity_token_then_instance() {
    let version = format!("version={}", imds::IBM_VPC_API_VERSION);
    let url = http(move |req: &Req| {
        let (path, query) = req.target.split_once('?').unwrap_or((req.target.as_str(), ""));
        if query != version {
            return (400, vec![], r#"{"errors":[{"code":"bad_request"}]}"#.into());
        }
        match (req.method.as_str(), path) {
            ("PUT", "/identity/v1/token") if req.header("Metadata-Flavor") == Some("ibm") => ok(
                r#"{"access_token":"eyJhbGciOi.ibm.token","created_at":"2026-12-06T15:00:00Z","expires_at":"2026-12-06T15:05:00Z","expires_in":300}"#,
            ),
            ("GET", "/metadata/v1/instance")
                if req.header("Authorization") == Some("Bearer eyJhbGciOi.ibm.token") =>
            {
                ok(IBM_VPC_INSTANCE)
            }
            _ => (401, vec![], r#"{"errors":[{"code":"not_authorized"}]}"#.into()),
        }
    })
    .await;
    let ep = Endpoints {
        ibm_vpc_host: url.trim_start_matches("http://").to_string(),
        ..nowhere().await
    };
    let c = cfg(
        serde_json::json!({"detectors": ["ibmcloud_vpc"], "ibmcloud_vpc": {"protocol": "http"}}),
    );
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.provider"), Some("ibm_cloud"));
    assert_eq!(get_str(&a, "cloud.platform"), Some("ibm_cloud.vpc"));
    assert_eq!(get_str(&a, "cloud.region"), Some("us-south"));
    assert_eq!(get_str(&a, "cloud.availability_zone"), Some("us-south-1"));
    assert_eq!(
        get_str(&a, "cloud.account.id"),
        Some("aa2432b1fa4d4ace891e9b80fc104e34")
    );
    assert!(get_str(&a, "cloud.resource_id").is_some_and(|r| r.starts_with("crn:v1:bluemix")));
    assert_eq!(
        get_str(&a, "host.id"),
        Some("0717_e21b7391-2ca2-4ab5-84a8-b92157a633b0")
    );
    assert_eq!(
        get_str(&a, "host.image.id"),
        Some("r006-02c73baf-9abb-493d-9e41-d0f1866f4051")
    );
    assert_eq!(
        get_str(&a, "host.image.name"),
        Some("ibm-ubuntu-22-04-minimal-amd64-1")
    );
    assert_eq!(get_str(&a, "host.name"), Some("my-instance"));
    assert_eq!(get_str(&a, "host.type"), Some("bx2-2x8"));
}

/// IBM Cloud Classic: SoftLayer's `.txt` resource metadata methods.
#[tokio::test]
async fn ibmcloud_classic_softlayer_text_methods() {
    let url = http(|req: &Req| {
        match req
            .target
            .strip_prefix("/rest/v3.1/SoftLayer_Resource_Metadata/")
        {
            Some("getId.txt") => ok("123456789"),
            Some("getHostname.txt") => ok("web01\n"),
            Some("getDatacenter.txt") => ok("dal13"),
            Some("getAccountId.txt") => ok("1234567"),
            Some("getGlobalIdentifier.txt") => ok("3c2f1e5a-7b8d-4e9f-a0b1-c2d3e4f5a6b7"),
            _ => not_found(),
        }
    })
    .await;
    let ep = Endpoints {
        ibm_classic: format!("{url}/rest/v3.1/SoftLayer_Resource_Metadata"),
        ..nowhere().await
    };
    let c = cfg(serde_json::json!({"detectors": ["ibmcloud_classic"]}));
    let a = detect(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "cloud.provider"), Some("ibm_cloud"));
    assert_eq!(get_str(&a, "cloud.platform"), Some("ibm_cloud.classic"));
    assert_eq!(get_str(&a, "cloud.account.id"), Some("1234567"));
    assert_eq!(get_str(&a, "cloud.availability_zone"), Some("dal13"));
    assert_eq!(
        get_str(&a, "cloud.resource_id"),
        Some("3c2f1e5a-7b8d-4e9f-a0b1-c2d3e4f5a6b7")
    );
    assert_eq!(get_str(&a, "host.id"), Some("123456789"));
    assert_eq!(get_str(&a, "host.name"), Some("web01"));
    // Off IBM Cloud Classic, even with fail_on_missing_metadata: nothing, as otelcol.
    let c = cfg(
        serde_json::json!({"detectors": ["ibmcloud_classic"], "fail_on_missing_metadata": true}),
    );
    assert!(detect(&c, &|_| None, &nowhere().await)
        .await
        .unwrap()
        .is_empty());
}

/// `retry`: a detection failing (here, Hetzner's service answering 503 at first, with
/// `fail_on_missing_metadata`) runs again until it succeeds within `max_elapsed_time`; without
/// `retry` the first failure stands.
#[tokio::test]
async fn retry_runs_a_failed_detection_again() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let serve = |fails: usize| {
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        let h = move |req: &Req| {
            if req.target == "/hetzner/v1/metadata/hostname"
                && s.fetch_add(1, Ordering::SeqCst) < fails
            {
                return (503, vec![], "starting".to_string());
            }
            match req.target.as_str() {
                "/hetzner/v1/metadata/hostname" => ok("web-1"),
                _ => not_found(),
            }
        };
        (seen, h)
    };
    let (seen, h) = serve(2);
    let ep = Endpoints {
        link_local: http(h).await,
        ..nowhere().await
    };
    let c = cfg(
        serde_json::json!({"detectors": ["hetzner"], "fail_on_missing_metadata": true,
        "retry": {"initial_interval": "1ms", "max_interval": "2ms", "max_elapsed_time": "1m"}}),
    );
    let a = detect_retrying(&c, &|_| None, &ep).await.unwrap();
    assert_eq!(get_str(&a, "host.name"), Some("web-1"));
    assert_eq!(
        seen.load(Ordering::SeqCst),
        3,
        "two failures, then the answer"
    );

    let (seen, h) = serve(2);
    let ep = Endpoints {
        link_local: http(h).await,
        ..nowhere().await
    };
    let c = cfg(
        serde_json::json!({"detectors": ["hetzner"], "fail_on_missing_metadata": true,
        "retry": {"enabled": false}}),
    );
    let e = detect_retrying(&c, &|_| None, &ep).await.unwrap_err();
    assert!(e.contains("fail_on_missing_metadata"), "{e}");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}
