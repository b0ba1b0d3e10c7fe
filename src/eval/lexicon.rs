//! Lexicon classifiers of the eval ensemble: sentiment and genre topics.
//!
//! [`sentiment`] is VADER (crate `vader-parity`), the standard lexicon and
//! rules scorer for short informal text. [`TopicLabeller`] maps genre names
//! and synonyms (`scary` → Horror) to genres mentioned in a text; it stays
//! hand-written because no crate knows MovieLens's genre list and the way
//! seekers name genres.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use std::sync::OnceLock;

use vader_parity::SentimentIntensityAnalyzer;

use super::text::tokenize;

/// Sentiment class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Sentiment {
    /// Net positive.
    Pos,
    /// Neither / balanced.
    Neu,
    /// Net negative.
    Neg,
}

impl Sentiment {
    /// Short name (`pos`, `neu`, `neg`).
    pub fn name(self) -> &'static str {
        match self {
            Sentiment::Pos => "pos",
            Sentiment::Neu => "neu",
            Sentiment::Neg => "neg",
        }
    }
}

/// VADER's compound score of a text, in [-1, 1] (Hutto & Gilbert,
/// ICWSM-14: lexicon and rules for short informal text, with negation,
/// boosters, "but", capitals and punctuation), through `vader-parity`,
/// which matches Python's vaderSentiment 3.3.2 to its published precision.
pub fn sentiment_score(text: &str) -> f64 {
    static ANALYZER: OnceLock<SentimentIntensityAnalyzer> = OnceLock::new();
    ANALYZER
        .get_or_init(SentimentIntensityAnalyzer::new)
        .polarity_scores(text)
        .compound
}

/// Sentiment class of a text, by VADER's standard thresholds on the
/// compound score (≥ 0.05 positive, ≤ −0.05 negative).
pub fn sentiment(text: &str) -> Sentiment {
    match sentiment_score(text) {
        s if s >= 0.05 => Sentiment::Pos,
        s if s <= -0.05 => Sentiment::Neg,
        _ => Sentiment::Neu,
    }
}

/// Counts of sentiment classes (`pos`, `neu`, `neg` always present).
pub fn sentiment_counts<S: AsRef<str>>(texts: &[S]) -> BTreeMap<String, f64> {
    let mut m: BTreeMap<String, f64> = ["pos", "neu", "neg"]
        .iter()
        .map(|k| (k.to_string(), 0.0))
        .collect();
    for t in texts {
        *m.entry(sentiment(t.as_ref()).name().to_string())
            .or_insert(0.0) += 1.0;
    }
    m
}

/// Genre names with synonyms (single words or phrases, lowercase).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopicLabeller {
    /// Genre → cue phrases.
    pub genres: BTreeMap<String, Vec<String>>,
}

impl Default for TopicLabeller {
    fn default() -> Self {
        let raw: &[(&str, &[&str])] = &[
            (
                "Action",
                &["action", "fight", "fighting", "explosions", "martial arts"],
            ),
            ("Adventure", &["adventure", "adventures", "quest"]),
            (
                "Animation",
                &[
                    "animation",
                    "animated",
                    "cartoon",
                    "cartoons",
                    "anime",
                    "pixar",
                    "disney",
                ],
            ),
            (
                "Comedy",
                &[
                    "comedy",
                    "comedies",
                    "funny",
                    "hilarious",
                    "laugh",
                    "humor",
                    "humour",
                ],
            ),
            ("Crime", &["crime", "heist", "gangster", "mafia", "mob"]),
            ("Documentary", &["documentary", "documentaries"]),
            ("Drama", &["drama", "dramas", "dramatic"]),
            ("Family", &["family", "kids", "children"]),
            ("Fantasy", &["fantasy", "magic", "wizard", "dragons"]),
            (
                "Horror",
                &[
                    "horror", "scary", "scare", "creepy", "slasher", "zombie", "zombies", "haunted",
                ],
            ),
            ("Musical", &["musical", "musicals"]),
            (
                "Mystery",
                &["mystery", "mysteries", "whodunit", "detective"],
            ),
            (
                "Romance",
                &["romance", "romantic", "rom com", "romcom", "love story"],
            ),
            (
                "Sci-Fi",
                &[
                    "sci fi",
                    "scifi",
                    "science fiction",
                    "space",
                    "aliens",
                    "alien",
                    "futuristic",
                ],
            ),
            (
                "Thriller",
                &["thriller", "thrillers", "suspense", "suspenseful"],
            ),
            ("War", &["war"]),
            ("Western", &["western", "westerns", "cowboy", "cowboys"]),
        ];
        Self {
            genres: raw
                .iter()
                .map(|(g, cues)| (g.to_string(), cues.iter().map(|c| c.to_string()).collect()))
                .collect(),
        }
    }
}

impl TopicLabeller {
    /// Genres whose cue (as whole tokens) occurs in `text`, sorted.
    pub fn genres_in(&self, text: &str) -> Vec<String> {
        let toks = tokenize(text);
        let joined = format!(" {} ", toks.join(" "));
        self.genres
            .iter()
            .filter(|(_, cues)| {
                cues.iter().any(|c| {
                    let c = tokenize(c).join(" ");
                    !c.is_empty() && joined.contains(&format!(" {c} "))
                })
            })
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// The genres it labels, in order.
    pub fn genre_names(&self) -> Vec<String> {
        self.genres.keys().cloned().collect()
    }

    /// Counts of genres mentioned over texts (every genre present, zero if
    /// unmentioned).
    pub fn genre_counts<S: AsRef<str>>(&self, texts: &[S]) -> BTreeMap<String, f64> {
        let mut m: BTreeMap<String, f64> = self.genres.keys().map(|g| (g.clone(), 0.0)).collect();
        for t in texts {
            for g in self.genres_in(t.as_ref()) {
                *m.entry(g).or_insert(0.0) += 1.0;
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vader_on_its_reference_sentences() {
        // Sentences and compound scores from vaderSentiment's README.
        for (text, compound) in [
            ("VADER is smart, handsome, and funny.", 0.8316),
            ("VADER is not smart, handsome, nor funny.", -0.7424),
            ("The book was good.", 0.4404),
            ("At least it isn't a horrible book.", 0.431),
            (
                "The plot was good, but the characters are uncompelling and the dialog is not great.",
                -0.7042,
            ),
        ] {
            assert_eq!(sentiment_score(text), compound, "{text}");
        }
        assert_eq!(sentiment("I loved it, great movie"), Sentiment::Pos);
        assert_eq!(sentiment("that was boring"), Sentiment::Neg);
        assert_eq!(sentiment("what year is it from"), Sentiment::Neu);
        // Capitals and "!" strengthen.
        assert!(sentiment_score("GREAT movie!!") > sentiment_score("great movie"));
        let c = sentiment_counts(&["great", "awful", "hmm"]);
        assert_eq!((c["pos"], c["neu"], c["neg"]), (1.0, 1.0, 1.0));
    }

    #[test]
    fn topics_with_synonyms() {
        let t = TopicLabeller::default();
        assert_eq!(t.genres_in("something scary please"), vec!["Horror"]);
        assert_eq!(t.genres_in("A sci-fi comedy!"), vec!["Comedy", "Sci-Fi"]);
        assert!(t.genres_in("warm and fuzzy").is_empty()); // "war" only as a whole word
        assert_eq!(
            t.genre_counts(&["horror", "zombies and romance"])["Horror"],
            2.0
        );
    }
}
