//! What the AWS tests share (tests/tests/awss3.rs, aws.rs): moto's `moto_server`, a local server
//! that speaks the real AWS protocols (S3, CloudWatch Logs, X-Ray), and a proxy in front of it that
//! refuses and stalls the first calls of a kind, to show that the exporters lose nothing.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vigil_tests::{eventually, python};

/// `moto_server` from the test venv, killed on drop.
pub struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `moto_server` on `port` and waits until it answers.
pub fn moto(port: u16) -> Moto {
    let bin = python().with_file_name("moto_server");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/test.sh, which installs moto[server], boto3 and duckdb into .venv \
         (pip install -r tests/requirements.txt)",
        bin.display()
    );
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let m = Moto(child);
    eventually(Duration::from_secs(60), "moto_server to answer", || {
        reqwest::blocking::get(format!("http://127.0.0.1:{port}/"))
            .ok()
            .map(|_| ())
    });
    m
}

/// A proxy on `port` to moto on `upstream` that answers 503 with `refusal` to the first `fail`
/// calls that `counted` picks and never answers the next `stall`; counts the calls it picked.
pub fn flaky_proxy(
    rt: &tokio::runtime::Runtime,
    port: u16,
    upstream: u16,
    fail: usize,
    stall: usize,
    counted: fn(&axum::http::request::Parts) -> bool,
    refusal: &'static str,
) -> Arc<AtomicUsize> {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let seen = Arc::clone(&seen);
        let client = client.clone();
        async move {
            use axum::response::IntoResponse;
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 64 << 20)
                .await
                .unwrap_or_default();
            if counted(&parts) {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                if n < fail {
                    return (axum::http::StatusCode::SERVICE_UNAVAILABLE, refusal).into_response();
                }
                if n < fail + stall {
                    std::future::pending::<()>().await;
                }
            }
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut fwd = client.request(
                parts.method.clone(),
                format!("http://127.0.0.1:{upstream}{path}"),
            );
            for (k, v) in &parts.headers {
                if k != axum::http::header::HOST {
                    fwd = fwd.header(k, v);
                }
            }
            match fwd.body(body).send().await {
                Ok(r) => {
                    let status = r.status();
                    let bytes = r.bytes().await.unwrap_or_default();
                    (status, bytes).into_response()
                }
                Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
            }
        }
    });
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .expect("bind proxy");
    rt.spawn(async move { axum::serve(listener, app).await });
    calls
}
