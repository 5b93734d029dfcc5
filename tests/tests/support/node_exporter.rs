//! A real `prometheus-node-exporter` on an ephemeral port, for the tests that scrape one.

use std::process::{Child, Command, Stdio};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

/// The running exporter; dropping it kills and reaps the process.
pub struct NodeExporter {
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the exporter with `args` after its listen address; fails naming the setup step when the
/// Debian package is missing.
pub fn start(args: &[&str]) -> NodeExporter {
    assert!(
        std::path::Path::new(NODE_EXPORTER).exists(),
        "{NODE_EXPORTER} is missing: install the Debian package prometheus-node-exporter (the \
         README's test command, scripts/test.sh, installs it)"
    );
    let port = vigil_tests::free_port();
    let child = Command::new(NODE_EXPORTER)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus-node-exporter");
    NodeExporter { child, port }
}
