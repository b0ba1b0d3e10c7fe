//! llama.cpp's process-wide state: the backend, initialised once per
//! process, and loaded models, kept for the process so contexts can be
//! `'static`.
//!
//! Invariant: `LlamaBackend::init` runs at most once per process, and a
//! model file is loaded at most once per GPU offload setting.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;

use super::LlamaConfig;
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
