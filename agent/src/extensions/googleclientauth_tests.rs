//! Against local doubles of Google's OAuth 2.0 token endpoint and of the GCE metadata server (the
//! real ones cannot be reached here). They answer as Google documents: the token endpoint checks
//! the RS256 signature of the JWT grant with the test key's public half, and the metadata server
//! refuses requests without `Metadata-Flavor: Google` and marks its answers with it.

use super::*;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;

fn id() -> ComponentId {
    ComponentId::parse("googleclientauth").unwrap()
}

fn cfg(v: Value) -> GoogleClientAuthConfig {
    vigil_core::config::decode(ComponentKind::Extension, &id(), &v).unwrap()
}

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/googleclientauth")
        .join(name)
}

/// A JWT-shaped ID token (Google's would be signed; only `exp` is read here).
fn id_token(aud: &str, exp: u64) -> String {
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(json!({"alg": "RS256", "typ": "JWT"})),
        b64(json!({"aud": aud, "exp": exp, "iss": "https://accounts.google.com"}))
    )
}

/// What the doubles saw.
#[derive(Default)]
struct Seen {
    /// The verified claims of each JWT grant.
    grants: Mutex<Vec<Value>>,
    /// The query of each metadata token request.
    metadata: Mutex<Vec<HashMap<String, String>>>,
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr.to_string()
}

/// Google's token endpoint: the JWT bearer grant (RFC 7523) of a service account.
async fn token_endpoint(seen: Arc<Seen>) -> String {
    let jwk: Value = serde_json::from_slice(
        &std::fs::read(testdata("service_account_test_key.jwk.json")).unwrap(),
    )
    .unwrap();
    let public = (
        jwk["n"].as_str().unwrap().to_string(),
        jwk["e"].as_str().unwrap().to_string(),
    );
    let app = axum::Router::new()
        .route(
            "/token",
            axum::routing::post(move |State(seen): State<Arc<Seen>>, body: String| {
                let public = public.clone();
                async move {
                    let form: HashMap<String, String> =
                        form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                    if form.get("grant_type").map(String::as_str)
                        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
                    {
                        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "unsupported_grant_type"})));
                    }
                    let key = jsonwebtoken::DecodingKey::from_rsa_components(&public.0, &public.1).unwrap();
                    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
                    v.validate_aud = false;
                    let Ok(data) = jsonwebtoken::decode::<Value>(
                        form.get("assertion").map_or("", String::as_str),
                        &key,
                        &v,
                    ) else {
                        return (
                            StatusCode::BAD_REQUEST,
                            axum::Json(json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})),
                        );
                    };
                    let mut claims = data.claims;
                    claims["kid"] = json!(data.header.kid);
                    let n = {
                        let mut g = seen.grants.lock().unwrap();
                        g.push(claims.clone());
                        g.len()
                    };
                    let answer = match claims.get("target_audience").and_then(Value::as_str) {
                        Some(aud) => json!({"id_token": id_token(aud, unix_now() + 3600)}),
                        None => json!({"access_token": format!("ya29.sa{n}"), "expires_in": 3599, "token_type": "Bearer"}),
                    };
                    (StatusCode::OK, axum::Json(answer))
                }
            }),
        )
        .with_state(seen);
    format!("http://{}/token", serve(app).await)
}

/// The GCE metadata server, for project `meta-project`.
async fn metadata_server(seen: Arc<Seen>) -> String {
    fn flavored(headers: &HeaderMap) -> bool {
        headers
            .get("metadata-flavor")
            .is_some_and(|v| v == "Google")
    }
    let app = axum::Router::new()
        .route(
            "/computeMetadata/v1/project/project-id",
            axum::routing::get(|headers: HeaderMap| async move {
                if !flavored(&headers) {
                    return (StatusCode::FORBIDDEN, "Missing Metadata-Flavor:Google header.").into_response();
                }
                ([("metadata-flavor", "Google")], "meta-project").into_response()
            }),
        )
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/token",
            axum::routing::get(
                |State(seen): State<Arc<Seen>>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>| async move {
                    if !flavored(&headers) {
                        return (StatusCode::FORBIDDEN, "Missing Metadata-Flavor:Google header.").into_response();
                    }
                    seen.metadata.lock().unwrap().push(q);
                    (
                        [("metadata-flavor", "Google")],
                        axum::Json(json!({"access_token": "ya29.gce", "expires_in": 3599, "token_type": "Bearer"})),
                    )
                        .into_response()
                },
            ),
        )
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/identity",
            axum::routing::get(|headers: HeaderMap, Query(q): Query<HashMap<String, String>>| async move {
                if !flavored(&headers) || q.get("format").map(String::as_str) != Some("full") {
                    return (StatusCode::BAD_REQUEST, "bad request").into_response();
                }
                let aud = q.get("audience").cloned().unwrap_or_default();
                ([("metadata-flavor", "Google")], id_token(&aud, unix_now() + 3600)).into_response()
            }),
        )
        .with_state(seen);
    serve(app).await
}

