//! Statistics: cross-validation folds, ROC AUC, bootstrap confidence
//! intervals, distances between distributions (Jensen–Shannon, total
//! variation, 1-D Wasserstein, Fréchet) and classification scores.
//!
//! All randomness is seeded ([`rand_chacha::ChaCha8Rng`]) so results are
//! reproducible.
//!
//! Why one file of ~640 lines: the statistics eval uses (bootstrap, divergences, Fréchet distance), each with a known-answer test beside it.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Errors of the statistics functions.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StatsError {
    /// A sample or set was empty.
    #[error("empty input: {0}")]
    Empty(&'static str),
    /// Inputs of different lengths or dimensions.
    #[error("dimension mismatch: {0}")]
    Dimension(String),
    /// ROC AUC needs both classes.
    #[error("ROC AUC needs both classes (positives {pos}, negatives {neg})")]
    OneClass {
        /// Positives.
        pos: usize,
        /// Negatives.
        neg: usize,
    },
}

/// Stratified k-fold: returns for each example its fold in `0..k`. Each class's
/// examples are shuffled with `seed` then dealt round-robin, continuing the
/// deal across classes so fold sizes differ by at most one.
pub fn stratified_kfold<L: Ord + Clone>(labels: &[L], k: usize, seed: u64) -> Vec<usize> {
    let k = k.max(1);
    let mut by_class: BTreeMap<L, Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        by_class.entry(l.clone()).or_default().push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold = vec![0; labels.len()];
    let mut next = 0;
    for (_, mut idx) in by_class {
        idx.shuffle(&mut rng);
        for i in idx {
            fold[i] = next % k;
            next += 1;
        }
    }
    fold
}

/// Stratified k-fold that keeps each group whole: every example of a group
/// (a dialogue's turns) lands in one fold, so a model is never tested on a
/// conversation it saw part of. Per class, the class's groups are shuffled
/// with `seed`, then dealt largest first, each to the fold holding the
/// fewest of that class's examples so far (the lowest fold on ties).
/// Groups are per class: a group id shared by two classes is two groups.
pub fn grouped_stratified_kfold<L: Ord + Clone>(
    labels: &[L],
    groups: &[usize],
    k: usize,
    seed: u64,
) -> Vec<usize> {
    let k = k.max(1);
    let mut by_class: BTreeMap<L, BTreeMap<usize, Vec<usize>>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        let g = groups.get(i).copied().unwrap_or(usize::MAX - i);
        by_class
            .entry(l.clone())
            .or_default()
            .entry(g)
            .or_default()
            .push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold = vec![0; labels.len()];
    for (_, class_groups) in by_class {
        let mut members: Vec<Vec<usize>> = class_groups.into_values().collect();
        members.shuffle(&mut rng);
        // Stable: equal sizes keep their shuffled order.
        members.sort_by_key(|m| std::cmp::Reverse(m.len()));
        let mut load = vec![0usize; k];
        for m in members {
            let f = (0..k).min_by_key(|&f| (load[f], f)).unwrap_or(0);
            load[f] += m.len();
            for i in m {
                fold[i] = f;
            }
        }
    }
    fold
}

/// Average ranks (1-based) with ties sharing their mean rank.
fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            ranks[o] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Area under the ROC curve (Mann–Whitney U; ties count one half).
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Result<f64, StatsError> {
    if scores.len() != labels.len() {
        return Err(StatsError::Dimension(format!(
            "{} scores, {} labels",
            scores.len(),
            labels.len()
        )));
    }
    let pos = labels.iter().filter(|&&b| b).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return Err(StatsError::OneClass { pos, neg });
    }
    let ranks = average_ranks(scores);
    let sum_pos: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, &l)| l)
        .map(|(r, _)| r)
        .sum();
    let u = sum_pos - (pos * (pos + 1)) as f64 / 2.0;
    Ok(u / (pos as f64 * neg as f64))
}

/// ROC curve points `(false positive rate, true positive rate)` from (0,0) to
/// (1,1), one point per distinct threshold.
pub fn roc_curve(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64)> {
    let pos = labels.iter().filter(|&&b| b).count().max(1) as f64;
    let neg = labels.iter().filter(|&&b| !b).count().max(1) as f64;
    let mut order: Vec<usize> = (0..scores.len().min(labels.len())).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut pts = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i]];
        while i < order.len() && scores[order[i]] == s {
            if labels[order[i]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        pts.push((fp / neg, tp / pos));
    }
    pts
}

