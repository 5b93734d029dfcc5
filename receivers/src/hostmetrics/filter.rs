//! otelcol's `filterset` for the hostmetrics scrapers: a list of names matched `strict` (equal) or
//! `regexp` (unanchored, as Go's `regexp.MatchString`). The list key differs per scraper (`names`,
//! `devices`, `interfaces`, `fs_types`, `mount_points`), so one struct takes them all and `compile`
//! accepts only the one its scraper expects.

use regex::Regex;
use serde::Deserialize;

/// An `include` or `exclude` section.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    #[serde(default)]
    pub names: Option<Vec<String>>,
    #[serde(default)]
    pub devices: Option<Vec<String>>,
    #[serde(default)]
    pub interfaces: Option<Vec<String>>,
    #[serde(default)]
    pub fs_types: Option<Vec<String>>,
    #[serde(default)]
    pub mount_points: Option<Vec<String>>,
    #[serde(default)]
    pub match_type: Option<String>,
    /// filterset's `regexp` options. Read and without effect: its cache remembers which names
    /// matched, and vigil compiles the patterns once and matches the few names of one scrape.
    #[serde(default)]
    pub regexp: Option<RegexpOptions>,
}

/// `regexp: { cacheenabled, cachemaxnumentries }` under a filter.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegexpOptions {
    #[serde(default)]
    pub cacheenabled: bool,
    #[serde(default)]
    pub cachemaxnumentries: u64,
}

/// A compiled filter.
#[derive(Debug, Clone)]
pub enum NameFilter {
    Strict(Vec<String>),
    Regexp(Vec<Regex>),
}

impl NameFilter {
    /// Compiles `f`, whose list must be under `key`. Errors are (sub-key, message).
    pub fn compile(f: &FilterConfig, key: &str) -> Result<NameFilter, (String, String)> {
        let lists = [
            ("names", &f.names),
            ("devices", &f.devices),
            ("interfaces", &f.interfaces),
            ("fs_types", &f.fs_types),
            ("mount_points", &f.mount_points),
        ];
        let mut items = Vec::new();
        for (k, v) in lists {
            match (k == key, v) {
                (true, Some(v)) => items = v.clone(),
                (false, Some(_)) => {
                    return Err((k.to_string(), format!("invalid key here; expected {key}")))
                }
                _ => {}
            }
        }
        match f.match_type.as_deref() {
            Some("strict") => Ok(NameFilter::Strict(items)),
            Some("regexp") => {
                let mut res = Vec::with_capacity(items.len());
                for (i, p) in items.iter().enumerate() {
                    let re = vigil_core::config::re2_regex(p).map_err(|e| {
                        (
                            format!("{key}::{i}"),
                            format!("invalid regular expression {p:?}: {e}"),
                        )
                    })?;
                    res.push(re);
                }
                Ok(NameFilter::Regexp(res))
            }
            Some(other) => Err((
                "match_type".into(),
                format!("unknown match_type {other:?}; expected \"strict\" or \"regexp\""),
            )),
            None => Err((
                "match_type".into(),
                "must be specified (\"strict\" or \"regexp\")".into(),
            )),
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            NameFilter::Strict(v) => v.iter().any(|n| n == name),
            NameFilter::Regexp(v) => v.iter().any(|r| r.is_match(name)),
        }
    }
}

/// An include and an exclude filter: a name passes when it is included (or there is no include)
/// and not excluded.
#[derive(Debug, Clone, Default)]
pub struct IncludeExclude {
    pub include: Option<NameFilter>,
    pub exclude: Option<NameFilter>,
}

impl IncludeExclude {
    pub fn pass(&self, name: &str) -> bool {
        self.include.as_ref().is_none_or(|f| f.matches(name))
            && !self.exclude.as_ref().is_some_and(|f| f.matches(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_and_regexp() {
        let f = FilterConfig {
            names: Some(vec!["^vig".into()]),
            match_type: Some("regexp".into()),
            ..Default::default()
        };
        let ie = IncludeExclude {
            include: Some(NameFilter::compile(&f, "names").unwrap()),
            exclude: Some(NameFilter::Strict(vec!["vigil-loadgen".into()])),
        };
        assert!(ie.pass("vigil"));
        assert!(!ie.pass("vigil-loadgen"));
        assert!(!ie.pass("bash"));
        let missing = FilterConfig {
            names: Some(vec!["x".into()]),
            ..Default::default()
        };
        assert_eq!(
            NameFilter::compile(&missing, "names").unwrap_err().0,
            "match_type"
        );
        assert_eq!(
            NameFilter::compile(&missing, "devices").unwrap_err().0,
            "names"
        );
    }

    #[test]
    fn regexp_cache_options_are_read() {
        let f: FilterConfig = serde_json::from_value(serde_json::json!({
            "names": ["^a"], "match_type": "regexp",
            "regexp": {"cacheenabled": true, "cachemaxnumentries": 100},
        }))
        .unwrap();
        assert!(NameFilter::compile(&f, "names").unwrap().matches("abc"));
        let bad =
            serde_json::from_value::<FilterConfig>(serde_json::json!({"regexp": {"cachesize": 1}}));
        assert!(bad.is_err());
    }
}
