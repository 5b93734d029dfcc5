//! The client against an OpAMP server double: a local HTTP (and WebSocket) server that decodes
//! each `AgentToServer` and answers `ServerToAgent` as the spec says. It is a double because no real
//! OpAMP server (opamp-go's example server needs a Go toolchain with network) can run here; its
//! messages are the protocol's own, built from the same field numbers.

use super::*;
use std::sync::Mutex as StdMutex;
use vigil_core::factory::FactoryBase;

fn parse(v: serde_json::Value) -> Result<OpampConfig, ConfigError> {
    let id = ComponentId::new("opamp", None);
    let cfg: OpampConfig = vigil_core::config::decode(ComponentKind::Extension, &id, &v)?;
    Factory.validate(&id, &cfg).map(|_| cfg)
}

#[test]
fn config_defaults_and_mistakes() {
    let e = parse(serde_json::Value::Null).unwrap_err();
    assert!(e.to_string().contains("at least ws or http"), "{e}");
    let cfg =
        parse(serde_json::json!({"server": {"http": {"endpoint": "https://x/v1/opamp"}}})).unwrap();
    assert!(cfg.capabilities.reports_effective_config && cfg.capabilities.reports_health);
    assert_eq!(cfg.ppid_poll_interval, Duration::from_secs(5));
    let both = serde_json::json!({"server": {"http": {"endpoint": "http://x"}, "ws": {"endpoint": "ws://x"}}});
    assert!(parse(both)
        .unwrap_err()
        .to_string()
        .contains("only ws or http"));
    let e = parse(serde_json::json!({"server": {"ws": {"endpoint": "http://x"}}})).unwrap_err();
    assert!(e.to_string().contains("server::ws::endpoint"), "{e}");
    let e = parse(
        serde_json::json!({"server": {"http": {"endpoint": "http://x"}}, "instance_uid": "nope"}),
    )
    .unwrap_err();
    assert!(e.to_string().contains("instance_uid is invalid"), "{e}");
    let e = parse(serde_json::json!({"server": {"http": {"endpoint": "http://x", "auth": {"authenticator": "a"}}}}))
        .unwrap_err();
    assert!(e.to_string().contains("server::http::auth"), "{e}");
    let e = parse(serde_json::json!({"server": {"http": {"endpoint": "http://x"}}, "capabilities": {"accepts_restart_command": true}}))
        .unwrap_err();
    assert!(e.to_string().contains("accepts_restart_command"), "{e}");
    // Both instance uid forms otelcol accepts.
    assert_eq!(
        parse_instance_uid("00000000-0000-7000-8000-000000000001"),
        Some([0, 0, 0, 0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 1])
    );
    assert!(parse_instance_uid("01ARZ3NDEKTSV4RRFFQ69G5FAV").is_some());
    let v7 = new_uuid_v7();
    assert_eq!(v7[6] >> 4, 7);
    assert_eq!(v7[8] >> 6, 2);
}

