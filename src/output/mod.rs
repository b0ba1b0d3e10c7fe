//! JSONL output: one conversation per line, whole lines only.
//!
//! Conversations finish in whatever order the batch lets them; the writer
//! holds a finished one back until every earlier session of the run is on
//! disk, so the file is byte-identical whatever the batch size. Each line
//! is written with one `write_all` and flushed, so a crash leaves at most
//! the conversations still held back (which a rerun with the same seed
//! reproduces exactly); an orderly stop (Ctrl-C, error) writes them too.
//! The file is created only when the first line is ready, so a run that
//! fails on bad input leaves nothing behind.

pub mod merge;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::session::record::ConversationRecord;

/// How conversations are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// usersim's own records: latents, turns and labels (`--format jsonl`).
    #[default]
    Jsonl,
    /// Chat records (`{"messages": [...], "metadata": {...}}`, the form
    /// OpenAI-style fine-tuning takes), with the labels under `metadata`
    /// (`--format chat`; `openai` is accepted as an alias).
    #[serde(alias = "openai")]
    Chat,
}

impl OutputFormat {
    /// The names `--format` takes.
    pub const NAMES: [&'static str; 2] = ["jsonl", "chat"];
}

impl std::str::FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "jsonl" => Ok(OutputFormat::Jsonl),
            "chat" | "openai" => Ok(OutputFormat::Chat),
            other => Err(format!("expected jsonl or chat, found `{other}`")),
        }
    }
}

/// Where finished conversations go: the run loop's one output seam.
pub trait RecordSink {
    /// Take a finished conversation.
    fn push(&mut self, record: &ConversationRecord) -> Result<(), OutputError>;
    /// The run is over (or stopping): write whatever is held back.
    fn finish(&mut self) -> Result<(), OutputError>;
}

/// Keeps finished conversations in memory, in the order they finished
/// (tests, and runs whose records a caller consumes directly).
#[derive(Default)]
pub struct MemorySink {
    /// The records.
    pub records: Vec<ConversationRecord>,
}

impl RecordSink for MemorySink {
    fn push(&mut self, record: &ConversationRecord) -> Result<(), OutputError> {
        self.records.push(record.clone());
        Ok(())
    }
    fn finish(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
}

impl RecordSink for OutputWriter {
    fn push(&mut self, record: &ConversationRecord) -> Result<(), OutputError> {
        OutputWriter::push(self, record)
    }
    fn finish(&mut self) -> Result<(), OutputError> {
        OutputWriter::finish(self)
    }
}

/// Errors writing output.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The output exists and overwriting was not asked for.
    #[error("{0}: output file exists (use --force to overwrite)")]
    Exists(PathBuf),
    /// Writing failed.
    #[error("{path}: cannot write: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The reader of stdout went away.
    #[error("broken pipe")]
    BrokenPipe,
    /// An existing file has a malformed line.
    #[error("{path}: line {line}: not a usersim conversation record: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Parser message.
        message: String,
    },
    /// `--resume` on a file written by a different run configuration.
    #[error(
        "{path}: cannot resume: the file was written with {field} {found}, this run has {expected}"
    )]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What differs.
        field: String,
        /// In the file.
        found: String,
        /// In this run.
        expected: String,
    },
    /// `--resume` on a file an older usersim wrote, in a format this one
    /// does not continue.
    #[error("{path}: cannot resume: line {line} was written by an older usersim (it has no {missing}; records gained system-turn `items` and a conversation `outcome`), so the file cannot be completed in one format: simulate into a new file, or rerun with --force to overwrite it")]
    OlderFormat {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What the line lacks.
        missing: String,
    },
}

impl OutputError {
    /// Whether the user's input (an existing file, a file of another run)
    /// was at fault rather than the disk or the reader of stdout.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            OutputError::Exists(_)
                | OutputError::Corrupt { .. }
                | OutputError::Mismatch { .. }
                | OutputError::OlderFormat { .. }
        )
    }
}

enum Sink {
    Stdout(io::Stdout),
    File(File),
}

/// Writes records in session order.
pub struct OutputWriter {
    path: Option<PathBuf>,
    force: bool,
    append: bool,
    format: OutputFormat,
    sink: Option<Sink>,
    order: Vec<u64>,
    next: usize,
    held: BTreeMap<u64, String>,
    written: u64,
}

impl OutputWriter {
    /// A writer to `path` (`-` for stdout) for the sessions in `order`.
    /// Checks the path now, creates the file on the first line.
    pub fn new(
        path: &Path,
        force: bool,
        format: OutputFormat,
        order: Vec<u64>,
    ) -> Result<Self, OutputError> {
        Self::open(path, force, false, format, order)
    }

