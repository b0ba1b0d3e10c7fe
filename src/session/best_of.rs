//! Best-of-N seeker turns: every candidate of a turn is scored by a
//! [`TurnScorer`] (a realism critic) and the most human one is kept.
//!
//! The candidates are decoded together from one prompt (the engine forks
//! its KV cache; see [`crate::backend::GenerationRequest::forks`]), each
//! from its own seeded stream ([`crate::rng::Stream::UserCandidate`]).
//! Invariant: the choice is a function of the candidates' texts and their
//! context alone (the highest score, the lowest candidate index among
//! equals), never of the order in which candidates finished, so best-of-N
//! keeps output identical across `--parallel`.

/// Scores how human a seeker turn reads after the system turn before it.
pub trait TurnScorer {
    /// Higher is more human: the critic's probability that `turn`, said
    /// after `context` (empty when there is none), was written by a person.
    fn score(&self, context: &str, turn: &str) -> f64;
}

/// Reads how clearly a seeker turn says an intent: the control half of
/// the choice (the critic is the realism half), so a turn drawn as a
/// rejection is kept in the words that read as one.
pub trait IntentReader {
    /// The probability that `turn` says `intent`; `None` when the reader
    /// does not know the intent (the choice is then the critic's alone).
    fn read(&self, intent: &str, turn: &str) -> Option<f64>;
}

/// One factor of a turn's choice (the critic's score, the intent reading,
/// the length fit) over the turns it valued: enough to say how the kept
/// candidates compare with all of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct FactorCounts {
    /// Seeker turns whose candidates it valued.
    pub turns: u64,
    /// Candidates it valued: `turns` × N (a round the guard rejected whole
    /// is drawn again, not valued).
    pub candidates: u64,
    /// Sum of the kept candidates' values.
    pub chosen_sum: f64,
    /// Sum of every candidate's value.
    pub candidate_sum: f64,
}

impl FactorCounts {
    /// Count one turn: every candidate's value, and which was kept.
    pub fn record(&mut self, values: &[f64], kept: usize) {
        self.turns += 1;
        self.candidates += values.len() as u64;
        self.chosen_sum += values.get(kept).copied().unwrap_or(0.0);
        self.candidate_sum += values.iter().sum::<f64>();
    }

    /// Add another count.
    pub fn add(&mut self, other: &FactorCounts) {
        self.turns += other.turns;
        self.candidates += other.candidates;
        self.chosen_sum += other.chosen_sum;
        self.candidate_sum += other.candidate_sum;
    }

    /// Mean value of the kept candidates (0 when none was valued).
    pub fn mean_chosen(&self) -> f64 {
        mean(self.chosen_sum, self.turns)
    }

    /// Mean value of all candidates (0 when none was valued).
    pub fn mean_candidate(&self) -> f64 {
        mean(self.candidate_sum, self.candidates)
    }
}

/// What the choice among candidates saw in one conversation (or a run,
/// summed), factor by factor.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct CriticCounts {
    /// The critic's scores (how human each candidate reads).
    pub score: FactorCounts,
    /// The intent reader's probability of each turn's drawn intent.
    pub intent: FactorCounts,
    /// Each candidate's [`length_fit`] to its turn's drawn length.
    pub length: FactorCounts,
    /// Each candidate's [`GenreRates::fit`]: how often real seekers' turns
    /// of its intent name a genre, or do not, as it does or does not.
    pub genre: FactorCounts,
}

impl CriticCounts {
    /// Add another count.
    pub fn add(&mut self, other: &CriticCounts) {
        self.score.add(&other.score);
        self.intent.add(&other.intent);
        self.length.add(&other.length);
        self.genre.add(&other.genre);
    }
}

/// How often real seekers name a genre in a turn of each intent (IARD: 68%
/// of initial queries, 7% of acceptances): the `[critic] genre_weight`
/// factor of the choice, so the kept turns name genres where people do
/// and not where they do not.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenreRates {
    /// Intent → (turns naming a genre, turns).
    per_intent: std::collections::BTreeMap<String, (u64, u64)>,
    /// Over all counted turns.
    pooled: (u64, u64),
}

