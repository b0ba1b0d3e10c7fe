//! In-process llama.cpp backend: every live request of every conversation
//! decodes in one batch per step.
//!
//! Layout: one KV sequence per (conversation, side), kept between turns so a
//! side's prompt only prefills what is new since its last turn; a few
//! reserved sequences hold prompt prefixes shared by all sessions, evaluated
//! once and copied into a fresh sequence (full-range copy: a partial-range
//! copy aborts in the per-sequence KV layout). The per-sequence layout
//! (`kv_unified = false`) is the default on purpose: it keeps each
//! sequence's numbers independent of its batch neighbours, which is what
//! makes output identical across batch sizes on CPU. `--kv-layout unified`
//! (one pool, llama-server's way) is there for memory and GPUs; it needs
//! packed batching.
//!
//! A step's plan ([`super::batch`]) goes to llama.cpp in one call per
//! prefilling sequence plus one for the decode tokens (`invariant`), or in
//! a single call (`packed`, [`Batching`]): a GPU pays a launch and a
//! synchronisation per call, and its kernels promise no batch invariance
//! to keep anyway.
//!
//! Sampling is ours ([`crate::backend::sampler`]), seeded per request, so a sequence's
//! tokens depend only on its own logits and seed.
//!
//! The process-wide llama.cpp state (backend init, model cache) is in
//! [`process`]; the raw decode ceiling the bench compares against in [`raw`].
//!
//! Why ~950 lines: the engine's slot state, batch building and step are one
//! state machine over private types, tested through the real model.

use std::path::Path;
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

mod options;
mod process;
mod raw;

pub use options::{Batching, KvLayout, KvType};
pub use raw::{raw_decode_bench, RawDecodeBench};

use process::{context_params, has_repacked_weights, llama_backend, load_model};

use super::batch::{plan_step, SlotView, StepPlan};
use super::{
    Backend, BackendError, BackendInfo, BackendStats, FinishReason, Generation, GenerationRequest,
    Prompt,
};
use crate::backend::sampler::{Sampler, StopMatcher, StopState};
use crate::chat::{ChatMessage, ChatRole, Side};
use crate::rng::SessionRng;

/// Default context tokens per sequence.
pub const DEFAULT_CONTEXT_PER_SEQUENCE: u32 = 2048;
/// Default tokens per engine step (decode tokens plus prefill chunks).
pub const DEFAULT_STEP_TOKEN_BUDGET: u32 = 512;
/// Most sequences llama.cpp allows in one context.
pub const MAX_SEQUENCES: usize = 256;
/// Sequences reserved for shared prefixes (one per side).
pub const PREFIX_SEQUENCES: usize = 2;

/// Options of the llama.cpp engine.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LlamaConfig {
    /// Decode threads; 0 uses every available core.
    pub threads: u32,
    /// Context tokens available to each sequence.
    pub context_per_sequence: u32,
    /// Most tokens in one engine step; prefill is chunked to fit, so decode
    /// never waits long behind a long prompt.
    pub step_token_budget: u32,
    /// Layers offloaded to a GPU (only with the `cuda` feature).
    pub gpu_layers: u32,
    /// A jinja chat template that replaces the model's own.
    pub chat_template: Option<String>,
    /// Extra KV sequences each conversation holds for best-of-N candidates
    /// of one turn (`best_of - 1`; the run sets it). Each costs a full
    /// `context_per_sequence` of KV cache.
    pub forks_per_conversation: u32,
    /// Use flash attention. Off by default: llama.cpp's CPU flash-attention
    /// kernel is not batch-invariant (measured: up to 0.49 difference in a
    /// logit between a prompt evaluated whole and in two chunks), which
    /// breaks "same seed, same file whatever the batch size". Without it the
    /// logits are bit-identical across batch compositions. Worth turning on
    /// on a GPU, where the contract is per-run anyway.
    pub flash_attention: bool,
    /// How a step's tokens reach llama.cpp: `invariant` (one call for the
    /// decode tokens, one per prefilling sequence; the CPU default) or
    /// `packed` (all in one call; the default with `--features cuda`).
    pub batching: Batching,
    /// What the KV cache stores (`type_k` and `type_v`); `q8_0` needs
    /// `flash_attention`.
    pub kv_type: KvType,
    /// A stream of cells per sequence (`split`) or one shared pool
    /// (`unified`, needs `packed`).
    pub kv_layout: KvLayout,
    /// Cells of the unified pool (`None`: `context_per_sequence` for every
    /// sequence, the split layout's total). Smaller pools hold more
    /// conversations in the same memory; a run whose sequences outgrow the
    /// pool stops with an error naming this option.
    pub kv_pool_tokens: Option<u32>,
}

