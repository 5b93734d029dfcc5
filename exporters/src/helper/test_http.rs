//! What the exporters' HTTP doubles in tests share: serving a double on an ephemeral port, and a
//! test's config keys set over the defaults it starts from.

use serde_json::Value;

/// Serves `app` on an ephemeral port of 127.0.0.1 (never a default port) for the rest of the
/// test's runtime; its base URL.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("the listener's address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// `base` with the keys of `extra` (when an object) set over it.
pub fn merged(mut base: Value, extra: Value) -> Value {
    if let (Some(c), Value::Object(e)) = (base.as_object_mut(), extra) {
        c.extend(e);
    }
    base
}