/// Share of predictions equal to the truth (0 for empty input).
pub fn accuracy<T: PartialEq>(pred: &[T], truth: &[T]) -> f64 {
    let n = pred.len().min(truth.len());
    if n == 0 {
        return 0.0;
    }
    pred.iter().zip(truth).filter(|(a, b)| a == b).count() as f64 / n as f64
}

/// A point estimate with a 95% bootstrap percentile interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Value on the full sample.
    pub value: f64,
    /// 2.5th percentile of the bootstrap distribution.
    pub lo: f64,
    /// 97.5th percentile of the bootstrap distribution.
    pub hi: f64,
}

impl Estimate {
    /// The interval alone, `[lo, hi]` to three decimals.
    pub fn interval(&self) -> String {
        format!("[{:.3}, {:.3}]", self.lo, self.hi)
    }
}

/// `value [lo, hi]` to three decimals: how every report prints an estimate.
impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3} {}", self.value, self.interval())
    }
}

/// Bootstrap 95% percentile interval of `stat` over `n` items: `stat` receives
/// the resampled indices (with replacement). Resamples where `stat` returns
/// `None` are skipped.
pub fn bootstrap_ci<F>(n: usize, n_boot: usize, seed: u64, mut stat: F) -> Option<Estimate>
where
    F: FnMut(&[usize]) -> Option<f64>,
{
    let all: Vec<usize> = (0..n).collect();
    let value = stat(&all)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut vals = Vec::with_capacity(n_boot);
    let mut idx = vec![0; n];
    for _ in 0..n_boot {
        for v in idx.iter_mut() {
            *v = rng.random_range(0..n);
        }
        if let Some(s) = stat(&idx) {
            vals.push(s);
        }
    }
    let (lo, hi) = percentile_interval(vals).unwrap_or((value, value));
    Some(Estimate { value, lo, hi })
}

/// The 2.5th and 97.5th percentiles of bootstrap replicates (`None` when
/// there are none).
pub fn percentile_interval(mut reps: Vec<f64>) -> Option<(f64, f64)> {
    if reps.is_empty() {
        return None;
    }
    reps.sort_by(f64::total_cmp);
    let q = |p: f64| reps[((p * (reps.len() - 1) as f64).round() as usize).min(reps.len() - 1)];
    Some((q(0.025), q(0.975)))
}

/// Normalises counts over the union of keys of `a` and `b` into two aligned
/// probability vectors.
pub fn align_distributions(
    a: &BTreeMap<String, f64>,
    b: &BTreeMap<String, f64>,
) -> (Vec<String>, Vec<f64>, Vec<f64>) {
    let keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let norm = |m: &BTreeMap<String, f64>| {
        let s: f64 = m.values().sum();
        keys.iter()
            .map(|k| {
                if s > 0.0 {
                    m.get(k).copied().unwrap_or(0.0) / s
                } else {
                    0.0
                }
            })
            .collect::<Vec<f64>>()
    };
    let (pa, pb) = (norm(a), norm(b));
    (keys, pa, pb)
}

fn normalise(p: &[f64]) -> Vec<f64> {
    let s: f64 = p.iter().sum();
    if s > 0.0 {
        p.iter().map(|v| v / s).collect()
    } else {
        p.to_vec()
    }
}

fn same_categories(p: &[f64], q: &[f64]) -> Result<(), StatsError> {
    if p.len() == q.len() {
        Ok(())
    } else {
        Err(StatsError::Dimension(format!(
            "{} vs {} categories",
            p.len(),
            q.len()
        )))
    }
}

