//! Lexical diversity and latent-space coverage.
//!
//! * [`distinct_n`]: distinct n-grams / total n-grams over a text set.
//! * [`self_bleu`]: mean sentence BLEU-4 of each text against all others
//!   (smoothed, seeded sample of at most `max_texts`); higher = less diverse.
//! * [`latent_coverage`]: share of declared latent values, and of value pairs
//!   across variables, that occur in the simulated sessions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::text::{tokenize, word_ngrams};

/// distinct-n: unique n-grams divided by all n-grams (0 if none).
pub fn distinct_n<S: AsRef<str>>(texts: &[S], n: usize) -> f64 {
    let mut all = 0usize;
    let mut uniq: BTreeSet<String> = BTreeSet::new();
    for t in texts {
        let g = word_ngrams(&tokenize(t.as_ref()), n, n);
        all += g.len();
        uniq.extend(g);
    }
    if all == 0 {
        0.0
    } else {
        uniq.len() as f64 / all as f64
    }
}

/// Samples [`distinct_at_size`] averages over.
pub const SIZE_MATCHED_SAMPLES: usize = 20;

/// distinct-n of `texts` as if there were only `size` of them: the mean over
/// seeded samples of `size` texts (all of them when there are no more).
/// distinct-n falls as a text set grows (common n-grams repeat), so two
/// sets are compared at the same size.
pub fn distinct_at_size<S: AsRef<str>>(texts: &[S], size: usize, n: usize, seed: u64) -> f64 {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    if size == 0 || texts.len() <= size {
        return distinct_n(texts, n);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut idx: Vec<usize> = (0..texts.len()).collect();
    let mut total = 0.0;
    for _ in 0..SIZE_MATCHED_SAMPLES {
        idx.shuffle(&mut rng);
        let sample: Vec<&str> = idx[..size].iter().map(|&i| texts[i].as_ref()).collect();
        total += distinct_n(&sample, n);
    }
    total / SIZE_MATCHED_SAMPLES as f64
}

fn ngram_counts(toks: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut m = HashMap::new();
    if toks.len() >= n {
        for w in toks.windows(n) {
            *m.entry(w).or_insert(0) += 1;
        }
    }
    m
}

/// Sentence BLEU-4 of `hyp` against `refs` (clipped counts by the max over
/// references, brevity penalty from the closest reference length, uniform
/// weights; zero n-gram matches smoothed to 0.1 / total as NLTK method 1).
pub fn sentence_bleu(hyp: &[String], refs: &[&[String]]) -> f64 {
    if hyp.is_empty() || refs.is_empty() {
        return 0.0;
    }
    let mut log_p = 0.0;
    for n in 1..=4 {
        let h = ngram_counts(hyp, n);
        let total: usize = h.values().sum();
        if total == 0 {
            // hypothesis shorter than n: treat as smoothed zero precision
            log_p += (0.1f64).ln() / 4.0;
            continue;
        }
        let mut max_ref: HashMap<&[String], usize> = HashMap::new();
        for r in refs {
            for (g, c) in ngram_counts(r, n) {
                if h.contains_key(g) {
                    let e = max_ref.entry(g).or_insert(0);
                    *e = (*e).max(c);
                }
            }
        }
        let matched: usize = h
            .iter()
            .map(|(g, &c)| c.min(max_ref.get(g).copied().unwrap_or(0)))
            .sum();
        let p = if matched == 0 {
            0.1 / total as f64
        } else {
            matched as f64 / total as f64
        };
        log_p += p.ln() / 4.0;
    }
    let c = hyp.len() as f64;
    let r = refs
        .iter()
        .map(|r| r.len() as f64)
        .min_by(|a, b| (a - c).abs().total_cmp(&(b - c).abs()).then(a.total_cmp(b)))
        .unwrap_or(c);
    let bp = if c > r { 1.0 } else { (1.0 - r / c).exp() };
    bp * log_p.exp()
}

/// Self-BLEU: mean BLEU-4 of each sampled text against the other sampled
/// texts. Empty texts are dropped; 0 if fewer than two remain.
pub fn self_bleu<S: AsRef<str>>(texts: &[S], max_texts: usize, seed: u64) -> f64 {
    let mut toks: Vec<Vec<String>> = texts
        .iter()
        .map(|t| tokenize(t.as_ref()))
        .filter(|t| !t.is_empty())
        .collect();
    if toks.len() > max_texts {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        toks.shuffle(&mut rng);
        toks.truncate(max_texts);
    }
    if toks.len() < 2 {
        return 0.0;
    }
    let mut sum = 0.0;
    for i in 0..toks.len() {
        let refs: Vec<&[String]> = toks
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, t)| t.as_slice())
            .collect();
        sum += sentence_bleu(&toks[i], &refs);
    }
    sum / toks.len() as f64
}

/// Coverage of declared latent values by simulated sessions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatentCoverage {
    /// Per variable: share of declared values that occur.
    pub per_variable: BTreeMap<String, f64>,
    /// Share of all declared (variable, value) items that occur.
    pub value_coverage: f64,
    /// Share of declared value pairs across two different variables that
    /// co-occur in at least one session.
    pub pair_coverage: f64,
    /// Values seen that were not declared, per variable.
    pub undeclared: BTreeMap<String, Vec<String>>,
}