/// Sumo Logic's own `opamp` extension, as their distribution's example config writes it, is
/// refused as the component it is; contrib's keys put one level too high are still key errors.
#[test]
fn sumo_logics_opamp_is_named_as_a_component_vigil_lacks() {
    let f = factory();
    let id = ComponentId::new("opamp", None);
    let sumo = serde_json::json!({
        "remote_configuration_directory": "/etc/otelcol-sumo/opamp.d",
        "endpoint": "wss://opamp-collectors.sumologic.com/v1/opamp",
    });
    let expected = "extensions::opamp::remote_configuration_directory: a component vigil does \
                    not have: Sumo Logic's opamp extension (their distribution's; keys endpoint, \
                    remote_configuration_directory)";
    let e = f.validate(&id, &sumo).unwrap_err().to_string();
    assert!(e.starts_with(expected), "{e}");
    assert!(!e.contains("invalid keys"), "{e}");
    let e = f.create(&id, &sumo).err().expect("refused").to_string();
    assert!(e.starts_with(expected), "{e}");
    assert!(f.resolved(&id, &sumo).is_err());
    // Any one of its own keys marks it, whatever else the section has.
    let e = f
        .validate(&id, &serde_json::json!({"accepts_remote_configuration": true, "server": {"ws": {"endpoint": "wss://x"}}}))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "extensions::opamp::accepts_remote_configuration: a component vigil does not have"
        ) && e.contains("keys accepts_remote_configuration);"),
        "{e}"
    );
    // Without them, a top-level endpoint is a misplaced contrib key, and says so.
    let e = f
        .validate(&id, &serde_json::json!({"endpoint": "wss://x"}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalid keys: endpoint"), "{e}");
    assert!(!e.contains("Sumo Logic"), "{e}");
    let e = f
        .validate(
            &id,
            &serde_json::json!({"server": {"ws": {"endpoint": "wss://x"}}, "capabilites": {}}),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("capabilites"), "{e}");
    assert!(!e.contains("Sumo Logic"), "{e}");
    f.validate(
        &id,
        &serde_json::json!({"server": {"ws": {"endpoint": "wss://x"}}}),
    )
    .unwrap();
}

#[test]
fn credentials_are_redacted() {
    let mut v = serde_json::json!({
        "exporters": {"otlphttp": {"endpoint": "https://x", "headers": {"X-SF-Token": "s3cret"}}},
        "extensions": {"basicauth": {"client_auth": {"username": "u", "password": "p4ss"}},
                        "oauth2client": {"client_secret": "cs", "token_url": "https://t"}},
    });
    redact(&mut v);
    let text = v.to_string();
    assert!(
        !text.contains("s3cret") && !text.contains("p4ss") && !text.contains("\"cs\""),
        "{text}"
    );
    assert!(
        text.contains("https://t") && text.contains("\"u\""),
        "{text}"
    );
}

/// What the double saw, and what it answers next (one scripted answer per message, then acks).
#[derive(Default)]
struct Double {
    seen: Vec<AgentToServer>,
    script: Vec<ServerToAgent>,
}

impl Double {
    fn answer(&mut self, msg: AgentToServer) -> ServerToAgent {
        let uid = msg.instance_uid.clone();
        self.seen.push(msg);
        let mut a = if self.script.is_empty() {
            ServerToAgent::default()
        } else {
            self.script.remove(0)
        };
        a.instance_uid = uid;
        // AcceptsStatus | AcceptsEffectiveConfig, as the spec asks in every first answer.
        a.capabilities = 0x1 | 0x4;
        a
    }
}

async fn http_double(d: Arc<StdMutex<Double>>) -> String {
    let app = axum::Router::new().route(
        "/v1/opamp",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let d = d.clone();
                async move {
                    assert_eq!(headers["content-type"], "application/x-protobuf");
                    assert_eq!(headers["x-sf-token"], "tok");
                    let msg = AgentToServer::decode(body.as_ref()).expect("an AgentToServer");
                    let a = d.lock().unwrap().answer(msg);
                    (
                        [("content-type", "application/x-protobuf")],
                        a.encode_to_vec(),
                    )
                }
            },
        ),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("http://{addr}/v1/opamp")
}

fn attr<'a>(kvs: &'a [proto::KeyValue], key: &str) -> Option<&'a str> {
    kvs.iter()
        .find(|k| k.key == key)
        .and_then(|k| match &k.value {
            Some(proto::AnyValue {
                value: Some(proto::any_value::Value::StringValue(s)),
            }) => Some(s.as_str()),
            _ => None,
        })
}

/// A running config for the effective-config report, with a credential in it.
fn running_config() {
    let reg = crate::registry::Registry::builtin();
    let root: Value = serde_saphyr::from_str(
        "receivers: {nop: {}}\nexporters: {otlphttp: {endpoint: 'https://backend', headers: {X-Key: hunter2}}}\n\
         service: {pipelines: {traces: {receivers: [nop], exporters: [otlphttp]}}}\n",
    )
    .unwrap();
    let cfg = crate::config::Config::from_value(&root, &reg).unwrap();
    crate::observed::global().set_config(&cfg);
}

