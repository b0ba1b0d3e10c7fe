//! The pool: real dialogues a scenario's `[pool]` names, read at run start.
//!
//! They are the transcript prefix of `user_prompt = "transcript"`, the
//! exemplars of a chat prompt's turn instruction, and what the copy guard
//! compares generated turns with. The pool is read from the corpus files
//! every run, never written into the project: the corpora's terms forbid
//! copying them, and a stale copy could not drift from its source.
//!
//! Invariant: a pool never hands out a dialogue (as prefix or exemplar)
//! whose corpus and id are the ones being replayed, and every draw from it
//! takes the caller's seeded stream, so the same seed picks the same turns.

use std::collections::HashSet;
use std::path::Path;

use rand::seq::SliceRandom;
use rand::Rng;

use super::{load_dialogues, words, CorpusError, CorpusKind, Dialogue, Speaker, Turn};

/// Word n-gram length of the copy test: long enough that ordinary phrases
/// ("do you have any other suggestions") do not count as copies.
pub const COPY_NGRAM: usize = 8;

/// One real dialogue of the pool, as turns.
#[derive(Clone, Debug)]
pub struct PoolDialogue {
    /// Corpus it comes from.
    pub corpus: CorpusKind,
    /// Id in that corpus.
    pub id: String,
    /// Its turns ([`Dialogue::turns`]).
    pub turns: Vec<Turn>,
    /// Words over all its turns.
    pub words: usize,
}

/// The pool.
#[derive(Clone, Debug, Default)]
pub struct Pool {
    dialogues: Vec<PoolDialogue>,
    /// Every word 8-gram of every seeker turn, words joined by a space.
    seeker_ngrams: HashSet<String>,
}

/// The dialogue being replayed, which the pool must not hand out.
pub type Excluded<'a> = Option<(CorpusKind, &'a str)>;

fn ngram_keys(text: &str, n: usize) -> Vec<String> {
    words(text).windows(n).map(|w| w.join(" ")).collect()
}

impl Pool {
    /// Read every corpus file, in order.
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<Pool, CorpusError> {
        let mut pool = Pool::default();
        for p in paths {
            let (kind, dialogues) = load_dialogues(p.as_ref())?;
            pool.extend(kind, dialogues);
        }
        Ok(pool)
    }

    /// Add dialogues of one corpus.
    pub fn extend(&mut self, corpus: CorpusKind, dialogues: Vec<Dialogue>) {
        for d in dialogues {
            let turns = d.turns();
            if turns.is_empty() {
                continue;
            }
            for t in turns.iter().filter(|t| t.speaker == Speaker::Seeker) {
                self.seeker_ngrams.extend(ngram_keys(&t.text, COPY_NGRAM));
            }
            let words = turns
                .iter()
                .map(|t| t.text.split_whitespace().count())
                .sum();
            self.dialogues.push(PoolDialogue {
                corpus,
                id: d.id,
                turns,
                words,
            });
        }
    }

    /// Dialogues in the pool.
    pub fn len(&self) -> usize {
        self.dialogues.len()
    }

    /// Whether the pool holds no dialogue.
    pub fn is_empty(&self) -> bool {
        self.dialogues.is_empty()
    }

    /// Dialogue `i`.
    pub fn dialogue(&self, i: usize) -> &PoolDialogue {
        &self.dialogues[i]
    }

