//! The generation seam: a [`Backend`] turns chat requests into text.
//!
//! The interface is shaped for batching: callers `submit` requests as their
//! conversations become ready and call `step` to advance every request in
//! flight at once; finished generations come back as they complete. The
//! in-process llama.cpp engine decodes all of them in one batch per step; a
//! network backend ([`openai`]) keeps many HTTP requests in flight. Callers never
//! see engine types.

pub mod batch;
pub mod http_pool;
pub mod llama;
pub mod openai;
pub mod sampler;
pub mod scripted;

use serde::Serialize;

use crate::backend::sampler::SamplingParams;
use crate::chat::{ChatMessage, Side};

/// One generation to run.
#[derive(Clone, Debug)]
pub struct GenerationRequest {
    /// Conversation (session index) the request belongs to.
    pub conversation: u64,
    /// The side it generates for.
    pub side: Side,
    /// What the model continues: the chat so far from the generating
    /// side's point of view, or a plain-text transcript.
    pub prompt: Prompt,
    /// Sampling options.
    pub sampling: SamplingParams,
    /// Seed of this generation's sampling stream.
    pub seed: u64,
    /// Seeds of further candidates for the same prompt (best-of-N): each
    /// is sampled from its own stream and comes back as a [`Generation`] of
    /// its own, `candidate` 1, 2, … in this order. The llama.cpp engine
    /// evaluates the prompt once and forks its KV cache for them; a network
    /// backend sends one request per candidate.
    pub forks: Vec<u64>,
    /// Which candidate of its turn this request is: 0, unless a backend
    /// without KV forks split `forks` into requests of their own.
    pub candidate: u32,
    /// The per-turn note rendered into the last message (instruction or
    /// candidates). Engines ignore it; the conversation keeps it so later
    /// prompts repeat it and stay append-only.
    pub note: String,
}

/// What a generation continues.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    /// A chat, rendered by the engine's chat template with the reply's
    /// message opened.
    Chat(Vec<ChatMessage>),
    /// Plain text, continued as it is: no chat template, so base models
    /// (which have none, or were never tuned to one) can be used.
    Text(String),
}

impl GenerationRequest {
    /// The request split into one request per candidate (`forks` empty,
    /// `candidate` set): how a backend that cannot fork a KV cache serves
    /// best-of-N.
    pub fn split_candidates(mut self) -> Vec<GenerationRequest> {
        let forks = std::mem::take(&mut self.forks);
        let mut out = Vec::with_capacity(1 + forks.len());
        for (k, seed) in forks.into_iter().enumerate() {
            out.push(GenerationRequest {
                seed,
                candidate: k as u32 + 1,
                ..self.clone()
            });
        }
        out.insert(0, self);
        out
    }
}

impl Prompt {
    /// The chat messages, when it is a chat.
    pub fn messages(&self) -> Option<&[ChatMessage]> {
        match self {
            Prompt::Chat(m) => Some(m),
            Prompt::Text(_) => None,
        }
    }

    /// Every character the model reads, for size estimates: message
    /// contents, or the text.
    pub fn contents(&self) -> Vec<&str> {
        match self {
            Prompt::Chat(m) => m.iter().map(|m| m.content.as_str()).collect(),
            Prompt::Text(t) => vec![t.as_str()],
        }
    }
}

/// Why a generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its message.
    Stop,
    /// A stop string appeared.
    StopString,
    /// `max_tokens` reached.
    Length,
    /// The sequence's context is full.
    ContextFull,
}

/// A finished generation.
#[derive(Clone, Debug)]
pub struct Generation {
    /// Conversation it belongs to.
    pub conversation: u64,
    /// Side it generated for.
    pub side: Side,
    /// Generated text, stop string excluded, whitespace trimmed.
    pub text: String,
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Prompt tokens whose KV was reused instead of computed.
    pub reused_prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Why it stopped.
    pub finish: FinishReason,
    /// Which candidate of its request this is: 0 for the request's own
    /// seed, `k` for `forks[k - 1]`.
    pub candidate: u32,
}

/// What a backend tells the run record about itself.
#[derive(Clone, Debug, Serialize)]
pub struct BackendInfo {
    /// Engine name, e.g. `llama.cpp`.
    pub engine: String,
    /// Model name (registry name or file stem).
    pub model: String,
    /// sha256 of the model file.
    pub model_sha256: String,
    /// Context tokens available to one sequence.
    pub context_per_sequence: u32,
}

