//! Sentence embeddings with a local BERT-family model (all-MiniLM-L6-v2 by default).
//!
//! This reproduces what `sentence-transformers` does for
//! `sentence-transformers/all-MiniLM-L6-v2`:
//!
//! 1. WordPiece tokenisation from the model's `tokenizer.json`, with truncation to
//!    [`EmbedConfig::max_tokens`] tokens (including `[CLS]`/`[SEP]`) and padding to the
//!    longest sequence of each batch;
//! 2. a BERT forward pass on the CPU (`candle`), with the attention mask so that
//!    padding never influences real tokens;
//! 3. mean pooling of the last hidden state over the attention mask;
//! 4. L2 normalisation, so the dot product of two vectors is their cosine similarity.
//!
//! Texts are processed in batches of [`EmbedConfig::batch_size`], sorted by length first
//! (as `sentence-transformers` does) so that little compute is wasted on padding; results
//! come back in input order. Everything is deterministic for a given input list and
//! thread count.
//!
//! [`embed_cached`] adds an on-disk cache of whole embedding runs, keyed by the model's
//! fingerprint and the exact list of texts.
//!
//! The model directory is the Hugging Face snapshot layout: `config.json`,
//! `tokenizer.json`, `model.safetensors`, and optionally the sentence-transformers file
//! `1_Pooling/config.json` (checked to ask for mean pooling).
//!
//! Why one file of ~720 lines: tokenizer set-up, the candle BERT forward pass, pooling and the vector cache form one pipeline with one config.

use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Name of the model directory under `<usersim cache>/models/` used by default.
pub const DEFAULT_MODEL_NAME: &str = "all-minilm-l6-v2";

/// Magic bytes at the start of every embedding cache file (format version 1).
const CACHE_MAGIC: &[u8; 8] = b"USEMB001";
/// Size of the cache file header: magic, count (u64 LE), dim (u64 LE).
const CACHE_HEADER_LEN: usize = 8 + 8 + 8;

