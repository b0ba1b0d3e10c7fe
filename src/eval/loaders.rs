//! Loading real and simulated conversations into one [`Corpus`] shape.
//!
//! Supported inputs:
//! * IARD `iard.json` and INSPIRED `dialogs.tsv` ([`load_real`], through
//!   [`crate::corpus`]): turns as replay sees them (a speaker's consecutive
//!   utterances merged, movie mentions `@187028 <It  (2017)>` as `It`);
//!   IARD seeker turns keep their sub-intent labels.
//! * usersim JSONL ([`load_usersim_jsonl`]): one conversation per line with
//!   `turns[{role,text,latents{intent}}]`; `user` is the seeker.
//! * chat JSONL ([`load_chat_jsonl`]): `{"messages":[{role,content}],
//!   "metadata":{..}}`; `user` is the seeker, `system` messages are dropped.
//!
//! [`load_auto`] picks the loader from the extension and, for `.jsonl`, from
//! the first non-empty line. Errors name the file, the line and the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::corpus::{self, CorpusError, CorpusKind, Speaker};

/// Errors while loading a corpus.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Malformed JSON.
    #[error("{path}:{line}: invalid JSON: {source}")]
    Json {
        /// File.
        path: PathBuf,
        /// 1-based line (1 for whole-file JSON).
        line: usize,
        /// Cause.
        source: serde_json::Error,
    },
    /// A field is missing or has the wrong type.
    #[error("{path}:{line}: field `{field}`: {problem}")]
    Field {
        /// File.
        path: PathBuf,
        /// 1-based line (0 if unknown).
        line: usize,
        /// Field (JSON path such as `turns[3].text`).
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// A real corpus (or the survey beside it) is malformed; the message
    /// names the file, line and field.
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    /// The format could not be recognised.
    #[error("{path}: unrecognised corpus format: {problem}")]
    UnknownFormat {
        /// File.
        path: PathBuf,
        /// Why.
        problem: String,
    },
}

/// One turn of a dialogue.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalTurn {
    /// Whether the seeker (user) speaks.
    pub seeker: bool,
    /// Text with markup removed.
    pub text: String,
    /// Real intent labels (IARD) or the requested intent (simulation).
    pub intents: Vec<String>,
}

/// One dialogue.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalDialogue {
    /// Identifier.
    pub id: String,
    /// Turns in order.
    pub turns: Vec<EvalTurn>,
    /// Session latents (simulation) or metadata (real data), `Null` if none.
    pub latents: Value,
    /// What is known about the real seeker: INSPIRED's survey answers (age
    /// group, gender, Big-Five scores) for a real dialogue, or for a
    /// simulated one replayed from it (`replay.seeker`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub profile: BTreeMap<String, Value>,
}

/// A set of dialogues.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Corpus {
    /// Dialogues in file order.
    pub dialogues: Vec<EvalDialogue>,
}

/// Input formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CorpusFormat {
    /// IARD JSON.
    Iard,
    /// INSPIRED dialogs TSV.
    Inspired,
    /// usersim conversation JSONL.
    UsersimJsonl,
    /// Chat-messages JSONL.
    Chat,
}

impl Corpus {
    /// Seeker turns' texts, in order.
    pub fn seeker_texts(&self) -> Vec<String> {
        self.seeker_turns().map(|t| t.text.clone()).collect()
    }

    /// The dialogue index of each seeker turn, in the order of
    /// [`Corpus::seeker_turns`].
    pub fn seeker_turn_dialogues(&self) -> Vec<usize> {
        self.dialogues
            .iter()
            .enumerate()
            .flat_map(|(k, d)| d.turns.iter().filter(|t| t.seeker).map(move |_| k))
            .collect()
    }

    /// Seeker turns, in order.
    pub fn seeker_turns(&self) -> impl Iterator<Item = &EvalTurn> {
        self.dialogues
            .iter()
            .flat_map(|d| d.turns.iter().filter(|t| t.seeker))
    }

