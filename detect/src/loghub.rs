//! Scoring of [`TemplateMiner`] on Loghub-2k (Zhu et al., "Tools and Benchmarks for Automated Log
//! Parsing", ICSE 2019): loading a dataset's raw log and ground truth, stripping each line's header with
//! one table of per-dataset layouts, and computing Grouping Accuracy and Parsing Accuracy. `vigil eval
//! loghub` is a thin command over this module, so the scored code is the code the pipeline runs.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::time::Instant;

use regex::Regex;

use crate::template::{MinerConfig, TemplateId, TemplateMiner, PARAM};

/// Header layouts of the Loghub-2k datasets, in the notation of the logparser benchmark settings
/// (`logpai/logparser`): `<Field>` is a field and `<Content>` the message; a run of spaces matches any run
/// of whitespace; `\x` is a literal `x`; `( ... )?` is optional. This is the only per-dataset knowledge
/// used by the evaluation.
pub const LAYOUTS: &[(&str, &str)] = &[
    (
        "HDFS",
        r"<Date> <Time> <Pid> <Level> <Component>: <Content>",
    ),
    (
        "Hadoop",
        r"<Date> <Time> <Level> \[<Process>\] <Component>: <Content>",
    ),
    ("Spark", r"<Date> <Time> <Level> <Component>: <Content>"),
    (
        "Zookeeper",
        r"<Date> <Time> - <Level>  \[<Node>:<Component>@<Id>\] - <Content>",
    ),
    (
        "BGL",
        r"<Label> <Timestamp> <Date> <Node> <Time> <NodeRepeat> <Type> <Component> <Level> <Content>",
    ),
    (
        "HPC",
        r"<LogId> <Node> <Component> <State> <Time> <Flag> <Content>",
    ),
    (
        "Thunderbird",
        r"<Label> <Timestamp> <Date> <User> <Month> <Day> <Time> <Location> <Component>(\[<PID>\])?: <Content>",
    ),
    (
        "Windows",
        r"<Date> <Time>, <Level>                  <Component>    <Content>",
    ),
    (
        "Linux",
        r"<Month> <Date> <Time> <Level> <Component>(\[<PID>\])?: <Content>",
    ),
    (
        "Android",
        r"<Date> <Time>  <Pid>  <Tid> <Level> <Component>: <Content>",
    ),
    ("HealthApp", r"<Time>\|<Component>\|<Pid>\|<Content>"),
    ("Apache", r"\[<Time>\] \[<Level>\] <Content>"),
    ("Proxifier", r"\[<Time>\] <Program> - <Content>"),
    (
        "OpenSSH",
        r"<Date> <Day> <Time> <Component> sshd\[<Pid>\]: <Content>",
    ),
    (
        "OpenStack",
        r"<Logrecord> <Date> <Time> <Pid> <Level> <Component> \[<ADDR>\] <Content>",
    ),
    (
        "Mac",
        r"<Month>  <Date> <Time> <User> <Component>\[<PID>\]( \(<Address>\))?: <Content>",
    ),
];

/// Something that stops a dataset from being loaded or scored.
#[derive(Debug, thiserror::Error)]
pub enum LoghubError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The ground-truth CSV is malformed.
    #[error("{path}: {message}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line number.
        message: String,
    },
    /// The dataset is not in [`LAYOUTS`].
    #[error("no header layout for dataset {0:?}; known: {known}", known = known_names())]
    UnknownDataset(String),
    /// A layout does not compile (a bug in [`LAYOUTS`] or a caller's layout).
    #[error("header layout {layout:?} is not valid: {message}")]
    Layout {
        /// The layout.
        layout: String,
        /// Why.
        message: String,
    },
    /// The log and its ground truth have different line counts.
    #[error("{log} has {log_lines} lines but {truth} has {truth_rows} rows")]
    Mismatch {
        /// The raw log.
        log: PathBuf,
        /// Its line count.
        log_lines: usize,
        /// The ground truth.
        truth: PathBuf,
        /// Its row count.
        truth_rows: usize,
    },
    /// The miner configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::template::ConfigError),
}