/// Errors from loading the embedding model, embedding texts, or the embedding cache.
///
/// Every variant names the file or configuration field at fault where there is one.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A file could not be read or inspected.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written (cache file, temporary file or cache directory).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory that could not be written.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON configuration file of the model is malformed.
    #[error("invalid JSON in {path}: {source}")]
    Json {
        /// The offending file.
        path: PathBuf,
        /// The parse error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A model file is readable but unusable (wrong values, unsupported settings).
    #[error("unsupported model file {path}: {reason}")]
    Unsupported {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The tokenizer file could not be loaded or configured.
    #[error("cannot load tokenizer {path}: {message}")]
    Tokenizer {
        /// The `tokenizer.json` file.
        path: PathBuf,
        /// The tokenizers library's message.
        message: String,
    },
    /// The weights could not be loaded into the BERT model.
    #[error("cannot load weights from {path}: {source}")]
    Weights {
        /// The `model.safetensors` file.
        path: PathBuf,
        /// The candle error (for example a missing or mis-shaped tensor).
        #[source]
        source: candle_core::Error,
    },
    /// A field of [`EmbedConfig`] has an invalid value.
    #[error("invalid embed config field `{field}`: {reason}")]
    Config {
        /// The field name, as written in configuration files.
        field: &'static str,
        /// Why the value is rejected.
        reason: String,
    },
    /// Tokenising the input texts failed.
    #[error("tokenising input text #{index} failed: {message}")]
    Tokenize {
        /// Index (in the caller's slice) of the first text of the failing batch.
        index: usize,
        /// The tokenizers library's message.
        message: String,
    },
    /// The forward pass or pooling failed.
    #[error("embedding inference failed: {0}")]
    Inference(#[from] candle_core::Error),
    /// The worker thread pool could not be created.
    #[error("cannot create a thread pool for `threads` = {threads}: {message}")]
    ThreadPool {
        /// The requested thread count.
        threads: usize,
        /// The rayon error message.
        message: String,
    },
    /// An embedding cache file exists but is not a valid cache file for this request.
    #[error("invalid embedding cache file {path}: {reason}")]
    CacheFormat {
        /// The cache file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Configuration of the sentence embedder.
///
/// In configuration files every field is optional; unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedConfig {
    /// Directory holding `config.json`, `tokenizer.json` and `model.safetensors`.
    ///
    /// Defaults to `<usersim cache>/models/all-minilm-l6-v2`, where the usersim cache is
    /// `$USERSIM_CACHE`, else `$XDG_CACHE_HOME/usersim`, else `$HOME/.cache/usersim`.
    pub model_dir: PathBuf,
    /// Number of texts per forward pass (default 32). Must be at least 1.
    pub batch_size: usize,
    /// Maximum tokens per text, `[CLS]` and `[SEP]` included (default 128, as in the
    /// model's `tokenizer.json`); longer texts are truncated. Must be between 2 and the
    /// model's `max_position_embeddings`. Note that sentence-transformers itself uses
    /// `max_seq_length` from `sentence_bert_config.json` (256 for all-MiniLM-L6-v2), so
    /// texts longer than 128 tokens embed differently there unless this is raised to 256.
    pub max_tokens: usize,
    /// Number of threads for tokenisation and matrix products, run in a pool owned by
    /// the [`Embedder`]; `None` uses the process-wide rayon pool. Must be at least 1.
    /// (candle's element-wise kernels use their own process-wide pool, sized by
    /// `CANDLE_NUM_THREADS`, else `RAYON_NUM_THREADS`, else one per physical core.)
    pub threads: Option<usize>,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        Self {
            model_dir: default_model_dir(),
            batch_size: 32,
            max_tokens: 128,
            threads: None,
        }
    }
}

/// The default model directory: the registry's embedding model in the
/// usersim cache (`usersim models pull all-minilm-l6-v2` puts it there).
fn default_model_dir() -> PathBuf {
    crate::models::cache_dir()
        .join("models")
        .join(DEFAULT_MODEL_NAME)
}

/// The subset of sentence-transformers' `1_Pooling/config.json` that we check.
#[derive(Debug, Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    word_embedding_dimension: Option<usize>,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

/// A loaded sentence-embedding model, ready to embed texts.
///
/// Loading reads the whole model into memory; embedding is CPU-only.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
    batch_size: usize,
    max_tokens: usize,
    pool: Option<rayon::ThreadPool>,
    fingerprint: String,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dim", &self.dim)
            .field("batch_size", &self.batch_size)
            .field("max_tokens", &self.max_tokens)
            .field(
                "threads",
                &self.pool.as_ref().map(|p| p.current_num_threads()),
            )
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, EmbedError> {
    fs::read(path).map_err(|source| EmbedError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_json<T: for<'de> Deserialize<'de>>(path: &Path, bytes: &[u8]) -> Result<T, EmbedError> {
    serde_json::from_slice(bytes).map_err(|source| EmbedError::Json {
        path: path.to_path_buf(),
        source,
    })
}

impl Embedder {
    /// Loads the tokenizer, configuration and weights from `config.model_dir`.
    ///
    /// Validates the configuration and the model files; every error names the field or
    /// file at fault. The model fingerprint used by [`embed_cached`] is the SHA-256 of the
    /// weights, tokenizer and model configuration plus `max_tokens`.
    pub fn load(config: &EmbedConfig) -> Result<Embedder, EmbedError> {
        if config.batch_size == 0 {
            return Err(EmbedError::Config {
                field: "batch_size",
                reason: "must be at least 1".into(),
            });
        }
        if config.threads == Some(0) {
            return Err(EmbedError::Config {
                field: "threads",
                reason: "must be at least 1 (omit it for the default)".into(),
            });
        }
        let dir = &config.model_dir;

        let config_path = dir.join("config.json");
        let config_bytes = read_file(&config_path)?;
        let bert_config: BertConfig = parse_json(&config_path, &config_bytes)?;
        if bert_config.hidden_size == 0 || bert_config.num_attention_heads == 0 {
            return Err(EmbedError::Unsupported {
                path: config_path,
                reason: "hidden_size and num_attention_heads must be positive".into(),
            });
        }
        if config.max_tokens < 2 || config.max_tokens > bert_config.max_position_embeddings {
            return Err(EmbedError::Config {
                field: "max_tokens",
                reason: format!(
                    "{} is outside 2..={} (max_position_embeddings of {})",
                    config.max_tokens,
                    bert_config.max_position_embeddings,
                    config_path.display()
                ),
            });
        }

        // sentence-transformers pooling settings, when present, must ask for mean pooling.
        let pooling_path = dir.join("1_Pooling").join("config.json");
        if pooling_path.exists() {
            let pooling: PoolingConfig = parse_json(&pooling_path, &read_file(&pooling_path)?)?;
            if !pooling.pooling_mode_mean_tokens
                || pooling.pooling_mode_cls_token
                || pooling.pooling_mode_max_tokens
                || pooling.pooling_mode_mean_sqrt_len_tokens
                || pooling.pooling_mode_weightedmean_tokens
                || pooling.pooling_mode_lasttoken
            {
                return Err(EmbedError::Unsupported {
                    path: pooling_path,
                    reason: "only pooling_mode_mean_tokens = true (alone) is supported".into(),
                });
            }
            if let Some(d) = pooling.word_embedding_dimension {
                if d != bert_config.hidden_size {
                    return Err(EmbedError::Unsupported {
                        path: pooling_path,
                        reason: format!(
                            "word_embedding_dimension {d} differs from hidden_size {} in config.json",
                            bert_config.hidden_size
                        ),
                    });
                }
            }
        }

        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer_bytes = read_file(&tokenizer_path)?;
        let tok_err = |message: String| EmbedError::Tokenizer {
            path: tokenizer_path.clone(),
            message,
        };
        let mut tokenizer =
            Tokenizer::from_bytes(&tokenizer_bytes).map_err(|e| tok_err(e.to_string()))?;
        // Pad each batch to its longest member (the file pads to a fixed 128), keeping the
        // file's pad token.
        let padding = match tokenizer.get_padding() {
            Some(p) => PaddingParams {
                strategy: PaddingStrategy::BatchLongest,
                pad_to_multiple_of: None,
                ..p.clone()
            },
            None => PaddingParams::default(),
        };
        tokenizer.with_padding(Some(padding));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: config.max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| tok_err(e.to_string()))?;

        let weights_path = dir.join("model.safetensors");
        let weights = read_file(&weights_path)?;
        let mut hasher = Sha256::new();
        for part in [&weights[..], &tokenizer_bytes[..], &config_bytes[..]] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        hasher.update((config.max_tokens as u64).to_le_bytes());
        let fingerprint = hex::encode(hasher.finalize());

        let device = Device::Cpu;
        let weights_err = |source| EmbedError::Weights {
            path: weights_path.clone(),
            source,
        };
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(weights_err)?;
        let model = BertModel::load(vb, &bert_config).map_err(weights_err)?;

        let pool = match config.threads {
            Some(n) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("usersim-embed-{i}"))
                    .build()
                    .map_err(|e| EmbedError::ThreadPool {
                        threads: n,
                        message: e.to_string(),
                    })?,
            ),
            None => None,
        };

        Ok(Embedder {
            model,
            tokenizer,
            device,
            dim: bert_config.hidden_size,
            batch_size: config.batch_size,
            max_tokens: config.max_tokens,
            pool,
            fingerprint,
        })
    }

    /// Dimension of the embedding vectors (384 for all-MiniLM-L6-v2).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Hex SHA-256 identifying the model files and `max_tokens`; part of the cache key.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Embeds `texts`, returning one unit-length vector of [`Embedder::dim`] floats per
    /// text, in input order. An empty slice gives an empty result.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        match &self.pool {
            Some(pool) => pool.install(|| self.embed_inner(texts)),
            None => self.embed_inner(texts),
        }
    }

    fn embed_inner(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        // Longest first, like sentence-transformers, so batches hold similar lengths.
        // Character count is a cheap proxy for token count; ties keep input order.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].chars().count()));

        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
            let vectors = self.embed_batch(&batch).map_err(|e| match e {
                EmbedError::Tokenize { message, .. } => EmbedError::Tokenize {
                    index: chunk.iter().copied().min().unwrap_or(0),
                    message,
                },
                other => other,
            })?;
            for (&i, v) in chunk.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Embeds one batch (already sized): tokenise, forward, mean-pool, normalise.
    fn embed_batch(&self, batch: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(batch.to_vec(), true)
            .map_err(|e| EmbedError::Tokenize {
                index: 0,
                message: e.to_string(),
            })?;
        let n = encodings.len();
        let seq_len = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(n * seq_len);
        let mut type_ids = Vec::with_capacity(n * seq_len);
        let mut mask = Vec::with_capacity(n * seq_len);
        for enc in &encodings {
            if enc.get_ids().len() != seq_len {
                return Err(EmbedError::Tokenize {
                    index: 0,
                    message: "batch padding produced sequences of different lengths".into(),
                });
            }
            ids.extend_from_slice(enc.get_ids());
            type_ids.extend_from_slice(enc.get_type_ids());
            mask.extend_from_slice(enc.get_attention_mask());
        }
        let ids = Tensor::from_vec(ids, (n, seq_len), &self.device)?;
        let type_ids = Tensor::from_vec(type_ids, (n, seq_len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, seq_len), &self.device)?;

        // (n, seq, hidden)
        let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?;
        // Mean over real tokens: sum(h * m) / max(sum(m), 1e-9), as sentence-transformers.
        let mask_f = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, seq, 1)
        let summed = hidden.broadcast_mul(&mask_f)?.sum(1)?; // (n, hidden)
        let counts = mask_f.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (n, 1)
        let mean = summed.broadcast_div(&counts)?;
        // L2 normalisation as torch.nn.functional.normalize (eps 1e-12).
        let norms = mean
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        let normed = mean.broadcast_div(&norms)?;
        Ok(normed.to_vec2::<f32>()?)
    }
}

