//! INSPIRED (`dialogs.tsv`, one utterance per row) and the seeker surveys
//! published beside it (demographics and Big-Five scores).
//!
//! Invariant: dialogues in file order, a dialogue's rows contiguous; every
//! malformed row is an error naming `file:line: field`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{CorpusError, Dialogue, Speaker, Utterance};

/// Load INSPIRED `dialogs.tsv`: one utterance per row, dialogues in file
/// order, rows with empty text skipped. INSPIRED carries no seeker intent
/// labels, so `labels` stay empty.
pub fn load_inspired(path: &Path) -> Result<Vec<Dialogue>, CorpusError> {
    let text = std::fs::read_to_string(path).map_err(|source| CorpusError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let row_err = |line: usize, field: &str, message: String| CorpusError::Row {
        path: path.to_path_buf(),
        line,
        field: field.to_string(),
        message,
    };
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = match lines.next() {
        Some((_, h)) => h.split('\t').map(str::trim).collect(),
        None => return Err(row_err(1, "header", "empty file".into())),
    };
    let col = |name: &str| -> Result<usize, CorpusError> {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| row_err(1, name, "column missing from the header".into()))
    };
    let (c_id, c_spk, c_text) = (col("dialog_id")?, col("speaker")?, col("text")?);
    // The dialogue's outcome, where the file has it.
    let c_labels: Vec<(usize, &str)> = ["fine_label", "coarse_label"]
        .into_iter()
        .filter_map(|name| header.iter().position(|h| *h == name).map(|c| (c, name)))
        .collect();
    let mut out: Vec<Dialogue> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, row) in lines {
        let line = i + 1;
        if row.trim().is_empty() {
            continue;
        }
        // No quoting: INSPIRED texts contain bare quotes, and tabs only
        // separate columns.
        let cells: Vec<&str> = row.split('\t').collect();
        let get = |c: usize, name: &str| {
            cells.get(c).copied().ok_or_else(|| {
                row_err(
                    line,
                    name,
                    format!(
                        "missing: the row has {} columns, the header {}",
                        cells.len(),
                        header.len()
                    ),
                )
            })
        };
        let id = get(c_id, "dialog_id")?.trim();
        if id.is_empty() {
            return Err(row_err(line, "dialog_id", "empty".into()));
        }
        let speaker = match get(c_spk, "speaker")?.trim() {
            "SEEKER" => Speaker::Seeker,
            "RECOMMENDER" => Speaker::Recommender,
            other => {
                return Err(row_err(
                    line,
                    "speaker",
                    format!("expected SEEKER or RECOMMENDER, found `{other}`"),
                ))
            }
        };
        let utt = get(c_text, "text")?.trim();
        if out.last().is_none_or(|d| d.id != id) {
            // A dialogue's rows are contiguous; a repeated id means the file
            // was shuffled or concatenated and turns would interleave.
            if !seen.insert(id.to_string()) {
                return Err(row_err(
                    line,
                    "dialog_id",
                    format!("dialogue `{id}` continues after other dialogues"),
                ));
            }
            let mut meta = serde_json::Map::new();
            for (c, name) in &c_labels {
                if let Some(v) = cells.get(*c).map(|v| v.trim()).filter(|v| !v.is_empty()) {
                    meta.insert(name.to_string(), serde_json::Value::String(v.to_string()));
                }
            }
            out.push(Dialogue {
                id: id.to_string(),
                meta,
                ..Dialogue::default()
            });
        }
        if utt.is_empty() {
            continue;
        }
        if let Some(d) = out.last_mut() {
            d.utterances.push(Utterance {
                speaker,
                text: utt.to_string(),
                labels: Vec::new(),
            });
        }
    }
    Ok(out)
}

/// Survey answers of an INSPIRED seeker that a scenario may map onto
/// session variables (`[[replay.inspired]]`).
pub const INSPIRED_SURVEY_FIELDS: [&str; 2] = ["age_group", "gender"];

/// The answers INSPIRED's survey offers for each of
/// [`INSPIRED_SURVEY_FIELDS`]. A few rows of the published file are shifted
/// by a column (a gender of `Caucasian`); answers outside these are dropped.
pub const INSPIRED_SURVEY_ANSWERS: [(&str, &[&str]); 2] = [
    (
        "age_group",
        &[
            "12 or younger",
            "12 - 17",
            "18 - 24",
            "25 - 34",
            "35 - 44",
            "45 - 54",
            "55 - 74",
            "75 or older",
        ],
    ),
    ("gender", &["Female", "Male", "Other"]),
];

