//! The raw ceiling: llama.cpp decoding alone on this model and machine,
//! with the engine's context shape, which `bench` holds the real loop
//! against.

use std::path::Path;
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use serde::Serialize;

use super::process::{context_params, kv_cells, llama_backend, load_model};
use super::{LlamaConfig, MAX_SEQUENCES, PREFIX_SEQUENCES};
use crate::backend::BackendError;

/// Throughput of llama.cpp alone on this model and machine: the ceiling the
/// real loop is measured against.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RawDecodeBench {
    /// Sequences decoding together.
    pub sequences: usize,
    /// Prompt (prefill) tokens per second.
    pub prompt_tokens_per_second: f64,
    /// Decode tokens per second, all sequences together.
    pub decode_tokens_per_second: f64,
}

/// Decode `steps` tokens on each of `sequences` sequences in lockstep, each
/// holding a `prompt_tokens`-token context, with logits for every sequence
/// at every step (as the real loop needs). No sampling work beyond feeding
/// back a fixed token: this is the engine's own ceiling. The prompt is
/// prefilled once, in calls of the step budget (that sets the prompt rate),
/// and its KV copied to the other sequences, so a deep context costs one
/// prefill, not one per sequence.
pub fn raw_decode_bench(
    model_path: &Path,
    sequences: usize,
    prompt_tokens: usize,
    steps: usize,
    config: &LlamaConfig,
) -> Result<RawDecodeBench, BackendError> {
    let backend = llama_backend()?;
    config.check()?;
    let model = load_model(model_path, config.gpu_layers)?;
    // The same context shape as the engine would make for this many
    // conversations, so the two numbers compare like with like.
    let n_seq = (2 * sequences + PREFIX_SEQUENCES).min(MAX_SEQUENCES);
    let ctx_per_seq = config
        .context_per_sequence
        .min(model.n_ctx_train().max(256)) as usize;
    let budget = (config.step_token_budget as usize).max(2 * sequences + 1);
    let params = context_params(config, kv_cells(config, ctx_per_seq, n_seq), n_seq, budget);
    let mut ctx = model
        .new_context(backend, params)
        .map_err(|e| BackendError::Engine(format!("context: {e}")))?;
    // Room for the steps after the prompt, inside one sequence's context.
    let prompt_len = prompt_tokens
        .max(1)
        .min(ctx_per_seq.saturating_sub(steps + 1).max(1));
    let prompt: Vec<LlamaToken> = model
        .vocab()
        .tokenize(
            b"The quick brown fox jumps over the lazy dog. ",
            false,
            false,
        )
        .into_iter()
        .cycle()
        .take(prompt_len)
        .collect();
    let mut batch = LlamaBatch::new(budget.max(sequences), 1);
    let t0 = Instant::now();
    for (chunk_at, chunk) in prompt.chunks(budget).enumerate() {
        batch.clear();
        for (i, t) in chunk.iter().enumerate() {
            let p = chunk_at * budget + i;
            batch
                .add(*t, p as i32, &[0], p + 1 == prompt.len())
                .map_err(|e| BackendError::Engine(format!("batch: {e}")))?;
        }
        ctx.decode(&mut batch)
            .map_err(|e| BackendError::Engine(format!("decode: {e}")))?;
    }
    let prefill = t0.elapsed().as_secs_f64();
    for s in 1..sequences {
        ctx.copy_kv_cache_seq(0, s as i32, None, None)
            .map_err(|e| BackendError::Engine(format!("kv copy: {e}")))?;
    }
    let tok = prompt[0];
    let mut step_batch = |step: usize, ctx: &mut LlamaContext| -> Result<(), BackendError> {
        batch.clear();
        for s in 0..sequences {
            batch
                .add(tok, (prompt.len() + step) as i32, &[s as i32], true)
                .map_err(|e| BackendError::Engine(format!("batch: {e}")))?;
        }
        ctx.decode(&mut batch)
            .map_err(|e| BackendError::Engine(format!("decode: {e}")))
    };
    // The first step applies the copies and sizes llama.cpp's buffers: not
    // timed.
    step_batch(0, &mut ctx)?;
    let t1 = Instant::now();
    for step in 1..=steps {
        step_batch(step, &mut ctx)?;
    }
    let decode = t1.elapsed().as_secs_f64();
    Ok(RawDecodeBench {
        sequences,
        prompt_tokens_per_second: prompt.len() as f64 / prefill.max(1e-9),
        decode_tokens_per_second: (steps * sequences) as f64 / decode.max(1e-9),
    })
}
