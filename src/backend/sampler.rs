//! Token sampling and stop strings, per sequence.
//!
//! The engine hands every live sequence's logits to one [`Sampler`], which
//! owns reusable buffers so the hot loop allocates nothing. The order of the
//! filters follows llama.cpp's default chain (penalties → top-k → top-p →
//! min-p → temperature → draw), so a scenario tuned against `llama-cli`
//! behaves the same here. Every call takes exactly one `f64` from the
//! sequence's own RNG, greedy or not, so a sequence's stream of draws never
//! depends on its options or on other sequences.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Default temperature.
pub const DEFAULT_TEMPERATURE: f32 = 0.8;
/// Default top-k (0 disables it).
pub const DEFAULT_TOP_K: u32 = 40;
/// Default nucleus mass (1 disables it).
pub const DEFAULT_TOP_P: f32 = 0.95;
/// Default min-p (0 disables it).
pub const DEFAULT_MIN_P: f32 = 0.05;
/// Default repetition penalty (1 disables it).
pub const DEFAULT_REPEAT_PENALTY: f32 = 1.1;
/// Default window of the repetition penalty, in tokens.
pub const DEFAULT_REPEAT_LAST_N: u32 = 64;
/// Default limit of new tokens per message.
pub const DEFAULT_MAX_TOKENS: u32 = 96;

/// How one side's messages are sampled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy.
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 keeps all.
    pub top_k: u32,
    /// Keep the smallest set of tokens whose probability reaches this mass.
    pub top_p: f32,
    /// Drop tokens less likely than this fraction of the most likely one.
    pub min_p: f32,
    /// Divide positive logits (multiply negative ones) of recent tokens.
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    pub repeat_last_n: u32,
    /// Most new tokens per message.
    pub max_tokens: u32,
    /// Generation ends when the text contains one of these (not kept).
    pub stop: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: DEFAULT_TEMPERATURE,
            top_k: DEFAULT_TOP_K,
            top_p: DEFAULT_TOP_P,
            min_p: DEFAULT_MIN_P,
            repeat_penalty: DEFAULT_REPEAT_PENALTY,
            repeat_last_n: DEFAULT_REPEAT_LAST_N,
            max_tokens: DEFAULT_MAX_TOKENS,
            stop: Vec::new(),
        }
    }
}

/// A sampling option out of range.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("`{field}` is {value}, expected {expected}")]
pub struct SamplingError {
    /// Option name.
    pub field: &'static str,
    /// Value given.
    pub value: String,
    /// What is accepted.
    pub expected: &'static str,
}

impl SamplingParams {
    /// Stop at a line end too (a transcript's turn is one line).
    pub fn stop_at_line_end(&mut self) {
        if !self.stop.iter().any(|s| s == "\n") {
            self.stop.push("\n".into());
        }
    }

    /// Check every option's range.
    pub fn validate(&self) -> Result<(), SamplingError> {
        let bad = |field, value: String, expected| {
            Err(SamplingError {
                field,
                value,
                expected,
            })
        };
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad("temperature", self.temperature.to_string(), "a number >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", self.top_p.to_string(), "a number in (0, 1]");
        }
        if !(self.min_p >= 0.0 && self.min_p < 1.0) {
            return bad("min_p", self.min_p.to_string(), "a number in [0, 1)");
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad(
                "repeat_penalty",
                self.repeat_penalty.to_string(),
                "a number > 0",
            );
        }
        if self.max_tokens == 0 {
            return bad("max_tokens", "0".into(), "at least 1");
        }
        if self.stop.iter().any(String::is_empty) {
            return bad(
                "stop",
                "a list with an empty string".into(),
                "non-empty strings",
            );
        }
        Ok(())
    }
}

/// Reusable sampling state for a vocabulary of a given size.
#[derive(Debug)]
pub struct Sampler {
    /// (logit, token) candidates; capacity of the whole vocabulary.
    cand: Vec<(f32, i32)>,
    /// Probabilities of the surviving candidates.
    probs: Vec<f32>,
    /// Marks tokens already penalised in this call (a window counts a token once).
    seen: Vec<bool>,
}