async fn wait_for(d: &Arc<StdMutex<Double>>, n: usize) {
    for _ in 0..100 {
        if d.lock().unwrap().seen.len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!(
        "the double saw {} messages, wanted {n}",
        d.lock().unwrap().seen.len()
    );
}

#[tokio::test]
async fn reports_over_http_to_the_double() {
    running_config();
    let d = Arc::new(StdMutex::new(Double::default()));
    // Second answer offers a remote config; third asks for the full state again.
    d.lock().unwrap().script = vec![
        ServerToAgent::default(),
        ServerToAgent {
            remote_config: Some(proto::AgentRemoteConfig {
                config: None,
                config_hash: vec![1, 2, 3],
            }),
            ..Default::default()
        },
        ServerToAgent {
            flags: server_flags::REPORT_FULL_STATE,
            ..Default::default()
        },
    ];
    let endpoint = http_double(d.clone()).await;
    let reg = crate::registry::Registry::builtin();
    let id = ComponentId::new("opamp", Some("t"));
    let ext = reg
        .extension("opamp")
        .unwrap()
        .create(
            &id,
            &serde_json::json!({
                "server": {"http": {"endpoint": endpoint, "headers": {"X-SF-Token": "tok"}, "polling_interval": "200ms"}},
                "instance_uid": "00000000-0000-7000-8000-000000000001",
                "agent_description": {"non_identifying_attributes": {"demo.role": "gateway"}},
            }),
        )
        .unwrap();
    ext.start(&Host::detached()).await.unwrap();
    wait_for(&d, 5).await;
    ext.shutdown_by(std::time::Instant::now() + Duration::from_secs(2))
        .await
        .unwrap();
    let seen = std::mem::take(&mut d.lock().unwrap().seen);
    let first = &seen[0];
    assert_eq!(first.instance_uid[15], 1);
    assert_eq!(first.instance_uid.len(), 16);
    assert_eq!(first.sequence_num, 1);
    assert_eq!(
        first.capabilities,
        agent_caps::REPORTS_STATUS
            | agent_caps::REPORTS_EFFECTIVE_CONFIG
            | agent_caps::REPORTS_HEALTH
            | agent_caps::REPORTS_AVAILABLE_COMPONENTS
    );
    let desc = first
        .agent_description
        .as_ref()
        .expect("a description first");
    assert_eq!(
        attr(&desc.identifying_attributes, "service.name"),
        Some("vigil")
    );
    assert_eq!(
        attr(&desc.identifying_attributes, "service.instance.id"),
        Some("00000000-0000-7000-8000-000000000001")
    );
    assert_eq!(
        attr(&desc.non_identifying_attributes, "os.type"),
        Some("linux")
    );
    assert_eq!(
        attr(&desc.non_identifying_attributes, "demo.role"),
        Some("gateway")
    );
    assert!(first.health.is_some());
    let body = &first
        .effective_config
        .as_ref()
        .and_then(|e| e.config_map.as_ref())
        .and_then(|m| m.config_map.get(""))
        .expect("the effective config")
        .body;
    let yaml = String::from_utf8_lossy(body);
    assert!(
        yaml.contains("https://backend") && yaml.contains("[REDACTED]"),
        "{yaml}"
    );
    assert!(!yaml.contains("hunter2"), "{yaml}");
    let comps = first.available_components.as_ref().expect("components");
    assert!(comps.components["extensions"]
        .sub_component_map
        .contains_key("opamp"));
    assert!(comps.components["receivers"]
        .sub_component_map
        .contains_key("otlp"));
    // The second message is a heartbeat: nothing changed, so nothing but the header.
    let second = &seen[1];
    assert_eq!(second.sequence_num, 2);
    assert!(second.agent_description.is_none() && second.effective_config.is_none());
    // The remote config offer is answered at once with FAILED and its hash.
    let third = &seen[2];
    let rcs = third
        .remote_config_status
        .as_ref()
        .expect("a remote config status");
    assert_eq!(rcs.status, proto::REMOTE_CONFIG_FAILED);
    assert_eq!(rcs.last_remote_config_hash, vec![1, 2, 3]);
    // ReportFullState brings the description and config back.
    let fourth = &seen[3];
    assert!(fourth.agent_description.is_some() && fourth.effective_config.is_some());
    // Sequence numbers go up by one; the last message says goodbye.
    for w in seen.windows(2) {
        assert_eq!(w[1].sequence_num, w[0].sequence_num + 1);
    }
    assert!(seen.last().unwrap().agent_disconnect.is_some());
}

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<AgentToServer>) -> AgentToServer {
    tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .expect("a message in time")
        .expect("the double runs")
}

