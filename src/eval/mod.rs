//! Evaluation core of `usersim`: realism metrics of simulated conversations
//! against real human conversations.
//!
//! Data flow: [`loaders`] turn any input set into a [`Corpus`] of dialogues
//! with seeker (user) turns; [`run`] embeds them ([`crate::embed`]) and calls
//! [`evaluate`], which runs the discriminators ([`discriminator`] over
//! [`features`] + [`logreg`], turn by turn; [`context`] with the system turn
//! before each), per-group [`conditional`] realism, the classifier ensemble
//! ([`intent`], [`lexicon`]), per-intent turn [`lengths`], [`diversity`] and
//! the distances of [`stats`]; [`report`]
//! renders the result as a table, JSON or a self-contained HTML page.
pub mod conditional;
pub mod context;
pub mod discriminator;
pub mod diversity;
pub mod evaluate;
pub mod features;
pub mod intent;
pub mod lengths;
pub mod lexicon;
pub mod loaders;
pub mod logreg;
pub mod recovery;
pub mod report;
pub mod run;
pub mod stats;
pub mod system;
pub mod text;

pub use context::TurnInContext;
pub use evaluate::{evaluate, evaluate_with, EvalConfig, EvalEmbeddings, EvalError};
pub use loaders::{load_auto, Corpus, EvalDialogue, EvalTurn};
pub use report::EvalReport;
pub use run::{run_eval, EvalRun, EvalRunConfig, EvalRunError};