    /// A writer that appends to an existing file (`--resume`).
    pub fn append(path: &Path, format: OutputFormat, order: Vec<u64>) -> Result<Self, OutputError> {
        Self::open(path, false, true, format, order)
    }

    fn open(
        path: &Path,
        force: bool,
        append: bool,
        format: OutputFormat,
        order: Vec<u64>,
    ) -> Result<Self, OutputError> {
        let path = if path == Path::new("-") {
            None
        } else {
            if path.exists() && !force && !append {
                return Err(OutputError::Exists(path.to_path_buf()));
            }
            Some(path.to_path_buf())
        };
        Ok(OutputWriter {
            path,
            force,
            append,
            format,
            sink: None,
            order,
            next: 0,
            held: BTreeMap::new(),
            written: 0,
        })
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Conversations finished but held back for order.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    fn io_err(&self, source: io::Error) -> OutputError {
        if source.kind() == io::ErrorKind::BrokenPipe {
            return OutputError::BrokenPipe;
        }
        OutputError::Io {
            path: self
                .path
                .clone()
                .unwrap_or_else(|| PathBuf::from("<stdout>")),
            source,
        }
    }

    fn write_line(&mut self, line: &str) -> Result<(), OutputError> {
        if self.sink.is_none() {
            let sink = match &self.path {
                None => Sink::Stdout(io::stdout()),
                Some(p) => {
                    let mut o = OpenOptions::new();
                    o.write(true);
                    if self.append {
                        o.append(true).create(true);
                    } else if self.force {
                        o.create(true).truncate(true);
                    } else {
                        o.create_new(true);
                    }
                    Sink::File(o.open(p).map_err(|e| self.io_err(e))?)
                }
            };
            self.sink = Some(sink);
        }
        let result = match self.sink.as_mut() {
            Some(Sink::Stdout(s)) => {
                let mut lock = s.lock();
                lock.write_all(line.as_bytes()).and_then(|_| lock.flush())
            }
            Some(Sink::File(f)) => f.write_all(line.as_bytes()).and_then(|_| f.flush()),
            None => Ok(()),
        };
        result.map_err(|e| self.io_err(e))?;
        self.written += 1;
        Ok(())
    }

    /// Add a finished conversation; writes every line now in order.
    pub fn push(&mut self, record: &ConversationRecord) -> Result<(), OutputError> {
        let line = render(record, self.format);
        self.held.insert(record.session_index, line);
        while let Some(&idx) = self.order.get(self.next) {
            let Some(line) = self.held.remove(&idx) else {
                break;
            };
            self.write_line(&line)?;
            self.next += 1;
        }
        Ok(())
    }

    /// Write whatever is held back (an orderly stop before the run is
    /// complete), in session order.
    pub fn finish(&mut self) -> Result<(), OutputError> {
        let held = std::mem::take(&mut self.held);
        for line in held.values() {
            self.write_line(line)?;
        }
        if let Some(Sink::File(f)) = self.sink.as_mut() {
            f.sync_data().map_err(|e| OutputError::Io {
                path: self.path.clone().unwrap_or_default(),
                source: e,
            })?;
        }
        Ok(())
    }
}

impl Drop for OutputWriter {
    fn drop(&mut self) {
        // A panic unwinding through the run still saves finished work.
        if !self.held.is_empty() {
            let _ = self.finish();
        }
    }
}

/// One record as a line (with its newline).
pub fn render(record: &ConversationRecord, format: OutputFormat) -> String {
    // Straight from the struct: going through `Value` would widen f32
    // sampling options into long f64 decimals.
    let text = match format {
        OutputFormat::Jsonl => serde_json::to_string(record),
        OutputFormat::Chat => serde_json::to_string(&chat_record(record)),
    };
    let mut line = text.unwrap_or_else(|e| json!({"error": e.to_string()}).to_string());
    line.push('\n');
    line
}

/// The chat form: the simulated user is `user`, the system is
/// `assistant`, labels ride along in `metadata` (`turn_latents` and
/// `turn_items` hold one entry per message, `outcome` is the jsonl
/// record's).
fn chat_record(r: &ConversationRecord) -> serde_json::Value {
    let messages: Vec<serde_json::Value> = r
        .turns
        .iter()
        .map(|t| json!({"role": t.role, "content": t.text}))
        .collect();
    let turn_latents: Vec<serde_json::Value> = r.turns.iter().map(|t| json!(t.latents)).collect();
    let mut out = json!({
        "messages": messages,
        "metadata": {
            "id": r.id,
            "session_index": r.session_index,
            // Decimal strings, as in the jsonl form (see `record::u64_string`).
            "run_seed": r.run_seed.to_string(),
            "session_seed": r.session_seed.to_string(),
            "scenario": r.scenario,
            "model": r.model,
            "latents": r.latents,
            "turn_latents": turn_latents,
            "end_reason": r.end_reason,
        }
    });
    // Replay fields only when present, so other runs' lines stay as they were.
    if let (Some(src), Some(meta)) = (&r.replay, out.get_mut("metadata")) {
        meta["replay"] = json!(src);
        meta["real_turns"] = r.turns.iter().map(|t| json!(t.real)).collect();
    }
    // What the system recommended (one list per message, as the jsonl
    // turns' `items`) and how it served the target, when the run has
    // either: a scenario with a catalog and a target.
    let has_items = r.turns.iter().any(|t| !t.items.is_empty());
    if let Some(meta) = out.get_mut("metadata") {
        if has_items || r.outcome.is_some() {
            meta["turn_items"] = r.turns.iter().map(|t| json!(t.items)).collect();
        }
        if let Some(o) = &r.outcome {
            meta["outcome"] = json!(o);
        }
    }
    out
}

/// Read records written in usersim's own format.
pub fn read_records(path: &Path) -> Result<Vec<ConversationRecord>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}: line {}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// What an existing output holds, for `--resume`.
#[derive(Debug, Default)]
pub struct ResumeState {
    /// Sessions already written.
    pub done: std::collections::BTreeSet<u64>,
    /// One of the existing records (to check the run matches).
    pub sample: Option<ConversationRecord>,
    /// The sample's 1-based line.
    pub sample_line: usize,
    /// Bytes of a torn last line that were cut off.
    pub truncated_bytes: u64,
}