/// The test service-account key with its `token_uri` aimed at `token_uri`, in `dir`.
fn key_file(dir: &std::path::Path, token_uri: &str, drop: &[&str]) -> PathBuf {
    let mut v: Value =
        serde_json::from_slice(&std::fs::read(testdata("service_account_test_key.json")).unwrap())
            .unwrap();
    v["token_uri"] = json!(token_uri);
    v["quota_project_id"] = json!("billing-project");
    for k in drop {
        v.as_object_mut().unwrap().remove(*k);
    }
    let p = dir.join("key.json");
    std::fs::write(&p, v.to_string()).unwrap();
    p
}

/// A port nothing listens on: no metadata server there.
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

async fn started(config: Value, discovery: Discovery) -> Result<Arc<Inner>, String> {
    let ext = GoogleClientAuth {
        inner: Arc::new(Inner::new(&id(), cfg(config), discovery)),
    };
    ext.start(&Host::detached())
        .await
        .map_err(|e| format!("{e:#}"))?;
    Ok(ext.inner)
}

async fn header_map(auth: &Inner) -> HashMap<String, String> {
    auth.headers()
        .await
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn a_service_account_key_signs_a_jwt_grant_and_sends_the_project_headers() {
    let seen = Arc::new(Seen::default());
    let uri = token_endpoint(seen.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let discovery = Discovery {
        credentials_file: Some(key_file(dir.path(), &uri, &[])),
        metadata_host: closed_port(),
        ..Default::default()
    };
    let auth = started(json!({}), discovery).await.unwrap();
    let h = header_map(&auth).await;
    assert_eq!(h["authorization"], "Bearer ya29.sa1");
    assert_eq!(h["x-goog-project-id"], "vigil-test-project");
    assert_eq!(h["x-goog-user-project"], "billing-project");
    // Cached: no second grant.
    assert_eq!(header_map(&auth).await["authorization"], "Bearer ya29.sa1");
    let grants = seen.grants.lock().unwrap().clone();
    assert_eq!(grants.len(), 1);
    let c = &grants[0];
    assert_eq!(
        c["iss"],
        "collector@vigil-test-project.iam.gserviceaccount.com"
    );
    assert_eq!(c["aud"], json!(uri));
    assert_eq!(c["kid"], "0123456789abcdef0123456789abcdef01234567");
    assert_eq!(
        c["scope"],
        "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/logging.write \
         https://www.googleapis.com/auth/monitoring.write https://www.googleapis.com/auth/trace.append"
    );
    assert_eq!(
        c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
        3600
    );
    // Configured values win over the key file's.
    let discovery = Discovery {
        credentials_file: Some(key_file(dir.path(), &uri, &[])),
        metadata_host: closed_port(),
        project: Some("env-project".into()),
        ..Default::default()
    };
    let auth = started(json!({"quota_project": "q2"}), discovery)
        .await
        .unwrap();
    let h = header_map(&auth).await;
    assert_eq!(
        (
            h["x-goog-project-id"].as_str(),
            h["x-goog-user-project"].as_str()
        ),
        ("env-project", "q2")
    );
    let auth = started(
        json!({"token_type": "id_token", "audience": "https://run.example"}),
        Discovery {
            credentials_file: Some(key_file(dir.path(), &uri, &[])),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let bearer = header_map(&auth).await["authorization"].clone();
    let token = bearer.strip_prefix("Bearer ").unwrap();
    assert!(jwt_expiry(token).is_some(), "{token}");
    assert_eq!(
        seen.grants.lock().unwrap().last().unwrap()["target_audience"],
        "https://run.example"
    );
}

#[tokio::test]
async fn on_gce_tokens_come_from_the_metadata_server() {
    let seen = Arc::new(Seen::default());
    let host = metadata_server(seen.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let discovery = Discovery {
        well_known_file: Some(dir.path().join("absent.json")),
        metadata_host: host.clone(),
        ..Default::default()
    };
    let auth = started(
        json!({"scopes": ["https://www.googleapis.com/auth/monitoring.write"]}),
        discovery.clone(),
    )
    .await
    .unwrap();
    let h = header_map(&auth).await;
    assert_eq!(h["authorization"], "Bearer ya29.gce");
    assert_eq!(h["x-goog-project-id"], "meta-project");
    assert!(!h.contains_key("x-goog-user-project"));
    assert_eq!(
        seen.metadata.lock().unwrap()[0]["scopes"],
        "https://www.googleapis.com/auth/monitoring.write"
    );
    let auth = started(
        json!({"token_type": "id_token", "audience": "https://otlp.example"}),
        discovery,
    )
    .await
    .unwrap();
    let bearer = header_map(&auth).await["authorization"].clone();
    assert!(
        jwt_expiry(bearer.strip_prefix("Bearer ").unwrap()).is_some(),
        "{bearer}"
    );
}

#[tokio::test]
async fn off_google_cloud_without_credentials_start_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let e = started(
        json!({}),
        Discovery {
            well_known_file: Some(dir.path().join("application_default_credentials.json")),
            metadata_host: closed_port(),
            ..Default::default()
        },
    )
    .await
    .err()
    .unwrap();
    assert!(
        e.starts_with("extensions::googleclientauth: no Google application default credentials")
            && e.contains("GOOGLE_APPLICATION_CREDENTIALS is not set")
            && e.contains("no metadata server answered"),
        "{e}"
    );
    // A server that is not Google's metadata server (no Metadata-Flavor) is not taken for one.
    let other = serve(axum::Router::new().route(
        "/computeMetadata/v1/project/project-id",
        axum::routing::get(|| async { "p" }),
    ))
    .await;
    let e = started(
        json!({}),
        Discovery {
            metadata_host: other,
            ..Default::default()
        },
    )
    .await
    .err()
    .unwrap();
    assert!(e.contains("without Metadata-Flavor: Google"), "{e}");
    // A key without a project, and none configured: upstream's error.
    let e = started(
        json!({}),
        Discovery {
            credentials_file: Some(key_file(
                dir.path(),
                "http://127.0.0.1:1/token",
                &["project_id"],
            )),
            ..Default::default()
        },
    )
    .await
    .err()
    .unwrap();
    assert!(
        e.contains("no project set in config or found with application default credentials"),
        "{e}"
    );
    // A named file that is missing, and a type not built.
    let e = started(
        json!({}),
        Discovery {
            credentials_file: Some(dir.path().join("missing.json")),
            ..Default::default()
        },
    )
    .await
    .err()
    .unwrap();
    assert!(e.contains("GOOGLE_APPLICATION_CREDENTIALS names"), "{e}");
    let ext = dir.path().join("ext.json");
    std::fs::write(&ext, r#"{"type": "external_account", "audience": "x"}"#).unwrap();
    let e = started(
        json!({"project": "p"}),
        Discovery {
            credentials_file: Some(ext),
            ..Default::default()
        },
    )
    .await
    .err()
    .unwrap();
    assert!(e.contains("\"external_account\" are not supported"), "{e}");
}

/// The real `otlphttp` exporter naming the extension: its requests carry the token and the
/// project headers; a failing token endpoint fails the export retryably.
#[tokio::test]
async fn an_exporter_sends_the_google_headers() {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use vigil_core::Telemetry;
    let seen = Arc::new(Seen::default());
    let uri = token_endpoint(seen.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let log = got.clone();
    let backend = serve(axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap| {
            let log = log.clone();
            async move {
                let h = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                log.lock()
                    .unwrap()
                    .push((h("authorization"), h("x-goog-user-project")));
                StatusCode::OK
            }
        }),
    ))
    .await;
    let ext = Arc::new(GoogleClientAuth {
        inner: Arc::new(Inner::new(
            &id(),
            cfg(json!({})),
            Discovery {
                credentials_file: Some(key_file(dir.path(), &uri, &[])),
                ..Default::default()
            },
        )),
    });
    ext.start(&Host::detached()).await.unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let host = Host::new(
        [(id(), ext as Arc<dyn Extension>)].into_iter().collect(),
        tx,
    );
    let exporter = vigil_exporters::otlphttp::factory()
        .create(
            &ComponentId::parse("otlphttp/gcp").unwrap(),
            &json!({
                "endpoint": format!("http://{backend}"),
                "auth": {"authenticator": "googleclientauth"},
                "sending_queue": {"enabled": false},
                "retry_on_failure": {"enabled": false},
            }),
        )
        .unwrap();
    exporter.start(&host).await.unwrap();
    let spans = Telemetry::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                name: "s".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    exporter.consume(spans).await.unwrap();
    assert_eq!(
        *got.lock().unwrap(),
        vec![("Bearer ya29.sa1".to_string(), "billing-project".to_string())]
    );
}

#[test]
fn config_defaults_and_errors() {
    let c = cfg(json!({}));
    assert_eq!(c.token_type, TokenType::AccessToken);
    assert_eq!(c.scopes, default_scopes());
    let f = factory();
    let check = |v: Value| f.validate(&id(), &v).unwrap_err().to_string();
    assert!(check(json!({"token_type": "id_token"}))
        .contains("googleclientauth::audience: must be specified with token_type: id_token"));
    assert!(check(json!({"token_type": "jwt"})).contains("token_type"));
    assert!(f
        .validate(&id(), &json!({"token_type": "id_token", "audience": "a"}))
        .is_ok());
}
