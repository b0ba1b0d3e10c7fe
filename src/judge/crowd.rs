//! Crowd platforms: the items as a CSV a survey template takes
//! ([`export`]), and the platform's results read back ([`import`]).
//!
//! Invariant: the exported CSV carries no source (its `item_id` is the
//! item's opaque token), and an import stores either every row it was
//! given or, with `skip_bad`, exactly the rows without a problem: a row
//! with an unknown item id, a duplicate (worker, item) pair, a pair already
//! in the study or a malformed field is reported with `file:line` and never
//! merged.
//!
//! Export columns: `item_id` (opaque token), `unit` (`turn` or
//! `conversation`), `context` (the turns shown before the judged turn, or
//! the whole conversation, one `Seeker:`/`Recommender:` line per turn),
//! `context_html` (the same with `<br>` line breaks, escaped), `text` (the
//! judged seeker turn; empty for conversation items).
//!
//! Import columns (a header row; extra columns are ignored, and a prefix up
//! to the last `.` is dropped, so `Input.item_id` and `Answer.verdict` of
//! Mechanical Turk work): `item_id`, `worker_id`, `verdict` (`person` or
//! `simulator`), `confidence` (1–5), `realism` (1–5), and optionally
//! `comment`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::study::{Answer, Item, Study, Verdict};
use super::JudgeError;

/// The transcript of an item's shown turns, one line per turn.
pub fn transcript(item: &Item) -> String {
    let mut lines = Vec::new();
    if item.omitted > 0 {
        lines.push(format!("[{} earlier turns]", item.omitted));
    }
    for t in &item.context {
        let who = if t.seeker { "Seeker" } else { "Recommender" };
        lines.push(format!("{who}: {}", t.text));
    }
    lines.join("\n")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Writes every item of `study` to `path` (whole or not at all); returns
/// the number of rows.
pub fn export(study: &Study, path: &Path) -> Result<usize, JudgeError> {
    let items = study.items()?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let write_err = |e: csv::Error| JudgeError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    };
    w.write_record(["item_id", "unit", "context", "context_html", "text"])
        .map_err(write_err)?;
    for it in &items {
        let context = transcript(it);
        let html = context.lines().map(esc).collect::<Vec<_>>().join("<br>");
        w.write_record([
            it.token.as_str(),
            study.unit.as_str(),
            &context,
            &html,
            it.target.as_deref().unwrap_or(""),
        ])
        .map_err(write_err)?;
    }
    let bytes = w.into_inner().map_err(|e| JudgeError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    crate::atomic::write_atomic(path, &bytes).map_err(|source| JudgeError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(items.len())
}

/// What [`import`] did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ImportReport {
    /// Rows stored.
    pub imported: usize,
    /// Rows left out (with `skip_bad`), each `file:line: problem`.
    pub skipped: Vec<String>,
}

const REQUIRED: [&str; 5] = ["item_id", "worker_id", "verdict", "confidence", "realism"];

/// Reads a crowd platform's results CSV into `study`. With a problem in
/// any row, nothing is stored unless `skip_bad` (then the good rows are,
/// and the report lists the rest).
pub fn import(study: &mut Study, path: &Path, skip_bad: bool) -> Result<ImportReport, JudgeError> {
    let file = std::fs::File::open(path)
        .map_err(|e| JudgeError::Input(format!("{}: cannot read: {e}", path.display())))?;
    let mut r = csv::ReaderBuilder::new().flexible(false).from_reader(file);
    let at = |line: u64, msg: String| format!("{}:{line}: {msg}", path.display());
    let headers = r
        .headers()
        .map_err(|e| JudgeError::Input(format!("{}:1: header: {e}", path.display())))?
        .clone();
    let column: HashMap<String, usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let h = h.trim();
            let name = h.rsplit('.').next().unwrap_or(h).to_ascii_lowercase();
            (name, i)
        })
        .collect();
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|c| !column.contains_key(*c))
        .collect();
    if !missing.is_empty() {
        return Err(JudgeError::Input(at(
            1,
            format!(
                "header: missing column(s) {}; expected {} and optionally comment",
                missing.join(", "),
                REQUIRED.join(", ")
            ),
        )));
    }
    let items: HashMap<String, i64> = study
        .items()?
        .into_iter()
        .map(|i| (i.token, i.id))
        .collect();
    let mut problems: Vec<(u64, String)> = Vec::new();
    let mut good: Vec<(String, i64, Answer)> = Vec::new();
    let mut first_line: BTreeMap<(String, i64), u64> = BTreeMap::new();
    for rec in r.records() {
        let rec = match rec {
            Ok(rec) => rec,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                problems.push((line, format!("malformed row: {e}")));
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| p.line());
        let get = |c: &str| column.get(c).and_then(|&i| rec.get(i)).unwrap_or("").trim();
        let row = (|| -> Result<(String, i64, Answer), String> {
            let token = get("item_id");
            let item = *items
                .get(token)
                .ok_or_else(|| format!("item_id: unknown item id `{token}`"))?;
            let worker = get("worker_id");
            if worker.is_empty() {
                return Err("worker_id: empty, expected the worker's id".into());
            }
            let verdict =
                Verdict::parse(&get("verdict").to_ascii_lowercase()).ok_or_else(|| {
                    format!(
                        "verdict: `{}`, expected `person` or `simulator`",
                        get("verdict")
                    )
                })?;
            let scale = |c: &str| -> Result<u8, String> {
                match get(c).parse::<u8>() {
                    Ok(v @ 1..=5) => Ok(v),
                    _ => Err(format!("{c}: `{}`, expected an integer 1-5", get(c))),
                }
            };
            Ok((
                worker.to_string(),
                item,
                Answer {
                    verdict,
                    confidence: scale("confidence")?,
                    realism: scale("realism")?,
                    comment: get("comment").to_string(),
                },
            ))
        })();
        match row {
            Err(msg) => problems.push((line, msg)),
            Ok((worker, item, answer)) => {
                if let Some(first) = first_line.get(&(worker.clone(), item)) {
                    problems.push((
                        line,
                        format!("duplicate: worker `{worker}` answered this item on line {first}"),
                    ));
                } else if study.has_answer(&format!("crowd:{worker}"), item)? {
                    problems.push((
                        line,
                        format!("worker `{worker}`'s answer on this item is already in the study"),
                    ));
                } else {
                    first_line.insert((worker.clone(), item), line);
                    good.push((worker, item, answer));
                }
            }
        }
    }
    if !problems.is_empty() && !skip_bad {
        let more = if problems.len() > 1 {
            let lines: Vec<String> = problems[1..].iter().map(|(l, _)| l.to_string()).collect();
            format!(
                " (and {} more bad row(s): lines {})",
                problems.len() - 1,
                lines.join(", ")
            )
        } else {
            String::new()
        };
        let (line, msg) = &problems[0];
        return Err(JudgeError::Input(format!(
            "{}{more}; nothing imported (--skip-bad imports the other rows)",
            at(*line, msg.clone())
        )));
    }
    study.import_crowd(&good)?;
    Ok(ImportReport {
        imported: good.len(),
        skipped: problems.into_iter().map(|(l, m)| at(l, m)).collect(),
    })
}