/// Cache key: SHA-256 over the model fingerprint and every text, each text length-prefixed
/// and followed by a separator byte so that no two different lists share a key.
fn cache_key(embedder: &Embedder, texts: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(b"usersim-embed-v1\0");
    h.update(embedder.fingerprint.as_bytes());
    h.update((texts.len() as u64).to_le_bytes());
    for t in texts {
        h.update((t.len() as u64).to_le_bytes());
        h.update(t.as_bytes());
        h.update([0x1e]); // ASCII record separator
    }
    hex::encode(h.finalize())
}

/// Parses a cache file; `expect` is the (count, dim) the caller needs.
fn decode_cache(
    path: &Path,
    bytes: &[u8],
    expect: (usize, usize),
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let bad = |reason: String| EmbedError::CacheFormat {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < CACHE_HEADER_LEN || &bytes[..8] != CACHE_MAGIC {
        return Err(bad("missing header or wrong magic".into()));
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let (count, dim) = (word(8), word(16));
    if (count, dim) != (expect.0 as u64, expect.1 as u64) {
        return Err(bad(format!(
            "header says {count} vectors of dim {dim}, expected {} of dim {}",
            expect.0, expect.1
        )));
    }
    let body = &bytes[CACHE_HEADER_LEN..];
    if body.len() as u64 != count * dim * 4 {
        return Err(bad(format!(
            "body is {} bytes, expected {} (count {count} x dim {dim} x 4)",
            body.len(),
            count * dim * 4
        )));
    }
    let floats: Vec<f32> = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if dim == 0 {
        return Ok(vec![Vec::new(); expect.0]);
    }
    Ok(floats.chunks_exact(expect.1).map(<[f32]>::to_vec).collect())
}

/// Encodes vectors in the cache format: magic, count u64 LE, dim u64 LE, f32 LE values.
fn encode_cache(vectors: &[Vec<f32>], dim: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(CACHE_HEADER_LEN + vectors.len() * dim * 4);
    buf.extend_from_slice(CACHE_MAGIC);
    buf.extend_from_slice(&(vectors.len() as u64).to_le_bytes());
    buf.extend_from_slice(&(dim as u64).to_le_bytes());
    for v in vectors {
        for x in v {
            buf.extend_from_slice(&x.to_le_bytes());
        }
    }
    buf
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EmbedError> {
    crate::atomic::write_atomic(path, bytes).map_err(|source| EmbedError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Path of the cache file that [`embed_cached`] uses for `texts` under `cache_dir`.
pub fn cache_path(embedder: &Embedder, texts: &[String], cache_dir: &Path) -> PathBuf {
    cache_dir.join(format!("{}.emb", cache_key(embedder, texts)))
}

/// Like [`Embedder::embed`], but reuses an on-disk cache under `cache_dir`.
///
/// The cache file is `<cache_dir>/<sha256>.emb`, keyed by the embedder's
/// [fingerprint](Embedder::fingerprint) and the exact list of texts (order included). Its
/// format is the magic `USEMB001`, the vector count and dimension as little-endian `u64`,
/// then the vectors as little-endian `f32`. A present, valid file is returned without
/// running the model; a missing or invalid one is (re)computed and written atomically
/// (temporary file + rename), creating `cache_dir` if needed.
pub fn embed_cached(
    embedder: &Embedder,
    texts: &[String],
    cache_dir: &Path,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let path = cache_path(embedder, texts, cache_dir);
    match fs::read(&path) {
        Ok(bytes) => {
            // An unusable file (truncated, foreign) is treated as a miss and overwritten.
            if let Ok(v) = decode_cache(&path, &bytes, (texts.len(), embedder.dim)) {
                return Ok(v);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(EmbedError::Read { path, source }),
    }
    let vectors = embedder.embed(texts)?;
    fs::create_dir_all(cache_dir).map_err(|source| EmbedError::Write {
        path: cache_dir.to_path_buf(),
        source,
    })?;
    write_atomic(&path, &encode_cache(&vectors, embedder.dim))?;
    Ok(vectors)
}

/// Cosine similarity of two vectors (their dot product when both are unit length, as
/// [`Embedder::embed`] returns). Returns 0 for empty or zero vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        dot += f64::from(*x) * f64::from(*y);
        na += f64::from(*x) * f64::from(*x);
        nb += f64::from(*y) * f64::from(*y);
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    (dot / (na.sqrt() * nb.sqrt())) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c = EmbedConfig::default();
        assert_eq!(c.batch_size, 32);
        assert_eq!(c.max_tokens, 128);
        assert_eq!(c.threads, None);
        assert!(c.model_dir.ends_with("models/all-minilm-l6-v2"));
        let c: EmbedConfig = serde_json::from_str(r#"{"batch_size": 8}"#).expect("parse");
        assert_eq!(c.batch_size, 8);
        assert_eq!(c.max_tokens, 128);
        let err = serde_json::from_str::<EmbedConfig>(r#"{"batchsize": 8}"#)
            .expect_err("unknown field must be rejected");
        assert!(err.to_string().contains("batchsize"), "{err}");
    }

    #[test]
    fn cache_codec_roundtrip_and_rejects_bad_files() {
        let v = vec![vec![1.0f32, -2.5, 0.25], vec![0.0, 3.0, f32::MIN_POSITIVE]];
        let bytes = encode_cache(&v, 3);
        assert_eq!(bytes.len(), CACHE_HEADER_LEN + 2 * 3 * 4);
        let p = Path::new("x.emb");
        assert_eq!(decode_cache(p, &bytes, (2, 3)).expect("decode"), v);
        assert!(decode_cache(p, &bytes, (2, 4)).is_err());
        assert!(decode_cache(p, &bytes[..bytes.len() - 1], (2, 3)).is_err());
        let err = decode_cache(p, b"garbage", (2, 3)).expect_err("bad magic");
        assert!(err.to_string().contains("x.emb"), "{err}");
    }

    #[test]
    fn missing_model_dir_names_the_file() {
        let c = EmbedConfig {
            model_dir: PathBuf::from("/nonexistent/usersim-model"),
            ..EmbedConfig::default()
        };
        let err = Embedder::load(&c).expect_err("must fail");
        assert!(
            err.to_string()
                .contains("/nonexistent/usersim-model/config.json"),
            "{err}"
        );
    }

    #[test]
    fn malformed_model_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = EmbedConfig {
            model_dir: dir.path().to_path_buf(),
            ..EmbedConfig::default()
        };
        fs::write(dir.path().join("config.json"), "{").expect("write");
        let err = Embedder::load(&cfg).expect_err("bad json");
        assert!(matches!(err, EmbedError::Json { .. }), "{err}");
        assert!(err.to_string().contains("config.json"), "{err}");

        let bert = r#"{"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
            "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0}"#;
        fs::write(dir.path().join("config.json"), bert).expect("write");
        fs::create_dir(dir.path().join("1_Pooling")).expect("mkdir");
        fs::write(
            dir.path().join("1_Pooling/config.json"),
            r#"{"pooling_mode_cls_token": true}"#,
        )
        .expect("write");
        let err = Embedder::load(&cfg).expect_err("cls pooling");
        assert!(err.to_string().contains("1_Pooling/config.json"), "{err}");

        fs::remove_dir_all(dir.path().join("1_Pooling")).expect("rm");
        let err = Embedder::load(&EmbedConfig {
            max_tokens: 513,
            ..cfg.clone()
        })
        .expect_err("max_tokens too large");
        assert!(err.to_string().contains("max_tokens"), "{err}");
        let err = Embedder::load(&cfg).expect_err("no tokenizer");
        assert!(err.to_string().contains("tokenizer.json"), "{err}");
    }

    #[test]
    fn invalid_fields_are_named() {
        for (c, field) in [
            (
                EmbedConfig {
                    batch_size: 0,
                    ..EmbedConfig::default()
                },
                "batch_size",
            ),
            (
                EmbedConfig {
                    threads: Some(0),
                    ..EmbedConfig::default()
                },
                "threads",
            ),
        ] {
            let err = Embedder::load(&c).expect_err("must fail");
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn cosine_basics() {
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
        assert_eq!(cosine(&[], &[]), 0.0);
    }
}
