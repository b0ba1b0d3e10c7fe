//! `merge`: join shard outputs into one file ordered by session index.
//!
//! Shards of one run must agree on everything that shapes a conversation
//! (seed, scenario, model, sampling); a gap or a duplicate means a shard
//! is missing or was run twice, and the merge refuses rather than hide it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use crate::conversation::ConversationRecord;
use crate::output::{read_records, render, OutputFormat};

/// Options of `merge`.
#[derive(Clone, Debug)]
pub struct MergeConfig {
    /// Shard files.
    pub inputs: Vec<PathBuf>,
    /// Merged file.
    pub output: PathBuf,
    /// Sessions the run should hold (0..n); without it, 0..=max index.
    pub sessions: Option<u64>,
    /// Overwrite the output.
    pub force: bool,
}

/// What a merge did.
#[derive(Clone, Debug, Serialize)]
pub struct MergeReport {
    /// Conversations written.
    pub conversations: u64,
    /// Per input file, conversations read.
    pub per_input: Vec<(String, u64)>,
}

/// Why a merge was refused.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Reading an input failed.
    #[error("{0}")]
    Read(String),
    /// Inputs disagree on the run configuration (file, session, field,
    /// both values and the file that set the expectation).
    #[error("{0}")]
    Mismatch(String),
    /// A session appears twice.
    #[error("session {index} appears twice: in {first} and {second}")]
    Duplicate {
        /// Session index.
        index: u64,
        /// First file.
        first: String,
        /// Second file.
        second: String,
    },
    /// Sessions are missing.
    #[error("{count} sessions missing (first: {first:?}); is a shard missing or unfinished? (resume it with --resume)")]
    Gaps {
        /// How many.
        count: usize,
        /// The first few.
        first: Vec<u64>,
    },
    /// Output problem.
    #[error("{0}")]
    Write(String),
}

fn identity(r: &ConversationRecord) -> [(&'static str, String); 4] {
    [
        ("seed", r.run_seed.to_string()),
        (
            "scenario",
            format!("{} {}", r.scenario.name, r.scenario.hash),
        ),
        ("model", format!("{} {}", r.model.name, r.model.sha256)),
        (
            "sampling",
            serde_json::to_string(&r.sampling).unwrap_or_default(),
        ),
    ]
}

/// Merge shard files.
pub fn merge(cfg: &MergeConfig) -> Result<MergeReport, MergeError> {
    if cfg.output.exists() && !cfg.force {
        return Err(MergeError::Write(format!(
            "{}: output file exists (use --force to overwrite)",
            cfg.output.display()
        )));
    }
    let mut all: BTreeMap<u64, (String, ConversationRecord)> = BTreeMap::new();
    let mut first: Option<(String, [(&'static str, String); 4])> = None;
    let mut per_input = Vec::new();
    for path in &cfg.inputs {
        let name = path.display().to_string();
        let recs = read_records(path).map_err(MergeError::Read)?;
        per_input.push((name.clone(), recs.len() as u64));
        for r in recs {
            let id = identity(&r);
            match &first {
                None => first = Some((name.clone(), id)),
                Some((first_file, expected)) => {
                    for ((field, e), (_, f)) in expected.iter().zip(id.iter()) {
                        if e != f {
                            return Err(MergeError::Mismatch(format!(
                                "{name}: session {} has {field} {f}, but {first_file} has {e}: not shards of one run",
                                r.session_index
                            )));
                        }
                    }
                }
            }
            if let Some((other, _)) = all.get(&r.session_index) {
                return Err(MergeError::Duplicate {
                    index: r.session_index,
                    first: other.clone(),
                    second: name.clone(),
                });
            }
            all.insert(r.session_index, (name.clone(), r));
        }
    }
    let n = cfg
        .sessions
        .unwrap_or_else(|| all.keys().next_back().map_or(0, |m| m + 1));
    let missing: Vec<u64> = (0..n).filter(|i| !all.contains_key(i)).collect();
    if !missing.is_empty() {
        return Err(MergeError::Gaps {
            count: missing.len(),
            first: missing.into_iter().take(10).collect(),
        });
    }
    if let Some(extra) = all.keys().find(|k| **k >= n) {
        return Err(MergeError::Read(format!(
            "session {extra} is beyond --sessions {n}"
        )));
    }
    // Write beside the target and rename, so a failed merge leaves nothing.
    let tmp = cfg.output.with_extension("jsonl.partial");
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for (_, r) in all.values() {
            f.write_all(render(r, OutputFormat::Jsonl).as_bytes())?;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &cfg.output)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        MergeError::Write(format!("{}: {e}", cfg.output.display()))
    })?;
    Ok(MergeReport {
        conversations: all.len() as u64,
        per_input,
    })
}