#[tokio::test]
async fn reports_over_websocket_to_the_double() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<AgentToServer>();
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        use futures::{SinkExt, StreamExt};
        let mut n = 0;
        while let Some(Ok(m)) = ws.next().await {
            let tokio_tungstenite::tungstenite::Message::Binary(data) = m else {
                continue;
            };
            let msg = AgentToServer::decode(ws::unframe(&data).unwrap()).unwrap();
            n += 1;
            let mut a = ServerToAgent {
                instance_uid: msg.instance_uid.clone(),
                capabilities: 0x5,
                ..Default::default()
            };
            if n == 1 {
                // A new uid from the server, and a one-second heartbeat.
                a.agent_identification = Some(proto::AgentIdentification {
                    new_instance_uid: vec![9; 16],
                });
                a.connection_settings = Some(proto::ConnectionSettingsOffers {
                    hash: vec![1],
                    opamp: Some(proto::OpAmpConnectionSettings {
                        destination_endpoint: String::new(),
                        heartbeat_interval_seconds: 1,
                    }),
                });
            }
            let _ = tx.send(msg);
            if ws.send(ws::frame(&a).into()).await.is_err() {
                break;
            }
        }
    });
    let reg = crate::registry::Registry::builtin();
    let id = ComponentId::new("opamp", Some("ws"));
    let ext = reg
        .extension("opamp")
        .unwrap()
        .create(
            &id,
            &serde_json::json!({"server": {"ws": {"endpoint": format!("ws://{addr}/v1/opamp")}}}),
        )
        .unwrap();
    ext.start(&Host::detached()).await.unwrap();
    let first = next(&mut rx).await;
    assert_eq!(first.sequence_num, 1);
    assert!(first.capabilities & agent_caps::REPORTS_HEARTBEAT != 0);
    assert!(first.agent_description.is_some());
    // The new uid is used at once, with the whole status under it.
    let second = next(&mut rx).await;
    assert_eq!(second.instance_uid, vec![9; 16]);
    assert!(second.agent_description.is_some());
    // Then heartbeats, about a second apart.
    let t = std::time::Instant::now();
    let third = next(&mut rx).await;
    assert!(third.agent_description.is_none());
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    ext.shutdown_by(std::time::Instant::now() + Duration::from_secs(2))
        .await
        .unwrap();
    let last = next(&mut rx).await;
    assert!(last.agent_disconnect.is_some());
}

#[tokio::test]
async fn an_oversized_answer_is_refused() {
    let app = axum::Router::new().route(
        "/v1/opamp",
        axum::routing::post(|| async { vec![0u8; MAX_MESSAGE_BYTES + 1] }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    let client = reqwest::Client::new();
    let r = exchange(
        &client,
        &format!("http://{addr}/v1/opamp"),
        &AgentToServer::default(),
    )
    .await;
    match r {
        Err((reason, text, _)) => {
            assert_eq!(reason, "too_large");
            assert!(text.contains("larger than"), "{text}");
        }
        Ok(m) => panic!("accepted {m:?}"),
    }
}