/// Big-Five traits of `seeker_personality.tsv` (scores 1–6).
pub const INSPIRED_BIG_FIVE: [&str; 5] = [
    "Extrovert",
    "Agreeable",
    "Conscientious",
    "Neurotic",
    "Open",
];

/// Per dialogue id, its seeker's survey answers by field.
pub type SurveyAnswers = BTreeMap<String, BTreeMap<String, serde_json::Value>>;

/// A tab-separated file without quoting: its rows with their line numbers.
struct Tsv {
    path: PathBuf,
    header: Vec<String>,
    rows: Vec<(usize, Vec<String>)>,
}

impl Tsv {
    fn read(path: &Path) -> Result<Tsv, CorpusError> {
        let text = std::fs::read_to_string(path).map_err(|source| CorpusError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut lines = text.lines().enumerate();
        let header = lines
            .next()
            .map(|(_, h)| h.split('\t').map(|c| c.trim().to_string()).collect())
            .unwrap_or_default();
        let rows = lines
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, l.split('\t').map(|c| c.trim().to_string()).collect()))
            .collect();
        Ok(Tsv {
            path: path.to_path_buf(),
            header,
            rows,
        })
    }

    fn col(&self, name: &str) -> Result<usize, CorpusError> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| CorpusError::Row {
                path: self.path.clone(),
                line: 1,
                field: name.to_string(),
                message: "column missing from the header".into(),
            })
    }
}

