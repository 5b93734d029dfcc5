//! `basicauth`: HTTP Basic authentication, as otelcol's `basicauthextension`. As a server
//! authenticator it checks `Authorization: Basic ...` against an htpasswd table (`htpasswd::file`
//! and `htpasswd::inline`, inline entries winning for a user in both); as a client authenticator it
//! sends `client_auth::username` and `client_auth::password`.
//!
//! Hash forms accepted, each as Apache's `htpasswd` writes it: bcrypt (`-B`, `$2y$`/`$2b$`/`$2a$`),
//! SHA-1 (`-s`, `{SHA}`), SHA-256 and SHA-512 crypt (`-2`, `-5`, `$5$`/`$6$`), and plain text (`-p`,
//! and otelcol's `inline: ${env:USER}:${env:PASSWORD}`); also salted SHA-1 (`{SSHA}`, as
//! `slappasswd` writes it, from the same `sha1` crate), and MD5-crypt (`$apr1$`, htpasswd's default
//! `-m`, and `$1$`), as otelcol's go-htpasswd reads them. DES crypt (`-d`) is refused at validate,
//! naming the scheme and the user, as go-htpasswd does not read it either. The principal is the user
//! name.

use crate::extensions::auth_util::{ct_eq, redacted, sensitive};
use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use vigil_core::component::Principal;
use vigil_core::factory::{DynExtensionFactory, ExtensionFactory, FactoryBase};
use vigil_core::{
    ClientAuth, Component, ComponentId, ComponentKind, ConfigError, Extension, ServerAuth,
    Settings, Stability,
};

/// Successful checks remembered, so that a client sending the same credentials on every request
/// pays for one bcrypt run, not one per request. Failures are never remembered: a guess always
/// costs the guesser the full hash.
const VERIFIED_CACHE: usize = 1024;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BasicAuthConfig {
    #[serde(default)]
    htpasswd: Option<HtpasswdConfig>,
    #[serde(default)]
    client_auth: Option<ClientConfig>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct HtpasswdConfig {
    #[serde(default)]
    file: Option<PathBuf>,
    #[serde(default, serialize_with = "redacted")]
    inline: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ClientConfig {
    username: String,
    #[serde(default, serialize_with = "redacted")]
    password: String,
}

fn config_error(id: &ComponentId, key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Extension, id, key, msg)
}

/// One user's stored password, in the form htpasswd wrote it.
#[derive(Clone)]
enum Stored {
    Bcrypt(String),
    /// The base64 SHA-1 digest after `{SHA}`.
    Sha1(String),
    /// `{SSHA}`, salted SHA-1 as OpenLDAP's `slappasswd` writes it (nginx reads it too): the
    /// 20-byte digest of password and salt, then the salt.
    Ssha1 {
        digest: Vec<u8>,
        salt: Vec<u8>,
    },
    /// A `$5$` or `$6$` string.
    ShaCrypt(String),
    /// `$apr1$salt$hash` or `$1$salt$hash`: the whole string, compared with what [`md5_crypt`]
    /// makes of the password with the same magic and salt.
    Md5Crypt {
        magic: &'static str,
        salt: String,
        full: String,
    },
    Plain(String),
}

impl Stored {
    /// The hash form of an htpasswd entry; the error names the form, never the hash.
    fn parse(hash: &str) -> Result<Stored, String> {
        if ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
            return Ok(Stored::Bcrypt(hash.to_string()));
        }
        if let Some(d) = hash.strip_prefix("{SHA}") {
            return Ok(Stored::Sha1(d.to_string()));
        }
        if hash.starts_with("$5$") || hash.starts_with("$6$") {
            return Ok(Stored::ShaCrypt(hash.to_string()));
        }
        for magic in ["$apr1$", "$1$"] {
            if let Some(rest) = hash.strip_prefix(magic) {
                let Some((salt, digest)) = rest.split_once('$') else {
                    return Err(format!("an MD5 ({magic}) hash must be {magic}salt$digest"));
                };
                if salt.is_empty() || salt.len() > 8 || digest.len() != 22 {
                    return Err(format!(
                        "an MD5 ({magic}) hash must have a salt of 1 to 8 characters and a 22-character digest"
                    ));
                }
                return Ok(Stored::Md5Crypt {
                    magic,
                    salt: salt.to_string(),
                    full: hash.to_string(),
                });
            }
        }
        if let Some(b) = hash.strip_prefix("{SSHA}") {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b)
                .ok()
                .filter(|r| r.len() > 20)
                .ok_or_else(|| {
                    "{SSHA} must be base64 of a 20-byte SHA-1 digest followed by its salt"
                        .to_string()
                })?;
            let (digest, salt) = raw.split_at(20);
            return Ok(Stored::Ssha1 {
                digest: digest.to_vec(),
                salt: salt.to_vec(),
            });
        }
        if hash.len() == 13
            && hash
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
        {
            // 13 characters of crypt's alphabet is what htpasswd -d writes; taking it for a plain
            // password would silently accept the hash itself as the password.
            return Err(
                "DES crypt hashes (htpasswd -d) are not supported: use htpasswd -B (bcrypt)".into(),
            );
        }
        if hash.starts_with('$') && hash[1..].contains('$') {
            return Err(
                "this $id$ hash form is not supported: use htpasswd -B (bcrypt), -2 or -5".into(),
            );
        }
        Ok(Stored::Plain(hash.to_string()))
    }

    /// Whether `password` matches. CPU-heavy for bcrypt and SHA-crypt: run off the async threads.
    fn verify(&self, password: &str) -> bool {
        match self {
            Stored::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Stored::Sha1(d) => {
                let digest = sha1::Sha1::digest(password.as_bytes());
                let got = base64::engine::general_purpose::STANDARD.encode(digest);
                ct_eq(got.as_bytes(), d.as_bytes())
            }
            Stored::Ssha1 { digest, salt } => {
                let mut h = sha1::Sha1::new();
                h.update(password.as_bytes());
                h.update(salt);
                ct_eq(&h.finalize(), digest)
            }
            Stored::ShaCrypt(h) => {
                use sha_crypt::PasswordVerifier;
                sha_crypt::ShaCrypt::default()
                    .verify_password(password.as_bytes(), h.as_str())
                    .is_ok()
            }
            Stored::Md5Crypt { magic, salt, full } => ct_eq(
                md5_crypt(password.as_bytes(), magic, salt.as_bytes()).as_bytes(),
                full.as_bytes(),
            ),
            Stored::Plain(p) => ct_eq(password.as_bytes(), p.as_bytes()),
        }
    }
}

