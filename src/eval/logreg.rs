//! L2-regularised logistic regression on sparse features.
//!
//! [`LogReg::fit`] minimises
//! `(1/n) Σ s_i · log(1 + exp(-y_i (w·x_i + b))) + ||w||² / (2 C n)`
//! (the scikit-learn objective divided by `C n`; the intercept is not
//! penalised) with a deterministic L-BFGS (history 10, backtracking Armijo
//! line search). `s_i` are optional balanced class weights.
//! [`OneVsRest`] wraps one binary model per label for multi-label data.

use super::features::SparseVec;

/// Errors of model fitting.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LogRegError {
    /// Features and labels have different lengths.
    #[error("{n_x} feature rows but {n_y} labels")]
    LengthMismatch {
        /// Rows of features.
        n_x: usize,
        /// Labels.
        n_y: usize,
    },
    /// No training data.
    #[error("no training examples")]
    Empty,
}

/// Settings of [`LogReg`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogRegConfig {
    /// Inverse regularisation strength (as in scikit-learn).
    pub c: f64,
    /// Maximum L-BFGS iterations.
    pub max_iter: usize,
    /// Stop when the largest gradient component is below this.
    pub tol: f64,
    /// Weight classes inversely to their frequency (`n / (2 n_class)`).
    pub balanced: bool,
}

impl Default for LogRegConfig {
    fn default() -> Self {
        Self {
            c: 10.0,
            max_iter: 150,
            tol: 1e-5,
            balanced: false,
        }
    }
}

/// A fitted binary logistic regression.
#[derive(Clone, Debug, PartialEq)]
pub struct LogReg {
    /// Feature weights.
    pub weights: Vec<f64>,
    /// Intercept.
    pub intercept: f64,
    /// L-BFGS iterations used.
    pub iterations: usize,
}

/// Logistic function.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `ln(1 + exp(-t))`, stable for any `t`.
fn log1pexp_neg(t: f64) -> f64 {
    if t > 0.0 {
        (-t).exp().ln_1p()
    } else {
        -t + t.exp().ln_1p()
    }
}

