//! What the authenticator extensions share: constant-time comparison and header values that keep
//! their secret out of debug output.

use axum::http::HeaderValue;

/// Equality in time that depends only on the lengths, so that the time a refusal takes tells
/// nothing about how much of a secret was right.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `text` as a header value marked sensitive (hidden from `Debug`, never indexed by HPACK). The
/// error does not repeat the text.
pub(crate) fn sensitive(text: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::from_str(text)
        .map_err(|_| "the value must be printable ASCII without line breaks".to_string())?;
    value.set_sensitive(true);
    Ok(value)
}

/// Serializes a secret config value as otelcol's `configopaque` prints it, so that the resolved
/// config (the component reference, `resolved()`) never shows a credential.
pub(crate) fn redacted<T, S: serde::Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error>
where
    T: Redactable,
{
    if value.is_set() {
        s.serialize_str("[REDACTED]")
    } else {
        s.serialize_none()
    }
}

/// What [`redacted`] can hide: a string, or an optional one (`None` stays `null`).
pub(crate) trait Redactable {
    fn is_set(&self) -> bool;
}

impl Redactable for String {
    fn is_set(&self) -> bool {
        true
    }
}

impl Redactable for Option<String> {
    fn is_set(&self) -> bool {
        self.is_some()
    }
}