/// Total order: higher logit first, then lower token id, so ties never
/// depend on the sort algorithm.
fn by_logit_desc(a: &(f32, i32), b: &(f32, i32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

impl Sampler {
    /// A sampler for `n_vocab` tokens.
    pub fn new(n_vocab: usize) -> Self {
        Sampler {
            cand: Vec::with_capacity(n_vocab),
            probs: Vec::with_capacity(n_vocab),
            seen: vec![false; n_vocab],
        }
    }

    /// Pick the next token from `logits`. `recent` are the sequence's last
    /// tokens (the repetition window). Takes exactly one draw from `rng`.
    pub fn sample(
        &mut self,
        logits: &[f32],
        p: &SamplingParams,
        recent: &[i32],
        rng: &mut ChaCha8Rng,
    ) -> i32 {
        let u: f64 = rng.random();
        if logits.is_empty() {
            return 0;
        }
        if self.seen.len() < logits.len() {
            self.seen.resize(logits.len(), false);
        }
        self.cand.clear();
        self.cand.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (if l.is_nan() { f32::NEG_INFINITY } else { l }, i as i32)),
        );
        if p.repeat_penalty != 1.0 {
            for &t in recent {
                let Some(i) = usize::try_from(t).ok().filter(|&i| i < self.cand.len()) else {
                    continue;
                };
                if self.seen[i] {
                    continue;
                }
                self.seen[i] = true;
                let l = &mut self.cand[i].0;
                *l = if *l > 0.0 {
                    *l / p.repeat_penalty
                } else {
                    *l * p.repeat_penalty
                };
            }
            for &t in recent {
                if let Some(s) = usize::try_from(t).ok().and_then(|i| self.seen.get_mut(i)) {
                    *s = false;
                }
            }
        }
        if p.temperature <= 0.0 {
            return self
                .cand
                .iter()
                .min_by(|a, b| by_logit_desc(a, b))
                .map(|c| c.1)
                .unwrap_or(0);
        }
        let k = if p.top_k == 0 {
            self.cand.len()
        } else {
            (p.top_k as usize).min(self.cand.len())
        };
        if k < self.cand.len() {
            self.cand.select_nth_unstable_by(k - 1, by_logit_desc);
            self.cand.truncate(k);
        }
        self.cand.sort_unstable_by(by_logit_desc);
        let max = self.cand[0].0;
        if max == f32::NEG_INFINITY {
            return self.cand[0].1;
        }
        // top-p and min-p look at the untempered distribution, as llama.cpp's chain does.
        self.probs.clear();
        self.probs
            .extend(self.cand.iter().map(|c| (c.0 - max).exp()));
        let total: f32 = self.probs.iter().sum();
        let mut keep = self.probs.len();
        if p.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, q) in self.probs.iter().enumerate() {
                cum += q / total;
                if cum >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        if p.min_p > 0.0 {
            // probs[0] is the most likely token, exp(0) = 1.
            keep = keep.min(
                self.probs
                    .iter()
                    .take_while(|&&q| q >= p.min_p)
                    .count()
                    .max(1),
            );
        }
        self.cand.truncate(keep);
        self.probs.clear();
        let inv_t = 1.0 / p.temperature;
        self.probs
            .extend(self.cand.iter().map(|c| ((c.0 - max) * inv_t).exp()));
        let total: f64 = self.probs.iter().map(|&q| q as f64).sum();
        let mut target = u * total;
        for (c, &q) in self.cand.iter().zip(&self.probs) {
            target -= q as f64;
            if target < 0.0 {
                return c.1;
            }
        }
        self.cand[keep - 1].1
    }
}

/// Where a stop-string check stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopState {
    /// No stop string yet.
    Continue,
    /// A stop string appeared; the text is cut to `visible_len` bytes.
    Stopped {
        /// Length of the text kept.
        visible_len: usize,
    },
}

/// Accumulates generated text and watches for stop strings, searching only
/// the part a new piece can have completed.
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    longest: usize,
    text: String,
    stopped: bool,
}

