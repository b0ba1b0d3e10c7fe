//! IARD (`iard.json`): ReDial dialogues with a sub-intent (seeker) or
//! action (recommender) label list on every utterance.
//!
//! Invariant: dialogues come in numeric id order, utterances in
//! `utterance_pos` order, texts as in the file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{CorpusError, Dialogue, Speaker, Utterance};

#[derive(Deserialize)]
struct IardDialogue {
    dialogue_info: BTreeMap<String, IardUtterance>,
    #[serde(default)]
    accepted_recommendation: Option<serde_json::Value>,
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
        let mut meta = serde_json::Map::new();
        if let Some(a) = d.accepted_recommendation {
            meta.insert("accepted_recommendation".into(), a);
        }
        out.push(Dialogue {
            id,
            meta,
            profile: BTreeMap::new(),
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
