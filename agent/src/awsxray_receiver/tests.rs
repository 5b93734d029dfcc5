use super::*;
use vigil_core::factory::FactoryBase;

fn parse(v: serde_json::Value) -> Result<AwsXrayReceiverConfig, ConfigError> {
    let id = ComponentId::new("awsxray", None);
    let cfg: AwsXrayReceiverConfig = vigil_core::config::decode(ComponentKind::Receiver, &id, &v)?;
    Factory.validate(&id, &cfg).map(|_| cfg)
}

#[test]
fn otelcol_keys_defaults_and_mistakes() {
    let cfg = parse(serde_json::Value::Null).unwrap();
    assert_eq!(cfg.endpoint, "localhost:2000");
    assert_eq!(cfg.transport, "udp");
    assert_eq!(cfg.proxy_server.endpoint, "localhost:2000");
    assert_eq!(cfg.proxy_server.service_name, "xray");
    // The README's example, every key.
    parse(serde_json::json!({
        "endpoint": "0.0.0.0:2000", "transport": "udp",
        "proxy_server": {"endpoint": "0.0.0.0:2000", "proxy_address": "",
                         "tls": {"insecure": false},
                         "region": "", "aws_endpoint": "", "local_mode": false}
    }))
    .unwrap();
    let e = parse(serde_json::json!({"transport": "tcp"})).unwrap_err();
    assert!(
        e.to_string().contains("receivers::awsxray::transport"),
        "{e}"
    );
    let e = parse(serde_json::json!({"endpoint": "nowhere"})).unwrap_err();
    assert!(
        e.to_string().contains("receivers::awsxray::endpoint"),
        "{e}"
    );
    let e = parse(serde_json::json!({"bogus": 1})).unwrap_err();
    assert!(e.to_string().contains("bogus"), "{e}");
    let e = parse(serde_json::json!({"proxy_server": {"bogus": 1}})).unwrap_err();
    assert!(e.to_string().contains("proxy_server"), "{e}");
    let e = parse(serde_json::json!({"proxy_server": {"role_arn": "arn:aws:iam::1:role/r"}}))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("receivers::awsxray::proxy_server::role_arn"),
        "{e}"
    );
    let e = parse(serde_json::json!({"proxy_server": {"aws_endpoint": "ftp://x"}})).unwrap_err();
    assert!(
        e.to_string()
            .contains("receivers::awsxray::proxy_server::aws_endpoint"),
        "{e}"
    );
    let e = parse(serde_json::json!({"proxy_server": {"tls": {"ca_file": "/no/such.pem"}}}))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("receivers::awsxray::proxy_server::tls::ca_file"),
        "{e}"
    );
}
