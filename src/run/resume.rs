//! `--resume`: continue an interrupted run into the same file.
//!
//! Invariant: a resumed run only ever continues a file of the same run
//! (seed, scenario, model, sampling, replayed dialogues), and once complete
//! its lines are back in session order, so it equals an uninterrupted run.

use std::path::Path;

use crate::error::Error;
use crate::output::{restore_session_order, scan_for_resume, OutputError};
use crate::session::record::{ConversationRecord, ReplaySource, RunIdentity};
use crate::session::replay::Replay;

/// The sessions of `sessions` that `output` does not hold yet, after
/// checking that its records are of this run, in this usersim's format
/// (`target`: the scenario's target latent), and cutting a torn last line.
pub(crate) fn remaining_sessions(
    output: &Path,
    run: &RunIdentity,
    replay: Option<&Replay>,
    sessions: &[u64],
    target: Option<&str>,
) -> Result<Vec<u64>, Error> {
    let state = scan_for_resume(output)?;
    if let Some(rec) = &state.sample {
        check_current_format(output, state.sample_line, rec, target)?;
        if let Some((field, found, expected)) = run.mismatch(rec) {
            return Err(OutputError::Mismatch {
                path: output.to_path_buf(),
                field: field.into(),
                found,
                expected,
            }
            .into());
        }
        check_same_replay(output, rec, replay)?;
    }
    if state.truncated_bytes > 0 {
        tracing::warn!(
            bytes = state.truncated_bytes,
            "cut a torn last line from {}",
            output.display()
        );
    }
    let remaining: Vec<u64> = sessions
        .iter()
        .copied()
        .filter(|s| !state.done.contains(s))
        .collect();
    tracing::info!(
        done = state.done.len(),
        remaining = remaining.len(),
        "resuming"
    );
    Ok(remaining)
}

/// After a resume that completed the file: lines appended past a gap go
/// back to their place.
pub(crate) fn restore_order(output: &Path) -> Result<(), Error> {
    if restore_session_order(output)? {
        tracing::info!("put {} back in session order", output.display());
    }
    Ok(())
}

/// Records written before usersim tested systems had no `outcome` (nor
/// system-turn `items`): a scenario with a target now writes an outcome on
/// every record whose target has a catalog id, so such a record without
/// one is of the older format. Checked before the run identity, as an older usersim's
/// scenario files differ too and that mismatch would hide the cause.
fn check_current_format(
    path: &Path,
    line: usize,
    rec: &ConversationRecord,
    target: Option<&str>,
) -> Result<(), OutputError> {
    let has_target_id = target
        .and_then(|t| rec.latents.get(t))
        .is_some_and(|v| v.get("id").is_some_and(|id| id.is_string()));
    if has_target_id && rec.outcome.is_none() {
        return Err(OutputError::OlderFormat {
            path: path.to_path_buf(),
            line,
            missing: "`outcome`".into(),
        });
    }
    Ok(())
}

/// A replay resumes the same dialogues, and a plain run does not continue
/// a replay (or the reverse).
fn check_same_replay(
    path: &Path,
    rec: &ConversationRecord,
    replay: Option<&Replay>,
) -> Result<(), OutputError> {
    let expected = replay.and_then(|r| {
        usize::try_from(rec.session_index)
            .ok()
            .and_then(|i| r.scripts.get(i))
            .map(|s| &s.source)
    });
    let show = |s: Option<&ReplaySource>| match s {
        Some(s) => format!(
            "{} dialogue {}",
            serde_json::to_string(&s.corpus).unwrap_or_default(),
            s.dialogue_id
        ),
        None => "none".to_string(),
    };
    if rec.replay.as_ref() != expected || (replay.is_some() && expected.is_none()) {
        return Err(OutputError::Mismatch {
            path: path.to_path_buf(),
            field: format!("replay (session {})", rec.session_index),
            found: show(rec.replay.as_ref()),
            expected: show(expected),
        });
    }
    Ok(())
}