/// MD5-crypt (Poul-Henning Kamp's FreeBSD scheme; `$apr1$` is Apache's spelling of the same
/// algorithm): `magic salt $ digest`. Written here because no maintained crate verifies it (the
/// ones that do, `htpasswd-verify` and `pwhash`, are unmaintained or lean on the abandoned
/// `rust-crypto`), while the MD5 itself comes from RustCrypto's `md-5`; the construction is fixed
/// and public, and the tests check it against what Debian's `htpasswd -m` writes.
fn md5_crypt(password: &[u8], magic: &str, salt: &[u8]) -> String {
    use md5::{Digest as _, Md5};
    const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let salt = &salt[..salt.len().min(8)];
    let alt = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut ctx = Md5::new()
        .chain_update(password)
        .chain_update(magic.as_bytes())
        .chain_update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(fin);
        } else {
            c.update(password);
        }
        fin = c.finalize();
    }
    let mut out = String::with_capacity(magic.len() + salt.len() + 23);
    out.push_str(magic);
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut put = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    let f = |i: usize| u32::from(fin[i]);
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put((f(a) << 16) | (f(b) << 8) | f(c), 4);
    }
    put(f(11), 2);
    out
}

/// Parses htpasswd text (`user:hash` lines; blank lines and `#` comments skipped) into `table`.
fn parse_htpasswd(text: &str, table: &mut HashMap<String, Stored>) -> Result<(), String> {
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err(format!(
                "line {}: expected user:hash (the line is not shown, it may hold a password)",
                n + 1
            ));
        };
        if user.is_empty() {
            return Err(format!("line {}: the user name is empty", n + 1));
        }
        let stored =
            Stored::parse(hash).map_err(|e| format!("line {} (user {user:?}): {e}", n + 1))?;
        table.insert(user.to_string(), stored);
    }
    Ok(())
}

struct Parsed {
    table: Option<HashMap<String, Stored>>,
    client: Option<HeaderValue>,
}

