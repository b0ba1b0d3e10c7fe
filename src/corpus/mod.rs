//! Real human conversations: the one reader of the reference corpora.
//!
//! IARD (ReDial dialogues with per-utterance intent labels, [`iard`]) and
//! INSPIRED (no intent labels, seeker surveys beside it, [`inspired`]) feed
//! `simulate --replay`, `fit-intents` and `eval` alike. Corpora are read
//! from a path, never copied into the project.
//!
//! Invariant: a [`Dialogue`] keeps the source's utterances as they are (one
//! per IARD utterance or INSPIRED row, text untouched), and
//! [`Dialogue::turns`] is the only place where a speaker's consecutive
//! utterances become one turn, so replay and eval count turns the same way.

pub mod iard;
pub mod inspired;
pub mod pool;

pub use iard::load_iard;
pub use inspired::{
    load_inspired, load_inspired_survey, SurveyAnswers, INSPIRED_BIG_FIVE, INSPIRED_SURVEY_ANSWERS,
    INSPIRED_SURVEY_FIELDS,
};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The 16 seeker intents of the IARD taxonomy.
pub const IARD_SEEKER_INTENTS: [&str; 16] = [
    "IQU", "CON", "REF", "STO", "PRO", "ANS", "ASK", "SEE", "ACC", "REJ", "INQ", "CRI-F", "CRI-A",
    "CRI-C", "NRE", "OTH",
];

/// Errors reading a corpus.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// Unreadable file.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// A row of a line-oriented file is malformed.
    #[error("{path}:{line}: {field}: {message}")]
    Row {
        /// File.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Column or field.
        field: String,
        /// What was wrong.
        message: String,
    },
    /// Not the expected format.
    #[error("{path}: {message}")]
    Format {
        /// File.
        path: PathBuf,
        /// What was wrong, naming the dialogue or field.
        message: String,
    },
}

/// Which reference corpus a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CorpusKind {
    /// IARD `iard.json`.
    Iard,
    /// INSPIRED `dialogs.tsv`.
    Inspired,
}

impl CorpusKind {
    /// The corpus of `path`, from its extension: `.json` is IARD, `.tsv`
    /// INSPIRED.
    pub fn of_path(path: &Path) -> Result<CorpusKind, CorpusError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Ok(CorpusKind::Iard),
            Some(e) if e.eq_ignore_ascii_case("tsv") => Ok(CorpusKind::Inspired),
            _ => Err(CorpusError::Format {
                path: path.to_path_buf(),
                message: "unknown corpus: expected IARD `.json` or INSPIRED `.tsv`".into(),
            }),
        }
    }
}

/// Load the dialogues of an IARD `.json` or INSPIRED `.tsv` file; an
/// INSPIRED seeker's survey answers (files beside `dialogs.tsv`, when
/// there) go into its dialogue's `profile`.
pub fn load_dialogues(path: &Path) -> Result<(CorpusKind, Vec<Dialogue>), CorpusError> {
    let kind = CorpusKind::of_path(path)?;
    Ok((kind, load_as(path, kind)?))
}

/// [`load_dialogues`] of a file whose corpus is known.
pub fn load_as(path: &Path, kind: CorpusKind) -> Result<Vec<Dialogue>, CorpusError> {
    let dialogues = match kind {
        CorpusKind::Iard => load_iard(path)?,
        CorpusKind::Inspired => {
            let mut dialogues = load_inspired(path)?;
            if let Some(mut survey) = load_inspired_survey(path)? {
                for d in &mut dialogues {
                    if let Some(p) = survey.remove(&d.id) {
                        d.profile = p;
                    }
                }
            }
            dialogues
        }
    };
    Ok(dialogues)
}

/// Who spoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    /// The person looking for a recommendation (the simulated role).
    Seeker,
    /// The person recommending.
    Recommender,
}

/// One utterance of a real dialogue.
#[derive(Clone, Debug)]
pub struct Utterance {
    /// Speaker.
    pub speaker: Speaker,
    /// Text (movie mentions as in the source).
    pub text: String,
    /// Sub-intent (seeker) or action (recommender) labels.
    pub labels: Vec<String>,
}

impl Utterance {
    /// An utterance with its labels.
    pub fn new(speaker: Speaker, text: &str, labels: &[&str]) -> Utterance {
        Utterance {
            speaker,
            text: text.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
        }
    }
}

/// One real dialogue.
#[derive(Clone, Debug, Default)]
pub struct Dialogue {
    /// Id in the source corpus.
    pub id: String,
    /// Utterances in order.
    pub utterances: Vec<Utterance>,
    /// What the corpus says of the dialogue as a whole (IARD's
    /// `accepted_recommendation`, INSPIRED's `fine_label` and
    /// `coarse_label`).
    pub meta: serde_json::Map<String, serde_json::Value>,
    /// What is known about the real seeker (INSPIRED's survey: age group,
    /// gender, Big-Five scores); empty when nothing is.
    pub profile: BTreeMap<String, serde_json::Value>,
}

/// One turn: a speaker's consecutive utterances, as a conversation
/// alternates sides.
#[derive(Clone, Debug, PartialEq)]
pub struct Turn {
    /// Speaker.
    pub speaker: Speaker,
    /// The utterances' texts with ReDial mentions shown as titles
    /// ([`strip_mentions`]), joined by a space.
    pub text: String,
    /// Their labels, each once, in order of first appearance.
    pub labels: Vec<String>,
    /// The titles its ReDial mention markup names, each once, in order
    /// (empty for a corpus without markup).
    pub mentions: Vec<String>,
}

