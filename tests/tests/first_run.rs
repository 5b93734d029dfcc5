//! The README's first command: `vigil` with no config watches the node and prints its findings
//! readably on stderr. This file holds one test, because the embedded default listens on the fixed
//! ports 4317, 4318, 13133, 8888 and 55679 and tests within a file run in parallel.

use std::process::Command;
use std::time::Duration;
use vigil_tests::{python, repo_root, Agent};

#[test]
fn with_no_config_a_step_in_a_host_metric_is_printed_as_a_readable_anomaly_line() {
    let mut agent = Agent::start(&[]);
    agent.wait_http_ok("http://127.0.0.1:13133/", Duration::from_secs(60));

    // 300 points 10 s apart, as hostmetrics would send them, with the load stepping up at point 200
    // and staying there.
    let script = repo_root().join("tests/python/anomaly_gauge.py");
    let sent = Command::new(python())
        .arg(script)
        .args(["--endpoint", "127.0.0.1:4317"])
        .args(["--metric", "system.cpu.load_average.1m", "--step", "0.5"])
        .output()
        .expect("run the SDK script");
    assert!(
        sent.status.success(),
        "SDK script failed: {}\nvigil log:\n{}",
        String::from_utf8_lossy(&sent.stderr),
        agent.logs()
    );
    agent.wait_log("vigil.anomaly", Duration::from_secs(30));
    let logs = agent.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("vigil.anomaly") && l.contains("system.cpu.load_average.1m"))
        .unwrap_or_else(|| panic!("no anomaly line for the stepped series:\n{logs}"));
    // One line that says how bad, about what, against what, and why.
    assert!(
        line.contains("WARN") || line.contains("ERROR"),
        "no severity: {line}"
    );
    assert!(
        line.contains("above its band") || line.contains("level shift"),
        "{line}"
    );
    assert!(line.contains("detector="), "no reason: {line}");
    assert!(line.contains("score="), "no score: {line}");

    agent.stop_ok(Duration::from_secs(30));
}