fn known_names() -> String {
    LAYOUTS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Splits the header fields from the message of one dataset's lines.
#[derive(Debug, Clone)]
pub struct HeaderLayout {
    regex: Regex,
}

impl HeaderLayout {
    /// The layout of a dataset named in [`LAYOUTS`].
    pub fn for_dataset(name: &str) -> Result<Self, LoghubError> {
        let (_, layout) = LAYOUTS
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| LoghubError::UnknownDataset(name.to_string()))?;
        Self::parse(layout)
    }

    /// Compiles a layout written in the notation of [`LAYOUTS`].
    pub fn parse(layout: &str) -> Result<Self, LoghubError> {
        let err = |message: String| LoghubError::Layout {
            layout: layout.to_string(),
            message,
        };
        let mut re = String::from("^");
        let mut chars = layout.chars().peekable();
        let mut has_content = false;
        while let Some(c) = chars.next() {
            match c {
                '<' => {
                    let name: String = chars.by_ref().take_while(|&c| c != '>').collect();
                    if name.is_empty()
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(err(format!("bad field name <{name}>")));
                    }
                    has_content |= name == "Content";
                    write!(re, "(?P<{name}>.*?)").map_err(|e| err(e.to_string()))?;
                }
                '\\' => {
                    let lit = chars
                        .next()
                        .ok_or_else(|| err("ends with a backslash".into()))?;
                    re.push_str(&regex::escape(&lit.to_string()));
                }
                ' ' => {
                    while chars.peek() == Some(&' ') {
                        chars.next();
                    }
                    re.push_str(r"\s+");
                }
                '(' => re.push_str("(?:"),
                ')' | '?' => re.push(c),
                other => re.push_str(&regex::escape(&other.to_string())),
            }
        }
        if !has_content {
            return Err(err("has no <Content> field".into()));
        }
        re.push('$');
        let regex = Regex::new(&re).map_err(|e| err(e.to_string()))?;
        Ok(Self { regex })
    }

    /// The message of a raw line: a trailing `\r` and surrounding whitespace are removed first (as the
    /// logparser benchmark does); a line that does not fit the layout is returned whole.
    pub fn content<'a>(&self, line: &'a str) -> (&'a str, bool) {
        let line = line.strip_suffix('\r').unwrap_or(line).trim();
        match self.regex.captures(line).and_then(|c| c.name("Content")) {
            Some(m) => (m.as_str(), true),
            None => (line, false),
        }
    }
}

/// One Loghub-2k dataset: the messages of its raw log and their ground truth.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The dataset's name, such as `HDFS`.
    pub name: String,
    /// The message of each raw log line, header stripped.
    pub contents: Vec<String>,
    /// The ground-truth template of each line.
    pub truth: Vec<String>,
    /// The ground-truth `Content` of each line, to check the header stripping.
    pub truth_contents: Vec<String>,
    /// Lines that did not fit the dataset's header layout (scored with their whole text).
    pub unmatched: usize,
}

impl Dataset {
    /// Lines whose stripped message differs from the ground truth's `Content` column.
    pub fn content_mismatches(&self) -> usize {
        self.contents
            .iter()
            .zip(&self.truth_contents)
            .filter(|(a, b)| a != b)
            .count()
    }
}

