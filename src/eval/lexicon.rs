//! Small hand-written lexicons: a sentiment scorer and a genre topic
//! labeller.
//!
//! [`sentiment`] sums +1/−1 for positive/negative words, flipping the sign of
//! a word preceded (within three tokens) by a negator (`not`, `don't`, `never`,
//! ...); the sum's sign gives [`Sentiment`]. [`TopicLabeller`] maps genre names
//! and synonyms (`scary` → Horror) to genres mentioned in a text.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::text::tokenize;

const POSITIVE: &[&str] = &[
    "good",
    "great",
    "love",
    "loved",
    "like",
    "liked",
    "enjoy",
    "enjoyed",
    "awesome",
    "amazing",
    "excellent",
    "fun",
    "funny",
    "best",
    "favorite",
    "favourite",
    "nice",
    "cool",
    "perfect",
    "wonderful",
    "fantastic",
    "interesting",
    "thanks",
    "thank",
    "happy",
    "glad",
    "sure",
    "yes",
    "yeah",
    "brilliant",
    "beautiful",
    "sounds",
    "fine",
    "definitely",
    "classic",
    "entertaining",
    "exciting",
    "recommend",
    "appreciate",
    "helpful",
    "okay",
    "ok",
];
const NEGATIVE: &[&str] = &[
    "bad",
    "hate",
    "hated",
    "boring",
    "awful",
    "terrible",
    "worst",
    "dislike",
    "disliked",
    "no",
    "nope",
    "stupid",
    "annoying",
    "sad",
    "scared",
    "disappointing",
    "disappointed",
    "meh",
    "dull",
    "horrible",
    "poor",
    "weird",
    "lame",
    "overrated",
    "slow",
    "gross",
    "sorry",
    "unfortunately",
    "tired",
    "sick",
];
const NEGATORS: &[&str] = &[
    "not", "don't", "dont", "didn't", "didnt", "never", "no", "isn't", "wasn't", "doesn't",
    "can't", "cannot", "won't", "aren't", "haven't", "hardly", "nor", "neither",
];

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

/// Lexicon score of a text: Σ polarity with negation flips.
pub fn sentiment_score(text: &str) -> i32 {
    let toks = tokenize(text);
    let mut score = 0;
    for (i, t) in toks.iter().enumerate() {
        let pol = if POSITIVE.contains(&t.as_str()) {
            1
        } else if NEGATIVE.contains(&t.as_str()) && !NEGATORS.contains(&t.as_str()) {
            -1
        } else {
            0
        };
        if pol == 0 {
            continue;
        }
        let negated = toks[i.saturating_sub(3)..i]
            .iter()
            .any(|p| NEGATORS.contains(&p.as_str()));
        score += if negated { -pol } else { pol };
    }
    score
}

/// Sentiment class of a text.
pub fn sentiment(text: &str) -> Sentiment {
    match sentiment_score(text) {
        s if s > 0 => Sentiment::Pos,
        s if s < 0 => Sentiment::Neg,
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
    fn sentiment_with_negation() {
        assert_eq!(sentiment("I loved it, great movie"), Sentiment::Pos);
        assert_eq!(sentiment("I don't really like horror"), Sentiment::Neg);
        assert_eq!(sentiment("that was boring"), Sentiment::Neg);
        assert_eq!(sentiment("not bad at all"), Sentiment::Pos);
        assert_eq!(sentiment("what year is it from"), Sentiment::Neu);
        assert_eq!(sentiment_score("good good bad"), 1);
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