impl Default for LlamaConfig {
    fn default() -> Self {
        LlamaConfig {
            threads: 0,
            context_per_sequence: DEFAULT_CONTEXT_PER_SEQUENCE,
            step_token_budget: DEFAULT_STEP_TOKEN_BUDGET,
            gpu_layers: 0,
            chat_template: None,
            forks_per_conversation: 0,
            flash_attention: false,
            batching: Batching::default(),
            kv_type: KvType::default(),
            kv_layout: KvLayout::default(),
            kv_pool_tokens: None,
        }
    }
}

/// Token rows a repacked matrix multiplies together.
const ROW_GROUP: usize = 4;

/// Which generating sequences' pending tokens a llama.cpp call evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decoding {
    /// None: the call evaluates prompt chunks only.
    None,
    /// Every generating sequence's.
    All,
    /// One sequence's (a model whose rows are decoded apart).
    One(usize),
}

impl Decoding {
    /// Whether the call evaluates slot `i`'s pending token.
    fn takes(self, i: usize) -> bool {
        match self {
            Decoding::None => false,
            Decoding::All => true,
            Decoding::One(slot) => slot == i,
        }
    }
}

/// A request being prefetched or decoded in a slot.
struct Active {
    conversation: u64,
    side: Side,
    prompt: Vec<i32>,
    prompt_len: usize,
    reused: usize,
    generated: usize,
    /// Sampled but not yet fed to the model.
    pending: Option<i32>,
    rng: SessionRng,
    sampling: crate::backend::sampler::SamplingParams,
    stop: StopMatcher,
    utf8: Vec<u8>,
    /// Index in the current batch whose logits belong to this request.
    logits_at: Option<i32>,
    /// Prompt tokens put in the current batch.
    fed: usize,
    /// Which candidate of its request this is (0: the request's own seed).
    candidate: u32,
    /// Slots of the further candidates (best-of-N) waiting for this
    /// request's prompt: when its last prompt token's logits arrive, each
    /// gets a copy of the KV cache and samples its first token from the
    /// same logits, so the prompt is evaluated once.
    forks: Vec<usize>,
    /// A candidate waiting for its request's prompt: not scheduled until
    /// the fork gives it a cache.
    waiting_for_fork: bool,
}

/// One KV sequence.
struct Slot {
    seq: i32,
    owner: Option<(u64, Side)>,
    /// Tokens whose KV the sequence holds, positions 0..len.
    cached: Vec<i32>,
    active: Option<Active>,
    last_used: u64,
}

struct SharedPrefix {
    seq: i32,
    tokens: Vec<i32>,
}

/// The llama.cpp backend.
pub struct LlamaEngine {
    model: &'static LlamaModel,
    ctx: LlamaContext<'static>,
    /// `None`: the model has no chat template; chats are rendered as plain
    /// labelled paragraphs ([`plain_chat`]).
    template: Option<ChatTemplate>,
    info: BackendInfo,
    config: LlamaConfig,
    max_conversations: usize,
    slots: Vec<Slot>,
    prefixes: Vec<SharedPrefix>,
    batch: LlamaBatch<'static>,
    batch_capacity: usize,
    views: Vec<Option<SlotView>>,
    plan: StepPlan,
    sampler: Sampler,
    piece: Vec<u8>,
    finished_early: Vec<Generation>,
    stats: BackendStats,
    clock: u64,
    /// llama.cpp repacks some of this model's weights
    /// (`process::has_repacked_weights`), so a token row's numbers depend
    /// on its place in a call: with invariant batching each sequence then
    /// decodes in a call of its own and prompt chunks end at multiples of
    /// [`ROW_GROUP`] rows (or at the prompt's end), so every row meets the
    /// same kernel at any `--parallel`.
    rows_apart: bool,
}

enum ChatTemplate {
    Native(LlamaChatTemplate),
    Jinja {
        env: Box<minijinja::Environment<'static>>,
        bos: String,
        eos: String,
    },
}