impl GenreRates {
    /// Count one real seeker turn: its intent labels (it counts for each)
    /// and whether it names a genre.
    pub fn count(&mut self, labels: &[String], names_genre: bool) {
        let hit = u64::from(names_genre);
        for l in labels {
            let c = self.per_intent.entry(l.clone()).or_default();
            c.0 += hit;
            c.1 += 1;
        }
        self.pooled.0 += hit;
        self.pooled.1 += 1;
    }

    /// Turns counted.
    pub fn turns(&self) -> u64 {
        self.pooled.1
    }

    /// The share of `intent`'s real turns that name a genre, smoothed
    /// (named + 1) / (turns + 2) so no intent is sure either way; the
    /// pooled share for an intent never counted (or none).
    pub fn rate(&self, intent: Option<&str>) -> f64 {
        let (named, turns) = intent
            .and_then(|i| self.per_intent.get(i))
            .copied()
            .unwrap_or(self.pooled);
        (named as f64 + 1.0) / (turns as f64 + 2.0)
    }

    /// A candidate's factor: the rate when it names a genre, one minus the
    /// rate when it does not.
    pub fn fit(&self, intent: Option<&str>, names_genre: bool) -> f64 {
        let r = self.rate(intent);
        if names_genre {
            r
        } else {
            1.0 - r
        }
    }
}

