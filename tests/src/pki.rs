//! Test certificates: a CA, a server certificate for 127.0.0.1 and a client certificate, as PEM
//! files in a temp dir.

/// A CA with a server certificate (for 127.0.0.1 and localhost) and a client certificate, written
/// as `ca.pem`, `ca.key`, `server.pem`, `server.key`, `client.pem` and `client.key`.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    /// A new CA named `<name> CA`, whose client certificate is `CN=<name> client`.
    pub fn new(name: &str) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let server_key = KeyPair::generate().expect("server key");
        let server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server params")
            .signed_by(&server_key, &ca, &ca_key)
            .expect("server certificate");
        let client_key = KeyPair::generate().expect("client key");
        let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        client_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} client"));
        let client = client_params
            .signed_by(&client_key, &ca, &ca_key)
            .expect("client certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        for (file, pem) in [
            ("ca.pem", ca.pem()),
            ("ca.key", ca_key.serialize_pem()),
            ("server.pem", server.pem()),
            ("server.key", server_key.serialize_pem()),
            ("client.pem", client.pem()),
            ("client.key", client_key.serialize_pem()),
        ] {
            std::fs::write(dir.path().join(file), pem).expect("write PEM");
        }
        Pki { dir }
    }

    /// The flow mapping for a listener's `tls:` with this PKI's server certificate and mutual TLS
    /// against its CA, with `extra` (`, key: value`…) before the closing brace.
    pub fn server_tls(&self, extra: &str) -> String {
        format!(
            "{{cert_file: {}, key_file: {}, client_ca_file: {}{extra}}}",
            self.path("server.pem"),
            self.path("server.key"),
            self.path("ca.pem")
        )
    }

    /// The path of one of the PEM files, as text for a config.
    pub fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }
}
