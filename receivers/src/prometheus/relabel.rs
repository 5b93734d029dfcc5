//! Prometheus relabelling: the `relabel_configs` applied to discovered targets and the
//! `metric_relabel_configs` applied to every scraped sample. Same actions, defaults and semantics as
//! Prometheus (`replace`, `keep`, `drop`, `labelmap`, `labeldrop`, `labelkeep`, `hashmod`,
//! `lowercase`, `uppercase`), with the regex anchored at both ends.

use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;

/// A label set: name/value pairs, kept sorted by name so that equal sets compare equal.
pub type Labels = Vec<(String, String)>;

/// Sets `name` to `value` in a sorted label set; an empty value removes the label, as in Prometheus.
pub fn set_label(labels: &mut Labels, name: &str, value: &str) {
    match labels.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
        Ok(i) if value.is_empty() => {
            labels.remove(i);
        }
        Ok(i) => labels[i].1 = value.to_string(),
        Err(_) if value.is_empty() => {}
        Err(i) => labels.insert(i, (name.to_string(), value.to_string())),
    }
}

/// The value of `name`, or "" when absent (Prometheus treats both the same).
pub fn get_label<'a>(labels: &'a Labels, name: &str) -> &'a str {
    match labels.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
        Ok(i) => &labels[i].1,
        Err(_) => "",
    }
}

/// One `relabel_configs` entry as written in YAML.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfigRaw {
    #[serde(default)]
    pub source_labels: Vec<String>,
    #[serde(default, deserialize_with = "vigil_core::config::opt_scalar_text")]
    pub separator: Option<String>,
    /// Unquoted `regex: true` is the regex `true`, as Prometheus reads it.
    #[serde(default, deserialize_with = "vigil_core::config::opt_scalar_text")]
    pub regex: Option<String>,
    pub modulus: Option<u64>,
    pub target_label: Option<String>,
    #[serde(default, deserialize_with = "vigil_core::config::opt_scalar_text")]
    pub replacement: Option<String>,
    pub action: Option<String>,
}

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Replace,
    Keep,
    Drop,
    LabelMap,
    LabelDrop,
    LabelKeep,
    HashMod,
    Lowercase,
    Uppercase,
}

/// A checked, compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    source_labels: Vec<String>,
    separator: String,
    regex: Regex,
    modulus: u64,
    target_label: String,
    replacement: String,
    action: Action,
}

impl Rule {
    /// Checks a rule as Prometheus does when it loads its config; the error names what is wrong.
    pub fn compile(raw: &RelabelConfigRaw) -> Result<Rule, String> {
        let action = match raw
            .action
            .as_deref()
            .unwrap_or("replace")
            .to_ascii_lowercase()
            .as_str()
        {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "hashmod" => Action::HashMod,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            other => {
                return Err(format!(
                    "unknown relabel action {other:?} (expected replace, keep, drop, labelmap, \
                     labeldrop, labelkeep, hashmod, lowercase or uppercase)"
                ))
            }
        };
        let pattern = raw.regex.as_deref().unwrap_or("(.*)");
        let regex = vigil_core::config::re2_regex(&format!("^(?:{pattern})$"))
            .map_err(|e| format!("invalid regex {pattern:?}: {e}"))?;
        let target_label = raw.target_label.clone().unwrap_or_default();
        let needs_target = matches!(
            action,
            Action::Replace | Action::HashMod | Action::Lowercase | Action::Uppercase
        );
        if needs_target && target_label.is_empty() {
            return Err(format!("relabel action {action:?} requires target_label").to_lowercase());
        }
        let modulus = raw.modulus.unwrap_or(0);
        if action == Action::HashMod && modulus == 0 {
            return Err("relabel action hashmod requires a non-zero modulus".into());
        }
        if matches!(action, Action::LabelDrop | Action::LabelKeep)
            && (!raw.source_labels.is_empty() || raw.target_label.is_some())
        {
            return Err(
                "labeldrop and labelkeep match label names with regex only; source_labels and \
                 target_label are not allowed"
                    .into(),
            );
        }
        Ok(Rule {
            source_labels: raw.source_labels.clone(),
            separator: raw.separator.clone().unwrap_or_else(|| ";".into()),
            regex,
            modulus,
            target_label,
            replacement: raw.replacement.clone().unwrap_or_else(|| "$1".into()),
            action,
        })
    }