/// Counters a backend keeps across a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BackendStats {
    /// Prompt tokens computed (prefill).
    pub prompt_tokens_evaluated: u64,
    /// Prompt tokens served from cache (own history or shared prefix).
    pub prompt_tokens_reused: u64,
    /// Of those, tokens copied from the shared prefix.
    pub prompt_tokens_from_shared_prefix: u64,
    /// Tokens generated.
    pub tokens_generated: u64,
    /// Engine steps (batched decode calls).
    pub steps: u64,
    /// Seconds inside the engine's decode calls (all of them).
    pub decode_seconds: f64,
    /// Of those, seconds in calls that only decode generated tokens.
    pub generation_call_seconds: f64,
    /// Tokens evaluated by the calls that only decode generated tokens.
    pub generation_call_tokens: u64,
    /// Σ over those calls of their tokens × the context length of the
    /// call's deepest sequence (what llama.cpp's attention spans for every
    /// token of the call); ÷ `generation_call_tokens` = the mean depth the
    /// loop decoded at, which a raw ceiling must match to compare like with
    /// like.
    pub generation_depth_token_sum: u64,
    /// Calls that evaluate prompt tokens (one sequence each).
    pub prefill_calls: u64,
    /// Seconds sampling.
    pub sample_seconds: f64,
    /// KV cache bytes per sequence slot (the `--context` cells it may fill;
    /// what a split cache reserves for it).
    pub kv_bytes_per_sequence: u64,
    /// KV cache bytes per cached token (K and V of every layer, in the
    /// cache's element type).
    pub kv_bytes_per_token: u64,
    /// KV cache bytes the engine allocated (every sequence's stream, or
    /// the unified pool).
    pub kv_cache_bytes: u64,
    /// KV sequences each conversation holds (two sides and the best-of-N
    /// candidates).
    pub kv_sequences_per_conversation: u64,
    /// Most tokens the sequences held at once (a shared prefix copied into
    /// many sequences counts in each: an upper bound of a unified pool's
    /// cells in use, where copies share cells).
    pub peak_kv_tokens: u64,
    /// Decode tokens evaluated, in any call (packed calls mix them with
    /// prompt chunks).
    pub decode_tokens: u64,
    /// Σ over calls of their decode tokens × the deepest decoding
    /// sequence's context; ÷ `decode_tokens` = the mean depth decode ran at.
    pub decode_depth_token_sum: u64,
    /// Requests sent again after a connect error, timeout, 429 or 5xx
    /// (network backends).
    pub requests_retried: u64,
}

/// Errors from a generation backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The model file could not be loaded.
    #[error("{path}: cannot load model: {message}")]
    Load {
        /// Model file.
        path: String,
        /// Why.
        message: String,
    },
    /// The engine failed while running.
    #[error("backend: {0}")]
    Engine(String),
    /// A prompt does not fit the context of one sequence.
    #[error("prompt of {tokens} tokens does not fit the context of {context} tokens per sequence (raise --context)")]
    PromptTooLong {
        /// Prompt tokens.
        tokens: usize,
        /// Context per sequence.
        context: usize,
    },
    /// A backend option is invalid.
    #[error("{0}")]
    Config(String),
    /// A server answered something that is not what the protocol says
    /// (a 4xx, or a body that is not the expected JSON).
    #[error("{0}")]
    Protocol(String),
    /// No server could be reached, or every retry failed.
    #[error("{0}")]
    Unavailable(String),
    /// More requests were submitted than the backend can hold.
    #[error("backend is full: {0} requests in flight")]
    Full(usize),
}

impl BackendError {
    /// Whether the user's input (a model file, an option, a context too
    /// small for the prompts) was at fault.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            BackendError::Load { .. }
                | BackendError::Config(_)
                | BackendError::PromptTooLong { .. }
        )
    }
}

/// A generation engine. See the module docs for the calling pattern.
pub trait Backend {
    /// Engine and model description.
    fn info(&self) -> &BackendInfo;
    /// Most conversations whose state the backend can hold at once.
    fn max_conversations(&self) -> usize;
    /// Tell the backend what prompts will look like, so it can compute the
    /// part they share once (returns the shared prefix length in tokens).
    fn prepare_shared_prefix(&mut self, _examples: &[Prompt]) -> Result<usize, BackendError> {
        Ok(0)
    }
    /// Prompt length in tokens (for sizing checks).
    fn count_prompt_tokens(&self, prompt: &Prompt) -> Result<usize, BackendError>;
    /// Start a request.
    fn submit(&mut self, request: GenerationRequest) -> Result<(), BackendError>;
    /// Advance every request in flight; returns the ones that finished.
    fn step(&mut self) -> Result<Vec<Generation>, BackendError>;
    /// Requests in flight.
    fn in_flight(&self) -> usize;
    /// The conversation is over: drop its cached state.
    fn release(&mut self, conversation: u64);
    /// Counters so far.
    fn stats(&self) -> BackendStats;
}
