//! The `stdio` system under test: a child process (`sh -c 'exec CMD'`) that reads
//! one JSON request per line on its stdin and writes one JSON answer per
//! line on its stdout, many conversations interleaved and matched by `id`.
//! Its stderr passes through to ours.
//!
//! Faults are not retried (a process that crashed or wrote garbage would
//! only do it again): a crash, an answer that is not the protocol, or a
//! turn unanswered past the timeout fails the run with one line naming the
//! command; finished conversations are on disk and `--resume` starts a new
//! child for the rest.
//!
//! Invariant: each conversation has at most one request outstanding, and
//! an answer is taken only for a conversation that is waiting for one.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::backend::http_pool::excerpt;
use crate::scenario::system::SystemSpec;
use crate::session::external::{parse_answer, RequestContext};
use crate::session::system::{System, SystemAction, SystemError, SystemReply, SystemTurn};

/// A line the child wrote, or the end of its output.
enum Line {
    Text(String),
    End(Option<String>),
}

/// An external system in a child process.
pub struct StdioSystem {
    ctx: RequestContext,
    cmd: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
    /// Conversation id → (session index, when its request went out).
    waiting: HashMap<String, (u64, Instant)>,
    timeout: Duration,
    /// Lines read so far (for error messages).
    read: u64,
    /// The child's output ended.
    ended: bool,
}

impl StdioSystem {
    /// Start the child for `spec` (checked: `cmd` is set).
    pub fn new(spec: &SystemSpec, ctx: RequestContext) -> Result<Self, SystemError> {
        let cmd = spec.cmd.as_deref().unwrap_or_default().trim().to_string();
        // `exec`: the child is the system itself, not a shell around it, so
        // ending it ends the system. A process group of its own: a Ctrl-C
        // at the terminal stops usersim cleanly (every finished conversation
        // written) instead of killing the system under it first.
        let mut command = Command::new("sh");
        command.arg("-c").arg(format!("exec {cmd}"));
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| SystemError::External(format!("`{cmd}`: cannot start: {e}")))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| SystemError::External(format!("`{cmd}`: no stdout")))?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("system-stdout".into())
            .spawn(move || {
                let mut reader = BufReader::new(stdout);
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) => {
                            let _ = tx.send(Line::End(None));
                            return;
                        }
                        Ok(_) => {
                            if tx.send(Line::Text(line)).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Line::End(Some(e.to_string())));
                            return;
                        }
                    }
                }
            })
            .map_err(|e| SystemError::External(format!("`{cmd}`: cannot start a reader: {e}")))?;
        Ok(StdioSystem {
            ctx,
            cmd,
            child,
            stdin,
            lines: rx,
            waiting: HashMap::new(),
            timeout: Duration::from_secs_f64(spec.timeout_secs),
            read: 0,
            ended: false,
        })
    }

    fn fail(&self, what: impl std::fmt::Display) -> SystemError {
        SystemError::External(format!("`{}`: {what}", self.cmd))
    }

    /// How the child ended, once it has (waits up to a second for it).
    fn exit_status(&mut self) -> String {
        let t0 = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => return format!("exited with {s}"),
                Ok(None) if t0.elapsed() < Duration::from_secs(1) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => return "closed its output".into(),
                Err(e) => return format!("cannot be waited for: {e}"),
            }
        }
    }

    fn take_line(&mut self, line: &str) -> Result<Option<(u64, SystemReply)>, SystemError> {
        self.read += 1;
        if line.trim().is_empty() {
            return Ok(None);
        }
        let v: Value = serde_json::from_str(line).map_err(|e| {
            self.fail(format!(
                "output line {} is not a JSON answer: {} ({e})",
                self.read,
                excerpt(line)
            ))
        })?;
        let id = v["id"].as_str().ok_or_else(|| {
            self.fail(format!(
                "output line {} has no \"id\": {}",
                self.read,
                excerpt(line)
            ))
        })?;
        let (index, _) = self.waiting.remove(id).ok_or_else(|| {
            self.fail(format!(
                "output line {} answers {id:?}, which is not waiting for an answer",
                self.read
            ))
        })?;
        let reply = parse_answer(&v)
            .map_err(|e| self.fail(format!("output line {} ({id}): {e}", self.read)))?;
        Ok(Some((index, reply)))
    }
}

impl System for StdioSystem {
    fn name(&self) -> &str {
        "stdio"
    }

    fn respond(&mut self, turn: &SystemTurn<'_>) -> Result<SystemAction, SystemError> {
        if self.ended {
            let status = self.exit_status();
            return Err(self.fail(format!("{status} before the run was over")));
        }
        let body = self.ctx.request(turn);
        let id = self.ctx.id(turn.conversation);
        let mut line = body.to_string();
        line.push('\n');
        let written = match self.stdin.as_mut() {
            Some(w) => w.write_all(line.as_bytes()).and_then(|()| w.flush()),
            None => Err(std::io::Error::other("stdin closed")),
        };
        if let Err(e) = written {
            let status = self.exit_status();
            return Err(self.fail(format!("cannot send {id} ({e}): the process {status}")));
        }
        self.waiting.insert(id, (turn.conversation, Instant::now()));
        Ok(SystemAction::Pending)
    }

    fn poll(&mut self, wait: Duration) -> Result<Vec<(u64, SystemReply)>, SystemError> {
        let mut out = Vec::new();
        if self.waiting.is_empty() {
            return Ok(out);
        }
        let mut first = true;
        loop {
            let next = if first && !wait.is_zero() {
                match self.lines.recv_timeout(wait) {
                    Ok(l) => Some(l),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => Some(Line::End(None)),
                }
            } else {
                self.lines.try_recv().ok()
            };
            first = false;
            match next {
                None => break,
                Some(Line::Text(l)) => {
                    if let Some(r) = self.take_line(&l)? {
                        out.push(r);
                    }
                }
                Some(Line::End(err)) => {
                    self.ended = true;
                    if !self.waiting.is_empty() {
                        let status = self.exit_status();
                        let read_error = err
                            .map(|e| format!(" (reading it: {e})"))
                            .unwrap_or_default();
                        return Err(self.fail(format!(
                            "{status}{read_error} with {} conversation(s) waiting for an answer",
                            self.waiting.len()
                        )));
                    }
                    break;
                }
            }
        }
        if let Some((id, (_, sent))) = self
            .waiting
            .iter()
            .find(|(_, (_, sent))| sent.elapsed() > self.timeout)
        {
            let _ = sent;
            return Err(self.fail(format!(
                "no answer to {id} within {} s (--system-timeout)",
                self.timeout.as_secs_f64()
            )));
        }
        Ok(out)
    }

    fn pending(&self) -> usize {
        self.waiting.len()
    }
}

impl Drop for StdioSystem {
    fn drop(&mut self) {
        // End of input asks the child to exit; one that does not within a
        // second is killed, so no process outlives the run.
        self.stdin = None;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(1) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