impl LlamaEngine {
    /// Load `model_path` and size a context for `max_conversations`
    /// conversations (two sequences each).
    pub fn new(
        model_path: &Path,
        model_name: &str,
        model_sha256: &str,
        max_conversations: usize,
        config: &LlamaConfig,
    ) -> Result<LlamaEngine, BackendError> {
        let backend = llama_backend()?;
        config.check()?;
        if max_conversations == 0 {
            return Err(BackendError::Engine(
                "at least one conversation slot is needed".into(),
            ));
        }
        // Two sides, plus the extra candidates of a best-of-N turn.
        let per_conversation = 2 + config.forks_per_conversation as usize;
        let n_slots = per_conversation * max_conversations;
        let n_seq = n_slots + PREFIX_SEQUENCES;
        if n_seq > MAX_SEQUENCES {
            return Err(BackendError::Config(format!(
                "--parallel: {max_conversations} parallel conversations of {per_conversation} KV sequences each need {n_seq} sequences; llama.cpp allows {MAX_SEQUENCES} (expected at most {})",
                (MAX_SEQUENCES - PREFIX_SEQUENCES) / per_conversation
            )));
        }
        let model = load_model(model_path, config.gpu_layers)?;
        let ctx_per_seq = config
            .context_per_sequence
            .min(model.n_ctx_train().max(256));
        if ctx_per_seq < 64 {
            return Err(BackendError::Config(format!(
                "--context: {ctx_per_seq} tokens per sequence is too small (expected at least 64)"
            )));
        }
        let n_ctx = process::kv_cells(config, ctx_per_seq as usize, n_seq);
        let budget = (config.step_token_budget as usize).max(n_slots + 1);
        let params = context_params(config, n_ctx, n_seq, budget);
        let ctx = model.new_context(backend, params).map_err(|e| {
            BackendError::Engine(format!("cannot create context of {n_ctx} tokens: {e}"))
        })?;

        // A base model may have no template: text prompts need none, and
        // chats fall back to plain labelled paragraphs.
        let template = match &config.chat_template {
            Some(src) => Some(jinja_template(model, src.clone())?),
            None => model.chat_template(None).ok().map(ChatTemplate::Native),
        };

        let head_dim = model.n_embd() as u64 / u64::from(model.n_head().max(1));
        // K and V, every layer, in the cache's element type.
        let kv_bytes_per_token = 2 * config
            .kv_type
            .bytes(u64::from(model.n_layer()) * u64::from(model.n_head_kv()) * head_dim);
        let stats = BackendStats {
            kv_bytes_per_sequence: kv_bytes_per_token * u64::from(ctx_per_seq),
            kv_bytes_per_token,
            kv_cache_bytes: kv_bytes_per_token * n_ctx as u64,
            kv_sequences_per_conversation: per_conversation as u64,
            ..BackendStats::default()
        };
        let slots = (0..n_slots)
            .map(|i| Slot {
                seq: (PREFIX_SEQUENCES + i) as i32,
                owner: None,
                cached: Vec::new(),
                active: None,
                last_used: 0,
            })
            .collect();
        Ok(LlamaEngine {
            model,
            ctx,
            template,
            info: BackendInfo {
                engine: "llama.cpp".into(),
                model: model_name.to_string(),
                model_sha256: model_sha256.to_string(),
                context_per_sequence: ctx_per_seq,
            },
            config: config.clone(),
            max_conversations,
            slots,
            prefixes: Vec::new(),
            batch: LlamaBatch::new(budget, 1),
            batch_capacity: budget,
            views: Vec::new(),
            plan: StepPlan::default(),
            sampler: Sampler::new(model.n_vocab().max(1) as usize),
            piece: Vec::with_capacity(64),
            finished_early: Vec::new(),
            stats,
            clock: 0,
            rows_apart: has_repacked_weights(model_path, config.gpu_layers),
        })
    }

