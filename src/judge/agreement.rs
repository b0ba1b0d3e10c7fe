//! Inter-judge agreement: Krippendorff's alpha over units with missing
//! values, under any difference function ([`nominal`] for verdicts,
//! [`interval`] for ratings).
//!
//! Invariant: units with fewer than two values are left out (not
//! pairable), and alpha is `None` rather than a number when nothing can be
//! compared or every value is the same.

/// Krippendorff's alpha of `units` (each the values its coders gave; units
/// with fewer than two values are not pairable and left out) under the
/// difference `delta`. `None` without pairable values or when the expected
/// disagreement is zero.
pub fn krippendorff_alpha(units: &[Vec<f64>], delta: impl Fn(f64, f64) -> f64) -> Option<f64> {
    let pairable: Vec<&Vec<f64>> = units.iter().filter(|u| u.len() >= 2).collect();
    let n: usize = pairable.iter().map(|u| u.len()).sum();
    if n < 2 {
        return None;
    }
    let mut d_o = 0.0;
    for u in &pairable {
        let m = u.len() as f64;
        let mut s = 0.0;
        for (i, a) in u.iter().enumerate() {
            for (j, b) in u.iter().enumerate() {
                if i != j {
                    s += delta(*a, *b);
                }
            }
        }
        d_o += s / (m - 1.0);
    }
    d_o /= n as f64;
    let all: Vec<f64> = pairable.iter().flat_map(|u| u.iter().copied()).collect();
    let mut d_e = 0.0;
    for (i, a) in all.iter().enumerate() {
        for (j, b) in all.iter().enumerate() {
            if i != j {
                d_e += delta(*a, *b);
            }
        }
    }
    d_e /= (n * (n - 1)) as f64;
    if d_e <= 0.0 {
        return None;
    }
    Some(1.0 - d_o / d_e)
}

/// Nominal difference: 0 if equal, else 1.
pub fn nominal(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        1.0
    }
}

/// Interval difference: the squared distance.
pub fn interval(a: f64, b: f64) -> f64 {
    (a - b) * (a - b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Krippendorff (2011), "Computing Krippendorff's alpha-reliability":
    /// four coders, twelve units, missing values; alpha 0.743 (nominal)
    /// and 0.849 (interval).
    #[test]
    fn judge_alpha_matches_krippendorffs_worked_example() {
        let nan = f64::NAN;
        let coders = [
            [1., 2., 3., 3., 2., 1., 4., 1., 2., nan, nan, nan],
            [1., 2., 3., 3., 2., 2., 4., 1., 2., 5., nan, 3.],
            [nan, 3., 3., 3., 2., 3., 4., 2., 2., 5., 1., nan],
            [1., 2., 3., 3., 2., 4., 4., 1., 2., 5., 1., nan],
        ];
        let units: Vec<Vec<f64>> = (0..12)
            .map(|u| {
                coders
                    .iter()
                    .map(|c| c[u])
                    .filter(|v| !v.is_nan())
                    .collect()
            })
            .collect();
        let a = krippendorff_alpha(&units, nominal).unwrap();
        assert!((a - 0.743).abs() < 0.0005, "nominal {a}");
        let a = krippendorff_alpha(&units, interval).unwrap();
        assert!((a - 0.849).abs() < 0.0005, "interval {a}");
        // Perfect agreement with variation is 1; a single value has no
        // expected disagreement.
        let perfect = vec![vec![1., 1.], vec![0., 0., 0.]];
        assert_eq!(krippendorff_alpha(&perfect, nominal), Some(1.0));
        assert_eq!(krippendorff_alpha(&[vec![1., 1.]], nominal), None);
    }
}