/// Jensen–Shannon divergence in bits (in `[0, 1]`) between two categorical
/// distributions given as aligned non-negative weights (normalised here).
pub fn js_divergence(p: &[f64], q: &[f64]) -> Result<f64, StatsError> {
    same_categories(p, q)?;
    let (p, q) = (normalise(p), normalise(q));
    let kl = |a: &[f64], m: &[f64]| -> f64 {
        a.iter()
            .zip(m)
            .filter(|(x, _)| **x > 0.0)
            .map(|(x, y)| x * (x / y).log2())
            .sum()
    };
    let m: Vec<f64> = p.iter().zip(&q).map(|(a, b)| 0.5 * (a + b)).collect();
    Ok((0.5 * kl(&p, &m) + 0.5 * kl(&q, &m)).clamp(0.0, 1.0))
}

/// Total variation distance `½ Σ |p_i − q_i|` (inputs normalised here).
pub fn total_variation(p: &[f64], q: &[f64]) -> Result<f64, StatsError> {
    same_categories(p, q)?;
    let (p, q) = (normalise(p), normalise(q));
    Ok(0.5 * p.iter().zip(&q).map(|(a, b)| (a - b).abs()).sum::<f64>())
}

/// 1-D Wasserstein (earth mover's) distance between two samples:
/// `∫ |F_a(t) − F_b(t)| dt` over their empirical CDFs.
pub fn wasserstein_1d(a: &[f64], b: &[f64]) -> Result<f64, StatsError> {
    if a.is_empty() || b.is_empty() {
        return Err(StatsError::Empty("wasserstein sample"));
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let mut all: Vec<f64> = a.iter().chain(&b).copied().collect();
    all.sort_by(f64::total_cmp);
    let (mut ia, mut ib) = (0, 0);
    let mut dist = 0.0;
    for w in all.windows(2) {
        let t = w[0];
        while ia < a.len() && a[ia] <= t {
            ia += 1;
        }
        while ib < b.len() && b[ib] <= t {
            ib += 1;
        }
        let fa = ia as f64 / a.len() as f64;
        let fb = ib as f64 / b.len() as f64;
        dist += (fa - fb).abs() * (w[1] - w[0]);
    }
    Ok(dist)
}

/// Eigendecomposition of a symmetric `n×n` matrix (row-major) by cyclic
/// Jacobi rotations. Returns eigenvalues and eigenvectors (row `i` of the
/// second result is the eigenvector of eigenvalue `i`).
pub fn sym_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    // vt: rows are eigenvectors (V transposed)
    let mut vt = vec![0.0; n * n];
    for i in 0..n {
        vt[i * n + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum::<f64>().max(1e-300);
    for _sweep in 0..60 {
        let mut off = 0.0;
        for p in 0..n {
            for q in p + 1..n {
                off += a[p * n + q] * a[p * n + q];
            }
        }
        if off <= 1e-24 * total {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300
                    || apq.abs() <= 1e-15 * (a[p * n + p].abs() * a[q * n + q].abs()).sqrt() * 1e-3
                {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // A <- J^T A J ; rows p,q then columns p,q
                for k in 0..n {
                    let akp = a[p * n + k];
                    let akq = a[q * n + k];
                    a[p * n + k] = c * akp - s * akq;
                    a[q * n + k] = s * akp + c * akq;
                }
                for k in 0..n {
                    let akp = a[k * n + p];
                    let akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let vp = vt[p * n + k];
                    let vq = vt[q * n + k];
                    vt[p * n + k] = c * vp - s * vq;
                    vt[q * n + k] = s * vp + c * vq;
                }
            }
        }
    }
    let eig = (0..n).map(|i| a[i * n + i]).collect();
    (eig, vt)
}

/// `B = V diag(f(λ)) Vᵀ` for a symmetric matrix.
fn sym_fn(a: &[f64], n: usize, f: impl Fn(f64) -> f64) -> Vec<f64> {
    let (eig, vt) = sym_eigen(a, n);
    let mut out = vec![0.0; n * n];
    for (k, &l) in eig.iter().enumerate() {
        let fl = f(l);
        if fl == 0.0 {
            continue;
        }
        let v = &vt[k * n..(k + 1) * n];
        for i in 0..n {
            let vi = fl * v[i];
            if vi == 0.0 {
                continue;
            }
            let row = &mut out[i * n..(i + 1) * n];
            for j in 0..n {
                row[j] += vi * v[j];
            }
        }
    }
    out
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            if aik == 0.0 {
                continue;
            }
            let brow = &b[k * n..(k + 1) * n];
            let crow = &mut c[i * n..(i + 1) * n];
            for j in 0..n {
                crow[j] += aik * brow[j];
            }
        }
    }
    c
}

