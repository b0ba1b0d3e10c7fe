//! `usersim report-system`: how a system under test served each kind of
//! user, from one simulate run's records (their `items` and `outcome`).
//!
//! A command of its own rather than a section of `eval`: `eval` measures
//! the simulated users against real people (it needs a real corpus and
//! embeds turns), while this measures the *system* against the simulated
//! users, from one run alone, with the conversation as its unit.
//!
//! Per conversation: success (the user accepted the target item), recall@k
//! (the target among the first k distinct items recommended), turns to
//! success (user turns up to the acceptance, successes only), rejections
//! (items rejected) and the user's sentiment at the end (VADER compound of
//! the last user turn). Each figure gets a bootstrap 95% interval over
//! conversations, overall and per group of every `--by` latent; a group of
//! at least [`MIN_FLAGGED_GROUP`] conversations is flagged when its interval
//! lies entirely on the worse side of the overall figure (below it, or
//! above it for turns and rejections).
//!
//! Invariant: the report is a function of the file and the options (the
//! bootstrap streams are seeded), so the same run gives the same table.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chat::Side;
use crate::eval::lexicon::sentiment_score;
use crate::eval::stats::{bootstrap_ci, Estimate};
use crate::session::record::ConversationRecord;

/// Default k of recall@k.
pub const DEFAULT_RECALL_K: usize = 10;
/// Default bootstrap resamples.
pub const DEFAULT_BOOTSTRAP: usize = 1000;
/// Most distinct values a latent may take to be a default `--by` field.
const MAX_DEFAULT_GROUPS: usize = 12;
/// Fewest conversations a group needs to be flagged: in a smaller one every
/// conversation may agree (all failures), and its bootstrap interval
/// collapses to a point that says nothing about the users it stands for.
pub const MIN_FLAGGED_GROUP: usize = 8;
/// The derived field: a conversation's most frequent user intent.
pub const TOP_INTENT: &str = "top_intent";

/// What to report.
#[derive(Clone, Debug, Serialize)]
pub struct SystemReportConfig {
    /// The run's JSONL.
    pub input: PathBuf,
    /// Session latents (or `top_intent`) to group by; empty: every latent
    /// with at most 12 distinct scalar values.
    pub by: Vec<String>,
    /// k of recall@k.
    pub k: usize,
    /// Bootstrap resamples.
    pub bootstrap: usize,
    /// Seed of the bootstrap streams.
    pub seed: u64,
}

impl Default for SystemReportConfig {
    fn default() -> Self {
        SystemReportConfig {
            input: PathBuf::new(),
            by: Vec::new(),
            k: DEFAULT_RECALL_K,
            bootstrap: DEFAULT_BOOTSTRAP,
            seed: 0,
        }
    }
}

/// Why there is no report.
#[derive(Debug, thiserror::Error)]
pub enum SystemReportError {
    /// The file cannot be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line is not a usersim record, or lacks what the report needs.
    #[error("{path}:{line}: {msg}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// An option is wrong.
    #[error("{0}")]
    Config(String),
}

/// The figures of one set of conversations.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    /// Conversations.
    pub conversations: usize,
    /// Share that accepted the target item.
    pub success_rate: Option<Estimate>,
    /// Share whose target was among the first k items recommended.
    pub recall_at_k: Option<Estimate>,
    /// Mean user turns to the acceptance (successes only).
    pub turns_to_success: Option<Estimate>,
    /// Mean items rejected per conversation.
    pub rejections: Option<Estimate>,
    /// Mean VADER compound of the last user turn.
    pub end_sentiment: Option<Estimate>,
}

/// One group of one `--by` field.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GroupRow {
    /// The field.
    pub field: String,
    /// Its value.
    pub value: String,
    /// The group's figures.
    pub metrics: Metrics,
    /// Figures whose interval lies wholly on the worse side of the overall
    /// figure.
    pub worse: Vec<String>,
}

/// The report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SystemReport {
    /// The run file.
    pub input: PathBuf,
    /// The system(s) the records name.
    pub system: String,
    /// k of recall@k.
    pub k: usize,
    /// Every conversation.
    pub overall: Metrics,
    /// Per group, fields in `--by` order, values sorted.
    pub groups: Vec<GroupRow>,
}

/// What the report needs of one conversation.
#[derive(Clone, Debug)]
struct Facts {
    success: bool,
    recall: bool,
    turns_to_success: Option<u32>,
    rejections: usize,
    end_sentiment: Option<f64>,
    groups: BTreeMap<String, String>,
}