    /// The text the model reads: a chat rendered with the chat template
    /// (ending with the opening of an assistant message), or the text.
    pub fn render(&self, prompt: &Prompt) -> Result<String, BackendError> {
        let messages = match prompt {
            Prompt::Text(text) => return Ok(text.clone()),
            Prompt::Chat(messages) => messages,
        };
        let Some(template) = &self.template else {
            return Ok(plain_chat(messages));
        };
        match template {
            ChatTemplate::Native(t) => {
                let msgs = messages
                    .iter()
                    .map(|m| LlamaChatMessage::new(m.role.as_str().into(), m.content.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| BackendError::Engine(format!("chat message: {e}")))?;
                self.model
                    .apply_chat_template(t, &msgs, true)
                    .map_err(|e| BackendError::Engine(format!("chat template: {e}")))
            }
            ChatTemplate::Jinja { env, bos, eos } => {
                let t = env
                    .get_template("chat")
                    .map_err(|e| BackendError::Engine(format!("chat template: {e}")))?;
                t.render(minijinja::context! {
                    messages => messages,
                    add_generation_prompt => true,
                    bos_token => bos,
                    eos_token => eos,
                })
                .map_err(|e| BackendError::Engine(format!("chat template: {e}")))
            }
        }
    }

    fn tokenize(&self, text: &str) -> Vec<i32> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), true, true)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    /// Evaluate `tokens` into `seq` from position `start`, in chunks.
    fn prefill_blocking(
        &mut self,
        seq: i32,
        tokens: &[i32],
        start: usize,
    ) -> Result<(), BackendError> {
        let mut pos = start;
        while pos < tokens.len() {
            let end = (pos + self.batch_capacity).min(tokens.len());
            self.batch.clear();
            for (i, t) in tokens[pos..end].iter().enumerate() {
                let p = pos + i;
                self.batch
                    .add(LlamaToken(*t), p as i32, &[seq], p + 1 == tokens.len())
                    .map_err(|e| BackendError::Engine(format!("batch: {e}")))?;
            }
            let t0 = Instant::now();
            self.ctx
                .decode(&mut self.batch)
                .map_err(|e| BackendError::Engine(format!("decode: {e}")))?;
            self.stats.decode_seconds += t0.elapsed().as_secs_f64();
            self.stats.prompt_tokens_evaluated += (end - pos) as u64;
            pos = end;
        }
        Ok(())
    }

    /// An idle slot for a request of `(conversation, side)`: the one of its
    /// own slots whose cache shares most of `prompt` (after a best-of-N
    /// turn the chosen candidate's), else a free one, else the least
    /// recently used idle one.
    fn find_slot(&mut self, conversation: u64, side: Side, prompt: &[i32]) -> Option<usize> {
        let key = Some((conversation, side));
        let own = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.owner == key && s.active.is_none())
            .map(|(i, s)| (i, common_prefix_len(&s.cached, prompt)))
            // the first of equals, so the choice does not depend on ties
            .fold(None, |best: Option<(usize, usize)>, (i, n)| match best {
                Some((_, m)) if m >= n => best,
                _ => Some((i, n)),
            });
        if let Some((i, _)) = own {
            return Some(i);
        }
        if let Some(i) = self.slots.iter().position(|s| s.owner.is_none()) {
            return Some(i);
        }
        // Every slot is owned: take the least recently used idle one.
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active.is_none())
            .min_by_key(|(_, s)| s.last_used)
            .map(|(i, _)| i)
    }

    fn clear_seq(&mut self, seq: i32, from: usize) -> bool {
        let seq = seq as u32;
        let from = if from == 0 { None } else { Some(from as u32) };
        self.ctx
            .clear_kv_cache_seq(Some(seq), from, None)
            .unwrap_or(false)
    }

    fn finish(&mut self, slot: usize, finish: FinishReason) -> Generation {
        let s = &mut self.slots[slot];
        let a = s.active.take().expect("finish is called on an active slot");
        let text = a.stop.text();
        let text = match finish {
            FinishReason::StopString => text.to_string(),
            _ => {
                // Flush any bytes still waiting for the rest of a character.
                let mut t = text.to_string();
                t.push_str(&String::from_utf8_lossy(&a.utf8));
                t
            }
        };
        Generation {
            conversation: a.conversation,
            side: a.side,
            text: text.trim().to_string(),
            prompt_tokens: a.prompt_len as u32,
            reused_prompt_tokens: a.reused as u32,
            completion_tokens: a.generated as u32,
            finish,
            candidate: a.candidate,
        }
    }
}

/// A chat as plain labelled paragraphs, ending on an open `Assistant:`
/// line: how a model without a chat template (a base model) reads a chat
/// prompt, e.g. the built-in recommender's in a free run.
fn plain_chat(messages: &[ChatMessage]) -> String {
    let mut out = String::new();
    for m in messages {
        let label = match m.role {
            ChatRole::System => "System",
            ChatRole::User => "User",
            ChatRole::Assistant => "Assistant",
        };
        out.push_str(label);
        out.push_str(": ");
        out.push_str(m.content.trim());
        out.push_str("\n\n");
    }
    out.push_str("Assistant:");
    out
}