impl StopMatcher {
    /// A matcher for `stops` (empty: never stops).
    pub fn new(stops: &[String]) -> Self {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            longest: stops.iter().map(String::len).max().unwrap_or(0),
            text: String::new(),
            stopped: false,
        }
    }

    /// Append `piece`; report whether a stop string has now appeared.
    pub fn push(&mut self, piece: &str) -> StopState {
        if self.stopped {
            return StopState::Stopped {
                visible_len: self.text.len(),
            };
        }
        let old = self.text.len();
        self.text.push_str(piece);
        if self.stops.is_empty() {
            return StopState::Continue;
        }
        let mut from = old.saturating_sub(self.longest.saturating_sub(1));
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let hay = &self.text[from..];
        let first = self.stops.iter().filter_map(|s| hay.find(s.as_str())).min();
        match first {
            Some(at) => {
                self.text.truncate(from + at);
                self.stopped = true;
                StopState::Stopped {
                    visible_len: self.text.len(),
                }
            }
            None => StopState::Continue,
        }
    }

    /// The text so far, without any stop string.
    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    #[test]
    fn greedy_picks_the_max_and_penalty_can_flip_it() {
        let mut s = Sampler::new(4);
        let p = SamplingParams {
            temperature: 0.0,
            repeat_penalty: 1.0,
            ..SamplingParams::default()
        };
        assert_eq!(s.sample(&[0.1, 2.0, 1.9, -1.0], &p, &[], &mut rng(1)), 1);
        let p = SamplingParams {
            repeat_penalty: 1.5,
            ..p
        };
        // 2.0 / 1.5 < 1.9: the recent token loses; counted once despite repeats.
        assert_eq!(
            s.sample(&[0.1, 2.0, 1.9, -1.0], &p, &[1, 1, 1], &mut rng(1)),
            2
        );
    }

    #[test]
    fn top_k_one_is_greedy_and_min_p_cuts_the_tail() {
        let mut s = Sampler::new(5);
        let logits = [1.0, 3.0, 0.5, 2.9, -2.0];
        let k1 = SamplingParams {
            top_k: 1,
            ..SamplingParams::default()
        };
        let minp = SamplingParams {
            top_k: 0,
            top_p: 1.0,
            min_p: 0.5,
            temperature: 1.0,
            repeat_penalty: 1.0,
            ..SamplingParams::default()
        };
        for seed in 0..200 {
            assert_eq!(s.sample(&logits, &k1, &[], &mut rng(seed)), 1);
            // Only tokens 1 and 3 are within half the top probability.
            let t = s.sample(&logits, &minp, &[], &mut rng(seed));
            assert!(t == 1 || t == 3, "{t}");
        }
    }

    #[test]
    fn draws_follow_the_distribution_and_repeat_per_seed() {
        let mut s = Sampler::new(3);
        let logits = [0.0f32, (2.0f32).ln(), f32::NAN];
        let p = SamplingParams {
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            temperature: 1.0,
            repeat_penalty: 1.0,
            ..SamplingParams::default()
        };
        let mut r = rng(9);
        let n = 6000;
        let ones = (0..n)
            .filter(|_| s.sample(&logits, &p, &[], &mut r) == 1)
            .count();
        let share = ones as f64 / n as f64;
        assert!((share - 2.0 / 3.0).abs() < 0.03, "{share}");
        let a: Vec<i32> = (0..50)
            .map(|i| s.sample(&logits, &p, &[], &mut rng(i)))
            .collect();
        let b: Vec<i32> = (0..50)
            .map(|i| s.sample(&logits, &p, &[], &mut rng(i)))
            .collect();
        assert_eq!(a, b);
        assert!(!a.contains(&2), "NaN logits are never drawn");
    }

    #[test]
    fn stop_strings_across_pieces() {
        let mut m = StopMatcher::new(&["\n\nUser:".to_string(), "END".to_string()]);
        assert_eq!(m.push("Hello"), StopState::Continue);
        assert_eq!(m.push(" there\n"), StopState::Continue);
        assert_eq!(m.push("\nUs"), StopState::Continue);
        assert_eq!(m.push("er: hi"), StopState::Stopped { visible_len: 11 });
        assert_eq!(m.text(), "Hello there");
        let mut m = StopMatcher::new(&["é!".to_string()]);
        m.push("caf");
        assert_eq!(m.push("é!"), StopState::Stopped { visible_len: 3 });
        assert_eq!(m.text(), "caf");
    }

    #[test]
    fn validation_names_the_field() {
        let p = SamplingParams {
            top_p: 0.0,
            ..SamplingParams::default()
        };
        let e = p.validate().unwrap_err();
        assert_eq!(e.field, "top_p");
        assert!(SamplingParams::default().validate().is_ok());
    }
}
