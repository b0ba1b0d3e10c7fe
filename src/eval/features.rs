//! TF-IDF features over word 1–2 grams and `char_wb` 2–4 grams.
//!
//! [`TfidfVectorizer::fit`] learns a vocabulary and inverse document
//! frequencies on training texts only; [`TfidfVectorizer::transform`] maps any
//! text to an L2-normalised [`SparseVec`]. Word and character blocks are each
//! weighted as `tf * idf` with the smoothed idf `ln((1+n)/(1+df)) + 1`, and the
//! concatenated vector is L2-normalised (or each block separately). Word
//! n-grams can include punctuation and `<s>`/`</s>` boundary tokens; optional
//! word-shape n-grams capture capitalisation. Feature names are prefixed `w:`
//! (word n-gram), `s:` (shape n-gram) or `c:` (character n-gram) so
//! coefficient listings are readable.

use std::collections::HashMap;

use super::text::{char_wb_ngrams, shape_tokens, tokenize, tokenize_with_punct, word_ngrams};

/// Errors of the vectorizer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FeatureError {
    /// No n-gram survived `min_df` / the training set was empty.
    #[error("empty vocabulary: no n-gram occurs in at least {min_df} of {n_docs} training texts")]
    EmptyVocabulary {
        /// Minimum document frequency asked for.
        min_df: usize,
        /// Number of training texts.
        n_docs: usize,
    },
}

/// A sparse vector: strictly increasing indices with their values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SparseVec {
    /// Feature indices, strictly increasing.
    pub idx: Vec<u32>,
    /// Values, one per index.
    pub val: Vec<f32>,
}

impl SparseVec {
    /// Dot product with a dense weight vector (indices beyond it count as 0).
    pub fn dot(&self, w: &[f64]) -> f64 {
        self.idx
            .iter()
            .zip(&self.val)
            .map(|(&i, &v)| w.get(i as usize).copied().unwrap_or(0.0) * v as f64)
            .sum()
    }

    /// Euclidean norm.
    pub fn norm(&self) -> f64 {
        self.val
            .iter()
            .map(|&v| (v as f64) * (v as f64))
            .sum::<f64>()
            .sqrt()
    }

    /// Appends `other`'s entries at `offset + index` (which must be above
    /// every current index), values times `scale`: one block of a feature
    /// vector made of several.
    pub fn append_sparse(&mut self, offset: u32, other: &SparseVec, scale: f32) {
        for (&i, &v) in other.idx.iter().zip(&other.val) {
            self.idx.push(offset + i);
            self.val.push(v * scale);
        }
    }

    /// Appends dense values at indices `offset..offset+dense.len()` (which must
    /// be above every current index); zeros are skipped.
    pub fn append_dense(&mut self, offset: u32, dense: &[f32], scale: f32) {
        for (j, &v) in dense.iter().enumerate() {
            if v != 0.0 {
                self.idx.push(offset + j as u32);
                self.val.push(v * scale);
            }
        }
    }
}

/// Settings of [`TfidfVectorizer`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TfidfConfig {
    /// Word n-gram orders (inclusive); `None` disables the word block.
    pub word_ngrams: Option<(usize, usize)>,
    /// `char_wb` n-gram orders (inclusive); `None` disables the char block.
    pub char_ngrams: Option<(usize, usize)>,
    /// Word-shape n-gram orders (see [`shape_tokens`]), prefixed `s:` and
    /// normalised with the word block; `None` disables them.
    pub shape_ngrams: Option<(usize, usize)>,
    /// Minimum number of training texts a feature must occur in.
    pub min_df: usize,
    /// Keep at most this many word (and shape) features (most frequent first).
    pub max_word_features: usize,
    /// Keep at most this many char features (most frequent first).
    pub max_char_features: usize,
    /// Use `1 + ln(tf)` instead of raw counts.
    pub sublinear_tf: bool,
    /// Add `<s>`/`</s>` boundary tokens to word n-grams (captures how texts
    /// start and end).
    pub boundary_tokens: bool,
    /// Keep punctuation runs as word tokens (see [`tokenize_with_punct`]).
    pub punctuation_tokens: bool,
    /// L2-normalise the word and char blocks separately (the word block to
    /// squared norm `word_block_share`, the char block to the rest) instead
    /// of the concatenation as a whole.
    pub per_block_norm: bool,
    /// Share of the squared norm given to the word block with
    /// `per_block_norm` (when both blocks are non-empty).
    pub word_block_share: f64,
}

impl Default for TfidfConfig {
    fn default() -> Self {
        Self {
            word_ngrams: Some((1, 2)),
            char_ngrams: Some((2, 4)),
            shape_ngrams: Some((1, 3)),
            min_df: 2,
            max_word_features: 20_000,
            max_char_features: 30_000,
            sublinear_tf: true,
            boundary_tokens: true,
            punctuation_tokens: true,
            per_block_norm: true,
            word_block_share: 0.8,
        }
    }
}

/// A fitted TF-IDF vectorizer.
#[derive(Clone, Debug)]
pub struct TfidfVectorizer {
    cfg: TfidfConfig,
    vocab: HashMap<String, u32>,
    names: Vec<String>,
    idf: Vec<f64>,
}