/// The names of the datasets in `dir`: every subdirectory `<Name>` that holds `<Name>_2k.log`, sorted.
pub fn discover(dir: &Path) -> Result<Vec<String>, LoghubError> {
    let io = |source| LoghubError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().join(format!("{name}_2k.log")).is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Loads `dir/<name>/<name>_2k.log` and its ground truth: `<name>_2k.log_structured.csv`, or the corrected
/// set's `<name>_2k.log_structured_corrected.csv` when that is the one present.
pub fn load(dir: &Path, name: &str) -> Result<Dataset, LoghubError> {
    let layout = HeaderLayout::for_dataset(name)?;
    let base = dir.join(name);
    let log_path = base.join(format!("{name}_2k.log"));
    let raw = fs::read(&log_path).map_err(|source| LoghubError::Io {
        path: log_path.clone(),
        source,
    })?;
    // Loghub files are ASCII; a stray byte must not stop the evaluation.
    let raw = String::from_utf8_lossy(&raw);
    let mut contents = Vec::with_capacity(2000);
    let mut unmatched = 0;
    for line in raw.lines() {
        let (content, ok) = layout.content(line);
        unmatched += usize::from(!ok);
        contents.push(content.to_string());
    }
    // A final empty line (a trailing newline) is not a log line.
    while contents.last().is_some_and(|c| c.is_empty()) {
        contents.pop();
    }
    let mut truth_path = base.join(format!("{name}_2k.log_structured.csv"));
    if !truth_path.is_file() {
        truth_path = base.join(format!("{name}_2k.log_structured_corrected.csv"));
    }
    let (truth_contents, truth) = read_truth(&truth_path)?;
    if truth.len() != contents.len() {
        return Err(LoghubError::Mismatch {
            log: log_path,
            log_lines: contents.len(),
            truth: truth_path,
            truth_rows: truth.len(),
        });
    }
    Ok(Dataset {
        name: name.to_string(),
        contents,
        truth,
        truth_contents,
        unmatched,
    })
}

/// Reads the `Content` and `EventTemplate` columns of a structured ground-truth CSV.
fn read_truth(path: &Path) -> Result<(Vec<String>, Vec<String>), LoghubError> {
    let csv_err = |message: String| LoghubError::Csv {
        path: path.to_path_buf(),
        message,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| match e.into_kind() {
        csv::ErrorKind::Io(source) => LoghubError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => csv_err(format!("{other:?}")),
    })?;
    let headers = reader
        .headers()
        .map_err(|e| csv_err(e.to_string()))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| csv_err(format!("no {name} column")))
    };
    let (content_col, template_col) = (column("Content")?, column("EventTemplate")?);
    let mut contents = Vec::new();
    let mut templates = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| csv_err(format!("row {}: {e}", i + 1)))?;
        let field = |col: usize| {
            record
                .get(col)
                .map(str::to_string)
                .ok_or_else(|| csv_err(format!("line {}: too few columns", i + 2)))
        };
        contents.push(field(content_col)?);
        templates.push(field(template_col)?);
    }
    Ok((contents, templates))
}

/// Grouping Accuracy as Zhu et al. (ICSE 2019) define it: the share of messages whose predicted group
/// holds exactly the same messages as their ground-truth group. `predicted[i]` and `truth[i]` are group
/// keys of message `i`; the slices must have the same length.
pub fn grouping_accuracy<P: Hash + Eq, T: Hash + Eq>(predicted: &[P], truth: &[T]) -> f64 {
    assert_eq!(
        predicted.len(),
        truth.len(),
        "one predicted and one true group per message"
    );
    if predicted.is_empty() {
        return 0.0;
    }
    let mut truth_size: HashMap<&T, usize> = HashMap::new();
    for t in truth {
        *truth_size.entry(t).or_default() += 1;
    }
    // For each predicted group: its size and the single true group of its members, if there is one.
    let mut groups: HashMap<&P, (usize, Option<&T>, bool)> = HashMap::new();
    for (p, t) in predicted.iter().zip(truth) {
        let g = groups.entry(p).or_insert((0, Some(t), true));
        g.0 += 1;
        if g.1 != Some(t) {
            g.2 = false;
        }
    }
    let correct: usize = groups
        .values()
        .filter_map(|&(size, t, pure)| {
            (pure && t.and_then(|t| truth_size.get(t)) == Some(&size)).then_some(size)
        })
        .sum();
    correct as f64 / predicted.len() as f64
}

