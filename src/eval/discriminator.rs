//! Real-vs-simulated discriminator.
//!
//! Given real and simulated texts (single user turns, or whole conversations
//! as the seeker's turns joined), [`discriminate`] balances the classes by
//! seeded downsampling, runs stratified k-fold cross-validation of TF-IDF +
//! logistic regression (optionally with dense embedding features appended),
//! and reports out-of-fold accuracy and ROC AUC with bootstrap 95% intervals.
//! A final model fitted on all (balanced) data lists the n-grams that most
//! indicate "simulated" (positive class) and "real".
//!
//! An AUC near 0.5 means the simulator's text cannot be told apart from real
//! text by this model; near 1.0 means it is easy to spot.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::features::{FeatureError, SparseVec, TfidfConfig, TfidfVectorizer};
use super::logreg::{LogReg, LogRegConfig, LogRegError};
use super::stats::{self, bootstrap_ci, roc_auc, roc_curve, stratified_kfold, Estimate};

/// Errors of the discriminator.
#[derive(Debug, thiserror::Error)]
pub enum DiscriminatorError {
    /// Too few texts in a class.
    #[error("need at least {need} texts per class, got {real} real and {sim} simulated")]
    TooFew {
        /// Required per class.
        need: usize,
        /// Real texts.
        real: usize,
        /// Simulated texts.
        sim: usize,
    },
    /// Embeddings do not line up with texts.
    #[error("embeddings: {0}")]
    Embeddings(String),
    /// Feature extraction failed.
    #[error(transparent)]
    Features(#[from] FeatureError),
    /// Model fitting failed.
    #[error(transparent)]
    LogReg(#[from] LogRegError),
    /// A statistic failed.
    #[error(transparent)]
    Stats(#[from] stats::StatsError),
}

/// Settings of [`discriminate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiscriminatorConfig {
    /// Cross-validation folds.
    pub folds: usize,
    /// Seed of downsampling, folds and bootstrap.
    pub seed: u64,
    /// Bootstrap resamples for the intervals.
    pub n_bootstrap: usize,
    /// Cap on texts per class after balancing (`None`: the smaller class size).
    pub max_per_class: Option<usize>,
    /// Features.
    pub tfidf: TfidfConfig,
    /// Classifier.
    pub logreg: LogRegConfig,
    /// Number of top n-grams listed per direction.
    pub top_k: usize,
    /// Scale of the (L2-normalised) dense features relative to TF-IDF.
    pub dense_scale: f32,
}

impl Default for DiscriminatorConfig {
    fn default() -> Self {
        Self {
            folds: 5,
            seed: 13,
            n_bootstrap: 1000,
            max_per_class: Some(3000),
            tfidf: TfidfConfig::default(),
            logreg: LogRegConfig::default(),
            top_k: 20,
            dense_scale: 1.0,
        }
    }
}

/// Result of [`discriminate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiscriminatorResult {
    /// Texts used per class after balancing.
    pub n_per_class: usize,
    /// Out-of-fold accuracy at probability 0.5.
    pub accuracy: Estimate,
    /// Out-of-fold ROC AUC.
    pub auc: Estimate,
    /// Out-of-fold ROC curve (at most ~200 points), `(fpr, tpr)`.
    pub roc: Vec<(f64, f64)>,
    /// Features with the most positive ("simulated") coefficients.
    pub top_simulated: Vec<(String, f64)>,
    /// Features with the most negative ("real") coefficients.
    pub top_real: Vec<(String, f64)>,
    /// Whether dense features were appended.
    pub used_dense: bool,
}

fn thin_roc(pts: Vec<(f64, f64)>, max: usize) -> Vec<(f64, f64)> {
    if pts.len() <= max {
        return pts;
    }
    let step = pts.len() as f64 / max as f64;
    let mut out: Vec<(f64, f64)> = (0..max).map(|i| pts[(i as f64 * step) as usize]).collect();
    if let Some(&last) = pts.last() {
        out.push(last);
    }
    out
}

fn l2(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter().map(|x| x / n).collect()
    } else {
        v.to_vec()
    }
}

/// Dense vectors (one per text) of the real and the simulated set.
pub type DensePair<'a> = (&'a [Vec<f32>], &'a [Vec<f32>]);

