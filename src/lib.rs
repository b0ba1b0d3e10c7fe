//! usersim: controllable LLM user simulators on local open models.
//!
//! The modules read as the pipeline, in order:
//! [`scenario`] (schema, templates, pins, the item catalog) →
//! [`latent`] (session and turn draws, each from a stream of [`rng`]) →
//! [`prompt`] (chat messages per side, in the words of [`chat`]) →
//! [`backend`] (the engines: batched llama.cpp, an OpenAI-compatible
//! server, a scripted fake; sampling) →
//! [`session`] (one conversation: its state machine, the system on the other
//! side, replay of real dialogues, the record) →
//! [`run`] (the scheduler loop that keeps many sessions live and hands
//! finished records to a sink) → [`output`] (JSONL writers, resume, merge) →
//! [`eval`] (realism, diversity and label fidelity against real dialogues)
//! → [`judge`] (blind human judging of real against simulated text).
//!
//! Beside the pipeline: [`corpus`] is the one reader of real dialogues (for
//! replay, fitting and eval), [`critic`] is the eval's context
//! discriminator saved to a file for best-of-N turns in a run, [`models`]
//! resolves model files, [`embed`]
//! computes sentence vectors for eval, [`tools`] holds the jobs that are not
//! the pipeline (bench, fit, a llama-server runner), and [`error`] is the
//! crate-level error that knows which failures are the user's input.

pub mod atomic;
pub mod backend;
pub mod chat;
pub mod corpus;
pub mod critic;
pub mod embed;
pub mod error;
pub mod eval;
pub mod judge;
pub mod latent;
pub mod models;
pub mod output;
pub mod prompt;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod session;
pub mod tools;

pub use error::Error;