fn parse(id: &ComponentId, cfg: &BasicAuthConfig) -> Result<Parsed, ConfigError> {
    if cfg.htpasswd.is_none() && cfg.client_auth.is_none() {
        return Err(config_error(
            id,
            "htpasswd",
            "set htpasswd (to check clients) or client_auth (to send credentials)",
        ));
    }
    let table = match &cfg.htpasswd {
        None => None,
        Some(h) => {
            let mut table = HashMap::new();
            // Not read in `vigil validate`: otelcol reads the file when the extension starts.
            let deferred = vigil_core::config::host_files_deferred();
            if let Some(path) = h.file.as_ref().filter(|_| !deferred) {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    config_error(
                        id,
                        "htpasswd::file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                parse_htpasswd(&text, &mut table).map_err(|e| {
                    config_error(id, "htpasswd::file", format!("{}: {e}", path.display()))
                })?;
            }
            // Inline entries come last, so they win over the file's for the same user, as in
            // otelcol.
            if let Some(text) = &h.inline {
                parse_htpasswd(text, &mut table)
                    .map_err(|e| config_error(id, "htpasswd::inline", e))?;
            }
            if table.is_empty() && !(deferred && h.file.is_some()) {
                return Err(config_error(
                    id,
                    "htpasswd",
                    "no user: set file or inline to htpasswd lines (user:hash)",
                ));
            }
            Some(table)
        }
    };
    let client = match &cfg.client_auth {
        None => None,
        Some(c) => {
            if c.username.contains(':') {
                return Err(config_error(
                    id,
                    "client_auth::username",
                    "a Basic user name cannot contain ':'",
                ));
            }
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", c.username, c.password));
            Some(
                sensitive(&format!("Basic {encoded}"))
                    .map_err(|e| config_error(id, "client_auth", e))?,
            )
        }
    };
    Ok(Parsed { table, client })
}

struct Factory;

/// The `basicauth` extension factory, for the registry.
pub fn factory() -> Arc<dyn DynExtensionFactory> {
    vigil_core::factory::extension(Factory)
}

impl FactoryBase for Factory {
    type Config = BasicAuthConfig;

    fn type_name(&self) -> &'static str {
        "basicauth"
    }

    /// `htpasswd` or `client_auth` must be given.
    fn default_config(&self) -> Option<BasicAuthConfig> {
        None
    }

    fn validate(&self, id: &ComponentId, cfg: &BasicAuthConfig) -> Result<(), ConfigError> {
        parse(id, cfg).map(|_| ())
    }
}

impl ExtensionFactory for Factory {
    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn create(
        &self,
        set: Settings,
        cfg: BasicAuthConfig,
    ) -> Result<Arc<dyn Extension>, ConfigError> {
        let id = &set.id;
        let parsed = parse(id, &cfg)?;
        let cache =
            lru::LruCache::new(NonZeroUsize::new(VERIFIED_CACHE).unwrap_or(NonZeroUsize::MIN));
        Ok(Arc::new(BasicAuth {
            inner: Arc::new(Inner {
                id: id.clone(),
                table: parsed.table,
                client: parsed.client,
                verified: Mutex::new(cache),
            }),
        }))
    }
}

struct BasicAuth {
    inner: Arc<Inner>,
}

struct Inner {
    id: ComponentId,
    table: Option<HashMap<String, Stored>>,
    client: Option<HeaderValue>,
    /// SHA-256 of `user:password` for credentials that passed, most recent first.
    verified: Mutex<lru::LruCache<[u8; 32], ()>>,
}

/// The user and password of an `Authorization: Basic` header.
fn credentials(headers: &HeaderMap) -> Result<(String, String), String> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or("no authorization header")?;
    let text = value
        .to_str()
        .map_err(|_| "the authorization header is not ASCII")?;
    let (scheme, rest) = text
        .split_once(' ')
        .ok_or("the authorization header has no scheme")?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err("the authorization scheme is not Basic".into());
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| "the Basic credentials are not base64")?;
    let text = String::from_utf8(raw).map_err(|_| "the Basic credentials are not UTF-8")?;
    let (user, password) = text
        .split_once(':')
        .ok_or("the Basic credentials have no ':'")?;
    Ok((user.to_string(), password.to_string()))
}

#[async_trait]
impl ServerAuth for Inner {
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, String> {
        let Some(table) = &self.table else {
            return Err(format!(
                "{} has no htpasswd to check clients against",
                self.id
            ));
        };
        let (user, password) = credentials(headers)?;
        let key: [u8; 32] = Sha256::digest(format!("{user}:{password}").as_bytes()).into();
        let hit = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .is_some();
        if hit {
            return Ok(Principal::named(user));
        }
        // The user is named in the error (it is not a secret); the password never is.
        let refused = || format!("wrong user or password (user {user:?})");
        let Some(stored) = table.get(&user).cloned() else {
            return Err(refused());
        };
        let ok = tokio::task::spawn_blocking(move || stored.verify(&password))
            .await
            .unwrap_or(false);
        if !ok {
            return Err(refused());
        }
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(key, ());
        Ok(Principal::named(user))
    }
}