/// Trains and cross-validates a real (label 0) vs simulated (label 1)
/// classifier. `dense`, if given, holds one embedding per text of `real` and
/// `sim` respectively.
pub fn discriminate<S: AsRef<str>>(
    real: &[S],
    sim: &[S],
    dense: Option<DensePair<'_>>,
    cfg: &DiscriminatorConfig,
) -> Result<DiscriminatorResult, DiscriminatorError> {
    let need = cfg.folds.max(2);
    if real.len() < need || sim.len() < need {
        return Err(DiscriminatorError::TooFew {
            need,
            real: real.len(),
            sim: sim.len(),
        });
    }
    let dim = match dense {
        Some((dr, ds)) => {
            if dr.len() != real.len() || ds.len() != sim.len() {
                return Err(DiscriminatorError::Embeddings(format!(
                    "{} real / {} simulated embeddings for {} / {} texts",
                    dr.len(),
                    ds.len(),
                    real.len(),
                    sim.len()
                )));
            }
            let d = dr.first().or(ds.first()).map_or(0, Vec::len);
            if dr.iter().chain(ds).any(|v| v.len() != d) {
                return Err(DiscriminatorError::Embeddings(
                    "embeddings of different lengths".into(),
                ));
            }
            Some(d)
        }
        None => None,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut n = real.len().min(sim.len());
    if let Some(m) = cfg.max_per_class {
        n = n.min(m.max(need));
    }
    let mut ri: Vec<usize> = (0..real.len()).collect();
    let mut si: Vec<usize> = (0..sim.len()).collect();
    ri.shuffle(&mut rng);
    si.shuffle(&mut rng);
    ri.truncate(n);
    si.truncate(n);
    ri.sort_unstable();
    si.sort_unstable();
    // examples: (text, label, dense)
    let mut texts: Vec<&str> = Vec::with_capacity(2 * n);
    let mut labels: Vec<bool> = Vec::with_capacity(2 * n);
    let mut dvecs: Vec<Option<&Vec<f32>>> = Vec::with_capacity(2 * n);
    for &i in &ri {
        texts.push(real[i].as_ref());
        labels.push(false);
        dvecs.push(dense.map(|d| &d.0[i]));
    }
    for &i in &si {
        texts.push(sim[i].as_ref());
        labels.push(true);
        dvecs.push(dense.map(|d| &d.1[i]));
    }
    let featurize = |vec: &TfidfVectorizer, idx: &[usize]| -> Vec<SparseVec> {
        idx.iter()
            .map(|&i| {
                let mut x = vec.transform(texts[i]);
                if let Some(dv) = dvecs[i] {
                    x.append_dense(vec.n_features() as u32, &l2(dv), cfg.dense_scale);
                }
                x
            })
            .collect()
    };
    let folds = stratified_kfold(&labels, cfg.folds, cfg.seed ^ 0x9e37_79b9);
    let mut scores = vec![0.0; texts.len()];
    for k in 0..cfg.folds {
        let train: Vec<usize> = (0..texts.len()).filter(|&i| folds[i] != k).collect();
        let test: Vec<usize> = (0..texts.len()).filter(|&i| folds[i] == k).collect();
        if test.is_empty() {
            continue;
        }
        let tr_texts: Vec<&str> = train.iter().map(|&i| texts[i]).collect();
        let vec = TfidfVectorizer::fit(&tr_texts, &cfg.tfidf)?;
        let xtr = featurize(&vec, &train);
        let ytr: Vec<bool> = train.iter().map(|&i| labels[i]).collect();
        let model = LogReg::fit(&xtr, &ytr, vec.n_features() + dim.unwrap_or(0), &cfg.logreg)?;
        for (x, &i) in featurize(&vec, &test).iter().zip(&test) {
            scores[i] = model.predict_proba(x);
        }
    }
    let auc_of = |ix: &[usize]| -> Option<f64> {
        let s: Vec<f64> = ix.iter().map(|&i| scores[i]).collect();
        let l: Vec<bool> = ix.iter().map(|&i| labels[i]).collect();
        roc_auc(&s, &l).ok()
    };
    let acc_of = |ix: &[usize]| -> Option<f64> {
        Some(
            ix.iter()
                .filter(|&&i| (scores[i] >= 0.5) == labels[i])
                .count() as f64
                / ix.len().max(1) as f64,
        )
    };
    let auc = bootstrap_ci(
        texts.len(),
        cfg.n_bootstrap,
        cfg.seed.wrapping_add(1),
        auc_of,
    )
    .ok_or(stats::StatsError::OneClass { pos: n, neg: n })?;
    let accuracy = bootstrap_ci(
        texts.len(),
        cfg.n_bootstrap,
        cfg.seed.wrapping_add(2),
        acc_of,
    )
    .ok_or(stats::StatsError::Empty("discriminator predictions"))?;
    let roc = thin_roc(roc_curve(&scores, &labels), 200);
    // final model on everything for the coefficient listing
    let all: Vec<usize> = (0..texts.len()).collect();
    let vec = TfidfVectorizer::fit(&texts, &cfg.tfidf)?;
    let x = featurize(&vec, &all);
    let model = LogReg::fit(
        &x,
        &labels,
        vec.n_features() + dim.unwrap_or(0),
        &cfg.logreg,
    )?;
    let nf = vec.n_features();
    let mut coefs: Vec<(usize, f64)> = model.weights[..nf].iter().copied().enumerate().collect();
    coefs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let name = |i: usize| vec.feature_name(i).unwrap_or("?").to_string();
    let top_simulated = coefs
        .iter()
        .take(cfg.top_k)
        .map(|&(i, w)| (name(i), w))
        .collect();
    let top_real = coefs
        .iter()
        .rev()
        .take(cfg.top_k)
        .map(|&(i, w)| (name(i), w))
        .collect();
    Ok(DiscriminatorResult {
        n_per_class: n,
        accuracy,
        auc,
        roc,
        top_simulated,
        top_real,
        used_dense: dim.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::loaders::{load_real, tests::IARD};
    use super::*;
    use rand::seq::SliceRandom;

    fn iard_seeker() -> Vec<String> {
        load_real(std::path::Path::new(IARD), crate::corpus::CorpusKind::Iard)
            .unwrap()
            .seeker_texts()
    }

    fn fast() -> DiscriminatorConfig {
        DiscriminatorConfig {
            n_bootstrap: 200,
            ..DiscriminatorConfig::default()
        }
    }

    #[test]
    fn iard_halves_are_indistinguishable() {
        let t = iard_seeker();
        let (a, b): (Vec<_>, Vec<_>) = t.iter().enumerate().partition(|(i, _)| i % 2 == 0);
        let a: Vec<String> = a.into_iter().map(|x| x.1.clone()).collect();
        let b: Vec<String> = b.into_iter().map(|x| x.1.clone()).collect();
        let r = discriminate(&a, &b, None, &fast()).unwrap();
        eprintln!("IARD halves AUC {:?} acc {:?}", r.auc, r.accuracy);
        assert!(r.auc.value >= 0.4 && r.auc.value <= 0.6, "{:?}", r.auc);
        assert!(r.auc.lo <= r.auc.value && r.auc.value <= r.auc.hi);
    }

    #[test]
    fn shuffled_words_are_detected() {
        let t = iard_seeker();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let shuffled: Vec<String> = t
            .iter()
            .map(|s| {
                let mut w: Vec<&str> = s.split_whitespace().collect();
                w.shuffle(&mut rng);
                w.join(" ")
            })
            .collect();
        let r = discriminate(&t, &shuffled, None, &fast()).unwrap();
        eprintln!(
            "IARD vs shuffled AUC {:?} acc {:?} top {:?}",
            r.auc,
            r.accuracy,
            &r.top_simulated[..5]
        );
        assert!(r.auc.value > 0.95, "{:?}", r.auc);
        assert_eq!(r.top_simulated.len(), 20);
    }

    #[test]
    fn dense_features_are_used_and_checked() {
        let real: Vec<String> = (0..20).map(|i| format!("same text {}", i % 3)).collect();
        let sim = real.clone();
        let dr: Vec<Vec<f32>> = (0..20).map(|i| vec![1.0, (i % 5) as f32 * 0.01]).collect();
        let ds: Vec<Vec<f32>> = (0..20).map(|i| vec![-1.0, (i % 5) as f32 * 0.01]).collect();
        let r = discriminate(&real, &sim, Some((&dr, &ds)), &fast()).unwrap();
        assert!(r.used_dense);
        assert!(r.auc.value > 0.99, "{:?}", r.auc);
        assert!(discriminate(&real, &sim, Some((&dr[..3], &ds)), &fast()).is_err());
        assert!(discriminate(&real[..1], &sim, None, &fast()).is_err());
    }
}
