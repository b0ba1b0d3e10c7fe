//! The other side of the conversation: a [`System`] answers the simulated
//! user.
//!
//! A system either answers at once (a replay of real turns), asks for a
//! generation that decodes in the same batch as the simulated users (the
//! built-in LLM recommender, so the recommender costs no extra pass over
//! the model), or takes the turn away and answers later
//! ([`SystemAction::Pending`]: an external system under test over HTTP or
//! stdio, or the recommender on an engine of its own, see
//! [`crate::session::external`]). The scheduler never blocks on one
//! conversation: it collects pending answers with [`System::poll`] between
//! engine steps and hands each to its conversation. The replay of real
//! turns is [`crate::session::replay::ReplaySystem`].
//!
//! Invariant: a system's answer depends only on what it was sent (the
//! conversation so far and its seed), never on when it arrives, so the
//! output stays a function of the configuration and seed whenever the
//! system itself is deterministic.

use crate::backend::sampler::SamplingParams;
use crate::backend::{GenerationRequest, Prompt};
use crate::chat::Side;
use crate::prompt::{assistant_messages, assistant_transcript, HistoryTurn};
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
    /// The answer will come from [`System::poll`], tagged with the
    /// conversation.
    Pending,
}

/// An answer delivered later ([`SystemAction::Pending`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SystemReply {
    /// The system's message.
    pub text: String,
    /// Items it recommended, by catalog id (`None`: spot them in the text).
    pub items: Option<Vec<String>>,
    /// The system ends the conversation after this message.
    pub end: bool,
    /// Tokens generated for it (0 when unknown).
    pub tokens: u32,
}

/// Errors of a system.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// Prompt rendering failed.
    #[error(transparent)]
    Prompt(#[from] ScenarioError),
    /// An external system failed: it timed out past its retries, died, or
    /// answered something that is not the protocol. One line, naming the
    /// system (URL or command).
    #[error("system under test: {0}")]
    External(String),
    /// The system's options are wrong (a flag or the scenario's `[system]`).
    #[error("{0}")]
    Config(String),
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
    /// The session's latents (sent to an external system only when asked,
    /// for oracle experiments).
    pub latents: &'a std::collections::BTreeMap<String, serde_json::Value>,
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
    /// Answer the latest user message, or, when the history is empty, open
    /// the conversation (asked only of a system that [`System::opens`]).
    fn respond(&mut self, turn: &SystemTurn<'_>) -> Result<SystemAction, SystemError>;
    /// Whether it can write a conversation's first message
    /// (`conversation.system_opens`): [`System::respond`] with an empty
    /// history. Systems under test over HTTP or stdio are only ever sent
    /// the user's words, so they do not.
    fn opens(&self) -> bool {
        false
    }
    /// Answers to earlier [`SystemAction::Pending`] turns, by conversation:
    /// waits up to `wait` for the first when none has arrived.
    fn poll(&mut self, _wait: std::time::Duration) -> Result<Vec<(u64, SystemReply)>, SystemError> {
        Ok(Vec::new())
    }
    /// Turns answered [`SystemAction::Pending`] and not yet polled.
    fn pending(&self) -> usize {
        0
    }
    /// The conversation is over (written or abandoned): forget it.
    fn release(&mut self, _conversation: u64) {}
}

/// An LLM prompted with catalog candidates retrieved from the user's words.
pub struct LlmRecommender<'a> {
    scenario: &'a Scenario,
    catalog: Option<&'a Catalog>,
    sampling: SamplingParams,
    candidates: usize,
    /// Transcript prompting: the prefix of real dialogues its lines
    /// continue (`assistant_prompt = "transcript"`).
    transcript: Option<String>,
}

/// Replies before a transcript recommender's line names a candidate: real
/// recommenders name a movie in 17% of their first turns (mostly a greeting
/// or a question about taste) and in 73-86% of their second to fourth
/// (IARD).
const TRANSCRIPT_ASKS_FIRST: u32 = 1;

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
            transcript: None,
        }
    }

    /// Prompt it with a transcript: `prefix` (from
    /// [`crate::prompt::assistant_transcript_prefix`]), the conversation,
    /// and an open line that suggests the best candidate; a line ends at a
    /// newline.
    pub fn with_transcript(mut self, prefix: String) -> Self {
        self.sampling.stop_at_line_end();
        self.transcript = Some(prefix);
        self
    }
}