/// Minimises `f` (which writes its gradient into the second argument) from
/// `x` with L-BFGS. Returns the number of iterations.
pub fn lbfgs<F>(mut f: F, x: &mut [f64], max_iter: usize, tol: f64) -> usize
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
{
    const M: usize = 10;
    let d = x.len();
    let mut g = vec![0.0; d];
    let mut fx = f(x, &mut g);
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut rho_hist: Vec<f64> = Vec::new();
    let mut xn = vec![0.0; d];
    let mut gn = vec![0.0; d];
    let mut iter = 0;
    while iter < max_iter {
        let gmax = g.iter().fold(0.0f64, |a, &v| a.max(v.abs()));
        if gmax < tol {
            break;
        }
        // two-loop recursion: dir = -H g
        let mut q = g.clone();
        let k = s_hist.len();
        let mut alpha = vec![0.0; k];
        for i in (0..k).rev() {
            let a = rho_hist[i] * dot(&s_hist[i], &q);
            alpha[i] = a;
            axpy(-a, &y_hist[i], &mut q);
        }
        let gamma = if k > 0 {
            dot(&s_hist[k - 1], &y_hist[k - 1]) / dot(&y_hist[k - 1], &y_hist[k - 1])
        } else {
            1.0 / g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12)
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for i in 0..k {
            let b = rho_hist[i] * dot(&y_hist[i], &q);
            axpy(alpha[i] - b, &s_hist[i], &mut q);
        }
        let mut dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut gd = dot(&g, &dir);
        if gd >= 0.0 {
            // not a descent direction: reset to steepest descent
            s_hist.clear();
            y_hist.clear();
            rho_hist.clear();
            let s = 1.0 / g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            dir = g.iter().map(|v| -v * s).collect();
            gd = dot(&g, &dir);
        }
        let mut step = 1.0;
        let mut accepted = false;
        for _ in 0..40 {
            for j in 0..d {
                xn[j] = x[j] + step * dir[j];
            }
            let fnew = f(&xn, &mut gn);
            if fnew <= fx + 1e-4 * step * gd {
                accepted = true;
                let s: Vec<f64> = (0..d).map(|j| xn[j] - x[j]).collect();
                let y: Vec<f64> = (0..d).map(|j| gn[j] - g[j]).collect();
                let sy = dot(&s, &y);
                x.copy_from_slice(&xn);
                g.copy_from_slice(&gn);
                let rel = (fx - fnew).abs() / fx.abs().max(1e-12);
                fx = fnew;
                if sy > 1e-12 {
                    if s_hist.len() == M {
                        s_hist.remove(0);
                        y_hist.remove(0);
                        rho_hist.remove(0);
                    }
                    s_hist.push(s);
                    y_hist.push(y);
                    rho_hist.push(1.0 / sy);
                }
                iter += 1;
                if rel < 1e-10 {
                    return iter;
                }
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            break;
        }
    }
    iter
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

impl LogReg {
    /// Fits on rows `x` (features below `n_features`) with binary labels `y`.
    pub fn fit(
        x: &[SparseVec],
        y: &[bool],
        n_features: usize,
        cfg: &LogRegConfig,
    ) -> Result<Self, LogRegError> {
        if x.len() != y.len() {
            return Err(LogRegError::LengthMismatch {
                n_x: x.len(),
                n_y: y.len(),
            });
        }
        if x.is_empty() {
            return Err(LogRegError::Empty);
        }
        let n = x.len() as f64;
        let n_pos = y.iter().filter(|&&b| b).count() as f64;
        let n_neg = n - n_pos;
        let (w_pos, w_neg) = if cfg.balanced && n_pos > 0.0 && n_neg > 0.0 {
            (n / (2.0 * n_pos), n / (2.0 * n_neg))
        } else {
            (1.0, 1.0)
        };
        let lam = 1.0 / (cfg.c.max(1e-12) * n);
        let d = n_features;
        let mut theta = vec![0.0; d + 1];
        // start the intercept at the (weighted) log-odds
        let p0 = (w_pos * n_pos + 0.5) / (w_pos * n_pos + w_neg * n_neg + 1.0);
        theta[d] = (p0 / (1.0 - p0)).ln();
        let obj = |th: &[f64], grad: &mut [f64]| -> f64 {
            let (w, b) = th.split_at(d);
            let b = b[0];
            grad.iter_mut().for_each(|v| *v = 0.0);
            let mut loss = 0.0;
            let mut gb = 0.0;
            for (xi, &yi) in x.iter().zip(y) {
                let z = xi.dot(w) + b;
                let (t, s) = if yi { (z, w_pos) } else { (-z, w_neg) };
                loss += s * log1pexp_neg(t);
                let r = s * (sigmoid(z) - if yi { 1.0 } else { 0.0 }) / n;
                gb += r;
                for (&j, &v) in xi.idx.iter().zip(&xi.val) {
                    if let Some(gj) = grad.get_mut(j as usize) {
                        *gj += r * v as f64;
                    }
                }
            }
            let mut reg = 0.0;
            for j in 0..d {
                reg += w[j] * w[j];
                grad[j] += lam * w[j];
            }
            grad[d] = gb;
            loss / n + 0.5 * lam * reg
        };
        let iterations = lbfgs(obj, &mut theta, cfg.max_iter, cfg.tol);
        let intercept = theta[d];
        theta.truncate(d);
        Ok(Self {
            weights: theta,
            intercept,
            iterations,
        })
    }

    /// Decision value `w·x + b`.
    pub fn decision(&self, x: &SparseVec) -> f64 {
        x.dot(&self.weights) + self.intercept
    }

    /// Probability of the positive class.
    pub fn predict_proba(&self, x: &SparseVec) -> f64 {
        sigmoid(self.decision(x))
    }

    /// Indices of the `k` largest (most positive) coefficients, largest first.
    pub fn top_positive(&self, k: usize) -> Vec<(usize, f64)> {
        let mut v: Vec<(usize, f64)> = self.weights.iter().copied().enumerate().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(k);
        v
    }
}

/// One binary [`LogReg`] per label (multi-label, one-vs-rest).
#[derive(Clone, Debug)]
pub struct OneVsRest {
    /// Label names, in model order.
    pub labels: Vec<String>,
    /// One model per label.
    pub models: Vec<LogReg>,
}

impl OneVsRest {
    /// Fits one model per entry of `labels`; `y[i]` lists the labels of row i.
    pub fn fit(
        x: &[SparseVec],
        y: &[Vec<String>],
        labels: &[String],
        n_features: usize,
        cfg: &LogRegConfig,
    ) -> Result<Self, LogRegError> {
        let mut models = Vec::with_capacity(labels.len());
        for l in labels {
            let yb: Vec<bool> = y.iter().map(|ls| ls.iter().any(|v| v == l)).collect();
            models.push(LogReg::fit(x, &yb, n_features, cfg)?);
        }
        Ok(Self {
            labels: labels.to_vec(),
            models,
        })
    }

    /// Per-label probabilities for one row.
    pub fn predict_proba(&self, x: &SparseVec) -> Vec<f64> {
        self.models.iter().map(|m| m.predict_proba(x)).collect()
    }

    /// Labels with probability ≥ `threshold`; the most probable label if none.
    pub fn predict_labels(&self, x: &SparseVec, threshold: f64) -> Vec<usize> {
        let p = self.predict_proba(x);
        let mut out: Vec<usize> = (0..p.len()).filter(|&i| p[i] >= threshold).collect();
        if out.is_empty() {
            if let Some(i) = argmax(&p) {
                out.push(i);
            }
        }
        out
    }
}

/// Index of the largest value (first on ties); `None` if empty.
pub fn argmax(v: &[f64]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &x) in v.iter().enumerate() {
        match best {
            Some(b) if v[b] >= x => {}
            _ => best = Some(i),
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sv(pairs: &[(u32, f32)]) -> SparseVec {
        SparseVec {
            idx: pairs.iter().map(|p| p.0).collect(),
            val: pairs.iter().map(|p| p.1).collect(),
        }
    }

    #[test]
    fn lbfgs_minimises_quadratic() {
        // f = (x-3)^2 + 10 (y+1)^2
        let mut x = vec![0.0, 0.0];
        lbfgs(
            |p, g| {
                g[0] = 2.0 * (p[0] - 3.0);
                g[1] = 20.0 * (p[1] + 1.0);
                (p[0] - 3.0).powi(2) + 10.0 * (p[1] + 1.0).powi(2)
            },
            &mut x,
            100,
            1e-9,
        );
        assert!((x[0] - 3.0).abs() < 1e-6 && (x[1] + 1.0).abs() < 1e-6);
    }

    #[test]
    fn one_feature_known_optimum() {
        // Unregularised-ish fit of x=1 -> 3 positives / 1 negative; x=0 -> 1/1.
        // MLE: b = logit(1/2) = 0, w = logit(3/4) = ln 3.
        let x = vec![
            sv(&[(0, 1.0)]),
            sv(&[(0, 1.0)]),
            sv(&[(0, 1.0)]),
            sv(&[(0, 1.0)]),
            sv(&[]),
            sv(&[]),
        ];
        let y = vec![true, true, true, false, true, false];
        let cfg = LogRegConfig {
            c: 1e9,
            max_iter: 500,
            tol: 1e-10,
            balanced: false,
        };
        let m = LogReg::fit(&x, &y, 1, &cfg).unwrap();
        assert!((m.weights[0] - 3f64.ln()).abs() < 1e-4, "{:?}", m);
        assert!(m.intercept.abs() < 1e-4);
        assert!((m.predict_proba(&x[0]) - 0.75).abs() < 1e-4);
    }

    #[test]
    fn regularisation_shrinks_and_ovr_works() {
        let x = vec![
            sv(&[(0, 1.0)]),
            sv(&[(1, 1.0)]),
            sv(&[(0, 1.0)]),
            sv(&[(1, 1.0)]),
        ];
        let y = vec![true, false, true, false];
        let strong = LogReg::fit(
            &x,
            &y,
            2,
            &LogRegConfig {
                c: 0.01,
                ..Default::default()
            },
        )
        .unwrap();
        let weak = LogReg::fit(
            &x,
            &y,
            2,
            &LogRegConfig {
                c: 100.0,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(strong.weights[0].abs() < weak.weights[0].abs());
        assert_eq!(weak.top_positive(1)[0].0, 0);
        let labels = vec!["A".to_string(), "B".to_string()];
        let ys = vec![
            vec!["A".to_string()],
            vec!["B".to_string()],
            vec!["A".to_string()],
            vec!["B".to_string()],
        ];
        let ovr = OneVsRest::fit(&x, &ys, &labels, 2, &LogRegConfig::default()).unwrap();
        assert_eq!(ovr.predict_labels(&x[1], 0.5), vec![1]);
        assert_eq!(argmax(&[0.1, 0.7, 0.7]), Some(1));
        assert!(LogReg::fit(&x, &y[..2], 2, &LogRegConfig::default()).is_err());
    }
}