/// Parsing Accuracy: the share of messages whose predicted template equals the true one after
/// [`normalise_template`] on both sides.
pub fn parsing_accuracy<P: AsRef<str>, T: AsRef<str>>(predicted: &[P], truth: &[T]) -> f64 {
    assert_eq!(
        predicted.len(),
        truth.len(),
        "one predicted and one true template per message"
    );
    if predicted.is_empty() {
        return 0.0;
    }
    let mut cache: HashMap<(&str, &str), bool> = HashMap::new();
    let mut correct = 0usize;
    for (p, t) in predicted.iter().zip(truth) {
        let (p, t) = (p.as_ref(), t.as_ref());
        let same = *cache
            .entry((p, t))
            .or_insert_with(|| normalise_template(p) == normalise_template(t));
        correct += usize::from(same);
    }
    correct as f64 / predicted.len() as f64
}

/// The form in which templates are compared for Parsing Accuracy: runs of whitespace become one space,
/// and `<*>`s that follow each other with nothing in between become one (`<*><*>` and `<*> <*>` do not
/// differ in what they match, for a variable that may contain spaces). Nothing else is changed: a
/// template that keeps `blk_` in front of a variable differs from one that masks the whole token.
pub fn normalise_template(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    for word in template.split_whitespace() {
        if word == PARAM && out.ends_with(PARAM) {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    let mut s = out;
    while s.contains("<*><*>") {
        s = s.replace("<*><*>", PARAM);
    }
    s
}

/// The score of one dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Grouping Accuracy.
    pub ga: f64,
    /// Parsing Accuracy.
    pub pa: f64,
    /// Lines per second through [`TemplateMiner::add`] (masking included, header stripping and file
    /// reading excluded), the fastest of a few runs.
    pub lines_per_sec: f64,
    /// Templates found.
    pub templates: usize,
    /// Templates in the ground truth.
    pub truth_templates: usize,
}

/// The parse of one dataset: each line's final template, and its score.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The final (alias-resolved) template id of each line.
    pub ids: Vec<TemplateId>,
    /// The final template text of each line.
    pub templates: Vec<String>,
    /// The score.
    pub score: Score,
}

/// Fresh runs per dataset for the lines-per-second figure.
const TIMING_RUNS: usize = 5;

/// Feeds every line of `dataset` to a fresh miner, then scores each line by the template it ended in.
pub fn evaluate(dataset: &Dataset, config: &MinerConfig) -> Result<Evaluation, LoghubError> {
    // 2k lines take about a millisecond: the fastest of a few fresh runs is the least disturbed by
    // other work on the machine. Every run gives the same result, since the miner is deterministic.
    let mut miner = TemplateMiner::new(config.clone())?;
    let start = Instant::now();
    let first: Vec<TemplateId> = dataset
        .contents
        .iter()
        .map(|line| miner.add(line).id)
        .collect();
    let mut elapsed = start.elapsed().as_secs_f64();
    for _ in 1..TIMING_RUNS {
        let mut again = TemplateMiner::new(config.clone())?;
        let start = Instant::now();
        for line in &dataset.contents {
            let _ = again.add(line);
        }
        elapsed = elapsed.min(start.elapsed().as_secs_f64());
    }
    let mut ids = Vec::with_capacity(first.len());
    let mut templates = Vec::with_capacity(first.len());
    for id in first {
        // Without eviction (2k lines stay far below `max_templates`) every id resolves.
        let info = miner.get(id);
        ids.push(info.map_or(id, |t| t.id));
        templates.push(info.map_or_else(String::new, |t| t.template.to_string()));
    }
    let mut distinct_truth: Vec<&String> = dataset.truth.iter().collect();
    distinct_truth.sort();
    distinct_truth.dedup();
    let score = Score {
        ga: grouping_accuracy(&ids, &dataset.truth),
        pa: parsing_accuracy(&templates, &dataset.truth),
        lines_per_sec: if elapsed > 0.0 {
            dataset.contents.len() as f64 / elapsed
        } else {
            f64::INFINITY
        },
        templates: miner.len(),
        truth_templates: distinct_truth.len(),
    };
    Ok(Evaluation {
        ids,
        templates,
        score,
    })
}

