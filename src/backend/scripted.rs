//! A scripted [`Backend`]: deterministic fake text, no model. It exists so
//! the conversation loop, end rules, resume, shards, merge and scenario
//! rules can be tested in-process in milliseconds; the real-model tests
//! stay for what only a model shows.
//!
//! Invariant: a generation's text is a function of its request alone (its
//! seed, side, sampling budget and, through an optional script, its
//! messages), never of the order of submission or of the other requests in
//! flight, so a run's file is the same at any `parallel`, as with llama.cpp
//! on CPU. To exercise the scheduler, [`ScriptedBackend::step`] answers
//! requests out of submission order and at most `per_step` at a time.

use std::collections::VecDeque;

use rand::Rng;

use super::{
    Backend, BackendError, BackendInfo, BackendStats, FinishReason, Generation, GenerationRequest,
    Prompt,
};
use crate::chat::Side;
use crate::rng::SessionRng;

/// Words the default script draws from.
const WORDS: [&str; 24] = [
    "movie",
    "maybe",
    "something",
    "funny",
    "scary",
    "tonight",
    "like",
    "really",
    "not",
    "sure",
    "what",
    "about",
    "old",
    "new",
    "classic",
    "thanks",
    "great",
    "seen",
    "that",
    "one",
    "yes",
    "no",
    "action",
    "drama",
];

/// Writes a generation's text from its request.
pub type Script = Box<dyn FnMut(&GenerationRequest) -> String>;

/// The scripted engine.
pub struct ScriptedBackend {
    info: BackendInfo,
    capacity: usize,
    per_step: usize,
    queue: VecDeque<GenerationRequest>,
    script: Option<Script>,
    /// Cut a text to the request's `max_tokens` words and say it ran out.
    budgeted: bool,
    stats: BackendStats,
}

impl ScriptedBackend {
    /// A backend holding `capacity` conversations, answering with seeded
    /// words: between one and `max_tokens` of them (at most 12), drawn from
    /// the request's own stream.
    pub fn new(capacity: usize) -> Self {
        ScriptedBackend {
            info: BackendInfo {
                engine: "scripted".into(),
                model: "scripted".into(),
                model_sha256: "0".repeat(64),
                context_per_sequence: 4096,
            },
            capacity: capacity.max(1),
            per_step: 3,
            queue: VecDeque::new(),
            script: None,
            budgeted: false,
            stats: BackendStats::default(),
        }
    }

    /// Answer with `script` instead of seeded words.
    pub fn with_script(mut self, script: Script) -> Self {
        self.script = Some(script);
        self
    }

    /// Hold every text to its request's `max_tokens` (a word is a token):
    /// a longer one is cut there and finishes as [`FinishReason::Length`],
    /// as a model's turn does when it runs out of its budget.
    pub fn with_budget(mut self) -> Self {
        self.budgeted = true;
        self
    }

    /// A context of `tokens` per sequence (prompts are counted in words).
    pub fn with_context(mut self, tokens: u32) -> Self {
        self.info.context_per_sequence = tokens;
        self
    }

    fn text(&mut self, req: &GenerationRequest) -> String {
        if let Some(script) = self.script.as_mut() {
            return script(req);
        }
        let mut rng: SessionRng = rand::SeedableRng::seed_from_u64(req.seed);
        let n = rng.random_range(1..=req.sampling.max_tokens.clamp(1, 12));
        let side = match req.side {
            Side::User => "u",
            Side::Assistant => "a",
        };
        let mut words = vec![side.to_string()];
        words.extend((0..n).map(|_| WORDS[rng.random_range(0..WORDS.len())].to_string()));
        words.join(" ")
    }
}

/// Prompt length in "tokens": words of every message plus four for each
/// message's framing (a text prompt is one message).
fn words(prompt: &Prompt) -> usize {
    prompt
        .contents()
        .iter()
        .map(|c| c.split_whitespace().count() + 4)
        .sum()
}

impl Backend for ScriptedBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    fn max_conversations(&self) -> usize {
        self.capacity
    }

    fn count_prompt_tokens(&self, prompt: &Prompt) -> Result<usize, BackendError> {
        Ok(words(prompt))
    }

    fn submit(&mut self, request: GenerationRequest) -> Result<(), BackendError> {
        // Requests, not candidates: a best-of-N request queues N.
        let requests = self.queue.iter().filter(|r| r.candidate == 0).count();
        if requests >= 2 * self.capacity {
            return Err(BackendError::Full(self.queue.len()));
        }
        let prompt = words(&request.prompt);
        if prompt > self.info.context_per_sequence as usize {
            return Err(BackendError::PromptTooLong {
                tokens: prompt,
                context: self.info.context_per_sequence as usize,
            });
        }
        self.queue.extend(request.split_candidates());
        Ok(())
    }

    fn step(&mut self) -> Result<Vec<Generation>, BackendError> {
        self.stats.steps += 1;
        let mut out = Vec::new();
        // Newest first: a scheduler that relied on submission order would
        // show it.
        for _ in 0..self.per_step {
            let Some(req) = self.queue.pop_back() else {
                break;
            };
            let mut text = self.text(&req);
            let mut finish = FinishReason::Stop;
            let budget = req.sampling.max_tokens as usize;
            if self.budgeted && text.split_whitespace().count() > budget {
                text = text
                    .split_whitespace()
                    .take(budget)
                    .collect::<Vec<_>>()
                    .join(" ");
                finish = FinishReason::Length;
            }
            let completion = text.split_whitespace().count() as u32;
            let prompt = words(&req.prompt) as u32;
            self.stats.prompt_tokens_evaluated += u64::from(prompt);
            self.stats.tokens_generated += u64::from(completion);
            out.push(Generation {
                conversation: req.conversation,
                side: req.side,
                text,
                prompt_tokens: prompt,
                reused_prompt_tokens: 0,
                completion_tokens: completion,
                finish,
                candidate: req.candidate,
            });
        }
        Ok(out)
    }

    fn in_flight(&self) -> usize {
        self.queue.len()
    }

    fn release(&mut self, conversation: u64) {
        self.queue.retain(|r| r.conversation != conversation);
    }

    fn stats(&self) -> BackendStats {
        self.stats.clone()
    }
}