/// `sum / n`, 0 when nothing was counted.
fn mean(sum: f64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// Each candidate's score for the choice: how human it reads (`human`),
/// times each factor's per-candidate value to the factor's power. The
/// factors are probabilities or ratios in [0, 1] (how clearly the turn
/// says its drawn intent, how near its length is to the drawn target): at
/// power 1 a candidate must be both human and the factor to win; below 1
/// realism counts for more; power 0 leaves the factor out.
pub fn combined_scores(human: &[f64], factors: &[(&[f64], f64)]) -> Vec<f64> {
    human
        .iter()
        .enumerate()
        .map(|(i, h)| {
            factors
                .iter()
                .fold(*h, |s, (values, power)| s * values[i].powf(*power))
        })
        .collect()
}

/// How near a turn of `words` words is to a `target`: the shorter over the
/// longer, each plus one (1 when equal, 1/2 for 3 words against 7 or 15
/// against 7, so too short and too long count alike by ratio).
pub fn length_fit(words: usize, target: u32) -> f64 {
    let (w, t) = (words as f64 + 1.0, f64::from(target) + 1.0);
    w.min(t) / w.max(t)
}

/// The candidate to keep among `allowed` (indices into `scores`): the
/// highest score, the lowest index among equals; without scores the first
/// allowed one. `None` when nothing is allowed.
pub fn choose(scores: Option<&[f64]>, allowed: &[usize]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for &i in allowed {
        best = match (best, scores) {
            (None, _) => Some(i),
            (Some(b), Some(s)) if s[i].total_cmp(&s[b]).is_gt() => Some(i),
            (Some(b), Some(s)) if s[i].total_cmp(&s[b]).is_eq() && i < b => Some(i),
            (b, _) => b,
        };
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_score_wins_and_ties_go_to_the_lowest_index() {
        let s = [0.2, 0.9, 0.9, 0.5];
        assert_eq!(choose(Some(&s), &[0, 1, 2, 3]), Some(1));
        assert_eq!(choose(Some(&s), &[3, 2, 1, 0]), Some(1), "order of arrival");
        assert_eq!(choose(Some(&s), &[0, 3]), Some(3), "only allowed ones");
        assert_eq!(choose(None, &[2, 3]), Some(2));
        assert_eq!(choose(Some(&s), &[]), None);
    }

    #[test]
    fn counts_record_add_and_average() {
        let mut c = CriticCounts::default();
        assert_eq!(c.score.mean_chosen(), 0.0);
        assert_eq!(c.length.mean_candidate(), 0.0);
        let mut one = CriticCounts::default();
        one.score.record(&[0.5, 1.0, 0.0, 0.5], 1);
        one.score.record(&[0.5, 0.5, 0.5, 0.5], 3);
        one.intent.record(&[0.6, 0.2, 0.2, 0.2], 0);
        one.length.record(&[0.5, 0.25, 0.25, 0.0], 0);
        one.length.record(&[0.5, 0.25, 0.25, 0.0], 3);
        assert_eq!(one.score.turns, 2);
        assert_eq!(one.score.candidates, 8);
        c.add(&one);
        c.add(&one);
        assert_eq!(c.score.turns, 4);
        assert_eq!(c.intent.candidates, 8);
        // Kept 1.0 and 0.5 of candidates averaging 0.5.
        assert_eq!(c.score.mean_chosen(), 0.75);
        assert_eq!(c.score.mean_candidate(), 0.5);
        assert_eq!(c.intent.mean_chosen(), 0.6);
        assert!((c.intent.mean_candidate() - 0.3).abs() < 1e-12);
        assert_eq!(c.length.mean_chosen(), 0.25);
        assert_eq!(c.length.mean_candidate(), 0.25);
    }

    #[test]
    fn the_intent_reading_multiplies_the_critic_score() {
        let human = [0.9, 0.5, 0.4];
        assert_eq!(combined_scores(&human, &[]), human);
        let read = [0.1, 0.8, 0.9];
        let s = combined_scores(&human, &[(&read, 1.0)]);
        // Human alone keeps 0; human and readable keeps 1 (0.40 against
        // 0.36 and 0.09): neither the most human nor the most readable.
        assert_eq!(choose(Some(&human), &[0, 1, 2]), Some(0));
        assert_eq!(choose(Some(&s), &[0, 1, 2]), Some(1));
        // Weight 0 leaves the critic alone; a small weight tips only close
        // calls (0.9 x 0.1^0.2 = 0.57 still beats 0.5 x 0.8^0.2 = 0.48).
        assert_eq!(combined_scores(&human, &[(&read, 0.0)]), human);
        let s = combined_scores(&human, &[(&read, 0.2)]);
        assert_eq!(choose(Some(&s), &[0, 1, 2]), Some(0));
    }

    #[test]
    fn genre_rates_favour_naming_a_genre_where_real_seekers_do() {
        let mut rates = GenreRates::default();
        let iqu = ["IQU".to_string()];
        let acc = ["ACC".to_string()];
        for i in 0..10 {
            rates.count(&iqu, i < 8);
            rates.count(&acc, i < 1);
        }
        assert_eq!(rates.turns(), 20);
        assert_eq!(rates.rate(Some("IQU")), 9.0 / 12.0);
        assert_eq!(rates.rate(Some("ACC")), 2.0 / 12.0);
        assert_eq!(rates.rate(Some("NEW")), 10.0 / 22.0, "pooled");
        assert_eq!(rates.rate(None), 10.0 / 22.0);
        // An initial query that names a genre beats one that does not; an
        // acceptance that does not beats one that does.
        assert!(rates.fit(Some("IQU"), true) > rates.fit(Some("IQU"), false));
        assert!(rates.fit(Some("ACC"), false) > rates.fit(Some("ACC"), true));
        assert_eq!(rates.fit(Some("ACC"), false), 10.0 / 12.0);
        // A turn with two labels counts for each.
        rates.count(&["IQU".to_string(), "ACC".to_string()], true);
        assert_eq!(rates.rate(Some("ACC")), 3.0 / 13.0);
        assert_eq!(rates.turns(), 21);
    }

    #[test]
    fn length_fit_is_the_ratio_of_shorter_to_longer_and_weighs_with_the_intent() {
        assert_eq!(length_fit(7, 7), 1.0);
        assert_eq!(length_fit(3, 7), 0.5);
        assert_eq!(length_fit(15, 7), 0.5, "too long by the same ratio");
        assert_eq!(length_fit(0, 0), 1.0);
        assert!(length_fit(6, 7) > length_fit(9, 7));
        // Equally human and readable: the length decides; the factors
        // multiply, so a far-off length loses even to a less human turn.
        let human = [0.6, 0.6, 0.5];
        let read = [0.5, 0.5, 0.5];
        let fit = [length_fit(15, 7), length_fit(8, 7), length_fit(7, 7)];
        let s = combined_scores(&human, &[(&read, 1.0), (&fit, 1.0)]);
        assert_eq!(choose(Some(&s), &[0, 1, 2]), Some(1));
        let s = combined_scores(&human, &[(&read, 1.0), (&fit, 4.0)]);
        assert_eq!(choose(Some(&s), &[0, 1, 2]), Some(2));
        assert_eq!(combined_scores(&human, &[(&read, 0.0), (&fit, 0.0)]), human);
    }
}