#[async_trait]
impl ClientAuth for Inner {
    async fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        match &self.client {
            Some(v) => Ok(vec![(axum::http::header::AUTHORIZATION, v.clone())]),
            None => Err(format!("{} has no client_auth to send", self.id)),
        }
    }
}

#[async_trait]
impl Component for BasicAuth {}

impl Extension for BasicAuth {
    fn client_auth(&self) -> Option<Arc<dyn ClientAuth>> {
        Some(self.inner.clone())
    }

    fn server_auth(&self) -> Option<Arc<dyn ServerAuth>> {
        Some(self.inner.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn id() -> ComponentId {
        ComponentId::parse("basicauth/x").unwrap()
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        h.insert("authorization", format!("Basic {v}").parse().unwrap());
        h
    }

    /// Lines written by Apache's htpasswd 2.4 (`htpasswd -nbB alice pw`, `-nbs bob pw`,
    /// `-nb2 carol pw`, `-nb5 dave pw`), all with the password `pw`.
    const HTPASSWD: &str = "alice:$2y$05$3TZZ31NaeCVHlumFK/yqtOq2hO0Tc0aFXVd2gEXGPm2pZId8rjx32
bob:{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM=
carol:$5$hdRVKrCkOl9jWGEW$sM.1Or.rdVwly70t.V7CwlfvcD69B4g9zDYmHIslSl8
dave:$6$mcyxteZXOGSTez1/$f00.FKKlvTU6hX2Z5OkRYQmrcHKyCofIz3f4sfW8d/naJ6ZdQpygtl4A0Cs2Vo1U1Ka3iZJn4jvxc7l1vLFFA.
";

    #[tokio::test]
    async fn every_supported_hash_form_checks_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, HTPASSWD).unwrap();
        let ext = factory()
            .create(
                &id(),
                &json!({"htpasswd": {"file": file, "inline": "erin:plain-pw\nalice:override"}}),
            )
            .unwrap();
        let auth = ext.server_auth().unwrap();
        for user in ["bob", "carol", "dave"] {
            assert_eq!(
                auth.authenticate(&basic(user, "pw")).await,
                Ok(Principal::named(user)),
                "{user}"
            );
            // Twice: the second answer comes from the cache of verified credentials.
            assert!(auth.authenticate(&basic(user, "pw")).await.is_ok());
            let e = auth.authenticate(&basic(user, "wrong")).await.unwrap_err();
            assert!(!e.contains("wrong\"") && !e.contains("pw"), "{e}");
        }
        assert!(auth.authenticate(&basic("erin", "plain-pw")).await.is_ok());
        // The inline entry replaced the file's bcrypt one for alice.
        assert!(auth.authenticate(&basic("alice", "pw")).await.is_err());
        assert!(auth.authenticate(&basic("alice", "override")).await.is_ok());
        assert!(auth.authenticate(&basic("nobody", "pw")).await.is_err());
        assert!(auth.authenticate(&HeaderMap::new()).await.is_err());
        let mut bearer = HeaderMap::new();
        bearer.insert("authorization", "Bearer pw".parse().unwrap());
        assert!(auth.authenticate(&bearer).await.is_err());
    }

    #[tokio::test]
    async fn bcrypt_entries_are_checked() {
        let ext = factory()
            .create(
                &id(),
                &json!({"htpasswd": {"inline": HTPASSWD.lines().next().unwrap()}}),
            )
            .unwrap();
        let auth = ext.server_auth().unwrap();
        assert_eq!(
            auth.authenticate(&basic("alice", "pw")).await,
            Ok(Principal::named("alice"))
        );
        assert!(auth.authenticate(&basic("alice", "pW")).await.is_err());
    }

    #[tokio::test]
    async fn the_client_sends_basic_credentials() {
        let ext = factory()
            .create(
                &id(),
                &json!({"client_auth": {"username": "u", "password": "p"}}),
            )
            .unwrap();
        let h = ext.client_auth().unwrap().headers().await.unwrap();
        assert_eq!(h[0].1.to_str().unwrap(), "Basic dTpw");
        assert!(h[0].1.is_sensitive());
        // A client-only config checks nobody in.
        assert!(ext
            .server_auth()
            .unwrap()
            .authenticate(&basic("u", "p"))
            .await
            .is_err());
    }

    /// Each form Debian's `htpasswd` (apache2-utils) writes: the ones accepted check the password,
    /// DES is refused at validate with the scheme named. `{SSHA}` (which htpasswd does not
    /// write) is checked against a vector made with Python's hashlib.
    #[tokio::test]
    async fn every_form_debians_htpasswd_writes() {
        let line = |flag: &str| {
            let out = std::process::Command::new("htpasswd")
                .args([&format!("-nb{flag}"), "u", "pw-1"])
                .output()
                .expect("htpasswd is installed: run scripts/test.sh, which installs Debian's apache2-utils");
            assert!(out.status.success(), "htpasswd -nb{flag} failed");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        for flag in ["B", "2", "5", "s", "p", "m"] {
            let inline = line(flag);
            let ext = factory()
                .create(&id(), &json!({"htpasswd": {"inline": inline}}))
                .unwrap_or_else(|e| panic!("htpasswd -{flag}: {e}"));
            let auth = ext.server_auth().unwrap();
            assert!(
                auth.authenticate(&basic("u", "pw-1")).await.is_ok(),
                "-{flag}"
            );
            assert!(
                auth.authenticate(&basic("u", "pw-2")).await.is_err(),
                "-{flag}"
            );
        }
        let e = factory()
            .validate(&id(), &json!({"htpasswd": {"inline": line("d")}}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("htpasswd::inline: line 1 (user \"u\")") && e.contains("DES"),
            "-d: {e}"
        );
        let ext = factory()
            .create(
                &id(),
                &json!({"htpasswd": {"inline": "u:{SSHA}3ebNeIjit5mUMokultRHVtiM5NuKAf4T"}}),
            )
            .unwrap();
        let auth = ext.server_auth().unwrap();
        assert!(auth.authenticate(&basic("u", "pw")).await.is_ok());
        assert!(auth.authenticate(&basic("u", "pw2")).await.is_err());
        let e = factory()
            .validate(&id(), &json!({"htpasswd": {"inline": "u:{SSHA}c2hvcnQ="}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("{SSHA} must be base64"), "{e}");
    }

    /// Vectors from OpenSSL's `passwd -apr1` / `passwd -1`, a second implementation of the scheme.
    #[test]
    fn md5_crypt_matches_openssl() {
        assert_eq!(
            md5_crypt(b"pw-1", "$apr1$", b"lZL6V/ci"),
            "$apr1$lZL6V/ci$XTjpoMF89HBQI4tRziyMj1"
        );
        assert_eq!(
            md5_crypt(
                "pässwörd longer than sixteen bytes".as_bytes(),
                "$1$",
                b"abcdefgh"
            ),
            "$1$abcdefgh$YVBOU0nTGYUg6GR0v.1Ln."
        );
        assert_eq!(
            md5_crypt(b"", "$apr1$", b"x"),
            "$apr1$x$tMwYqBfQwi3FYAr0aJc8M/"
        );
        let stored = Stored::parse("$apr1$lZL6V/ci$XTjpoMF89HBQI4tRziyMj1").unwrap();
        assert!(stored.verify("pw-1"));
        assert!(!stored.verify("pw-2"));
    }

    #[test]
    fn bad_configs_name_the_key_and_never_the_hash() {
        let check = |v: Value| factory().validate(&id(), &v).unwrap_err().to_string();
        let e = check(json!({"htpasswd": {"inline": "u:$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK0"}}));
        assert!(
            e.contains("basicauth/x::htpasswd::inline")
                && e.contains("MD5")
                && e.contains("\"u\"")
                && !e.contains("lZL6V"),
            "{e}"
        );
        assert!(check(json!({"htpasswd": {"inline": "u:bGVh02xkuGli2"}})).contains("DES"));
        assert!(check(json!({"htpasswd": {"inline": "no-colon-secret"}})).contains("user:hash"));
        assert!(!check(json!({"htpasswd": {"inline": "no-colon-secret"}})).contains("secret"));
        assert!(check(json!({})).contains("set htpasswd"));
        assert!(check(json!({"htpasswd": {}})).contains("no user"));
        assert!(
            check(json!({"htpasswd": {"file": "/nonexistent/htpasswd"}}))
                .contains("htpasswd::file: cannot read")
        );
        assert!(
            check(json!({"client_auth": {"username": "a:b"}})).contains("client_auth::username")
        );
        assert!(check(json!({"htpasswd": {"inline": "u:p"}, "extra": 1})).contains("extra"));
    }
}