fn analyze(cfg: &TfidfConfig, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some((a, b)) = cfg.word_ngrams {
        let mut toks = if cfg.punctuation_tokens {
            tokenize_with_punct(text)
        } else {
            tokenize(text)
        };
        if cfg.boundary_tokens && !toks.is_empty() {
            toks.insert(0, "<s>".to_string());
            toks.push("</s>".to_string());
        }
        out.extend(
            word_ngrams(&toks, a, b)
                .into_iter()
                .map(|g| format!("w:{g}")),
        );
    }
    if let Some((a, b)) = cfg.shape_ngrams {
        let toks = shape_tokens(text);
        out.extend(
            word_ngrams(&toks, a, b)
                .into_iter()
                .map(|g| format!("s:{g}")),
        );
    }
    if let Some((a, b)) = cfg.char_ngrams {
        out.extend(
            char_wb_ngrams(text, a, b)
                .into_iter()
                .map(|g| format!("c:{g}")),
        );
    }
    out
}

impl TfidfVectorizer {
    /// Learns vocabulary and idf from `texts`.
    pub fn fit<S: AsRef<str>>(texts: &[S], cfg: &TfidfConfig) -> Result<Self, FeatureError> {
        let n = texts.len();
        // term -> (document frequency, total count)
        let mut stats: HashMap<String, (usize, usize)> = HashMap::new();
        for t in texts {
            let mut counts: HashMap<String, usize> = HashMap::new();
            for g in analyze(cfg, t.as_ref()) {
                *counts.entry(g).or_insert(0) += 1;
            }
            for (g, c) in counts {
                let e = stats.entry(g).or_insert((0, 0));
                e.0 += 1;
                e.1 += c;
            }
        }
        let mut words: Vec<(String, usize, usize)> = Vec::new();
        let mut chars: Vec<(String, usize, usize)> = Vec::new();
        for (g, (df, tot)) in stats {
            if df < cfg.min_df.max(1) {
                continue;
            }
            if !g.starts_with("c:") {
                words.push((g, df, tot));
            } else {
                chars.push((g, df, tot));
            }
        }
        let keep = |v: &mut Vec<(String, usize, usize)>, max: usize| {
            v.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
            v.truncate(max);
        };
        keep(&mut words, cfg.max_word_features);
        keep(&mut chars, cfg.max_char_features);
        let mut all: Vec<(String, usize, usize)> = words.into_iter().chain(chars).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        if all.is_empty() {
            return Err(FeatureError::EmptyVocabulary {
                min_df: cfg.min_df,
                n_docs: n,
            });
        }
        let mut vocab = HashMap::with_capacity(all.len());
        let mut names = Vec::with_capacity(all.len());
        let mut idf = Vec::with_capacity(all.len());
        for (i, (g, df, _)) in all.into_iter().enumerate() {
            idf.push(((1.0 + n as f64) / (1.0 + df as f64)).ln() + 1.0);
            vocab.insert(g.clone(), i as u32);
            names.push(g);
        }
        Ok(Self {
            cfg: cfg.clone(),
            vocab,
            names,
            idf,
        })
    }

    /// What a saved model needs to rebuild the vectorizer: its settings,
    /// feature names (in index order) and idf weights.
    pub fn parts(&self) -> (&TfidfConfig, &[String], &[f64]) {
        (&self.cfg, &self.names, &self.idf)
    }

    /// The vectorizer [`TfidfVectorizer::parts`] came from; `None` when the
    /// parts do not make one (lengths differ, a name repeats).
    pub fn from_parts(cfg: TfidfConfig, names: Vec<String>, idf: Vec<f64>) -> Option<Self> {
        if names.len() != idf.len() || names.is_empty() {
            return None;
        }
        let vocab: HashMap<String, u32> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
        (vocab.len() == names.len()).then_some(Self {
            cfg,
            vocab,
            names,
            idf,
        })
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.names.len()
    }

    /// Name of feature `i` (`w:` or `c:` prefix), if it exists.
    pub fn feature_name(&self, i: usize) -> Option<&str> {
        self.names.get(i).map(String::as_str)
    }

    /// Idf weight of feature `i`.
    pub fn idf(&self, i: usize) -> Option<f64> {
        self.idf.get(i).copied()
    }

