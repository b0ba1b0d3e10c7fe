//! `merge`: join shard outputs into one file ordered by session index.
//!
//! Shards of one run must agree on everything that shapes a conversation
//! (seed, scenario, model, sampling); a gap or a duplicate means a shard
//! is missing or was run twice, and the merge refuses rather than hide it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use crate::output::{read_records, render, OutputFormat};
use crate::session::record::{ConversationRecord, RunIdentity};

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
    /// The output exists and overwriting was not asked for.
    #[error("{}: output file exists (use --force to overwrite)", .0.display())]
    Exists(std::path::PathBuf),
    /// Writing the merged file failed.
    #[error("{0}")]
    Write(String),
}

impl MergeError {
    /// Whether the shards given were at fault (everything but a failed
    /// write of the merged file).
    pub fn is_input(&self) -> bool {
        !matches!(self, MergeError::Write(_))
    }
}

/// Merge shard files.
pub fn merge(cfg: &MergeConfig) -> Result<MergeReport, MergeError> {
    if cfg.output.exists() && !cfg.force {
        return Err(MergeError::Exists(cfg.output.clone()));
    }
    let mut all: BTreeMap<u64, (String, ConversationRecord)> = BTreeMap::new();
    let mut first: Option<(String, RunIdentity)> = None;
    let mut per_input = Vec::new();
    for path in &cfg.inputs {
        let name = path.display().to_string();
        let recs = read_records(path).map_err(MergeError::Read)?;
        per_input.push((name.clone(), recs.len() as u64));
        for r in recs {
            match &first {
                None => first = Some((name.clone(), RunIdentity::of(&r))),
                Some((first_file, run)) => {
                    if let Some((field, f, e)) = run.mismatch(&r) {
                        return Err(MergeError::Mismatch(format!(
                            "{name}: session {} has {field} {f}, but {first_file} has {e}: not shards of one run",
                            r.session_index
                        )));
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
    // Written beside the target and renamed, so a failed merge leaves nothing.
    crate::atomic::write_atomic_with(&cfg.output, |f| {
        all.values()
            .try_for_each(|(_, r)| f.write_all(render(r, OutputFormat::Jsonl).as_bytes()))
    })
    .map_err(|e| MergeError::Write(format!("{}: {e}", cfg.output.display())))?;
    Ok(MergeReport {
        conversations: all.len() as u64,
        per_input,
    })
}