/// A latent's value as a group label; `None` for objects (an item).
fn label(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(a) => Some(
            a.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join("+"),
        ),
        _ => None,
    }
}

fn facts(r: &ConversationRecord, k: usize) -> Result<Facts, String> {
    let outcome = r.outcome.as_ref().ok_or(
        "no \"outcome\": the scenario has no target item (conversation.target), so there is nothing to succeed at",
    )?;
    let mut shown: Vec<&str> = Vec::new();
    for t in r.turns.iter().filter(|t| t.role == Side::Assistant) {
        for item in &t.items {
            if !shown.contains(&item.as_str()) {
                shown.push(item);
            }
        }
    }
    let recall = shown.iter().take(k).any(|i| *i == outcome.target);
    let end_sentiment = r
        .turns
        .iter()
        .rev()
        .find(|t| t.role == Side::User)
        .map(|t| sentiment_score(&t.text));
    let mut groups: BTreeMap<String, String> = r
        .latents
        .iter()
        .filter_map(|(k, v)| label(v).map(|l| (k.clone(), l)))
        .collect();
    let mut intents: BTreeMap<&str, usize> = BTreeMap::new();
    for t in r.turns.iter().filter(|t| t.role == Side::User) {
        if let Some(i) = t.latents.get("intent") {
            *intents.entry(i).or_default() += 1;
        }
    }
    // Most frequent; ties to the first in name order.
    if let Some((i, _)) = intents
        .iter()
        .fold(None::<(&str, usize)>, |best, (i, n)| match best {
            Some((_, b)) if b >= *n => best,
            _ => Some((i, *n)),
        })
    {
        groups.insert(TOP_INTENT.to_string(), i.to_string());
    }
    Ok(Facts {
        success: outcome.accepted.is_some(),
        recall,
        turns_to_success: outcome.turns_to_success,
        rejections: outcome.rejected.len(),
        end_sentiment,
        groups,
    })
}

/// Mean of `f` over the resampled conversations that have a value.
fn mean_of(all: &[&Facts], idx: &[usize], f: &dyn Fn(&Facts) -> Option<f64>) -> Option<f64> {
    let (sum, n) = idx
        .iter()
        .filter_map(|&i| f(all[i]))
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

type Getter = fn(&Facts) -> Option<f64>;

/// The report's measures: name, getter, and whether higher is better.
const MEASURES: [(&str, Getter, bool); 5] = [
    (
        "success_rate",
        |f| Some(f64::from(u8::from(f.success))),
        true,
    ),
    ("recall_at_k", |f| Some(f64::from(u8::from(f.recall))), true),
    (
        "turns_to_success",
        |f| f.turns_to_success.map(f64::from),
        false,
    ),
    ("rejections", |f| Some(f.rejections as f64), false),
    ("end_sentiment", |f| f.end_sentiment, true),
];

fn metrics(set: &[&Facts], cfg: &SystemReportConfig, salt: u64) -> Metrics {
    let est: Vec<Option<Estimate>> = MEASURES
        .iter()
        .enumerate()
        .map(|(m, (_, get, _))| {
            let seed = cfg
                .seed
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(salt.wrapping_mul(31).wrapping_add(m as u64));
            bootstrap_ci(set.len(), cfg.bootstrap, seed, |idx| mean_of(set, idx, get))
        })
        .collect();
    let mut it = est.into_iter();
    let mut next = || it.next().flatten();
    Metrics {
        conversations: set.len(),
        success_rate: next(),
        recall_at_k: next(),
        turns_to_success: next(),
        rejections: next(),
        end_sentiment: next(),
    }
}

fn get<'a>(m: &'a Metrics, name: &str) -> Option<&'a Estimate> {
    match name {
        "success_rate" => m.success_rate.as_ref(),
        "recall_at_k" => m.recall_at_k.as_ref(),
        "turns_to_success" => m.turns_to_success.as_ref(),
        "rejections" => m.rejections.as_ref(),
        _ => m.end_sentiment.as_ref(),
    }
}