/// What INSPIRED's surveys say about the seeker of each dialogue, keyed by
/// dialogue id: [`INSPIRED_SURVEY_FIELDS`] as strings and
/// [`INSPIRED_BIG_FIVE`] as numbers. Read from the files beside
/// `dialogs.tsv`; `None` when they are not there. A seeker without a survey
/// row (or with a short one: some rows of the published file are shifted)
/// simply has fewer answers.
pub fn load_inspired_survey(dialogs: &Path) -> Result<Option<SurveyAnswers>, CorpusError> {
    let dir = dialogs.parent().unwrap_or(Path::new("."));
    let ids_path = dir.join("list_of_dialog_ids_with_movie_id_all.tsv");
    let demo_path = dir.join("seeker_demographic.tsv");
    let pers_path = dir.join("seeker_personality.tsv");
    if !ids_path.is_file() || !demo_path.is_file() {
        return Ok(None);
    }
    let ids = Tsv::read(&ids_path)?;
    let demo = Tsv::read(&demo_path)?;
    let (i_dialog, i_survey) = (ids.col("dialog_id")?, ids.col("seek_survey_id")?);
    let (d_survey, d_seeker) = (demo.col("seeker_survey_id")?, demo.col("seeker_id")?);
    let d_fields: Vec<(&str, usize)> = INSPIRED_SURVEY_FIELDS
        .iter()
        .map(|f| Ok((*f, demo.col(f)?)))
        .collect::<Result<_, CorpusError>>()?;
    let mut personality: BTreeMap<&str, Vec<(&str, f64)>> = BTreeMap::new();
    let pers = if pers_path.is_file() {
        Some(Tsv::read(&pers_path)?)
    } else {
        None
    };
    if let Some(p) = &pers {
        let p_user = p.col("User_ID")?;
        let traits: Vec<(&str, usize)> = INSPIRED_BIG_FIVE
            .iter()
            .map(|t| Ok((*t, p.col(t)?)))
            .collect::<Result<_, CorpusError>>()?;
        for (line, row) in &p.rows {
            let Some(user) = row.get(p_user) else {
                continue;
            };
            let mut scores = Vec::new();
            for (t, c) in &traits {
                let Some(cell) = row.get(*c) else { continue };
                let v: f64 = cell.parse().map_err(|_| CorpusError::Row {
                    path: p.path.clone(),
                    line: *line,
                    field: t.to_string(),
                    message: format!("expected a number, found `{cell}`"),
                })?;
                scores.push((*t, (v * 1000.0).round() / 1000.0));
            }
            personality.insert(user, scores);
        }
    }
    let mut by_survey: BTreeMap<&str, &Vec<String>> = BTreeMap::new();
    for (_, row) in &demo.rows {
        if let Some(id) = row.get(d_survey) {
            by_survey.entry(id).or_insert(row);
        }
    }
    let mut out = BTreeMap::new();
    for (_, row) in &ids.rows {
        let (Some(dialog), Some(survey)) = (row.get(i_dialog), row.get(i_survey)) else {
            continue;
        };
        let Some(answers) = by_survey.get(survey.as_str()) else {
            continue;
        };
        let mut seeker = BTreeMap::new();
        for (f, c) in &d_fields {
            let known = INSPIRED_SURVEY_ANSWERS
                .iter()
                .find(|(name, _)| name == f)
                .map_or(&[][..], |(_, a)| *a);
            if let Some(v) = answers.get(*c).filter(|v| known.contains(&v.as_str())) {
                seeker.insert(f.to_string(), serde_json::Value::String(v.clone()));
            }
        }
        if let Some(scores) = answers
            .get(d_seeker)
            .and_then(|s| personality.get(s.as_str()))
        {
            for (t, v) in scores {
                seeker.insert(t.to_string(), serde_json::json!(v));
            }
        }
        out.entry(dialog.clone()).or_insert(seeker);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tsv(body: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("dialogs.tsv");
        std::fs::write(&p, body).expect("write");
        (dir, p)
    }

    #[test]
    fn inspired_rows_group_by_dialogue() {
        let (_d, p) = tsv("dialog_id\tutt_id\tspeaker\ttext\n\
             a\t1\tRECOMMENDER\tHi\n\
             a\t2\tSEEKER\tHello \"there\"\n\
             a\t3\tSEEKER\t\n\
             b\t1\tSEEKER\tYo\n");
        let ds = load_inspired(&p).expect("loads");
        assert_eq!(ds.len(), 2);
        assert_eq!(ds[0].utterances.len(), 2);
        assert_eq!(ds[0].utterances[1].text, "Hello \"there\"");
        assert_eq!(ds[1].utterances[0].speaker, Speaker::Seeker);
    }

    #[test]
    fn inspired_errors_name_line_and_field() {
        let (_d, p) = tsv("dialog_id\tspeaker\ttext\na\tSEEKER\tok\na\tBOT\thi\n");
        let e = load_inspired(&p).expect_err("bad speaker").to_string();
        assert!(
            e.ends_with("dialogs.tsv:3: speaker: expected SEEKER or RECOMMENDER, found `BOT`"),
            "{e}"
        );
        let (_d, p) = tsv("dialog_id\tspeaker\na\tSEEKER\n");
        let e = load_inspired(&p).expect_err("no text column").to_string();
        assert!(e.contains("dialogs.tsv:1: text: column missing"), "{e}");
        let (_d, p) = tsv("dialog_id\tspeaker\ttext\na\tSEEKER\n");
        let e = load_inspired(&p).expect_err("short row").to_string();
        assert!(e.contains("dialogs.tsv:2: text: missing"), "{e}");
        let (_d, p) = tsv("dialog_id\tspeaker\ttext\na\tSEEKER\tx\nb\tSEEKER\ty\na\tSEEKER\tz\n");
        let e = load_inspired(&p).expect_err("interleaved").to_string();
        assert!(e.contains("dialogs.tsv:4: dialog_id"), "{e}");
    }

    #[test]
    fn inspired_survey_joins_dialogue_to_seeker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let w = |f: &str, body: &str| std::fs::write(d.join(f), body).expect("write");
        w("dialogs.tsv", "dialog_id\tspeaker\ttext\nd1\tSEEKER\thi\n");
        w(
            "list_of_dialog_ids_with_movie_id_all.tsv",
            "dialog_id\tseek_survey_id\nd1\ts1\nd2\ts9\n",
        );
        w(
            "seeker_demographic.tsv",
            "seeker_survey_id\tseeker_id\tage_group\tgender\ns1\tu1\t18 - 24\tMale\n",
        );
        let traits = INSPIRED_BIG_FIVE.join("\t");
        w(
            "seeker_personality.tsv",
            &format!("User_ID\t{traits}\nu1\t1\t2\t3\t4\t5.5\n"),
        );
        let s = load_inspired_survey(&d.join("dialogs.tsv"))
            .expect("loads")
            .expect("present");
        assert_eq!(s["d1"]["age_group"], "18 - 24");
        assert_eq!(s["d1"]["Open"], 5.5);
        assert!(!s.contains_key("d2"), "no survey row for s9");
        w(
            "seeker_personality.tsv",
            &format!("User_ID\t{traits}\nu1\t1\tlots\t3\t4\t5\n"),
        );
        let e = load_inspired_survey(&d.join("dialogs.tsv"))
            .expect_err("bad score")
            .to_string();
        assert!(
            e.contains("seeker_personality.tsv:2: Agreeable: expected a number"),
            "{e}"
        );
    }
}
