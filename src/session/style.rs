//! Surface style: how a real seeker types, as seeded rewrites of the
//! generated text (`[style]` in the scenario).
//!
//! `usersim fit` measures, for every real seeker of a corpus, three rates
//! over their turns: how often a turn starts in lower case, how often it
//! ends without `.`, `!` or `?`, and how often it joins sentences with
//! `...`. A session draws one real seeker's rates (a person types the same
//! way all conversation long; seekers differ); each turn then draws, from
//! its own stream, which of the three it shows, and the text is rewritten
//! to match: first letter lowered or raised, final punctuation dropped, the
//! first sentence break joined with `...`. Only characters at those places
//! change; the words are the model's.
//!
//! Invariant: a rewrite depends on the text, the session's drawn rates and
//! the turn's stream alone, so it is the same at any `--parallel`.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// One seeker's typing rates (each a share of their turns, 0 to 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StyleRates {
    /// Turns whose first letter is lower case.
    pub lower_first: f64,
    /// Turns that end without `.`, `!` or `?`.
    pub bare_end: f64,
    /// Turns holding a `..` join.
    pub ellipsis: f64,
}

impl StyleRates {
    /// The rates of one seeker's turns.
    pub fn measure<'a>(turns: impl IntoIterator<Item = &'a str>) -> Option<StyleRates> {
        let mut n = 0.0;
        let mut r = StyleRates::default();
        for t in turns {
            let t = t.trim();
            if t.is_empty() {
                continue;
            }
            n += 1.0;
            if t.chars()
                .find(|c| c.is_alphabetic())
                .is_some_and(char::is_lowercase)
            {
                r.lower_first += 1.0;
            }
            if !t.ends_with(['.', '!', '?']) {
                r.bare_end += 1.0;
            }
            if t.contains("..") {
                r.ellipsis += 1.0;
            }
        }
        (n > 0.0).then(|| StyleRates {
            lower_first: r.lower_first / n,
            bare_end: r.bare_end / n,
            ellipsis: r.ellipsis / n,
        })
    }

    /// Rounded to two decimals (what a fitted file keeps).
    pub fn rounded(self) -> StyleRates {
        let r = |x: f64| (x * 100.0).round() / 100.0;
        StyleRates {
            lower_first: r(self.lower_first),
            bare_end: r(self.bare_end),
            ellipsis: r(self.ellipsis),
        }
    }

    /// Whether every rate is within 0 to 1.
    pub fn is_valid(&self) -> bool {
        [self.lower_first, self.bare_end, self.ellipsis]
            .iter()
            .all(|x| (0.0..=1.0).contains(x))
    }
}

/// Rewrite one turn's `text` in the style of `rates`, drawing from `rng`.
pub fn restyle(text: &str, rates: &StyleRates, rng: &mut impl Rng) -> String {
    // Three draws every turn, used or not, so one rule's outcome never
    // shifts another's.
    let lower = rng.random_bool(rates.lower_first.clamp(0.0, 1.0));
    let bare = rng.random_bool(rates.bare_end.clamp(0.0, 1.0));
    let join = rng.random_bool(rates.ellipsis.clamp(0.0, 1.0));
    let mut out = text.trim().to_string();
    if join && !out.contains("..") {
        if let Some(i) = sentence_break(&out) {
            // "enjoyed it. One" -> "enjoyed it...One", as real seekers join.
            let rest = out[i + 2..].to_string();
            out.truncate(i);
            out.push_str("...");
            out.push_str(&rest);
        }
    }
    if bare {
        let kept = out.trim_end_matches(['.', '!', '?']).len();
        if kept > 0 {
            out.truncate(kept);
        }
    }
    if let Some((i, c)) = out.char_indices().find(|(_, c)| c.is_alphabetic()) {
        let changed: String = if lower {
            c.to_lowercase().collect()
        } else {
            c.to_uppercase().collect()
        };
        out.replace_range(i..i + c.len_utf8(), &changed);
    }
    out
}

/// Byte offset of the first `.`, `!` or `?` followed by a space and more
/// text.
fn sentence_break(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(2))
        .find(|&i| matches!(b[i], b'.' | b'!' | b'?') && b[i + 1] == b' ' && b[i + 2] != b' ')
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> crate::rng::SessionRng {
        crate::rng::SessionRng::seed_from_u64(3)
    }

    #[test]
    fn each_rule_at_rate_one_and_zero() {
        let all = StyleRates {
            lower_first: 1.0,
            bare_end: 1.0,
            ellipsis: 1.0,
        };
        assert_eq!(
            restyle(
                "I enjoyed it. One of my favorites is Heat!",
                &all,
                &mut rng()
            ),
            "i enjoyed it...One of my favorites is Heat"
        );
        let none = StyleRates::default();
        assert_eq!(
            restyle("i enjoyed it. one more.", &none, &mut rng()),
            "I enjoyed it. one more."
        );
        // Nothing to join, nothing but punctuation to keep.
        assert_eq!(restyle("?", &all, &mut rng()), "?");
        assert_eq!(restyle("Ok", &all, &mut rng()), "ok");
        assert_eq!(
            restyle("\"Heat\" was great.", &all, &mut rng()),
            "\"heat\" was great"
        );
    }

    #[test]
    fn rates_are_measured_per_turn_and_reproduced_in_expectation() {
        let turns = ["hi there", "I like it.", "ok...thanks", "Sure!"];
        let r = StyleRates::measure(turns).unwrap();
        assert_eq!((r.lower_first, r.bare_end, r.ellipsis), (0.5, 0.5, 0.25));
        assert!(StyleRates::measure(["", "  "]).is_none());
        let target = StyleRates {
            lower_first: 0.3,
            bare_end: 0.6,
            ellipsis: 0.0,
        };
        let mut g = rng();
        let out: Vec<String> = (0..2000)
            .map(|_| restyle("That sounds great. Thanks.", &target, &mut g))
            .collect();
        let got = StyleRates::measure(out.iter().map(String::as_str)).unwrap();
        assert!((got.lower_first - 0.3).abs() < 0.04, "{got:?}");
        assert!((got.bare_end - 0.6).abs() < 0.04, "{got:?}");
        assert_eq!(got.ellipsis, 0.0);
    }
}