impl Dialogue {
    /// The dialogue as turns: a speaker's consecutive utterances merged
    /// (INSPIRED defines a turn that way, and one message is often split
    /// over several rows); utterances empty after [`strip_mentions`] are
    /// left out.
    pub fn turns(&self) -> Vec<Turn> {
        let mut turns: Vec<Turn> = Vec::new();
        for u in &self.utterances {
            let (text, mentions) = split_mentions(&u.text);
            if text.is_empty() {
                continue;
            }
            let turn = match turns.last_mut() {
                Some(t) if t.speaker == u.speaker => {
                    t.text.push(' ');
                    t.text.push_str(&text);
                    t
                }
                _ => {
                    turns.push(Turn {
                        speaker: u.speaker,
                        text,
                        labels: Vec::new(),
                        mentions: Vec::new(),
                    });
                    turns.last_mut().expect("just pushed")
                }
            };
            for l in &u.labels {
                if !turn.labels.contains(l) {
                    turn.labels.push(l.clone());
                }
            }
            for m in mentions {
                if !turn.mentions.contains(&m) {
                    turn.mentions.push(m);
                }
            }
        }
        turns
    }
}

/// Lower-cased words with punctuation trimmed from both ends (apostrophes
/// kept): what the role guard's and the copy guard's word n-grams are made
/// of, for generated and real turns alike.
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Replaces ReDial mention markup `@123 <Title  (2017)>` by `Title` and
/// collapses runs of whitespace.
pub fn strip_mentions(text: &str) -> String {
    split_mentions(text).0
}

/// [`strip_mentions`]'s text, and the titles the markup named, in order.
pub fn split_mentions(text: &str) -> (String, Vec<String>) {
    let mut titles = Vec::new();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        let after = &rest[at + 1..];
        let digits = after.chars().take_while(|c| c.is_ascii_digit()).count();
        let tail = after[digits..].trim_start();
        if digits > 0 && tail.starts_with('<') {
            if let Some(close) = tail.find('>') {
                out.push_str(&rest[..at]);
                let mut title = tail[1..close].trim().to_string();
                // drop a trailing "(year)"
                if let Some(open) = title.rfind('(') {
                    let inner = title[open + 1..].trim_end_matches(')');
                    if title.ends_with(')')
                        && !inner.is_empty()
                        && inner.chars().all(|c| c.is_ascii_digit())
                    {
                        title.truncate(open);
                    }
                }
                out.push_str(title.trim());
                if !title.trim().is_empty() {
                    titles.push(title.trim().to_string());
                }
                rest = &tail[close + 1..];
                continue;
            }
        }
        out.push_str(&rest[..=at]);
        rest = after;
    }
    out.push_str(rest);
    (out.split_whitespace().collect::<Vec<_>>().join(" "), titles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_merge_a_speakers_consecutive_utterances() {
        use Speaker::{Recommender as R, Seeker as S};
        let d = Dialogue {
            utterances: vec![
                Utterance::new(R, "Hi!", &[]),
                Utterance::new(S, "I like @111 <Heat  (1995)>", &["IQU", "CRI-A"]),
                Utterance::new(S, "and  crime", &["CRI-A", "REF"]),
                Utterance::new(S, "@ ", &["OTH"]),
                Utterance::new(R, "Try it", &[]),
            ],
            ..Dialogue::default()
        };
        let t = d.turns();
        assert_eq!(t.len(), 3);
        assert_eq!(t[1].text, "I like Heat and crime @");
        assert_eq!(t[1].labels, ["IQU", "CRI-A", "REF", "OTH"]);
        assert_eq!((t[0].speaker, t[2].speaker), (R, R));
        let empty = Dialogue {
            utterances: vec![
                Utterance::new(S, "  ", &["OTH"]),
                Utterance::new(S, "ok", &[]),
            ],
            ..Dialogue::default()
        };
        assert_eq!(
            empty.turns()[0].labels,
            Vec::<String>::new(),
            "an empty utterance is left out with its labels"
        );
    }

    #[test]
    fn mentions_become_titles() {
        assert_eq!(strip_mentions("see @187028 <It  (2017)> now"), "see It now");
        assert_eq!(strip_mentions("@12 <Alien>"), "Alien");
        assert_eq!(
            split_mentions("try @1 <Heat  (1995)> or @2 <Alien> again"),
            (
                "try Heat or Alien again".to_string(),
                vec!["Heat".to_string(), "Alien".to_string()]
            )
        );
        assert_eq!(strip_mentions("mail me @ home"), "mail me @ home");
    }

    #[test]
    fn corpus_kind_from_extension() {
        assert_eq!(
            CorpusKind::of_path(Path::new("x/iard.json")).ok(),
            Some(CorpusKind::Iard)
        );
        assert_eq!(
            CorpusKind::of_path(Path::new("d.TSV")).ok(),
            Some(CorpusKind::Inspired)
        );
        let e = CorpusKind::of_path(Path::new("d.csv"))
            .expect_err("csv")
            .to_string();
        assert!(e.starts_with("d.csv: unknown corpus"), "{e}");
    }
}
