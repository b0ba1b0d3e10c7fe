//! Blind human judging of real against simulated conversations.
//!
//! A study is one SQLite file ([`study`]): a balanced, seeded sample ([`sample`]) of
//! items (a seeker turn with the turns before it, or a whole conversation)
//! drawn from a real corpus and one or more simulated runs, each item's
//! hidden source, the judges and their answers. [`serve`] is the local web
//! app judges answer in, [`crowd`] exports the items for a crowd platform
//! and imports its results, and [`report`] turns the answers into figures
//! (accuracy per simulated source, realism, agreement through
//! [`agreement`]), which [`render`] shows as text or HTML.
//!
//! Invariant: an item's source leaves the study file only through
//! [`report`]; nothing a judge sees or sends (pages, item tokens, the crowd
//! CSV) encodes it.
//!
//! `judge` reads inputs through [`crate::eval::loaders`] and computes
//! intervals with [`crate::eval::stats`]; `eval::run` shows a study's report
//! (`usersim eval --study`). Neither of those two eval files imports `run`,
//! so no file imports itself through the other.

pub mod agreement;
pub mod crowd;
pub mod render;
pub mod report;
pub mod sample;
pub mod serve;
pub mod study;

use std::path::PathBuf;

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::eval::loaders::LoadError;

/// Errors of the judging jobs.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// A real corpus or a simulated run could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A flag or an input file is wrong; the message names it and what was
    /// expected.
    #[error("{0}")]
    Input(String),
    /// The file is not a usersim study (or one of another version).
    #[error("{path}: not a usersim study: {message}")]
    NotStudy {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        message: String,
    },
    /// SQLite failed on a study file.
    #[error("{path}: sqlite: {source}")]
    Sqlite {
        /// The study file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A file could not be written.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server could not listen on its address.
    #[error("--addr {addr}: cannot listen: {message}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// Why not.
        message: String,
    },
}

impl JudgeError {
    /// Whether the user's input is at fault (exit code 2).
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            JudgeError::Load(_)
                | JudgeError::Input(_)
                | JudgeError::NotStudy { .. }
                | JudgeError::Listen { .. }
        )
    }
}

/// A seed for `purpose` derived from the study seed (SHA-256, so seeds of
/// different purposes are unrelated).
pub fn derive_seed(seed: u64, purpose: &str) -> u64 {
    let h = Sha256::digest(format!("usersim-judge/{seed}/{purpose}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    u64::from_le_bytes(b)
}

/// A fresh secret: 16 bytes of OS-seeded randomness as hex.
pub fn secret_token() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}