    /// Maps one text to an L2-normalised sparse TF-IDF vector (all zero if no
    /// known n-gram occurs).
    pub fn transform(&self, text: &str) -> SparseVec {
        let mut counts: HashMap<u32, f64> = HashMap::new();
        for g in analyze(&self.cfg, text) {
            if let Some(&i) = self.vocab.get(&g) {
                *counts.entry(i).or_insert(0.0) += 1.0;
            }
        }
        let mut pairs: Vec<(u32, f64)> = counts
            .into_iter()
            .map(|(i, c)| {
                let tf = if self.cfg.sublinear_tf {
                    1.0 + c.ln()
                } else {
                    c
                };
                (i, tf * self.idf[i as usize])
            })
            .collect();
        pairs.sort_by_key(|p| p.0);
        if self.cfg.per_block_norm {
            let is_word = |i: u32| !self.names[i as usize].starts_with("c:");
            let nw = pairs
                .iter()
                .filter(|p| is_word(p.0))
                .map(|p| p.1 * p.1)
                .sum::<f64>()
                .sqrt();
            let nc = pairs
                .iter()
                .filter(|p| !is_word(p.0))
                .map(|p| p.1 * p.1)
                .sum::<f64>()
                .sqrt();
            let blocks = (nw > 0.0) as u8 + (nc > 0.0) as u8;
            let share = self.cfg.word_block_share.clamp(0.0, 1.0);
            let (bw, bc) = if blocks == 2 {
                (share.sqrt(), (1.0 - share).sqrt())
            } else {
                (1.0, 1.0)
            };
            for p in pairs.iter_mut() {
                let (n, b) = if is_word(p.0) { (nw, bw) } else { (nc, bc) };
                p.1 = if n > 0.0 { p.1 * b / n } else { 0.0 };
            }
        } else {
            let norm = pairs.iter().map(|p| p.1 * p.1).sum::<f64>().sqrt();
            let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
            pairs.iter_mut().for_each(|p| p.1 *= scale);
        }
        SparseVec {
            idx: pairs.iter().map(|p| p.0).collect(),
            val: pairs.iter().map(|p| p.1 as f32).collect(),
        }
    }

    /// Transforms many texts.
    pub fn transform_all<S: AsRef<str>>(&self, texts: &[S]) -> Vec<SparseVec> {
        texts.iter().map(|t| self.transform(t.as_ref())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words_only() -> TfidfConfig {
        TfidfConfig {
            word_ngrams: Some((1, 1)),
            char_ngrams: None,
            shape_ngrams: None,
            min_df: 1,
            sublinear_tf: false,
            boundary_tokens: false,
            punctuation_tokens: false,
            per_block_norm: false,
            ..TfidfConfig::default()
        }
    }

    #[test]
    fn idf_and_norm_match_sklearn() {
        // sklearn TfidfVectorizer(smooth_idf=True): docs "a b", "a c"
        // idf(a)=ln(3/3)+1=1, idf(b)=idf(c)=ln(3/2)+1=1.405465
        let v = TfidfVectorizer::fit(&["a b", "a c"], &words_only()).unwrap();
        assert_eq!(v.n_features(), 3);
        assert_eq!(v.feature_name(0), Some("w:a"));
        assert!((v.idf(1).unwrap() - 1.405465108).abs() < 1e-6);
        let x = v.transform("a b");
        // [1, 1.405465, 0] / norm -> [0.579739, 0.814802]
        assert_eq!(x.idx, vec![0, 1]);
        assert!((x.val[0] - 0.579739).abs() < 1e-5);
        assert!((x.val[1] - 0.814802).abs() < 1e-5);
        assert!((x.norm() - 1.0).abs() < 1e-6);
        assert!(v.transform("zzz").idx.is_empty());
    }

    #[test]
    fn min_df_and_max_features() {
        let cfg = TfidfConfig {
            min_df: 2,
            ..words_only()
        };
        let v = TfidfVectorizer::fit(&["a b", "a c", "a d"], &cfg).unwrap();
        assert_eq!(v.n_features(), 1);
        let cfg = TfidfConfig {
            max_word_features: 2,
            ..words_only()
        };
        let v = TfidfVectorizer::fit(&["a b b", "a c"], &cfg).unwrap();
        assert_eq!(v.n_features(), 2); // a (2) and b (2) beat c (1)
        assert!(TfidfVectorizer::fit(
            &["a", "b"],
            &TfidfConfig {
                min_df: 2,
                ..words_only()
            }
        )
        .is_err());
    }

    #[test]
    fn boundary_tokens_and_block_norm() {
        let cfg = TfidfConfig {
            boundary_tokens: true,
            per_block_norm: true,
            word_block_share: 0.5,
            min_df: 1,
            ..TfidfConfig::default()
        };
        let v = TfidfVectorizer::fit(&["hi there"], &cfg).unwrap();
        assert!((0..v.n_features()).any(|i| v.feature_name(i) == Some("w:<s> hi")));
        let x = v.transform("hi there");
        assert!((x.norm() - 1.0).abs() < 1e-6);
        let word_mass: f64 = x
            .idx
            .iter()
            .zip(&x.val)
            .filter(|(i, _)| {
                v.feature_name(**i as usize)
                    .is_some_and(|n| !n.starts_with("c:"))
            })
            .map(|(_, &x)| (x as f64).powi(2))
            .sum();
        assert!((word_mass - 0.5).abs() < 1e-6);
    }

    #[test]
    fn combined_blocks_are_prefixed() {
        let v = TfidfVectorizer::fit(&["hi there", "hi you"], &TfidfConfig::default()).unwrap();
        assert!((0..v.n_features()).any(|i| v.feature_name(i) == Some("w:hi")));
        assert!((0..v.n_features()).any(|i| v.feature_name(i) == Some("c: hi")));
    }
}
