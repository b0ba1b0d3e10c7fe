//! Real human conversations: loaders for the reference corpora.
//!
//! IARD (ReDial dialogues with per-utterance intent labels) feeds
//! `fit-intents` and the realism measures. Corpora are read from a path,
//! never copied into the project.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
    /// Not the expected format.
    #[error("{path}: {message}")]
    Format {
        /// File.
        path: PathBuf,
        /// What was wrong, naming the dialogue or field.
        message: String,
    },
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

/// One real dialogue.
#[derive(Clone, Debug)]
pub struct Dialogue {
    /// Id in the source corpus.
    pub id: String,
    /// Utterances in order.
    pub utterances: Vec<Utterance>,
}

#[derive(Deserialize)]
struct IardDialogue {
    dialogue_info: BTreeMap<String, IardUtterance>,
}

#[derive(Deserialize)]
struct IardUtterance {
    utterance_pos: u32,
    role: Speaker,
    utterance_text: String,
    #[serde(rename = "sub-intent/action")]
    sub_intent: Vec<String>,
}

/// Load IARD (`iard.json`), dialogues sorted by numeric id.
pub fn load_iard(path: &Path) -> Result<Vec<Dialogue>, CorpusError> {
    let text = std::fs::read_to_string(path).map_err(|source| CorpusError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let raw: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| CorpusError::Format {
            path: path.to_path_buf(),
            message: format!("expected a JSON object of dialogues keyed by id: {e}"),
        })?;
    let mut out = Vec::with_capacity(raw.len());
    for (id, v) in raw {
        let d: IardDialogue = serde_json::from_value(v).map_err(|e| CorpusError::Format {
            path: path.to_path_buf(),
            message: format!("dialogue {id}: {e}"),
        })?;
        let mut utts: Vec<IardUtterance> = d.dialogue_info.into_values().collect();
        utts.sort_by_key(|u| u.utterance_pos);
        out.push(Dialogue {
            id,
            utterances: utts
                .into_iter()
                .map(|u| Utterance {
                    speaker: u.role,
                    text: u.utterance_text,
                    labels: u.sub_intent,
                })
                .collect(),
        });
    }
    out.sort_by(|a, b| {
        let na = a.id.parse::<u64>().ok();
        let nb = b.id.parse::<u64>().ok();
        na.cmp(&nb).then_with(|| a.id.cmp(&b.id))
    });
    Ok(out)
}
