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

/// What the critic saw in one conversation (or a run, summed).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct CriticCounts {
    /// Seeker turns scored.
    pub turns: u64,
    /// Candidates scored: `turns` × N (a round the guard rejected whole
    /// is drawn again, not scored).
    pub candidates: u64,
    /// Sum of the kept candidates' scores.
    pub chosen_score_sum: f64,
    /// Sum of every candidate's score.
    pub candidate_score_sum: f64,
    /// Seeker turns whose intent the intent reader read.
    pub intent_turns: u64,
    /// Sum of the kept candidates' intent probabilities.
    pub chosen_intent_sum: f64,
    /// Sum of every candidate's intent probability (over `intent_turns`).
    pub candidate_intent_sum: f64,
    /// Candidates read for their intent.
    pub intent_candidates: u64,
    /// Seeker turns whose candidates were weighed by their length.
    pub length_turns: u64,
    /// Sum of the kept candidates' [`length_fit`]s.
    pub chosen_length_sum: f64,
    /// Sum of every candidate's [`length_fit`] (over `length_turns`).
    pub candidate_length_sum: f64,
    /// Candidates weighed by their length.
    pub length_candidates: u64,
}

impl CriticCounts {
    /// Add another count.
    pub fn add(&mut self, other: &CriticCounts) {
        self.turns += other.turns;
        self.candidates += other.candidates;
        self.chosen_score_sum += other.chosen_score_sum;
        self.candidate_score_sum += other.candidate_score_sum;
        self.intent_turns += other.intent_turns;
        self.chosen_intent_sum += other.chosen_intent_sum;
        self.candidate_intent_sum += other.candidate_intent_sum;
        self.intent_candidates += other.intent_candidates;
        self.length_turns += other.length_turns;
        self.chosen_length_sum += other.chosen_length_sum;
        self.candidate_length_sum += other.candidate_length_sum;
        self.length_candidates += other.length_candidates;
    }

    /// Mean score of the kept candidates (0 when none was scored).
    pub fn mean_chosen(&self) -> f64 {
        mean(self.chosen_score_sum, self.turns)
    }

    /// Mean score of all candidates (0 when none was scored).
    pub fn mean_candidate(&self) -> f64 {
        mean(self.candidate_score_sum, self.candidates)
    }

    /// Mean intent probability of the kept candidates (0 when none was read).
    pub fn mean_chosen_intent(&self) -> f64 {
        mean(self.chosen_intent_sum, self.intent_turns)
    }

    /// Mean intent probability of all candidates read (0 when none was).
    pub fn mean_candidate_intent(&self) -> f64 {
        mean(self.candidate_intent_sum, self.intent_candidates)
    }

    /// Mean length fit of the kept candidates (0 when none was weighed).
    pub fn mean_chosen_length(&self) -> f64 {
        mean(self.chosen_length_sum, self.length_turns)
    }

    /// Mean length fit of all candidates weighed (0 when none was).
    pub fn mean_candidate_length(&self) -> f64 {
        mean(self.candidate_length_sum, self.length_candidates)
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
    fn counts_add_and_average() {
        let mut c = CriticCounts::default();
        assert_eq!(c.mean_chosen(), 0.0);
        c.add(&CriticCounts {
            turns: 2,
            candidates: 8,
            chosen_score_sum: 1.5,
            candidate_score_sum: 4.0,
            intent_turns: 1,
            chosen_intent_sum: 0.6,
            candidate_intent_sum: 1.2,
            intent_candidates: 4,
            length_turns: 2,
            chosen_length_sum: 1.0,
            candidate_length_sum: 2.0,
            length_candidates: 8,
        });
        assert_eq!(c.mean_chosen(), 0.75);
        assert_eq!(c.mean_candidate(), 0.5);
        assert_eq!(c.mean_chosen_intent(), 0.6);
        assert_eq!(c.mean_candidate_intent(), 0.3);
        assert_eq!(c.mean_chosen_length(), 0.5);
        assert_eq!(c.mean_candidate_length(), 0.25);
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
