//! llama.cpp's process-wide state: the backend, initialised once per
//! process, and loaded models, kept for the process so contexts can be
//! `'static`.
//!
//! Invariant: `LlamaBackend::init` runs at most once per process, and a
//! model file is loaded at most once per GPU offload setting.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use std::num::NonZeroU32;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;

use super::{KvLayout, LlamaConfig};
use crate::backend::BackendError;

/// llama.cpp's `llama_flash_attn_type`: 0 disabled, 1 enabled.
pub(super) fn flash_attention_policy(config: &LlamaConfig) -> i32 {
    i32::from(config.flash_attention)
}

/// llama.cpp may be initialised once per process.
pub(super) fn llama_backend() -> Result<&'static LlamaBackend, BackendError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| BackendError::Engine(format!("cannot initialise llama.cpp: {e}")))
}

/// A context borrows its model; models are loaded once per (file, offload)
/// and kept for the process so contexts can be `'static`.
pub(super) fn load_model(
    path: &Path,
    gpu_layers: u32,
) -> Result<&'static LlamaModel, BackendError> {
    static MODELS: OnceLock<Mutex<HashMap<(PathBuf, u32), &'static LlamaModel>>> = OnceLock::new();
    let backend = llama_backend()?;
    let key = (
        path.canonicalize().unwrap_or_else(|_| path.to_path_buf()),
        gpu_layers,
    );
    let mut models = MODELS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .map_err(|_| BackendError::Engine("model cache poisoned".into()))?;
    if let Some(m) = models.get(&key) {
        return Ok(m);
    }
    let params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
    let model =
        LlamaModel::load_from_file(backend, path, &params).map_err(|e| BackendError::Load {
            path: path.display().to_string(),
            message: format!("{e} (is it a complete GGUF file of a supported architecture?)"),
        })?;
    let model: &'static LlamaModel = Box::leak(Box::new(model));
    models.insert(key, model);
    Ok(model)
}

/// KV cells of a context for `n_seq` sequences of `ctx_per_seq` tokens:
/// a stream of `ctx_per_seq` each (split), or the unified pool's size
/// (`kv_pool_tokens`, by default as many cells as split would reserve).
pub(super) fn kv_cells(config: &LlamaConfig, ctx_per_seq: usize, n_seq: usize) -> usize {
    match (config.kv_layout, config.kv_pool_tokens) {
        (KvLayout::Unified, Some(pool)) => pool as usize,
        _ => ctx_per_seq * n_seq,
    }
}

/// The context parameters the engine and the raw ceiling share: `n_ctx`
/// tokens over `n_seq` sequences, calls of up to `budget` tokens, the
/// configured threads (0: all cores), the configured KV element type and
/// layout (split, `kv_unified` off, by default: a sequence's numbers do
/// not depend on its neighbours).
pub(super) fn context_params(
    config: &LlamaConfig,
    n_ctx: usize,
    n_seq: usize,
    budget: usize,
) -> LlamaContextParams {
    let threads = if config.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as i32
    } else {
        config.threads as i32
    };
    LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx as u32))
        .with_n_batch(budget as u32)
        .with_n_ubatch(budget.min(512) as u32)
        .with_n_seq_max(n_seq as u32)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_kv_unified(config.kv_layout == KvLayout::Unified)
        .with_type_k(config.kv_type.ggml())
        .with_type_v(config.kv_type.ggml())
        .with_flash_attention_policy(flash_attention_policy(config))
}