/// Read an output file for `--resume`: cut a torn last line (a crash while
/// writing), then collect the sessions already done. A malformed line that
/// is not the last is an error: the file is not ours to repair.
pub fn scan_for_resume(path: &Path) -> Result<ResumeState, OutputError> {
    let io = |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut state = ResumeState::default();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(state),
        Err(e) => return Err(io(e)),
    };
    let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if whole < bytes.len() {
        state.truncated_bytes = (bytes.len() - whole) as u64;
        let f = OpenOptions::new().write(true).open(path).map_err(io)?;
        f.set_len(whole as u64).map_err(io)?;
        f.sync_data().map_err(io)?;
    }
    let text = String::from_utf8_lossy(&bytes[..whole]);
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: ConversationRecord =
            serde_json::from_str(line).map_err(|e| OutputError::Corrupt {
                path: path.to_path_buf(),
                line: i + 1,
                message: e.to_string(),
            })?;
        state.done.insert(rec.session_index);
        if state.sample.is_none() {
            state.sample = Some(rec);
            state.sample_line = i + 1;
        }
    }
    Ok(state)
}

/// Put a completed resumed file back in session order. An orderly stop
/// writes every finished conversation, including ones past a gap, so the
/// lines a resume appends can belong before them; once nothing is missing,
/// the file is rewritten (whole lines, byte for byte, through a temporary
/// file and a rename) so it equals an uninterrupted run. Returns whether it
/// had to.
pub fn restore_session_order(path: &Path) -> Result<bool, OutputError> {
    let io = |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(e)),
    };
    let mut lines: Vec<(u64, &str)> = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let index = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["session_index"].as_u64())
            .ok_or_else(|| OutputError::Corrupt {
                path: path.to_path_buf(),
                line: i + 1,
                message: "expected a record with a session_index".into(),
            })?;
        lines.push((index, line));
    }
    if lines.windows(2).all(|w| w[0].0 < w[1].0) {
        return Ok(false);
    }
    lines.sort_by_key(|(i, _)| *i);
    crate::atomic::write_atomic_with(path, |f| {
        lines
            .iter()
            .try_for_each(|(_, line)| f.write_all(line.as_bytes()))
    })
    .map_err(io)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_file_is_put_back_in_session_order_byte_for_byte() {
        let dir = std::env::temp_dir().join(format!("usersim-order-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.jsonl");
        let line = |i: u64| format!("{{\"session_index\":{i},\"x\":\"é {i}\"}}\n");
        // An orderly stop wrote 0, 1 and 4 (past a gap); resume added 2, 3.
        let text: String = [0, 1, 4, 2, 3].into_iter().map(line).collect();
        std::fs::write(&path, &text).unwrap();
        assert!(restore_session_order(&path).unwrap());
        let want: String = (0..5).map(line).collect();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), want);
        // Already in order: untouched.
        assert!(!restore_session_order(&path).unwrap());
        // Not a record: refused, file left as it was.
        std::fs::write(&path, format!("{}not json\n", line(0))).unwrap();
        let err = restore_session_order(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(!restore_session_order(&dir.join("missing.jsonl")).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
