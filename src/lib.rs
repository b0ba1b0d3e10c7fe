//! usersim: controllable LLM user simulators on local open models.
//!
//! The pipeline, one module per stage:
//! [`scenario`] (schema and templates) → [`latent`] (session and turn draws,
//! seeded by [`rng`]) → [`prompt`] (chat messages per side) → [`backend`]
//! (batched decode, sampling in [`sampler`]) with the [`system`] on the other
//! side → [`conversation`] (state machine and record) → [`output`] (JSONL),
//! orchestrated by [`simulate`]. [`fit_intents`] fits turn policies on real
//! dialogues read by [`corpus`], which [`replay`] also turns into
//! teacher-forced sessions; [`models`] resolves model files and
//! [`catalog`] holds the items a recommender retrieves. [`eval`] measures
//! realism, diversity and label fidelity of simulated conversations against
//! real ones, with sentence vectors from [`embed`].

pub mod backend;
pub mod bench;
pub mod catalog;
pub mod conversation;
pub mod corpus;
pub mod embed;
pub mod eval;
pub mod fit_intents;
pub mod latent;
pub mod merge;
pub mod models;
pub mod output;
pub mod prompt;
pub mod replay;
pub mod rng;
pub mod sampler;
pub mod scenario;
pub mod simulate;
pub mod system;
