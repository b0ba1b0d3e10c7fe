//! The role guard: a generated seeker turn that does not read as a seeker
//! is resampled (`[guard]` in the scenario).
//!
//! What is rejected, and how it is detected (each a plain text test, so a
//! rejection can be explained and a test can pin it):
//! - **empty**: nothing but whitespace and punctuation;
//! - **echo**: shares a word 6-gram (lower-cased words) with the system's
//!   turn just before it: the simulator copying the recommender, the most
//!   visible tell of small chat models (real IARD seekers: 2.2% of turns);
//! - **repeat**: shares a word 6-gram with the seeker's own previous turn;
//! - **note**: a placeholder or note in square or curly brackets
//!   (`[User's name]`, `{movie}`, or one left open: `[Candidates: Heat`;
//!   no seeker turn of IARD holds a bracket) or a speaker label (`Recommender:`,
//!   `User:`), which no person types in a chat (parentheses are left alone:
//!   people write "(1995)" and "(the one with Pacino)");
//! - **recommender**: opens the way the recommender speaks: offering
//!   recommendations (`I recommend`, `I'd suggest`, `You might enjoy`,
//!   `Here are some ...`) or speaking as an assistant (`As an AI`,
//!   `How can I help`), or asking the seeker's question (`What kind of
//!   movies are you interested in?`, after a greeting: with it the rule
//!   takes 114 of IARD's and INSPIRED's 2,982 real recommender turns, 63
//!   without, and 2 of their 2,898 seeker turns either way);
//! - **copy** (`copy = true`): shares a word 8-gram with a real seeker turn
//!   of the scenario's `[pool]` or with the real turn being replayed: the
//!   simulator pasting the real text it was shown
//!   ([`crate::corpus::pool::Pool::copies`]);
//! - **unfinished** (`unfinished = true`): ran out of tokens with no
//!   sentence end, message join ("...") or clause end anywhere, so the
//!   length cut has nowhere to end it: a sentence broken off ("I would like
//!   to watch a"), which no person sends
//!   ([`crate::session::conversation::is_unfinished`]; a turn that stopped
//!   on its own is never unfinished, whatever its punctuation).
//!
//! Invariant: the guard only reads texts; what happens on a rejection (a
//! new draw from the session's stream, at most `max_resamples`) is the
//! conversation's, so the same seed gives the same file.

use std::collections::HashSet;

/// Why a seeker turn was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rejection {
    /// No words.
    Empty,
    /// A word 6-gram of the system's previous turn.
    Echo,
    /// A word 6-gram of the seeker's own previous turn.
    Repeat,
    /// A bracketed note or a speaker label.
    Note,
    /// Speaks as the recommender or an assistant.
    Recommender,
    /// A word 8-gram of a real seeker turn of the pool, or of the real turn
    /// being replayed (the copy guard, `[guard] copy = true`).
    Copy,
    /// Ran out of tokens before any sentence or clause ended
    /// (`[guard] unfinished = true`).
    Unfinished,
}

impl Rejection {
    /// Name in the stats and summary.
    pub fn name(self) -> &'static str {
        match self {
            Rejection::Empty => "empty",
            Rejection::Echo => "echo",
            Rejection::Repeat => "repeat",
            Rejection::Note => "note",
            Rejection::Recommender => "recommender",
            Rejection::Copy => "copy",
            Rejection::Unfinished => "unfinished",
        }
    }
}

/// Word n-gram length of the echo and repeat tests.
pub const ECHO_NGRAM: usize = 6;

/// Openings of a recommender's or an assistant's turn (lower case, after
/// leading punctuation and greetings are skipped).
const RECOMMENDER_OPENINGS: &[&str] = &[
    "i recommend",
    "i would recommend",
    "i'd recommend",
    "i highly recommend",
    "i suggest",
    "i would suggest",
    "i'd suggest",
    "you might like",
    "you might enjoy",
    "you may like",
    "you may enjoy",
    "you should watch",
    "you should check out",
    "here are some",
    "here are a few",
    "here is a",
    "here's a recommendation",
    "as an ai",
    "as a movie recommender",
    "as your recommender",
    "how can i help",
    "how can i assist",
    "what kind of movies do you like",
    "what kind of movie are you",
    "what kind of movies are you",
    "what type of movie are you",
    "what type of movies are you",
    "what kind of films are you",
    "what are you looking for",
    "what are you in the mood for",
    "what genre do you",
    "what type of movies do you",
];

/// Speaker labels a chat user never types.
const LABELS: &[&str] = &["recommender:", "assistant:", "user:", "seeker:", "system:"];