    /// Every seeker turn of the dialogues not `excluded` (the ones a run
    /// replays), with its labels among `values` (none when it has no such
    /// label): what a pool-fitted choice factor learns from.
    pub fn labelled_seeker_turns<'p>(
        &'p self,
        values: &'p [String],
        excluded: &'p HashSet<(CorpusKind, &'p str)>,
    ) -> impl Iterator<Item = (&'p Turn, Vec<String>)> + 'p {
        self.dialogues
            .iter()
            .filter(move |d| !excluded.contains(&(d.corpus, d.id.as_str())))
            .flat_map(|d| d.turns.iter().filter(|t| t.speaker == Speaker::Seeker))
            .map(move |t| {
                let known = t
                    .labels
                    .iter()
                    .filter(|l| values.contains(l))
                    .cloned()
                    .collect();
                (t, known)
            })
    }

    /// Whether `text` shares a word 8-gram with a seeker turn of the pool.
    pub fn copies(&self, text: &str) -> bool {
        ngram_keys(text, COPY_NGRAM)
            .iter()
            .any(|g| self.seeker_ngrams.contains(g))
    }

    /// `n` dialogues of at most `max_words` words and at least four turns
    /// (two exchanges show the format), drawn without replacement from
    /// `rng`, never `excluded`: the transcript prefix. Fewer when the pool
    /// has fewer.
    pub fn draw_dialogues(
        &self,
        n: usize,
        max_words: usize,
        excluded: Excluded<'_>,
        rng: &mut impl Rng,
    ) -> Vec<usize> {
        let mut eligible: Vec<usize> = (0..self.dialogues.len())
            .filter(|&i| {
                let d = &self.dialogues[i];
                d.words <= max_words && d.turns.len() >= 4 && !is_excluded(d, excluded)
            })
            .collect();
        eligible.shuffle(rng);
        eligible.truncate(n);
        eligible
    }

    /// `k` seeker turns labelled `label`, drawn without replacement from
    /// `rng`, never from `excluded`: the exemplars of one turn.
    pub fn draw_exemplars(
        &self,
        label: &str,
        k: usize,
        excluded: Excluded<'_>,
        rng: &mut impl Rng,
    ) -> Vec<&str> {
        let mut found: Vec<&str> = self
            .dialogues
            .iter()
            .filter(|d| !is_excluded(d, excluded))
            .flat_map(|d| d.turns.iter())
            .filter(|t| t.speaker == Speaker::Seeker && t.labels.iter().any(|l| l == label))
            .map(|t| t.text.as_str())
            .collect();
        // A shuffle, not a sample: the order they are shown in is drawn too.
        found.shuffle(rng);
        found.truncate(k);
        found
    }
}

fn is_excluded(d: &PoolDialogue, excluded: Excluded<'_>) -> bool {
    excluded.is_some_and(|(kind, id)| d.corpus == kind && d.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::Utterance;
    use rand::SeedableRng;

    fn dialogue(id: &str, seeker: &[(&str, &str)]) -> Dialogue {
        let mut utterances = Vec::new();
        for (text, label) in seeker {
            utterances.push(Utterance::new(
                Speaker::Recommender,
                "What do you like?",
                &[],
            ));
            utterances.push(Utterance::new(Speaker::Seeker, text, &[label]));
        }
        Dialogue {
            id: id.into(),
            utterances,
            ..Dialogue::default()
        }
    }

    fn pool() -> Pool {
        let mut p = Pool::default();
        p.extend(
            CorpusKind::Iard,
            vec![
                dialogue(
                    "1",
                    &[
                        (
                            "hi there i am looking for a really good scary movie tonight",
                            "IQU",
                        ),
                        ("no thanks", "REJ"),
                    ],
                ),
                dialogue("2", &[("hello", "OTH"), ("nah not that one", "REJ")]),
            ],
        );
        p
    }

    #[test]
    fn copies_are_word_8_grams_of_seeker_turns() {
        let p = pool();
        assert!(p.copies("Well, I am looking for a really good scary movie tonight!"));
        assert!(!p.copies("I am looking for a good scary movie"));
        // Recommender turns are not in the index.
        assert!(!p.copies("what do you like what do you like what do you like"));
    }

    #[test]
    fn draws_never_hand_out_the_excluded_dialogue() {
        let p = pool();
        for seed in 0..20 {
            let mut rng = crate::rng::SessionRng::seed_from_u64(seed);
            let got = p.draw_exemplars("REJ", 5, Some((CorpusKind::Iard, "1")), &mut rng);
            assert_eq!(got, ["nah not that one"]);
            let d = p.draw_dialogues(5, 100, Some((CorpusKind::Iard, "2")), &mut rng);
            assert_eq!(d, [0]);
        }
        let mut rng = crate::rng::SessionRng::seed_from_u64(1);
        assert_eq!(p.draw_exemplars("REJ", 5, None, &mut rng).len(), 2);
        // Another corpus's dialogue of the same id is not excluded.
        let d = p.draw_dialogues(5, 100, Some((CorpusKind::Inspired, "2")), &mut rng);
        assert_eq!(d.len(), 2);
        assert!(
            p.draw_dialogues(5, 5, None, &mut rng).is_empty(),
            "too long"
        );
    }
}