    /// One text per dialogue: its seeker turns joined by newlines.
    pub fn seeker_conversations(&self) -> Vec<String> {
        self.dialogues
            .iter()
            .map(|d| {
                d.turns
                    .iter()
                    .filter(|t| t.seeker)
                    .map(|t| t.text.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect()
    }

    /// Number of seeker turns.
    pub fn n_seeker_turns(&self) -> usize {
        self.seeker_turns().count()
    }
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn field_err(
    path: &Path,
    line: usize,
    field: impl Into<String>,
    problem: impl Into<String>,
) -> LoadError {
    LoadError::Field {
        path: path.to_path_buf(),
        line,
        field: field.into(),
        problem: problem.into(),
    }
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Loads a real corpus (IARD `.json`, INSPIRED `.tsv`) through
/// [`crate::corpus`], the crate's one reader of real dialogues: turns are
/// [`crate::corpus::Dialogue::turns`] (a speaker's consecutive utterances
/// merged, mentions as titles), exactly as replay sees them; IARD turns
/// keep their labels, INSPIRED seekers their survey profile.
pub fn load_real(path: &Path, kind: CorpusKind) -> Result<Corpus, LoadError> {
    let dialogues = corpus::load_as(path, kind)?;
    Ok(Corpus {
        dialogues: dialogues
            .into_iter()
            .map(|d| EvalDialogue {
                turns: d
                    .turns()
                    .into_iter()
                    .map(|t| EvalTurn {
                        seeker: t.speaker == Speaker::Seeker,
                        text: t.text,
                        intents: t.labels,
                    })
                    .collect(),
                id: d.id,
                latents: Value::Object(d.meta),
                profile: d.profile,
            })
            .collect(),
    })
}

fn parse_jsonl<F>(path: &Path, mut each: F) -> Result<Corpus, LoadError>
where
    F: FnMut(&Value, usize) -> Result<EvalDialogue, LoadError>,
{
    let text = read(path)?;
    let mut dialogues = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|source| LoadError::Json {
            path: path.to_path_buf(),
            line: i + 1,
            source,
        })?;
        dialogues.push(each(&v, i + 1)?);
    }
    Ok(Corpus { dialogues })
}

/// Loads usersim conversation JSONL. A turn's requested intent is read from
/// `latents.intent` (string) or `latents.intents` (list); a replayed turn
/// takes its real turn's intents (`real.intents`) instead.
pub fn load_usersim_jsonl(path: &Path) -> Result<Corpus, LoadError> {
    parse_jsonl(path, |v, line| {
        let id = match v.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => format!("line{line}"),
        };
        let turns_v = v
            .get("turns")
            .and_then(Value::as_array)
            .ok_or_else(|| field_err(path, line, "turns", "missing or not an array"))?;
        let mut turns = Vec::with_capacity(turns_v.len());
        for (k, t) in turns_v.iter().enumerate() {
            let role = t.get("role").and_then(Value::as_str).ok_or_else(|| {
                field_err(
                    path,
                    line,
                    format!("turns[{k}].role"),
                    "missing or not a string",
                )
            })?;
            let text = t.get("text").and_then(Value::as_str).ok_or_else(|| {
                field_err(
                    path,
                    line,
                    format!("turns[{k}].text"),
                    "missing or not a string",
                )
            })?;
            let seeker = match role {
                "user" => true,
                "assistant" | "system" => false,
                other => {
                    return Err(field_err(
                        path,
                        line,
                        format!("turns[{k}].role"),
                        format!("unknown role `{other}`"),
                    ))
                }
            };
            let lat = t.get("latents");
            // A replayed turn is scored against the real turn it stands for
            // (steered or not, so controlled and uncontrolled replays are
            // scored alike); a free one against what was requested.
            let mut intents = str_list(t.get("real").and_then(|r| r.get("intents")));
            if intents.is_empty() {
                intents = str_list(lat.and_then(|l| l.get("intent")));
                intents.extend(str_list(lat.and_then(|l| l.get("intents"))));
            }
            turns.push(EvalTurn {
                seeker,
                text: text.to_string(),
                intents,
            });
        }
        let mut latents = v.get("latents").cloned().unwrap_or(Value::Null);
        if let (Value::Object(m), Some(e)) = (&mut latents, v.get("end_reason")) {
            m.entry("end_reason").or_insert(e.clone());
        }
        let profile = v
            .get("replay")
            .and_then(|r| r.get("seeker"))
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        Ok(EvalDialogue {
            id,
            turns,
            latents,
            profile,
        })
    })
}

/// Loads chat JSONL; `metadata` becomes the latents; a message may
/// carry an `intent` field.
pub fn load_chat_jsonl(path: &Path) -> Result<Corpus, LoadError> {
    parse_jsonl(path, |v, line| {
        let msgs = v
            .get("messages")
            .and_then(Value::as_array)
            .ok_or_else(|| field_err(path, line, "messages", "missing or not an array"))?;
        let mut turns = Vec::new();
        for (k, m) in msgs.iter().enumerate() {
            let role = m.get("role").and_then(Value::as_str).ok_or_else(|| {
                field_err(
                    path,
                    line,
                    format!("messages[{k}].role"),
                    "missing or not a string",
                )
            })?;
            let content = m.get("content").and_then(Value::as_str).ok_or_else(|| {
                field_err(
                    path,
                    line,
                    format!("messages[{k}].content"),
                    "missing or not a string",
                )
            })?;
            let seeker = match role {
                "system" => continue,
                "user" => true,
                "assistant" => false,
                other => {
                    return Err(field_err(
                        path,
                        line,
                        format!("messages[{k}].role"),
                        format!("unknown role `{other}`"),
                    ))
                }
            };
            turns.push(EvalTurn {
                seeker,
                text: content.to_string(),
                intents: str_list(m.get("intent")),
            });
        }
        let latents = v.get("metadata").cloned().unwrap_or(Value::Null);
        let id = latents
            .get("id")
            .and_then(|x| {
                x.as_str()
                    .map(str::to_string)
                    .or_else(|| x.as_u64().map(|n| n.to_string()))
            })
            .unwrap_or_else(|| format!("line{line}"));
        Ok(EvalDialogue {
            id,
            turns,
            latents,
            profile: BTreeMap::new(),
        })
    })
}

/// Detects the format of `path`: `.json` → IARD, `.tsv` → INSPIRED, `.jsonl`
/// → by the keys of the first non-empty line (`messages` or `turns`).
pub fn detect_format(path: &Path) -> Result<CorpusFormat, LoadError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "json" => return Ok(CorpusFormat::Iard),
        "tsv" => return Ok(CorpusFormat::Inspired),
        _ => {}
    }
    let text = read(path)?;
    let Some((i, first)) = text.lines().enumerate().find(|(_, l)| !l.trim().is_empty()) else {
        return Err(LoadError::UnknownFormat {
            path: path.to_path_buf(),
            problem: "empty file".into(),
        });
    };
    if first.starts_with("dialog_id\t") {
        return Ok(CorpusFormat::Inspired);
    }
    let v: Value = serde_json::from_str(first).map_err(|source| LoadError::Json {
        path: path.to_path_buf(),
        line: i + 1,
        source,
    })?;
    if v.get("messages").is_some() {
        Ok(CorpusFormat::Chat)
    } else if v.get("turns").is_some() {
        Ok(CorpusFormat::UsersimJsonl)
    } else if v
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(|d| d.get("dialogue_info"))
        .is_some()
    {
        Ok(CorpusFormat::Iard)
    } else {
        Err(LoadError::UnknownFormat {
            path: path.to_path_buf(),
            problem: "first line has neither `messages` nor `turns`".into(),
        })
    }
}

