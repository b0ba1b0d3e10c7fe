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

/// Whether llama.cpp will repack some of the model's weights on this CPU
/// (its `CPU_REPACK` buffer: Q4_0, Q4_K, IQ4_NL and MXFP4 on x86 with AVX2;
/// on ARM also Q8_0, Q5_K and Q6_K). A repacked matrix multiplies the token
/// rows of a call four at a time and the rest one by one, with another
/// summation order, so a row's numbers depend on its place in the call:
/// the engine then decodes each sequence in a call of its own and cuts
/// prompts at multiples of four (see `LlamaEngine::rows_apart`). Read from
/// the GGUF header's tensor types; a header it cannot read counts as
/// repacked (the slower, exact way).
pub(super) fn has_repacked_weights(path: &Path, gpu_layers: u32) -> bool {
    if gpu_layers > 0 {
        return false;
    }
    // ggml types: Q4_0 2, Q5_K 13, Q4_K 12, Q6_K 14, Q8_0 8, IQ4_NL 20, MXFP4 39.
    let repacked: &[u32] = if cfg!(target_arch = "aarch64") {
        &[2, 8, 12, 13, 14, 20, 39]
    } else if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
        if cfg!(target_feature = "avx2") {
            &[2, 12, 20, 39]
        } else {
            &[]
        }
    } else {
        &[2, 8, 12, 20]
    };
    match gguf_tensor_types(path) {
        Ok(types) => types.iter().any(|t| repacked.contains(t)),
        Err(e) => {
            tracing::debug!("{}: cannot read tensor types: {e}", path.display());
            true
        }
    }
}

/// The ggml type of every tensor in a GGUF file, from its header.
fn gguf_tensor_types(path: &Path) -> std::io::Result<Vec<u32>> {
    use std::io::{BufReader, Error, ErrorKind, Read};
    fn u32_of(r: &mut impl Read) -> std::io::Result<u32> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64_of(r: &mut impl Read) -> std::io::Result<u64> {
        let mut b = [0u8; 8];
        r.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn skip(r: &mut impl Read, n: u64) -> std::io::Result<()> {
        let copied = std::io::copy(&mut r.take(n), &mut std::io::sink())?;
        if copied < n {
            return Err(Error::new(ErrorKind::UnexpectedEof, "truncated header"));
        }
        Ok(())
    }
    fn skip_value(r: &mut impl Read, ty: u32) -> std::io::Result<()> {
        match ty {
            0 | 1 | 7 => skip(r, 1),
            2 | 3 => skip(r, 2),
            4..=6 => skip(r, 4),
            10..=12 => skip(r, 8),
            8 => {
                let n = u64_of(r)?;
                skip(r, n)
            }
            9 => {
                let inner = u32_of(r)?;
                let n = u64_of(r)?;
                for _ in 0..n {
                    skip_value(r, inner)?;
                }
                Ok(())
            }
            t => Err(Error::new(
                ErrorKind::InvalidData,
                format!("value type {t}"),
            )),
        }
    }
    let mut r = BufReader::new(std::fs::File::open(path)?);
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if &magic != b"GGUF" || u32_of(&mut r)? < 2 {
        return Err(Error::new(ErrorKind::InvalidData, "not a GGUF v2/v3 file"));
    }
    let n_tensors = u64_of(&mut r)?;
    let n_kv = u64_of(&mut r)?;
    for _ in 0..n_kv {
        let key_len = u64_of(&mut r)?;
        skip(&mut r, key_len)?;
        let ty = u32_of(&mut r)?;
        skip_value(&mut r, ty)?;
    }
    let mut types = Vec::new();
    for _ in 0..n_tensors {
        let name_len = u64_of(&mut r)?;
        skip(&mut r, name_len)?;
        let n_dims = u32_of(&mut r)?;
        skip(&mut r, 8 * u64::from(n_dims))?;
        types.push(u32_of(&mut r)?);
        skip(&mut r, 8)?;
    }
    Ok(types)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF v3 header: one string key, then the given tensors.
    fn header(tensors: &[(&str, &[u64], u32)]) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend((tensors.len() as u64).to_le_bytes());
        b.extend(1u64.to_le_bytes());
        let key = b"general.name";
        b.extend((key.len() as u64).to_le_bytes());
        b.extend(key);
        b.extend(8u32.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        b.extend(b"xy");
        for (name, dims, ty) in tensors {
            b.extend((name.len() as u64).to_le_bytes());
            b.extend(name.as_bytes());
            b.extend((dims.len() as u32).to_le_bytes());
            for d in *dims {
                b.extend(d.to_le_bytes());
            }
            b.extend(ty.to_le_bytes());
            b.extend(0u64.to_le_bytes());
        }
        b
    }

    #[test]
    fn tensor_types_come_from_the_gguf_header() {
        let dir = std::env::temp_dir().join(format!("usersim-gguf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let q4k = dir.join("q4k.gguf");
        std::fs::write(
            &q4k,
            header(&[("blk.0.w", &[64, 64], 12), ("norm", &[64], 0)]),
        )
        .unwrap();
        assert_eq!(gguf_tensor_types(&q4k).unwrap(), vec![12, 0]);
        // Q4_1 and F32 only: nothing llama.cpp repacks.
        let q41 = dir.join("q41.gguf");
        std::fs::write(
            &q41,
            header(&[("blk.0.w", &[64, 64], 3), ("norm", &[64], 0)]),
        )
        .unwrap();
        assert!(!has_repacked_weights(&q41, 0));
        if cfg!(all(target_arch = "x86_64", target_feature = "avx2")) {
            assert!(has_repacked_weights(&q4k, 0));
        }
        // On a GPU nothing is repacked; an unreadable header is the exact way.
        assert!(!has_repacked_weights(&q4k, 99));
        let torn = dir.join("torn.gguf");
        std::fs::write(&torn, &header(&[("blk.0.w", &[64, 64], 3)])[..40]).unwrap();
        assert!(gguf_tensor_types(&torn).is_err());
        assert!(has_repacked_weights(&torn, 0));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