/// Read a run and measure it.
pub fn report_system(cfg: &SystemReportConfig) -> Result<SystemReport, SystemReportError> {
    if cfg.k == 0 {
        return Err(SystemReportError::Config("--k: expected at least 1".into()));
    }
    let path = &cfg.input;
    let text = std::fs::read_to_string(path).map_err(|source| SystemReportError::Read {
        path: path.clone(),
        source,
    })?;
    let mut all = Vec::new();
    let mut systems = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |msg: String| SystemReportError::Line {
            path: path.clone(),
            line: n + 1,
            msg,
        };
        let r: ConversationRecord = serde_json::from_str(line)
            .map_err(|e| bad(format!("not a usersim conversation record: {e}")))?;
        systems.insert(r.system.clone());
        all.push(facts(&r, cfg.k).map_err(bad)?);
    }
    if all.is_empty() {
        return Err(SystemReportError::Config(format!(
            "{}: no conversations",
            path.display()
        )));
    }
    let refs: Vec<&Facts> = all.iter().collect();
    let overall = metrics(&refs, cfg, 0);
    let by: Vec<String> = if cfg.by.is_empty() {
        let mut fields: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for f in &all {
            for (k, v) in &f.groups {
                fields.entry(k).or_default().insert(v);
            }
        }
        fields
            .into_iter()
            .filter(|(_, vs)| vs.len() > 1 && vs.len() <= MAX_DEFAULT_GROUPS)
            .map(|(k, _)| k.to_string())
            .collect()
    } else {
        cfg.by.clone()
    };
    let mut groups = Vec::new();
    for (fi, field) in by.iter().enumerate() {
        let mut values: BTreeMap<&str, Vec<&Facts>> = BTreeMap::new();
        for f in &all {
            if let Some(v) = f.groups.get(field) {
                values.entry(v).or_default().push(f);
            }
        }
        if values.is_empty() {
            return Err(SystemReportError::Config(format!(
                "{}: --by {field}: no conversation has this latent (or it is an item)",
                path.display()
            )));
        }
        for (vi, (value, set)) in values.into_iter().enumerate() {
            let m = metrics(&set, cfg, 1 + (fi as u64) * 1000 + vi as u64);
            let worse = MEASURES
                .iter()
                .filter(|_| set.len() >= MIN_FLAGGED_GROUP)
                .filter(
                    |(name, _, higher_better)| match (get(&m, name), get(&overall, name)) {
                        // A margin: the mean of identical values may round
                        // a hair below the same mean over more of them.
                        (Some(g), Some(o)) if *higher_better => g.hi < o.value - 1e-9,
                        (Some(g), Some(o)) => g.lo > o.value + 1e-9,
                        _ => false,
                    },
                )
                .map(|(name, _, _)| name.to_string())
                .collect();
            groups.push(GroupRow {
                field: field.clone(),
                value: value.to_string(),
                metrics: m,
                worse,
            });
        }
    }
    Ok(SystemReport {
        input: path.clone(),
        system: systems.into_iter().collect::<Vec<_>>().join(", "),
        k: cfg.k,
        overall,
        groups,
    })
}

fn cell(e: Option<&Estimate>, pct: bool) -> String {
    match e {
        None => "-".into(),
        Some(e) if pct => format!("{:.2} [{:.2}, {:.2}]", e.value, e.lo, e.hi),
        Some(e) => format!("{:.2} [{:.2}, {:.2}]", e.value, e.lo, e.hi),
    }
}

impl SystemReport {
    fn rows(&self) -> Vec<(String, &Metrics, &[String])> {
        let mut rows: Vec<(String, &Metrics, &[String])> =
            vec![("overall".into(), &self.overall, &[])];
        for g in &self.groups {
            rows.push((format!("{}={}", g.field, g.value), &g.metrics, &g.worse));
        }
        rows
    }

    fn header(&self) -> Vec<String> {
        vec![
            "group".into(),
            "n".into(),
            "success [95%]".into(),
            format!("recall@{} [95%]", self.k),
            "turns to success [95%]".into(),
            "rejections/conv [95%]".into(),
            "end sentiment [95%]".into(),
        ]
    }

    fn cells(m: &Metrics, worse: &[String]) -> Vec<String> {
        let mut out = vec![m.conversations.to_string()];
        for (name, _, _) in MEASURES {
            let mut c = cell(get(m, name), false);
            if worse.iter().any(|w| w == name) {
                c = format!("**{c}** ▼");
            }
            out.push(c);
        }
        out
    }