/// Mean and (population, divide by n) covariance of a set of vectors.
pub fn mean_cov(x: &[Vec<f32>]) -> Result<(Vec<f64>, Vec<f64>), StatsError> {
    let n = x.len();
    let d = x.first().ok_or(StatsError::Empty("vector set"))?.len();
    if x.iter().any(|v| v.len() != d) {
        return Err(StatsError::Dimension("vectors of different lengths".into()));
    }
    let mut mu = vec![0.0; d];
    for v in x {
        for (m, &e) in mu.iter_mut().zip(v) {
            *m += e as f64;
        }
    }
    mu.iter_mut().for_each(|m| *m /= n as f64);
    let mut cov = vec![0.0; d * d];
    let mut c = vec![0.0; d];
    for v in x {
        for j in 0..d {
            c[j] = v[j] as f64 - mu[j];
        }
        for i in 0..d {
            let ci = c[i];
            let row = &mut cov[i * d..(i + 1) * d];
            for j in 0..d {
                row[j] += ci * c[j];
            }
        }
    }
    cov.iter_mut().for_each(|v| *v /= n as f64);
    Ok((mu, cov))
}

/// Fréchet distance between Gaussians fitted to two vector sets:
/// `|μ1−μ2|² + tr(S1 + S2 − 2 (S1^½ S2 S1^½)^½)` (clamped at 0).
pub fn frechet_distance(a: &[Vec<f32>], b: &[Vec<f32>]) -> Result<f64, StatsError> {
    let (m1, s1) = mean_cov(a)?;
    let (m2, s2) = mean_cov(b)?;
    let d = m1.len();
    if m2.len() != d {
        return Err(StatsError::Dimension(format!(
            "{d} vs {} dimensions",
            m2.len()
        )));
    }
    let mean_term: f64 = m1.iter().zip(&m2).map(|(x, y)| (x - y) * (x - y)).sum();
    let r1 = sym_fn(&s1, d, |l| l.max(0.0).sqrt());
    let mut m = matmul(&matmul(&r1, &s2, d), &r1, d);
    // symmetrise against rounding
    for i in 0..d {
        for j in i + 1..d {
            let v = 0.5 * (m[i * d + j] + m[j * d + i]);
            m[i * d + j] = v;
            m[j * d + i] = v;
        }
    }
    let (eig, _) = sym_eigen(&m, d);
    let tr_sqrt: f64 = eig.iter().map(|l| l.max(0.0).sqrt()).sum();
    let tr1: f64 = (0..d).map(|i| s1[i * d + i]).sum();
    let tr2: f64 = (0..d).map(|i| s2[i * d + i]).sum();
    Ok((mean_term + tr1 + tr2 - 2.0 * tr_sqrt).max(0.0))
}

/// Confusion matrix: `m[t][p]` counts items of true class `t` predicted `p`
/// (indices into `labels`; out-of-range items are skipped).
pub fn confusion_matrix(truth: &[usize], pred: &[usize], n_labels: usize) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0; n_labels]; n_labels];
    for (&t, &p) in truth.iter().zip(pred) {
        if t < n_labels && p < n_labels {
            m[t][p] += 1;
        }
    }
    m
}

/// Per-class F1 from a confusion matrix (`None` for classes absent from
/// both truth and prediction).
pub fn per_class_f1(cm: &[Vec<usize>]) -> Vec<Option<f64>> {
    let n = cm.len();
    (0..n)
        .map(|c| {
            let tp = cm[c][c] as f64;
            let fn_: f64 = (0..n).filter(|&p| p != c).map(|p| cm[c][p] as f64).sum();
            let fp: f64 = (0..n).filter(|&t| t != c).map(|t| cm[t][c] as f64).sum();
            if tp + fn_ + fp == 0.0 {
                None
            } else {
                Some(2.0 * tp / (2.0 * tp + fp + fn_))
            }
        })
        .collect()
}

/// Macro-averaged F1 over classes present in truth or prediction.
pub fn macro_f1(cm: &[Vec<usize>]) -> f64 {
    let f: Vec<f64> = per_class_f1(cm).into_iter().flatten().collect();
    if f.is_empty() {
        0.0
    } else {
        f.iter().sum::<f64>() / f.len() as f64
    }
}