/// Loads `path` with the loader chosen by [`detect_format`].
pub fn load_auto(path: &Path) -> Result<Corpus, LoadError> {
    match detect_format(path)? {
        CorpusFormat::Iard => load_real(path, CorpusKind::Iard),
        CorpusFormat::Inspired => load_real(path, CorpusKind::Inspired),
        CorpusFormat::UsersimJsonl => load_usersim_jsonl(path),
        CorpusFormat::Chat => load_chat_jsonl(path),
    }
}

/// Counts, over the corpus's seeker turns, how often each intent label occurs.
pub fn intent_counts(c: &Corpus) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for t in c.seeker_turns() {
        for l in &t.intents {
            *m.entry(l.clone()).or_insert(0.0) += 1.0;
        }
    }
    m
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Path of the shared IARD file.
    pub(crate) const IARD: &str =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/iard/iard.json");
    /// Path of the shared INSPIRED file.
    pub(crate) const INSPIRED: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/inspired/dialogs.tsv"
    );

    fn tmp(name: &str, body: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("eval_dev_test_{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join(name);
        std::fs::write(&p, body).expect("write temp file");
        p
    }

    /// Dialogues and seeker turns of the IARD file, counted from its JSON
    /// here (a seeker turn starts at a seeker utterance whose predecessor
    /// is not the seeker's), without the crate's reader.
    fn iard_counts_from_json() -> (usize, usize) {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(IARD).unwrap()).unwrap();
        let dialogues = v.as_object().unwrap();
        let mut turns = 0;
        for d in dialogues.values() {
            let mut utts: Vec<(u64, bool)> = d["dialogue_info"]
                .as_object()
                .unwrap()
                .values()
                .map(|u| (u["utterance_pos"].as_u64().unwrap(), u["role"] == "seeker"))
                .collect();
            utts.sort();
            let mut prev = false;
            for (_, seeker) in utts {
                turns += usize::from(seeker && !prev);
                prev = seeker;
            }
        }
        (dialogues.len(), turns)
    }

    #[test]
    fn loads_iard() {
        let c = load_auto(Path::new(IARD)).unwrap();
        let (dialogues, seeker_turns) = iard_counts_from_json();
        assert_eq!(c.dialogues.len(), dialogues);
        assert_eq!(c.n_seeker_turns(), seeker_turns);
        let d = c.dialogues.iter().find(|d| d.id == "474").unwrap();
        assert_eq!(d.turns[0].text, "Hi can you help me find a movie to watch");
        assert_eq!(d.turns[0].intents, vec!["OTH", "IQU"]);
        assert!(d.turns[0].seeker && !d.turns[1].seeker);
        assert_eq!(d.turns[1].text, "Yes, how about It ?");
        // Turns alternate speakers, as in replay.
        assert!(c
            .dialogues
            .iter()
            .all(|d| d.turns.windows(2).all(|w| w[0].seeker != w[1].seeker)));
    }

    #[test]
    fn loads_inspired() {
        let c = load_auto(Path::new(INSPIRED)).unwrap();
        let ids: std::collections::BTreeSet<String> = std::fs::read_to_string(INSPIRED)
            .unwrap()
            .lines()
            .skip(1)
            .filter_map(|l| l.split('\t').next().map(str::to_string))
            .filter(|id| !id.is_empty())
            .collect();
        assert_eq!(c.dialogues.len(), ids.len());
        let d = &c.dialogues[0];
        assert_eq!(d.turns[1].text, "I'm well, thanks");
        assert!(d.turns[1].seeker && !d.turns[0].seeker);
        // merged turns alternate speakers
        assert!(c
            .dialogues
            .iter()
            .all(|d| d.turns.windows(2).all(|w| w[0].seeker != w[1].seeker)));
    }

    #[test]
    fn loads_jsonl_formats_and_reports_errors() {
        let p = tmp(
            "sim.jsonl",
            r#"{"id":"a","session_index":0,"latents":{"age_group":"teen"},"turns":[{"role":"user","text":"hi","latents":{"intent":"IQU"},"tokens":3},{"role":"assistant","text":"hello","tokens":2}],"end_reason":"user_left"}"#,
        );
        let c = load_auto(&p).unwrap();
        assert_eq!(c.dialogues[0].turns[0].intents, vec!["IQU"]);
        assert_eq!(c.dialogues[0].latents["end_reason"], "user_left");
        // Replay: turns are scored against the real turn's intents, steered
        // or not; the source's seeker survey is the profile.
        let p = tmp(
            "replay.jsonl",
            r#"{"id":"r","turns":[{"role":"user","text":"a","latents":{"intent":"REJ"},"real":{"text":"x","intents":["REJ","CRI-A"]}},{"role":"assistant","text":"b"},{"role":"user","text":"c","real":{"text":"y","intents":["OTH","IQU"]}}],"replay":{"corpus":"inspired","dialogue_id":"d","seeker":{"gender":"Female","Open":3.5}}}"#,
        );
        let c = load_auto(&p).unwrap();
        let t = &c.dialogues[0].turns;
        assert_eq!(
            (t[0].intents.clone(), t[2].intents.clone()),
            (
                vec!["REJ".to_string(), "CRI-A".to_string()],
                vec!["OTH".to_string(), "IQU".to_string()]
            )
        );
        assert_eq!(c.dialogues[0].profile["gender"], "Female");
        let p = tmp(
            "chat.jsonl",
            "{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}],\"metadata\":{\"id\":\"x\"}}\n",
        );
        let c = load_auto(&p).unwrap();
        assert_eq!(c.dialogues[0].id, "x");
        assert_eq!(c.dialogues[0].turns.len(), 2);
        assert_eq!(c.seeker_texts(), vec!["hi"]);
        let p = tmp(
            "bad.jsonl",
            "{\"turns\":[]}\n{\"turns\":[{\"role\":\"user\"}]}\n",
        );
        let e = load_auto(&p).unwrap_err().to_string();
        assert!(
            e.contains("bad.jsonl:2") && e.contains("turns[0].text"),
            "{e}"
        );
        let p = tmp("bad2.jsonl", "{\"turns\":[]}\nnot json\n");
        assert!(load_auto(&p)
            .unwrap_err()
            .to_string()
            .contains("bad2.jsonl:2"));
    }
}