    /// A Markdown table: one row overall, one per group; a figure whose
    /// group is significantly worse than overall is bold and marked ▼.
    pub fn table(&self) -> String {
        let mut s = format!(
            "system: {}  ({} conversations, {})\n\n",
            self.system,
            self.overall.conversations,
            self.input.display()
        );
        let header = self.header();
        let _ = writeln!(s, "| {} |", header.join(" | "));
        let _ = writeln!(s, "|{}", "---|".repeat(header.len()));
        for (name, m, worse) in self.rows() {
            let _ = writeln!(s, "| {name} | {} |", Self::cells(m, worse).join(" | "));
        }
        s.push_str(
            "\n▼: a group of at least 8 conversations whose 95% interval lies wholly on the worse side of the overall figure.\n",
        );
        s
    }

    /// A self-contained HTML page with the same table (no scripts).
    pub fn html(&self) -> String {
        let esc = |t: &str| {
            t.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut s = String::from(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>usersim report-system</title>\
             <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
             td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}\
             .worse{background:#fdd;font-weight:bold}</style></head><body>",
        );
        let _ = write!(
            s,
            "<h1>How the system served each kind of user</h1><p>system: {} — {} conversations — {}</p><table><tr>",
            esc(&self.system),
            self.overall.conversations,
            esc(&self.input.display().to_string())
        );
        for h in self.header() {
            let _ = write!(s, "<th>{}</th>", esc(&h));
        }
        s.push_str("</tr>");
        for (name, m, worse) in self.rows() {
            let _ = write!(s, "<tr><td>{}</td><td>{}</td>", esc(&name), m.conversations);
            for (measure, _, _) in MEASURES {
                let class = if worse.iter().any(|w| w == measure) {
                    " class=\"worse\""
                } else {
                    ""
                };
                let _ = write!(s, "<td{class}>{}</td>", esc(&cell(get(m, measure), false)));
            }
            s.push_str("</tr>");
        }
        s.push_str("</table><p>Red: a group of at least 8 conversations whose 95% bootstrap interval lies wholly on the worse side of the overall figure.</p></body></html>\n");
        s
    }
}

/// Write the HTML page atomically.
pub fn write_html(report: &SystemReport, path: &Path) -> std::io::Result<()> {
    crate::atomic::write_atomic(path, report.html().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize, group: &str, accepted: bool) -> String {
        serde_json::json!({
            "id": format!("t-0-{i:06}"), "session_index": i, "run_seed": "0", "session_seed": "1",
            "scenario": {"name": "t", "hash": "h"}, "model": {"name": "m", "sha256": ""},
            "system": "stdio", "sampling": {}, "latents": {"kind": group},
            "turns": [{"role": "user", "text": "hi", "tokens": 1},
                      {"role": "assistant", "text": "x", "tokens": 0, "items": ["T"]},
                      {"role": "user", "text": "ok", "latents": {"intent": "ACC"}, "tokens": 1}],
            "end_reason": "user_left",
            "outcome": {"target": "T", "target_recommended": 1,
                        "accepted": if accepted { Some(2) } else { None },
                        "rejected": [], "turns_to_success": if accepted { Some(2) } else { None }},
        })
        .to_string()
    }

    #[test]
    fn a_group_wholly_below_overall_is_flagged_and_a_small_one_is_not() {
        let dir = std::env::temp_dir().join(format!("usersim-rs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.jsonl");
        // 10 of group a succeed, 10 of group b fail, 2 of group c fail.
        let mut lines = Vec::new();
        for i in 0..22 {
            let (g, ok) = match i {
                0..10 => ("a", true),
                10..20 => ("b", false),
                _ => ("c", false),
            };
            lines.push(record(i, g, ok));
        }
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let r = report_system(&SystemReportConfig {
            input: path.clone(),
            by: vec!["kind".into()],
            ..SystemReportConfig::default()
        })
        .unwrap();
        assert!((r.overall.success_rate.as_ref().unwrap().value - 10.0 / 22.0).abs() < 1e-12);
        let worse: Vec<(&str, &[String])> = r
            .groups
            .iter()
            .map(|g| (g.value.as_str(), &g.worse[..]))
            .collect();
        assert_eq!(worse[0], ("a", &[][..]));
        assert_eq!(worse[1].0, "b");
        assert!(
            worse[1].1.contains(&"success_rate".to_string()),
            "{worse:?}"
        );
        assert_eq!(
            worse[2],
            ("c", &[][..]),
            "2 conversations are too few to flag"
        );
        assert!(r.table().contains("**0.00 [0.00, 0.00]** ▼"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
