//! The other side of the conversation: a [`System`] answers the simulated
//! user.
//!
//! A system either answers at once (an HTTP system under test, a replay of
//! real turns) or asks for a generation that decodes in the same batch as
//! the simulated users (the built-in LLM recommender), so the recommender
//! costs no extra pass over the model. The replay of real turns is
//! [`crate::session::replay::ReplaySystem`].

use crate::backend::sampler::SamplingParams;
use crate::backend::{GenerationRequest, Prompt};
use crate::chat::Side;
use crate::prompt::{assistant_messages, HistoryTurn};
use crate::scenario::catalog::Catalog;
use crate::scenario::{Scenario, ScenarioError};

/// Default number of catalog candidates offered to the recommender per turn.
pub const DEFAULT_CANDIDATES: usize = 5;

/// What the system does with the user's latest message.
#[derive(Debug)]
pub enum SystemAction {
    /// It replied already.
    Reply(String),
    /// Generate the reply with the shared backend.
    Generate(GenerationRequest),
}

/// Errors of a system.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// Prompt rendering failed.
    #[error(transparent)]
    Prompt(#[from] ScenarioError),
    /// A replayed dialogue has no real reply where one was asked for.
    #[error("replay: session {conversation} has no real reply {reply_index}")]
    NoReplay {
        /// Session index.
        conversation: u64,
        /// Reply asked for.
        reply_index: u32,
    },
}

/// What a system sees of a conversation.
pub struct SystemTurn<'a> {
    /// Conversation (session index).
    pub conversation: u64,
    /// Everything said so far.
    pub history: &'a [HistoryTurn<'a>],
    /// How many replies the system has given so far.
    pub reply_index: u32,
    /// Seed of this reply's sampling stream.
    pub seed: u64,
}

/// The counterpart of the simulated user.
pub trait System {
    /// Name recorded in the output.
    fn name(&self) -> &str;
    /// Answer the latest user message.
    fn respond(&mut self, turn: &SystemTurn<'_>) -> Result<SystemAction, SystemError>;
}

/// An LLM prompted with catalog candidates retrieved from the user's words.
pub struct LlmRecommender<'a> {
    scenario: &'a Scenario,
    catalog: Option<&'a Catalog>,
    sampling: SamplingParams,
    candidates: usize,
}

impl<'a> LlmRecommender<'a> {
    /// A recommender over `catalog` (none: a plain assistant).
    pub fn new(
        scenario: &'a Scenario,
        catalog: Option<&'a Catalog>,
        sampling: SamplingParams,
        candidates: usize,
    ) -> Self {
        LlmRecommender {
            scenario,
            catalog,
            sampling,
            candidates,
        }
    }
}

impl System for LlmRecommender<'_> {
    fn name(&self) -> &str {
        "llm-recommender"
    }

    fn respond(&mut self, turn: &SystemTurn<'_>) -> Result<SystemAction, SystemError> {
        let cands = match self.catalog {
            Some(cat) => {
                // The whole of what the user said, so a genre named in the
                // first turn still counts after "something else?".
                let query: String = turn
                    .history
                    .iter()
                    .filter(|t| t.side == Side::User)
                    .map(|t| t.text)
                    .collect::<Vec<_>>()
                    .join("\n");
                // Items already offered are not offered again.
                let mut shown: Vec<usize> = turn
                    .history
                    .iter()
                    .filter(|t| t.side == Side::Assistant)
                    .flat_map(|t| cat.mentioned_items(t.text))
                    .collect();
                shown.sort_unstable();
                shown.dedup();
                cat.retrieve(&query, &shown, self.candidates)
                    .into_iter()
                    .map(|i| &cat.items()[i])
                    .collect()
            }
            None => Vec::new(),
        };
        let (messages, note) =
            assistant_messages(self.scenario, turn.history, &cands, turn.reply_index)?;
        Ok(SystemAction::Generate(GenerationRequest {
            conversation: turn.conversation,
            side: Side::Assistant,
            prompt: Prompt::Chat(messages),
            sampling: self.sampling.clone(),
            seed: turn.seed,
            forks: Vec::new(),
            candidate: 0,
            note,
        }))
    }
}