fn latent_values(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().flat_map(|x| latent_values(Some(x))).collect(),
        Some(Value::Number(n)) => vec![n.to_string()],
        Some(Value::Bool(b)) => vec![b.to_string()],
        Some(Value::Object(o)) => o
            .get("id")
            .or(o.get("title"))
            .map(|x| latent_values(Some(x)))
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Computes coverage of `declared` values (variable → values) over session
/// latents (JSON objects; arrays count each element; objects count their
/// `id`, else `title`).
pub fn latent_coverage(
    declared: &BTreeMap<String, Vec<String>>,
    sessions: &[&Value],
) -> LatentCoverage {
    let vars: Vec<&String> = declared.keys().collect();
    let mut seen: BTreeMap<&String, BTreeSet<String>> = BTreeMap::new();
    let mut undeclared: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pairs: BTreeSet<(usize, String, usize, String)> = BTreeSet::new();
    for s in sessions {
        let vals: Vec<Vec<String>> = vars
            .iter()
            .map(|v| {
                let decl = &declared[*v];
                let (ok, bad): (Vec<String>, Vec<String>) = latent_values(s.get(v.as_str()))
                    .into_iter()
                    .partition(|x| decl.contains(x));
                if !bad.is_empty() {
                    undeclared.entry((*v).clone()).or_default().extend(bad);
                }
                ok
            })
            .collect();
        for (i, vs) in vals.iter().enumerate() {
            seen.entry(vars[i]).or_default().extend(vs.iter().cloned());
            for (j, vj) in vals.iter().enumerate().skip(i + 1) {
                for a in vs {
                    for b in vj {
                        pairs.insert((i, a.clone(), j, b.clone()));
                    }
                }
            }
        }
    }
    let mut per_variable = BTreeMap::new();
    let (mut tot, mut hit) = (0usize, 0usize);
    for v in &vars {
        let d: BTreeSet<&String> = declared[*v].iter().collect();
        let h = seen.get(v).map_or(0, |s| s.len());
        per_variable.insert(
            (*v).clone(),
            if d.is_empty() {
                0.0
            } else {
                h as f64 / d.len() as f64
            },
        );
        tot += d.len();
        hit += h;
    }
    let mut total_pairs = 0usize;
    for i in 0..vars.len() {
        for j in i + 1..vars.len() {
            total_pairs += declared[vars[i]].len() * declared[vars[j]].len();
        }
    }
    LatentCoverage {
        per_variable,
        value_coverage: if tot == 0 {
            0.0
        } else {
            hit as f64 / tot as f64
        },
        pair_coverage: if total_pairs == 0 {
            0.0
        } else {
            pairs.len() as f64 / total_pairs as f64
        },
        undeclared: undeclared
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().collect()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn distinct_at_size_matches_a_smaller_set() {
        let texts: Vec<String> = (0..200)
            .map(|i| format!("i like movie {}", i % 10))
            .collect();
        // All 200: "i like" and "like movie" repeat 200 times.
        let all = distinct_n(&texts, 2);
        let at_10 = distinct_at_size(&texts, 10, 2, 1);
        assert!(at_10 > 2.0 * all, "{at_10} vs {all}");
        assert_eq!(distinct_at_size(&texts, 500, 2, 1), all);
        assert_eq!(distinct_at_size(&texts, 10, 2, 1), at_10, "seeded");
    }

    #[test]
    fn distinct_known() {
        assert_eq!(distinct_n(&["a b a", "a c"], 1), 3.0 / 5.0);
        assert_eq!(distinct_n(&["a b a b"], 2), 2.0 / 3.0);
        assert_eq!(distinct_n(&[""], 1), 0.0);
    }

    #[test]
    fn bleu_known() {
        let t = |s: &str| tokenize(s);
        let h = t("the cat sat on the mat");
        assert!((sentence_bleu(&h, &[h.as_slice()]) - 1.0).abs() < 1e-12);
        // identical texts: self-BLEU 1; disjoint texts: tiny
        assert!((self_bleu(&["a b c d e", "a b c d e"], 200, 1) - 1.0).abs() < 1e-12);
        assert!(self_bleu(&["a b c d e", "f g h i j"], 200, 1) < 0.05);
        // brevity penalty: hyp "a b c d" vs ref "a b c d e f" -> exp(1-6/4)
        let r = t("a b c d e f");
        let b = sentence_bleu(&t("a b c d"), &[r.as_slice()]);
        assert!((b - (1.0f64 - 1.5).exp()).abs() < 1e-12);
    }

    #[test]
    fn coverage_known() {
        let declared: BTreeMap<String, Vec<String>> = [
            (
                "age".to_string(),
                vec!["teen".to_string(), "adult".to_string()],
            ),
            (
                "genre".to_string(),
                vec![
                    "Drama".to_string(),
                    "Western".to_string(),
                    "Horror".to_string(),
                ],
            ),
        ]
        .into_iter()
        .collect();
        let a = json!({"age": "teen", "genre": ["Drama", "Western"]});
        let b = json!({"age": "teen", "genre": "Drama", "x": 1});
        let c = json!({"age": "elder"});
        let cov = latent_coverage(&declared, &[&a, &b, &c]);
        assert_eq!(cov.per_variable["age"], 0.5);
        assert!((cov.per_variable["genre"] - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(cov.value_coverage, 3.0 / 5.0);
        assert_eq!(cov.pair_coverage, 2.0 / 6.0);
        assert_eq!(cov.undeclared["age"], vec!["elder"]);
    }
}
