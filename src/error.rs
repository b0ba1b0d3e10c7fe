//! The crate-level error: every public job (`run::simulate`, `eval`, merge,
//! fit, bench, model lookup) fails with an [`Error`], and an [`Error`] knows
//! whether the user's input was at fault.
//!
//! Invariant: [`Error::is_input`] is true exactly for failures a user fixes
//! by changing a file or a flag (exit code 2); everything else (a write
//! that failed, an engine or server that broke mid-run) is exit code 1. The
//! CLI asks this once and never inspects module errors itself.

use std::path::PathBuf;

use crate::backend::BackendError;
use crate::corpus::CorpusError;
use crate::critic::CriticError;
use crate::eval::EvalRunError;
use crate::judge::JudgeError;
use crate::latent::LatentError;
use crate::models::ModelError;
use crate::output::merge::MergeError;
use crate::output::OutputError;
use crate::scenario::catalog::CatalogError;
use crate::scenario::ScenarioError;
use crate::session::system::SystemError;

/// Anything a usersim job can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Scenario or pin problem.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// Catalog problem.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Latent draw problem.
    #[error(transparent)]
    Latent(#[from] LatentError),
    /// Model registry or model file problem.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Engine problem.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Output problem.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// A real corpus cannot be read.
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    /// Shards cannot be merged.
    #[error(transparent)]
    Merge(#[from] MergeError),
    /// An evaluation failed.
    #[error(transparent)]
    Eval(#[from] EvalRunError),
    /// A realism critic cannot be trained or loaded.
    #[error(transparent)]
    Critic(#[from] CriticError),
    /// A human-judging job failed.
    #[error(transparent)]
    Judge(#[from] JudgeError),
    /// `report-system` cannot read or measure its run.
    #[error(transparent)]
    SystemReport(#[from] crate::eval::system::SystemReportError),
    /// A flag, a config value or a combination of them is invalid.
    #[error("{0}")]
    Config(String),
    /// A file the job writes could not be written.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The system under test failed mid-run (timed out past its retries,
    /// died, or broke the protocol).
    #[error("{0}")]
    System(String),
    /// A bug: the run reached a state its inputs should rule out.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<SystemError> for Error {
    fn from(e: SystemError) -> Self {
        match e {
            SystemError::Prompt(p) => Error::Scenario(p),
            SystemError::Config(m) => Error::Config(m),
            e @ SystemError::External(_) => Error::System(e.to_string()),
            e @ SystemError::NoReplay { .. } => Error::Internal(e.to_string()),
        }
    }
}

impl Error {
    /// Whether the user's input was at fault (exit code 2) rather than the
    /// run (exit code 1).
    pub fn is_input(&self) -> bool {
        match self {
            Error::Backend(e) => e.is_input(),
            Error::Output(e) => e.is_input(),
            Error::Eval(e) => e.is_input_error(),
            Error::Merge(e) => e.is_input(),
            Error::Critic(e) => e.is_input(),
            Error::Judge(e) => e.is_input(),
            Error::Write { .. } | Error::Internal(_) | Error::System(_) => false,
            Error::Scenario(_)
            | Error::Catalog(_)
            | Error::Latent(_)
            | Error::Model(_)
            | Error::Corpus(_)
            | Error::SystemReport(_)
            | Error::Config(_) => true,
        }
    }

    /// The process exit code this error stands for.
    pub fn exit_code(&self) -> u8 {
        if self.is_input() {
            2
        } else {
            1
        }
    }

    /// The reader of stdout went away: not a failure for a CLI (exit 0).
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Error::Output(OutputError::BrokenPipe) => true,
            Error::Output(OutputError::Io { source, .. }) | Error::Write { source, .. } => {
                source.kind() == std::io::ErrorKind::BrokenPipe
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_exit_2_and_run_errors_exit_1() {
        let input = [
            Error::Config("--sessions: expected at least 1".into()),
            Error::Backend(BackendError::PromptTooLong {
                tokens: 300,
                context: 10,
            }),
            Error::Output(OutputError::Exists("x.jsonl".into())),
        ];
        for e in input {
            assert_eq!(e.exit_code(), 2, "{e}");
        }
        let run = [
            Error::Internal("bug".into()),
            Error::Backend(BackendError::Engine("decode failed".into())),
            Error::Output(OutputError::BrokenPipe),
        ];
        for e in run {
            assert_eq!(e.exit_code(), 1, "{e}");
        }
        assert!(Error::Output(OutputError::BrokenPipe).is_broken_pipe());
    }
}