/// Writes `out_dir/<Name>_2k.log_structured.csv` in the logparser benchmark's format
/// (`LineId,Content,EventId,EventTemplate`), so that its own evaluator can check our figures.
pub fn write_results(
    out_dir: &Path,
    dataset: &Dataset,
    eval: &Evaluation,
) -> Result<PathBuf, LoghubError> {
    let path = out_dir.join(format!("{}_2k.log_structured.csv", dataset.name));
    let io = |source| LoghubError::Io {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(out_dir).map_err(|source| LoghubError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let mut w = csv::Writer::from_path(&path).map_err(|e| LoghubError::Csv {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let csv_err = |e: csv::Error| LoghubError::Csv {
        path: path.clone(),
        message: e.to_string(),
    };
    w.write_record(["LineId", "Content", "EventId", "EventTemplate"])
        .map_err(csv_err)?;
    for (i, ((content, id), template)) in dataset
        .contents
        .iter()
        .zip(&eval.ids)
        .zip(&eval.templates)
        .enumerate()
    {
        w.write_record([&(i + 1).to_string(), content, &id.to_string(), template])
            .map_err(csv_err)?;
    }
    w.flush().map_err(io)?;
    Ok(path)
}

/// Drain's published Grouping Accuracy on Loghub-2k, tuned per dataset (Zhu et al., ICSE 2019), shown
/// beside ours.
pub const DRAIN_GA: &[(&str, f64)] = &[
    ("HDFS", 0.998),
    ("Hadoop", 0.948),
    ("Spark", 0.920),
    ("Zookeeper", 0.967),
    ("BGL", 0.963),
    ("HPC", 0.887),
    ("Thunderbird", 0.955),
    ("Windows", 0.997),
    ("Linux", 0.690),
    ("Android", 0.911),
    ("HealthApp", 0.780),
    ("Apache", 1.000),
    ("Proxifier", 0.527),
    ("OpenSSH", 0.788),
    ("OpenStack", 0.733),
    ("Mac", 0.787),
];

/// The result of scoring every dataset of a directory.
#[derive(Debug, Clone)]
pub struct Report {
    /// Per dataset, in name order.
    pub datasets: Vec<(Dataset, Evaluation)>,
}

impl Report {
    /// Loads and scores every dataset in `dir` (see [`discover`]) with `config`.
    pub fn run(dir: &Path, config: &MinerConfig) -> Result<Self, LoghubError> {
        let names = discover(dir)?;
        if names.is_empty() {
            return Err(LoghubError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no <Name>/<Name>_2k.log dataset here",
                ),
            });
        }
        let mut datasets = Vec::with_capacity(names.len());
        for name in names {
            let dataset = load(dir, &name)?;
            let eval = evaluate(&dataset, config)?;
            datasets.push((dataset, eval));
        }
        Ok(Self { datasets })
    }

    /// Mean GA and PA over the datasets.
    pub fn average(&self) -> (f64, f64) {
        let n = self.datasets.len().max(1) as f64;
        let ga = self.datasets.iter().map(|(_, e)| e.score.ga).sum::<f64>() / n;
        let pa = self.datasets.iter().map(|(_, e)| e.score.pa).sum::<f64>() / n;
        (ga, pa)
    }

    /// The JSON object printed by `vigil eval loghub --json`.
    pub fn to_json(&self) -> serde_json::Value {
        let datasets: serde_json::Map<String, serde_json::Value> = self
            .datasets
            .iter()
            .map(|(d, e)| {
                let s = &e.score;
                (
                    d.name.clone(),
                    serde_json::json!({"ga": s.ga, "pa": s.pa, "lines_per_sec": s.lines_per_sec}),
                )
            })
            .collect();
        let (ga, pa) = self.average();
        serde_json::json!({"datasets": datasets, "average": {"ga": ga, "pa": pa}})
    }

    /// A plain-text table with Drain's published GA beside ours.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<12} {:>6} {:>6} {:>10} {:>10} {:>12}",
            "dataset", "GA", "PA", "Drain GA", "templates", "lines/s"
        );
        for (d, e) in &self.datasets {
            let s = &e.score;
            let drain = DRAIN_GA
                .iter()
                .find(|(n, _)| *n == d.name)
                .map_or("-".to_string(), |(_, g)| format!("{g:.3}"));
            let _ = writeln!(
                out,
                "{:<12} {:>6.3} {:>6.3} {:>10} {:>4} / {:<4} {:>12.0}",
                d.name, s.ga, s.pa, drain, s.templates, s.truth_templates, s.lines_per_sec
            );
            if d.unmatched > 0 || d.content_mismatches() > 0 {
                let _ = writeln!(
                    out,
                    "  note: {} lines did not fit the header layout, {} differ from the ground truth's Content",
                    d.unmatched,
                    d.content_mismatches()
                );
            }
        }
        let (ga, pa) = self.average();
        let _ = writeln!(out, "{:<12} {:>6.3} {:>6.3}", "average", ga, pa);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_accuracy_by_hand() {
        // Truth: {0,1,2} = A, {3,4} = B, {5} = C.
        let truth = ["A", "A", "A", "B", "B", "C"];
        // Predicted: {0,1,2} exact (3 correct); {3} alone (B split: wrong); {4,5} mixes B and C (wrong).
        let predicted = [1, 1, 1, 2, 3, 3];
        assert!((grouping_accuracy(&predicted, &truth) - 3.0 / 6.0).abs() < 1e-12);
        // Perfect grouping, whatever the labels.
        assert_eq!(grouping_accuracy(&[9, 9, 9, 8, 8, 7], &truth), 1.0);
        // One group for everything: no group matches.
        assert_eq!(grouping_accuracy(&[0; 6], &truth), 0.0);
        // C on its own is right even when the rest are merged: 1 of 6.
        assert!((grouping_accuracy(&[0, 0, 0, 0, 0, 1], &truth) - 1.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn parsing_accuracy_normalises_only_spacing_and_repeated_variables() {
        assert_eq!(normalise_template("a  <*> <*>  b <*><*>"), "a <*> b <*>");
        let truth = [
            "Invalid user <*> from <*>",
            "x blk_<*> y",
            "rhost=<*>  user=root",
        ];
        let predicted = [
            "Invalid user <*>  from <*>",
            "x <*> y",
            "rhost=<*> user=root",
        ];
        assert!((parsing_accuracy(&predicted, &truth) - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn header_layouts_strip_headers() {
        let hdfs = HeaderLayout::for_dataset("HDFS").expect("known");
        let line = "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_3 terminating\r";
        assert_eq!(
            hdfs.content(line),
            ("PacketResponder 1 for block blk_3 terminating", true)
        );
        let linux = HeaderLayout::for_dataset("Linux").expect("known");
        assert_eq!(
            linux
                .content("Jun 14 15:16:02 combo sshd(pam_unix)[19937]: check pass; user unknown")
                .0,
            "check pass; user unknown"
        );
        assert_eq!(
            linux
                .content("Jun 15 04:06:18 combo syslogd 1.4.1: restart.")
                .0,
            "restart."
        );
        let zk = HeaderLayout::for_dataset("Zookeeper").expect("known");
        let line = "2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - Notification time out: 3200";
        assert_eq!(zk.content(line).0, "Notification time out: 3200");
        assert_eq!(hdfs.content("no header here"), ("no header here", false));
        assert!(matches!(
            HeaderLayout::for_dataset("Nope"),
            Err(LoghubError::UnknownDataset(_))
        ));
        assert!(
            HeaderLayout::parse("<Date> <Time>").is_err(),
            "a layout needs <Content>"
        );
        for (name, _) in LAYOUTS {
            assert!(HeaderLayout::for_dataset(name).is_ok(), "{name} compiles");
        }
    }
}