fn jinja_template(model: &LlamaModel, src: String) -> Result<ChatTemplate, BackendError> {
    let mut env = minijinja::Environment::new();
    env.add_template_owned("chat", src)
        .map_err(|e| BackendError::Engine(format!("chat_template: {e}")))?;
    let vocab = model.vocab();
    let piece =
        |t: LlamaToken| String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned();
    Ok(ChatTemplate::Jinja {
        env: Box::new(env),
        bos: piece(vocab.bos()),
        eos: piece(vocab.eos()),
    })
}

fn common_prefix_len(a: &[i32], b: &[i32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Backend for LlamaEngine {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    fn max_conversations(&self) -> usize {
        self.max_conversations
    }

    fn prepare_shared_prefix(&mut self, examples: &[Prompt]) -> Result<usize, BackendError> {
        if examples.len() < 2 || self.prefixes.len() >= PREFIX_SEQUENCES {
            return Ok(0);
        }
        let rendered = examples
            .iter()
            .map(|m| self.render(m))
            .collect::<Result<Vec<_>, _>>()?;
        let tokens: Vec<Vec<i32>> = rendered.iter().map(|r| self.tokenize(r)).collect();
        let mut len = tokens[0].len();
        for t in &tokens[1..] {
            len = len.min(common_prefix_len(&tokens[0], t));
        }
        // Too short to be worth a sequence of its own.
        if len < 16 {
            return Ok(0);
        }
        let prefix = tokens[0][..len].to_vec();
        let seq = self.prefixes.len() as i32;
        self.prefill_blocking(seq, &prefix, 0)?;
        tracing::debug!(tokens = len, seq, "shared prefix evaluated");
        self.prefixes.push(SharedPrefix {
            seq,
            tokens: prefix,
        });
        Ok(len)
    }

    fn count_prompt_tokens(&self, prompt: &Prompt) -> Result<usize, BackendError> {
        Ok(self.tokenize(&self.render(prompt)?).len())
    }

    fn submit(&mut self, req: GenerationRequest) -> Result<(), BackendError> {
        let rendered = self.render(&req.prompt)?;
        let prompt = self.tokenize(&rendered);
        let Some(slot) = self.find_slot(req.conversation, req.side, &prompt) else {
            return Err(BackendError::Full(self.in_flight()));
        };
        self.clock += 1;
        let ctx_per_seq = self.info.context_per_sequence as usize;
        let new_active = |seed: u64, candidate: u32| Active {
            conversation: req.conversation,
            side: req.side,
            prompt_len: prompt.len(),
            prompt: Vec::new(),
            reused: 0,
            generated: 0,
            pending: None,
            rng: SessionRng::seed_from_u64(seed),
            sampling: req.sampling.clone(),
            stop: StopMatcher::new(&req.sampling.stop),
            utf8: Vec::new(),
            logits_at: None,
            fed: 0,
            candidate,
            forks: Vec::new(),
            waiting_for_fork: false,
        };
        let mut active = new_active(req.seed, 0);
        let owner_changed = self.slots[slot].owner != Some((req.conversation, req.side));
        if owner_changed {
            let seq = self.slots[slot].seq;
            self.clear_seq(seq, 0);
            self.slots[slot].cached.clear();
            self.slots[slot].owner = Some((req.conversation, req.side));
        }
        self.slots[slot].last_used = self.clock;

        if prompt.len() + 1 >= ctx_per_seq {
            // The conversation outgrew its context: end it cleanly rather
            // than fail the run, every candidate alike.
            for (k, &seed) in std::iter::once(&req.seed).chain(&req.forks).enumerate() {
                self.slots[slot].active = Some(new_active(seed, k as u32));
                let g = self.finish(slot, FinishReason::ContextFull);
                self.finished_early.push(g);
            }
            return Ok(());
        }

        // The further candidates' slots, held (active, waiting) until the
        // prompt is in the cache.
        self.slots[slot].active = Some(new_active(req.seed, 0));
        for (k, &seed) in req.forks.iter().enumerate() {
            let Some(fork) = self.find_slot(req.conversation, req.side, &[]) else {
                // Undo: nothing of this request stays queued.
                for &f in &active.forks {
                    self.slots[f].active = None;
                }
                self.slots[slot].active = None;
                return Err(BackendError::Full(self.in_flight()));
            };
            if self.slots[fork].owner != Some((req.conversation, req.side)) {
                self.slots[fork].owner = Some((req.conversation, req.side));
            }
            self.slots[fork].last_used = self.clock;
            let mut waiting = new_active(seed, k as u32 + 1);
            waiting.waiting_for_fork = true;
            self.slots[fork].active = Some(waiting);
            active.forks.push(fork);
        }

        // Reuse the longest cached prefix: the slot's own history or a
        // shared prefix, whichever covers more of the prompt.
        let own = common_prefix_len(&self.slots[slot].cached, &prompt);
        let (best_prefix, shared) = self
            .prefixes
            .iter()
            .map(|p| (p.seq, common_prefix_len(&p.tokens, &prompt)))
            .max_by_key(|(_, n)| *n)
            .unwrap_or((-1, 0));
        let seq = self.slots[slot].seq;
        let mut keep;
        if shared > own {
            self.clear_seq(seq, 0);
            self.ctx
                .copy_kv_cache_seq(best_prefix, seq, None, None)
                .map_err(|e| BackendError::Engine(format!("kv copy: {e}")))?;
            keep = shared;
            self.stats.prompt_tokens_from_shared_prefix += shared.min(prompt.len() - 1) as u64;
            self.slots[slot].cached = self.prefixes[best_prefix as usize].tokens.clone();
        } else {
            keep = own;
        }
        // The last prompt token is always evaluated: its logits start the reply.
        keep = keep.min(prompt.len() - 1);
        if keep < self.slots[slot].cached.len() && !self.clear_seq(seq, keep) {
            self.clear_seq(seq, 0);
            keep = 0;
        }
        self.slots[slot].cached.truncate(keep);
        active.reused = keep;
        tracing::debug!(
            conversation = req.conversation,
            side = ?req.side,
            slot,
            prompt = prompt.len(),
            reused = keep,
            seed = req.seed,
            candidates = 1 + req.forks.len(),
            digest = prompt.iter().fold(0u64, |h, &t| h.wrapping_mul(31).wrapping_add(t as u64)),
            "request queued"
        );
        self.stats.prompt_tokens_reused += keep as u64;
        active.prompt = prompt;
        self.slots[slot].active = Some(active);
        Ok(())
    }

    fn step(&mut self) -> Result<Vec<Generation>, BackendError> {
        let mut done = std::mem::take(&mut self.finished_early);
        // See `batch`: invariant batching puts all decode tokens in one call
        // and each prompt chunk in a call of its own, so output does not
        // depend on --parallel; packed batching puts the whole plan in one.
        self.views.clear();
        self.views.extend(self.slots.iter().map(|s| {
            // A waiting candidate gets its cache from its request's fork.
            s.active
                .as_ref()
                .filter(|a| !a.waiting_for_fork)
                .map(|a| SlotView {
                    pending: a.pending.is_some(),
                    cached: s.cached.len(),
                    prompt_len: a.prompt.len(),
                })
        }));
        let mut plan = std::mem::take(&mut self.plan);
        // Chunk ends matter only where a call's rows must not depend on
        // their place in it.
        let align = match self.config.batching {
            Batching::Invariant if self.rows_apart => ROW_GROUP,
            _ => 1,
        };
        plan_step(&self.views, self.batch_capacity, align, &mut plan);
        let result = match self.config.batching {
            // One call for everything planned: what a GPU wants.
            Batching::Packed if plan.tokens() > 0 => {
                let decoding = if plan.decode.is_empty() {
                    Decoding::None
                } else {
                    Decoding::All
                };
                self.run_call(decoding, &plan.prefill, &mut done)
            }
            Batching::Packed => Ok(()),
            Batching::Invariant => {
                let mut result = Ok(());
                if self.rows_apart {
                    for &slot in &plan.decode {
                        if result.is_err() {
                            break;
                        }
                        result = self.run_call(Decoding::One(slot), &[], &mut done);
                    }
                } else if !plan.decode.is_empty() {
                    result = self.run_call(Decoding::All, &[], &mut done);
                }
                for &chunk in &plan.prefill {
                    if result.is_err() {
                        break;
                    }
                    result = self.run_call(Decoding::None, &[chunk], &mut done);
                }
                result
            }
        };
        self.note_kv_in_use();
        self.plan = plan;
        result.map(|()| done)
    }
    fn in_flight(&self) -> usize {
        self.slots.iter().filter(|s| s.active.is_some()).count() + self.finished_early.len()
    }

    fn release(&mut self, conversation: u64) {
        for i in 0..self.slots.len() {
            if self.slots[i].owner.is_some_and(|(c, _)| c == conversation) {
                let seq = self.slots[i].seq;
                self.clear_seq(seq, 0);
                let s = &mut self.slots[i];
                s.owner = None;
                s.cached.clear();
                s.active = None;
            }
        }
    }

    fn stats(&self) -> BackendStats {
        self.stats.clone()
    }
}

impl LlamaEngine {
    /// Evaluate one llama.cpp batch: every pending decode token (`decode`)
    /// and the planned prompt chunks of `prefill`; then sample where logits
    /// arrived. Invariant batching calls it with decode alone or one chunk
    /// alone; packed batching with the whole step.
    fn run_call(
        &mut self,
        decoding: Decoding,
        prefill: &[(usize, usize)],
        done: &mut Vec<Generation>,
    ) -> Result<(), BackendError> {
        self.batch.clear();
        let mut n = 0i32;
        let mut n_decode = 0u64;
        // Context of the deepest decoding sequence, counting its new token.
        let mut depth = 0u64;
        for (i, s) in self.slots.iter_mut().enumerate() {
            let Some(a) = s.active.as_mut() else { continue };
            a.logits_at = None;
            a.fed = 0;
            if !decoding.takes(i) {
                continue;
            }
            if let Some(tok) = a.pending {
                let pos = s.cached.len() as i32;
                self.batch
                    .add(LlamaToken(tok), pos, &[s.seq], true)
                    .map_err(|e| BackendError::Engine(format!("batch: {e}")))?;
                a.logits_at = Some(n);
                n += 1;
                n_decode += 1;
                depth = depth.max(pos as u64 + 1);
            }
        }
        for &(i, tokens) in prefill {
            let s = &mut self.slots[i];
            let Some(a) = s.active.as_mut() else { continue };
            let start = s.cached.len();
            let end = (start + tokens).min(a.prompt.len());
            for p in start..end {
                let last = p + 1 == a.prompt.len();
                self.batch
                    .add(LlamaToken(a.prompt[p]), p as i32, &[s.seq], last)
                    .map_err(|e| BackendError::Engine(format!("batch: {e}")))?;
                if last {
                    a.logits_at = Some(n);
                }
                n += 1;
            }
            a.fed = end - start;
        }
        if n == 0 {
            return Ok(());
        }
        if tracing::enabled!(tracing::Level::TRACE) {
            let mut desc = String::new();
            for s in &self.slots {
                if let Some(a) = &s.active {
                    use std::fmt::Write as _;
                    let _ = write!(
                        desc,
                        "[c{} {:?} seq{} from{} pend{} fed{}] ",
                        a.conversation,
                        a.side,
                        s.seq,
                        s.cached.len(),
                        a.pending.is_some(),
                        a.fed
                    );
                }
            }
            tracing::trace!(n, "step {desc}");
        }
        let t0 = Instant::now();
        self.ctx.decode(&mut self.batch).map_err(|e| match e {
            // Only a unified pool can run out: a split cache reserves every
            // sequence's full context.
            llama_cpp_2::DecodeError::NoKvCacheSlot => BackendError::Config(format!(
                "--kv-pool: the unified KV pool of {} cells is full (expected more cells, or a lower --parallel)",
                self.stats.kv_cache_bytes / self.stats.kv_bytes_per_token.max(1)
            )),
            e => BackendError::Engine(format!("decode of {n} tokens failed: {e}")),
        })?;
        let call_seconds = t0.elapsed().as_secs_f64();
        self.stats.decode_seconds += call_seconds;
        self.stats.steps += 1;
        self.stats.decode_tokens += n_decode;
        self.stats.decode_depth_token_sum += n_decode * depth;
        if prefill.is_empty() {
            self.stats.generation_call_seconds += call_seconds;
            self.stats.generation_call_tokens += n as u64;
            self.stats.generation_depth_token_sum += n as u64 * depth;
        } else {
            self.stats.prefill_calls += 1;
        }

        // Record what the cache now holds.
        for (i, s) in self.slots.iter_mut().enumerate() {
            let Some(a) = s.active.as_mut() else { continue };
            // A token sampled in an earlier call of this step is not in
            // this one: only a call decoding this sequence takes its
            // pending token.
            if let (true, Some(tok)) = (decoding.takes(i), a.pending) {
                a.pending = None;
                s.cached.push(tok);
            } else if a.fed > 0 {
                let start = s.cached.len();
                s.cached.extend_from_slice(&a.prompt[start..start + a.fed]);
                self.stats.prompt_tokens_evaluated += a.fed as u64;
                a.fed = 0;
            }
        }
        let t1 = Instant::now();
        // Best-of-N: each further candidate of a prompt that just completed
        // takes a copy of its KV cache and samples its first token from the
        // same logits (from its own stream), so the prompt is evaluated
        // once for all of them.
        let mut forks: Vec<(usize, i32, Vec<usize>)> = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            let Some(a) = s.active.as_mut() else { continue };
            if let (Some(at), false) = (a.logits_at, a.forks.is_empty()) {
                forks.push((i, at, std::mem::take(&mut a.forks)));
            }
        }
        for (main, at, candidates) in forks {
            let (seq, cached) = (self.slots[main].seq, self.slots[main].cached.clone());
            for slot in candidates {
                let fork_seq = self.slots[slot].seq;
                self.clear_seq(fork_seq, 0);
                self.ctx
                    .copy_kv_cache_seq(seq, fork_seq, None, None)
                    .map_err(|e| BackendError::Engine(format!("kv copy: {e}")))?;
                let s = &mut self.slots[slot];
                s.cached.clone_from(&cached);
                if let Some(a) = s.active.as_mut() {
                    a.waiting_for_fork = false;
                    a.reused = a.prompt_len;
                    a.logits_at = Some(at);
                }
            }
        }
        let ctx_per_seq = self.info.context_per_sequence as usize;
        let mut finished: Vec<(usize, FinishReason)> = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            let Some(a) = s.active.as_mut() else { continue };
            let Some(at) = a.logits_at else { continue };
            let logits = self.ctx.get_logits_ith(at);
            let next = sample_next(
                self.model,
                &mut self.sampler,
                &mut self.piece,
                logits,
                a,
                &s.cached,
                ctx_per_seq,
            );
            if let Some(reason) = next {
                finished.push((i, reason));
            }
        }
        self.stats.sample_seconds += t1.elapsed().as_secs_f64();
        for (i, reason) in finished {
            let g = self.finish(i, reason);
            self.stats.tokens_generated += u64::from(g.completion_tokens);
            done.push(g);
        }
        Ok(())
    }
}

