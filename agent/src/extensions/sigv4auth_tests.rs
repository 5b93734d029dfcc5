use super::*;
use serde_json::json;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn header(h: &HeaderMap, k: &str) -> String {
    h.get(k).unwrap().to_str().unwrap().to_string()
}

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// The vectors were made with botocore 1.44 (the test venv's) on the same requests:
/// `SigV4Auth(Credentials(key, secret, token), service, region).add_auth(AWSRequest("POST", url,
/// data=body, headers=...))`, with `botocore.auth.get_current_datetime` patched to return
/// 2026-12-06T05:00:00, the headers being those listed here plus `Content-Length: 16` (botocore
/// signs every header it is given; vigil adds content-length itself, as the SDK for Go does).
#[test]
fn signature_matches_botocore() {
    let body: Vec<u8> = [&[0x0a, 0x0b, 0xff, 0x00][..], b"remote write"].concat();
    let url =
        "https://aps-workspaces.us-west-2.amazonaws.com/workspaces/ws-1234/api/v1/remote_write";
    let mut h = HeaderMap::new();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/x-protobuf"),
    );
    h.insert("content-encoding", HeaderValue::from_static("snappy"));
    h.insert(
        "x-prometheus-remote-write-version",
        HeaderValue::from_static("0.1.0"),
    );
    // Not signed, as in botocore and the SDK for Go.
    h.insert("user-agent", HeaderValue::from_static("vigil/test"));
    let creds = Credentials::new_with_token("AKIDEXAMPLE", SECRET, "SESSIONTOKEN");
    let req = OutgoingRequest {
        method: "POST",
        url,
        body: &body,
    };
    let parsed = url::Url::parse(url).unwrap();
    let (service, region) = infer_scope(parsed.host_str().unwrap(), "", "");
    put_signature(
        &mut h,
        req,
        &parsed,
        (&region, &service),
        &creds,
        at("2026-12-06T05:00:00Z"),
    )
    .unwrap();
    assert_eq!(header(&h, "x-amz-date"), "20261206T050000Z");
    assert_eq!(header(&h, "x-amz-security-token"), "SESSIONTOKEN");
    assert_eq!(
        header(&h, "authorization"),
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261206/us-west-2/aps/aws4_request, \
         SignedHeaders=content-encoding;content-length;content-type;host;x-amz-date;\
         x-amz-security-token;x-prometheus-remote-write-version, \
         Signature=3c27006b1aa1973ad92220cb66943e44486f425f427d5fbd9b9564c2250419af"
    );
    assert!(h.get("authorization").unwrap().is_sensitive());
    // The SDK for Go's signer (contrib's) sends no payload hash header; neither does vigil.
    assert!(h.get("x-amz-content-sha256").is_none());

    // A port, a query, a header with a run of spaces, static keys, configured scope.
    let url = "http://127.0.0.1:9009/v1/metrics?tenant=a%20b";
    let mut h = HeaderMap::new();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/x-protobuf"),
    );
    h.insert("x-scope", HeaderValue::from_static("a  b"));
    let creds = Credentials::new("AKIDEXAMPLE", SECRET);
    let req = OutgoingRequest {
        method: "POST",
        url,
        body: &body,
    };
    put_signature(
        &mut h,
        req,
        &url::Url::parse(url).unwrap(),
        ("eu-central-1", "logs"),
        &creds,
        at("2026-12-06T05:00:00Z"),
    )
    .unwrap();
    assert!(h.get("x-amz-security-token").is_none());
    assert_eq!(
        header(&h, "authorization"),
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261206/eu-central-1/logs/aws4_request, \
         SignedHeaders=content-length;content-type;host;x-amz-date;x-scope, \
         Signature=f87e83136be141d7673530fa61d3b6f5cb98af2fa569f332289b6e7f044ecd39"
    );
}

#[test]
fn region_and_service_come_from_known_hosts_unless_configured() {
    let cases = [
        (
            "aps-workspaces.us-west-2.amazonaws.com",
            "",
            "",
            ("aps", "us-west-2"),
        ),
        (
            "aps-workspaces.eu-west-1.amazonaws.com",
            "",
            "eu-central-1",
            ("aps", "eu-central-1"),
        ),
        (
            "search-logs-abc123.ap-south-1.es.amazonaws.com",
            "",
            "",
            ("es", "ap-south-1"),
        ),
        (
            "logs.us-east-2.amazonaws.com",
            "",
            "",
            ("logs", "us-east-2"),
        ),
        (
            "xray.eu-north-1.amazonaws.com",
            "",
            "",
            ("xray", "eu-north-1"),
        ),
        (
            "xray.eu-north-1.amazonaws.com",
            "custom",
            "",
            ("custom", "eu-north-1"),
        ),
        // Hosts contrib does not know keep what is configured, empty or not.
        ("monitoring.example.com", "", "", ("", "")),
        ("127.0.0.1", "aps", "us-west-2", ("aps", "us-west-2")),
    ];
    for (host, service, region, want) in cases {
        let got = infer_scope(host, service, region);
        assert_eq!((got.0.as_str(), got.1.as_str()), want, "{host}");
    }
}