/// The label of a turn note (`[Candidates:` of `[Candidates: Heat (1995) -
/// ...]`), with and without its bracket; none for a note without a short
/// label (up to 32 characters, no space, before the first colon).
fn note_labels(note: &str) -> Vec<String> {
    let Some(end) = note.find(':').filter(|&i| i <= 32) else {
        return Vec::new();
    };
    let label = note[..=end].trim();
    let bare = label.trim_start_matches(['[', '(', '{']);
    if bare.len() < 2 || label.contains(char::is_whitespace) {
        return Vec::new();
    }
    let mut labels = vec![label.to_string()];
    if bare != label {
        labels.push(bare.to_string());
    }
    labels
}

/// A reply without the copy of its turn note: a small chat model copies
/// the note it was shown into its answer (SmolLM2 in about one reply in
/// ten), and no recommender writes it to a person. The reply is cut where
/// the note's label starts; a reply that starts with the copy keeps what
/// follows its closing bracket; one that is nothing but the copy is kept as
/// it is, since an empty message is no better.
pub fn without_note_copy(reply: &str, note: &str) -> String {
    let Some(at) = note_labels(note)
        .iter()
        .filter_map(|l| reply.find(l.as_str()))
        .min()
    else {
        return reply.to_string();
    };
    let before = reply[..at].trim_end();
    if !before.is_empty() {
        return before.to_string();
    }
    let after = reply[at..]
        .find(']')
        .map_or("", |close| reply[at + close + 1..].trim());
    if after.is_empty() {
        reply.to_string()
    } else {
        after.to_string()
    }
}

impl System for LlmRecommender<'_> {
    fn name(&self) -> &str {
        "llm-recommender"
    }

    fn opens(&self) -> bool {
        true
    }

    fn respond(&mut self, turn: &SystemTurn<'_>) -> Result<SystemAction, SystemError> {
        let user_spoke = turn.history.iter().any(|t| t.side == Side::User);
        let cands = match self.catalog {
            // An opening greets: there is nothing to retrieve from yet.
            Some(cat) if user_spoke => {
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
            _ => Vec::new(),
        };
        let (prompt, note) = match &self.transcript {
            Some(prefix) => {
                let suggest: Vec<String> = cands
                    .iter()
                    .take(usize::from(turn.reply_index >= TRANSCRIPT_ASKS_FIRST))
                    .map(|c| c.title.clone())
                    .collect();
                let titles_in = |text: &str| -> Vec<String> {
                    self.catalog.map_or_else(Vec::new, |cat| {
                        cat.mentioned_items(text)
                            .into_iter()
                            .map(|i| cat.items()[i].title.clone())
                            .collect()
                    })
                };
                let text =
                    assistant_transcript(self.scenario, prefix, turn.history, &suggest, &titles_in);
                (Prompt::Text(text), String::new())
            }
            None => {
                let (messages, note) =
                    assistant_messages(self.scenario, turn.history, &cands, turn.reply_index)?;
                (Prompt::Chat(messages), note)
            }
        };
        Ok(SystemAction::Generate(GenerationRequest {
            conversation: turn.conversation,
            side: Side::Assistant,
            prompt,
            sampling: self.sampling.clone(),
            seed: turn.seed,
            forks: Vec::new(),
            candidate: 0,
            note,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_loses_the_copy_of_its_note_and_is_never_emptied() {
        let note = "[Candidates: Heat (1995) - Crime/Drama; Se7en (1995) - Thriller]";
        assert_eq!(note_labels(note), vec!["[Candidates:", "Candidates:"]);
        let cut = |r: &str| without_note_copy(r, note);
        assert_eq!(cut("Try Heat! [Candidates: Heat (1995)"), "Try Heat!");
        assert_eq!(cut("Try Heat. Candidates: Heat"), "Try Heat.");
        assert_eq!(
            cut("[Candidates: Heat (1995) - Crime] Heat is a classic."),
            "Heat is a classic."
        );
        // Nothing but the copy: kept, an empty message is no better.
        assert_eq!(cut("[Candidates: Heat (1995"), "[Candidates: Heat (1995");
        assert_eq!(cut("Heat is great."), "Heat is great.");
        // No note, or no short label before a colon: nothing to cut.
        assert!(note_labels("").is_empty());
        assert!(note_labels("Suggest one of these movies: Heat").is_empty());
        assert!(note_labels("[:]").is_empty());
        assert_eq!(without_note_copy("a: b", ""), "a: b");
    }
}