    fn source_value(&self, labels: &Labels) -> String {
        let mut out = String::new();
        for (i, name) in self.source_labels.iter().enumerate() {
            if i > 0 {
                out.push_str(&self.separator);
            }
            out.push_str(get_label(labels, name));
        }
        out
    }

    /// Applies the rule; `false` means the label set is dropped.
    fn apply(&self, labels: &mut Labels) -> bool {
        match self.action {
            Action::Keep => self.regex.is_match(&self.source_value(labels)),
            Action::Drop => !self.regex.is_match(&self.source_value(labels)),
            Action::Replace => {
                let value = self.source_value(labels);
                let Some(caps) = self.regex.captures(&value) else {
                    return true;
                };
                let mut target = String::new();
                caps.expand(&self.target_label, &mut target);
                if !is_label_name(&target) {
                    return true;
                }
                let mut repl = String::new();
                caps.expand(&self.replacement, &mut repl);
                set_label(labels, &target, &repl);
                true
            }
            Action::Lowercase | Action::Uppercase => {
                let value = self.source_value(labels);
                let v = if self.action == Action::Lowercase {
                    value.to_lowercase()
                } else {
                    value.to_uppercase()
                };
                set_label(labels, &self.target_label, &v);
                true
            }
            Action::HashMod => {
                let digest = Md5::digest(self.source_value(labels).as_bytes());
                // Prometheus folds the digest to its low 8 bytes, big-endian, before the modulus.
                let mut low = [0u8; 8];
                low.copy_from_slice(&digest[8..16]);
                let h = u64::from_be_bytes(low) % self.modulus;
                set_label(labels, &self.target_label, &h.to_string());
                true
            }
            Action::LabelMap => {
                let mut add = Vec::new();
                for (k, v) in labels.iter() {
                    if let Some(caps) = self.regex.captures(k) {
                        let mut name = String::new();
                        caps.expand(&self.replacement, &mut name);
                        add.push((name, v.clone()));
                    }
                }
                for (k, v) in add {
                    if is_label_name(&k) {
                        set_label(labels, &k, &v);
                    }
                }
                true
            }
            Action::LabelDrop => {
                labels.retain(|(k, _)| !self.regex.is_match(k));
                true
            }
            Action::LabelKeep => {
                labels.retain(|(k, _)| self.regex.is_match(k));
                true
            }
        }
    }
}