/// Multi-label macro F1: `truth[i][l]`/`pred[i][l]` say whether item i has
/// label l; labels with no true and no predicted positive are skipped.
pub fn multilabel_macro_f1(
    truth: &[Vec<bool>],
    pred: &[Vec<bool>],
    n_labels: usize,
) -> (f64, Vec<Option<f64>>) {
    let mut per = Vec::with_capacity(n_labels);
    for l in 0..n_labels {
        let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
        for (t, p) in truth.iter().zip(pred) {
            match (
                t.get(l).copied().unwrap_or(false),
                p.get(l).copied().unwrap_or(false),
            ) {
                (true, true) => tp += 1.0,
                (false, true) => fp += 1.0,
                (true, false) => fn_ += 1.0,
                _ => {}
            }
        }
        per.push(if tp + fp + fn_ == 0.0 {
            None
        } else {
            Some(2.0 * tp / (2.0 * tp + fp + fn_))
        });
    }
    let f: Vec<f64> = per.iter().flatten().copied().collect();
    (
        if f.is_empty() {
            0.0
        } else {
            f.iter().sum::<f64>() / f.len() as f64
        },
        per,
    )
}

/// Shannon entropy in bits of a distribution given as non-negative weights.
pub fn entropy_bits(p: &[f64]) -> f64 {
    let p = normalise(p);
    -p.iter()
        .filter(|&&x| x > 0.0)
        .map(|x| x * x.log2())
        .sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_stratified_and_seeded() {
        let labels: Vec<u8> = (0..20).map(|i| (i % 4 == 0) as u8).collect();
        let f = stratified_kfold(&labels, 5, 7);
        for k in 0..5 {
            let pos = (0..20).filter(|&i| f[i] == k && labels[i] == 1).count();
            let all = (0..20).filter(|&i| f[i] == k).count();
            assert_eq!((pos, all), (1, 4));
        }
        assert_eq!(f, stratified_kfold(&labels, 5, 7));
    }

    #[test]
    fn grouped_folds_keep_groups_whole_and_balance_classes() {
        // 2 classes x 30 groups of 1 to 4 examples.
        let (mut labels, mut groups) = (Vec::new(), Vec::new());
        for g in 0..60usize {
            for _ in 0..(1 + g % 4) {
                labels.push(u8::from(g >= 30));
                groups.push(g);
            }
        }
        let f = grouped_stratified_kfold(&labels, &groups, 5, 7);
        for g in 0..60 {
            let folds: std::collections::BTreeSet<usize> = (0..labels.len())
                .filter(|&i| groups[i] == g)
                .map(|i| f[i])
                .collect();
            assert_eq!(folds.len(), 1, "group {g} split across folds {folds:?}");
        }
        for class in [0u8, 1] {
            let sizes: Vec<usize> = (0..5)
                .map(|k| {
                    (0..labels.len())
                        .filter(|&i| f[i] == k && labels[i] == class)
                        .count()
                })
                .collect();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(hi - lo <= 4, "class {class} fold sizes {sizes:?}");
        }
        assert_eq!(f, grouped_stratified_kfold(&labels, &groups, 5, 7));
        assert_ne!(f, grouped_stratified_kfold(&labels, &groups, 5, 8));
        // One group per example: every fold gets its share, as ungrouped.
        let singles: Vec<usize> = (0..labels.len()).collect();
        let f = grouped_stratified_kfold(&labels, &singles, 5, 7);
        for k in 0..5 {
            assert!((0..labels.len()).any(|i| f[i] == k));
        }
    }

    #[test]
    fn auc_known_values() {
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap(),
            0.75
        );
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]).unwrap(), 0.5);
        assert_eq!(
            roc_auc(&[1.0, 2.0, 3.0], &[false, true, true]).unwrap(),
            1.0
        );
        assert!(roc_auc(&[1.0], &[true]).is_err());
        let c = roc_curve(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]);
        assert_eq!(
            c,
            vec![(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
        );
    }

    #[test]
    fn bootstrap_brackets_value() {
        let x: Vec<f64> = (0..100).map(|i| i as f64).collect();
        let e = bootstrap_ci(100, 500, 1, |ix| {
            Some(ix.iter().map(|&i| x[i]).sum::<f64>() / ix.len() as f64)
        })
        .unwrap();
        assert_eq!(e.value, 49.5);
        // The mean of 0..99 has standard error 28.87 / 10 = 2.887, so the
        // 95% interval is about 49.5 ± 5.66 = [43.8, 55.2]; 500 resamples
        // put each end within about half a unit of it. A 50% interval
        // ([47.6, 51.4]) or a collapsed one fails.
        assert!((42.8..=44.9).contains(&e.lo), "lo {}", e.lo);
        assert!((54.1..=56.2).contains(&e.hi), "hi {}", e.hi);
        assert_eq!(accuracy(&[1, 2, 3], &[1, 2, 4]), 2.0 / 3.0);
    }

    #[test]
    fn divergences_known() {
        assert_eq!(js_divergence(&[1.0, 2.0], &[2.0, 4.0]).unwrap(), 0.0);
        assert!((js_divergence(&[1.0, 0.0], &[0.0, 1.0]).unwrap() - 1.0).abs() < 1e-12);
        // JS([.5,.5],[1,0]) = 1 - 0.5*H(.75,.25)... computed: 0.311278
        assert!((js_divergence(&[0.5, 0.5], &[1.0, 0.0]).unwrap() - 0.311278).abs() < 1e-5);
        assert!((total_variation(&[0.5, 0.5], &[1.0, 0.0]).unwrap() - 0.5).abs() < 1e-12);
        assert!((entropy_bits(&[1.0, 1.0, 1.0, 1.0]) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn wasserstein_known() {
        // scipy.stats.wasserstein_distance([0,1,3],[5,6,8]) = 5.0
        assert!((wasserstein_1d(&[0.0, 1.0, 3.0], &[5.0, 6.0, 8.0]).unwrap() - 5.0).abs() < 1e-12);
        // scipy: wasserstein_distance([0,1],[0,1,2,3]) = 0.75... F diff: [1,2):0.25,[2,3):0.5 -> 0.75
        assert!((wasserstein_1d(&[0.0, 1.0], &[0.0, 1.0, 2.0, 3.0]).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn eigen_and_frechet_known() {
        let (e, v) = sym_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        let mut s = e.clone();
        s.sort_by(f64::total_cmp);
        assert!((s[0] - 1.0).abs() < 1e-12 && (s[1] - 3.0).abs() < 1e-12);
        assert!((v[0].abs() - 0.5f64.sqrt()).abs() < 1e-9);
        // identical sets -> 0
        let a: Vec<Vec<f32>> = (0..50)
            .map(|i| vec![(i as f32).sin(), (i as f32 * 0.3).cos(), i as f32 / 50.0])
            .collect();
        assert!(frechet_distance(&a, &a).unwrap() < 1e-9);
        // shifted by (1,0,0) -> 1
        let b: Vec<Vec<f32>> = a.iter().map(|v| vec![v[0] + 1.0, v[1], v[2]]).collect();
        assert!((frechet_distance(&a, &b).unwrap() - 1.0).abs() < 1e-5);
        // 1-D: N(0,1) vs N(0,4) -> (1-2)^2 = 1 (population variances)
        let x: Vec<Vec<f32>> = vec![vec![-1.0], vec![1.0]];
        let y: Vec<Vec<f32>> = vec![vec![-2.0], vec![2.0]];
        assert!((frechet_distance(&x, &y).unwrap() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn f1_and_confusion() {
        let cm = confusion_matrix(&[0, 0, 1, 1], &[0, 1, 1, 1], 3);
        assert_eq!(cm, vec![vec![1, 1, 0], vec![0, 2, 0], vec![0, 0, 0]]);
        // class0 F1 = 2/3, class1 F1 = 0.8 -> 0.733333
        assert!((macro_f1(&cm) - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-12);
        let (m, _) = multilabel_macro_f1(
            &[vec![true, false], vec![true, true]],
            &[vec![true, false], vec![false, true]],
            2,
        );
        assert!((m - (2.0 / 3.0 + 1.0) / 2.0).abs() < 1e-12);
    }
}