/// Sample `a`'s next token from `logits` with its own stream; `cached` is
/// its sequence's cache. Returns why the generation ended, or `None` when
/// the token waits to be decoded.
fn sample_next(
    model: &LlamaModel,
    sampler: &mut Sampler,
    piece: &mut Vec<u8>,
    logits: &[f32],
    a: &mut Active,
    cached: &[i32],
    ctx_per_seq: usize,
) -> Option<FinishReason> {
    let vocab = model.vocab();
    let recent_from = cached
        .len()
        .saturating_sub(a.sampling.repeat_last_n as usize);
    let tok = sampler.sample(logits, &a.sampling, &cached[recent_from..], &mut a.rng);
    if vocab.is_eog(LlamaToken(tok)) {
        return Some(FinishReason::Stop);
    }
    a.generated += 1;
    piece.clear();
    vocab.token_to_piece_into(LlamaToken(tok), piece, false, None);
    a.utf8.extend_from_slice(piece);
    let mut stopped = false;
    match std::str::from_utf8(&a.utf8) {
        Ok(text) => {
            stopped = matches!(a.stop.push(text), StopState::Stopped { .. });
            a.utf8.clear();
        }
        Err(e) if e.error_len().is_none() => {
            // Wait for the rest of a multi-byte character.
            let valid = e.valid_up_to();
            if valid > 0 {
                let head = String::from_utf8_lossy(&a.utf8[..valid]).into_owned();
                stopped = matches!(a.stop.push(&head), StopState::Stopped { .. });
                a.utf8.drain(..valid);
            }
        }
        Err(_) => {
            let text = String::from_utf8_lossy(&a.utf8).into_owned();
            stopped = matches!(a.stop.push(&text), StopState::Stopped { .. });
            a.utf8.clear();
        }
    }
    if stopped {
        Some(FinishReason::StopString)
    } else if a.generated >= a.sampling.max_tokens as usize {
        Some(FinishReason::Length)
    } else if cached.len() + 1 >= ctx_per_seq {
        Some(FinishReason::ContextFull)
    } else {
        a.pending = Some(tok);
        None
    }
}

impl LlamaEngine {
    /// Track the most tokens the sequences hold at once (what a unified
    /// pool must have room for).
    fn note_kv_in_use(&mut self) {
        let held: usize = self.slots.iter().map(|s| s.cached.len()).sum::<usize>()
            + self.prefixes.iter().map(|p| p.tokens.len()).sum::<usize>();
        self.stats.peak_kv_tokens = self.stats.peak_kv_tokens.max(held as u64);
    }

    /// The engine's configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }
}