fn signer(cfg: serde_json::Value) -> Signer {
    let id = ComponentId::parse("sigv4auth/t").unwrap();
    let cfg: Sigv4Config = serde_json::from_value(cfg).unwrap();
    cfg.check(&id).unwrap();
    Signer::new(&id, &cfg).unwrap()
}

#[test]
fn an_unknown_host_without_region_or_service_is_an_error_naming_them() {
    let s = signer(json!({}));
    let url = url::Url::parse("https://prometheus.example.com/api/v1/write").unwrap();
    let e = s.scope(&url).unwrap_err();
    assert!(
        e.contains("sigv4auth/t") && e.contains("set `region` and `service`"),
        "{e}"
    );
    let s = signer(json!({"service": "aps"}));
    let e = s.scope(&url).unwrap_err();
    assert!(e.contains("cannot infer the region"), "{e}");
    let url = url::Url::parse("https://aps-workspaces.us-west-2.amazonaws.com/x").unwrap();
    assert_eq!(
        s.scope(&url).unwrap(),
        ("aps".to_string(), "us-west-2".to_string())
    );
}

#[test]
fn config_errors_name_the_key() {
    let id = ComponentId::parse("sigv4auth").unwrap();
    let check = |v: serde_json::Value| {
        let cfg: Sigv4Config = serde_json::from_value(v).unwrap();
        cfg.check(&id).map_err(|e| e.to_string())
    };
    let e = check(json!({"assume_role": {"web_identity_token_file": "/t"}})).unwrap_err();
    assert!(
        e.contains("assume_role::arn") && e.contains("web_identity_token_file"),
        "{e}"
    );
    let e = check(json!({"assume_role": {"arn": "amp-writer"}})).unwrap_err();
    assert!(e.contains("is not an ARN"), "{e}");
    let e = check(json!({"assume_role": {"arn": "arn:aws:iam::1:role/r", "session_name": "x"}}))
        .unwrap_err();
    assert!(e.contains("assume_role::session_name"), "{e}");
    let e = check(json!({"service": "aps workspaces"})).unwrap_err();
    assert!(e.contains("service"), "{e}");
    let unknown = serde_json::from_value::<Sigv4Config>(json!({"role_arn": "arn:x"}));
    assert!(unknown.is_err());
    check(json!({
        "region": "us-west-2",
        "service": "aps",
        "assume_role": {"arn": "arn:aws:iam::1:role/r", "session_name": "vigil@node-1",
                        "sts_region": "us-east-1"}
    }))
    .unwrap();
}

#[test]
fn sts_answers_are_read() {
    let ok = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult><Credentials>
    <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
    <SecretAccessKey>s/e+c</SecretAccessKey>
    <SessionToken>tok&amp;en=</SessionToken>
    <Expiration>2026-12-06T06:00:00Z</Expiration>
  </Credentials></AssumeRoleResult></AssumeRoleResponse>"#;
    assert_eq!(xml_text(ok, "AccessKeyId").as_deref(), Some("ASIAEXAMPLE"));
    assert_eq!(xml_text(ok, "SessionToken").as_deref(), Some("tok&en="));
    assert_eq!(xml_text(ok, "Missing"), None);
    let refused = "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>\
                   <Message>not authorized</Message></Error></ErrorResponse>";
    assert_eq!(xml_text(refused, "Code").as_deref(), Some("AccessDenied"));
}

/// STS's endpoint: the override the SDKs read, the regional one, or the global one.
#[test]
fn sts_endpoint_by_region() {
    // Skipped when the environment overrides it for every test.
    if std::env::var_os("AWS_ENDPOINT_URL_STS").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL").is_some()
    {
        return;
    }
    let (u, r) = sts_endpoint("eu-west-1").unwrap();
    assert_eq!(
        (u.as_str(), r.as_str()),
        ("https://sts.eu-west-1.amazonaws.com/", "eu-west-1")
    );
    let (u, r) = sts_endpoint("").unwrap();
    assert_eq!(
        (u.as_str(), r.as_str()),
        ("https://sts.amazonaws.com/", "us-east-1")
    );
}

/// Exporters that pass only headers (the gRPC `otlp` exporter) must refuse it at start.
#[test]
fn it_needs_the_whole_request() {
    let s = signer(json!({"region": "us-east-1", "service": "aps"}));
    assert!(s.needs_request());
    let e = futures::executor::block_on(s.headers()).unwrap_err();
    assert!(e.contains("signs whole HTTP requests"), "{e}");
}