pub use crate::corpus::words;

/// The word `n`-grams of `text`.
pub fn ngrams(text: &str, n: usize) -> HashSet<Vec<String>> {
    words(text).windows(n).map(<[String]>::to_vec).collect()
}

/// Whether `a` and `b` share a word `n`-gram.
pub fn shares_ngram(a: &str, b: &str, n: usize) -> bool {
    let b = ngrams(b, n);
    !b.is_empty() && words(a).windows(n).any(|g| b.contains(g))
}

/// Check a generated seeker turn against the system's turn before it and
/// the seeker's own previous turn.
pub fn check(
    text: &str,
    system_before: Option<&str>,
    own_before: Option<&str>,
) -> Option<Rejection> {
    let w = words(text);
    if w.is_empty() {
        return Some(Rejection::Empty);
    }
    let lower = text.to_lowercase();
    // A bracket left open counts too: a model that starts repeating its
    // note ("[Candidates: Heat (1995) - ...") is often cut by its token
    // budget before the bracket closes.
    let has_bracket_note = |open: char, close: char| {
        lower.find(open).is_some_and(|i| {
            let inside = &lower[i + 1..];
            let inside = inside.find(close).map_or(inside, |j| &inside[..j]);
            inside.chars().any(char::is_alphabetic)
        })
    };
    if has_bracket_note('[', ']')
        || has_bracket_note('{', '}')
        || LABELS.iter().any(|l| lower.contains(l))
    {
        return Some(Rejection::Note);
    }
    // A "..." join separates words as a space does ("Hello...What kind").
    let opening = words(&text.replace("..", " ").replace('\u{2026}', " "))
        .iter()
        .skip_while(|x| GREETINGS.contains(&x.as_str()))
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    if RECOMMENDER_OPENINGS.iter().any(|o| opening.starts_with(o)) {
        return Some(Rejection::Recommender);
    }
    if system_before.is_some_and(|s| shares_ngram(text, s, ECHO_NGRAM)) {
        return Some(Rejection::Echo);
    }
    if own_before.is_some_and(|s| shares_ngram(text, s, ECHO_NGRAM)) {
        return Some(Rejection::Repeat);
    }
    None
}

/// Words skipped before the opening test ("Hi! I recommend ..." opens with
/// the recommendation).
const GREETINGS: &[&str] = &[
    "hi", "hello", "hey", "there", "great", "ok", "okay", "sure", "well", "so",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_on_a_plain_example() {
        assert_eq!(check("  ...  ", None, None), Some(Rejection::Empty));
        let sys = "I think you would enjoy The Shining, it is a classic horror movie";
        assert_eq!(
            check("yes it is a classic horror movie for sure", Some(sys), None),
            Some(Rejection::Echo)
        );
        assert_eq!(check("classic horror, nice", Some(sys), None), None);
        assert_eq!(
            check("Hi, I'm [User's name] and I like comedies", None, None),
            Some(Rejection::Note)
        );
        assert_eq!(
            check(
                "ok [Candidates: Heat (1995) - Crime/Drama; Se7en",
                None,
                None
            ),
            Some(Rejection::Note)
        );
        assert_eq!(check("a smiley [:", None, None), None);
        assert_eq!(
            check("Recommender: try Heat", None, None),
            Some(Rejection::Note)
        );
        assert_eq!(
            check(
                "Hello! I recommend The Matrix, a sci-fi classic.",
                None,
                None
            ),
            Some(Rejection::Recommender)
        );
        assert_eq!(
            check("As an AI, I don't watch movies.", None, None),
            Some(Rejection::Recommender)
        );
        // The recommender's question, after a greeting joined with "...".
        for asks in [
            "Hello...What kind of movies are you interested in?",
            "Hey there! What kind of movies are you interested in?",
            "hi there!…what are you looking for",
        ] {
            assert_eq!(
                check(asks, None, None),
                Some(Rejection::Recommender),
                "{asks}"
            );
        }
        // A seeker asking what the recommender likes is a seeker's turn.
        assert_eq!(
            check("Hi...what kind of movies do you watch?", None, None),
            None
        );
        let mine = "I really want a funny movie for tonight please";
        assert_eq!(
            check(
                "I really want a funny movie for tonight please!",
                None,
                Some(mine)
            ),
            Some(Rejection::Repeat)
        );
        assert_eq!(
            check("I loved Heat (1995), anything like it?", None, None),
            None
        );
        assert_eq!(check("lol ok thanks, bye", None, None), None);
    }
}