/// Runs rules in order; `false` when one of them drops the label set.
pub fn process(rules: &[Rule], labels: &mut Labels) -> bool {
    rules.iter().all(|r| r.apply(labels))
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> Rule {
        let raw: RelabelConfigRaw = serde_saphyr::from_str(yaml).unwrap();
        Rule::compile(&raw).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let mut l: Labels = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.sort();
        l
    }

    #[test]
    fn unquoted_true_regex_keeps_its_text() {
        // The agent reads YAML into a generic tree first, where `regex: true` is a boolean.
        let raw: RelabelConfigRaw = serde_json::from_value(serde_json::json!({
            "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
            "action": "keep",
            "regex": true,
        }))
        .unwrap();
        let r = Rule::compile(&raw).unwrap();
        let mut l = labels(&[(
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
            "true",
        )]);
        assert!(process(std::slice::from_ref(&r), &mut l));
        let mut l = labels(&[(
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
            "false",
        )]);
        assert!(!process(&[r], &mut l));
    }

    #[test]
    fn go_literal_brace_in_a_relabel_regex() {
        let r = rule("source_labels: [a]\nregex: '{(.*)}'\ntarget_label: x");
        let mut l = labels(&[("a", "{v}")]);
        process(&[r], &mut l);
        assert_eq!(get_label(&l, "x"), "v");
    }

    #[test]
    fn replace_with_groups_and_anchoring() {
        let r = rule(
            "source_labels: [__address__]\nregex: '([^:]+):(\\d+)'\ntarget_label: host\nreplacement: '${1}-$2'",
        );
        let mut l = labels(&[("__address__", "node:9100")]);
        assert!(process(std::slice::from_ref(&r), &mut l));
        assert_eq!(get_label(&l, "host"), "node-9100");
        // Anchored: a partial match does not count.
        let r = rule("source_labels: [a]\nregex: 'b'\ntarget_label: x\nreplacement: hit");
        let mut l = labels(&[("a", "abc")]);
        process(&[r], &mut l);
        assert_eq!(get_label(&l, "x"), "");
        // Defaults: regex (.*), replacement $1, separator ';'.
        let r = rule("source_labels: [a, b]\ntarget_label: ab");
        let mut l = labels(&[("a", "1"), ("b", "2")]);
        process(&[r], &mut l);
        assert_eq!(get_label(&l, "ab"), "1;2");
        // An empty result removes the target.
        let r = rule("source_labels: [missing]\ntarget_label: a");
        let mut l = labels(&[("a", "1")]);
        process(&[r], &mut l);
        assert!(l.is_empty());
    }

    #[test]
    fn keep_and_drop() {
        let keep = rule("action: keep\nsource_labels: [job]\nregex: 'node|api'");
        let drop = rule("action: drop\nsource_labels: [__name__]\nregex: 'go_.*'");
        assert!(process(
            std::slice::from_ref(&keep),
            &mut labels(&[("job", "node")])
        ));
        assert!(!process(&[keep], &mut labels(&[("job", "nodes")])));
        assert!(!process(
            std::slice::from_ref(&drop),
            &mut labels(&[("__name__", "go_gc")])
        ));
        assert!(process(&[drop], &mut labels(&[("__name__", "up")])));
    }

    #[test]
    fn labelmap_labeldrop_labelkeep() {
        let map = rule("action: labelmap\nregex: '__meta_(.+)'");
        let mut l = labels(&[("__meta_zone", "eu"), ("a", "1")]);
        process(&[map], &mut l);
        assert_eq!(get_label(&l, "zone"), "eu");
        assert_eq!(get_label(&l, "__meta_zone"), "eu");

        let drop = rule("action: labeldrop\nregex: '__meta_.*'");
        process(&[drop], &mut l);
        assert_eq!(l, labels(&[("a", "1"), ("zone", "eu")]));

        let keep = rule("action: labelkeep\nregex: 'zone'");
        process(&[keep], &mut l);
        assert_eq!(l, labels(&[("zone", "eu")]));
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // Checked by hand against Prometheus's definition: md5("foo") ends in 0x...c4a8f14 etc.
        let r = rule("action: hashmod\nsource_labels: [a]\nmodulus: 1000\ntarget_label: shard");
        let mut l = labels(&[("a", "foo")]);
        process(&[r], &mut l);
        let d = Md5::digest(b"foo");
        let want = u64::from_be_bytes(d[8..16].try_into().unwrap()) % 1000;
        assert_eq!(get_label(&l, "shard"), want.to_string());
        // md5("foo") = acbd18db4cc2f85cedef654fccc4a4d8: low 8 bytes 0xedef654fccc4a4d8.
        assert_eq!(want, 0xedef654fccc4a4d8u64 % 1000);
    }

    #[test]
    fn case_actions() {
        let r = rule("action: lowercase\nsource_labels: [a]\ntarget_label: b");
        let mut l = labels(&[("a", "MiXed")]);
        process(&[r], &mut l);
        assert_eq!(get_label(&l, "b"), "mixed");
    }

    #[test]
    fn bad_rules_are_refused_with_reasons() {
        for (yaml, want) in [
            ("action: explode", "unknown relabel action"),
            ("regex: '('", "invalid regex"),
            (
                "action: replace\nsource_labels: [a]",
                "requires target_label",
            ),
            (
                "action: hashmod\nsource_labels: [a]\ntarget_label: x",
                "modulus",
            ),
            ("action: labeldrop\nsource_labels: [a]", "not allowed"),
        ] {
            let raw: RelabelConfigRaw = serde_saphyr::from_str(yaml).unwrap();
            let e = Rule::compile(&raw).unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }
}
