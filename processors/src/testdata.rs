//! The bad-config cases under `testdata/<type>/`: each YAML file's first line is `# expect: <text>`,
//! and the error the component gives for the rest of the file must contain that text.

use serde_json::Value as Json;

/// Runs every case in `testdata/<dir>` through `error` (which returns the error message for a
/// config) and returns how many there were.
pub(crate) fn bad_configs(dir: &str, error: impl Fn(&Json) -> String) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(dir);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("testdata dir") {
        let p = entry.expect("dir entry").path();
        let text = std::fs::read_to_string(&p).expect("read case");
        let want = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks a first line `# expect: …`", p.display()));
        let v: Json = serde_saphyr::from_str(&text).expect("the case is YAML");
        let e = error(&v);
        assert!(e.contains(want), "{}: {e:?} lacks {want:?}", p.display());
        n += 1;
    }
    n
}
