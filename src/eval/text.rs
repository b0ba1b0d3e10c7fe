//! Text normalisation and n-gram extraction.
//!
//! * [`tokenize`]: lowercase word tokens (letters, digits and inner apostrophes).
//! * [`word_ngrams`]: contiguous word n-grams joined by a single space.
//! * [`char_wb_ngrams`]: character n-grams inside word boundaries, padded with
//!   one space on each side of every whitespace-separated word (the same
//!   scheme as scikit-learn's `analyzer="char_wb"`).

/// Splits `text` into lowercase word tokens.
///
/// A token is a maximal run of alphanumeric characters; an apostrophe between
/// two alphanumeric characters is kept inside the token (`don't`).
pub fn tokenize(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_alphanumeric() {
            cur.extend(c.to_lowercase());
        } else if (c == '\'' || c == '’')
            && !cur.is_empty()
            && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric())
        {
            cur.push('\'');
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Like [`tokenize`] but also keeps punctuation: every run of one repeated
/// punctuation character (`...`, `!!`, `?`) becomes its own token.
pub fn tokenize_with_punct(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() {
            cur.extend(c.to_lowercase());
        } else if (c == '\'' || c == '’')
            && !cur.is_empty()
            && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric())
        {
            cur.push('\'');
        } else {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if !c.is_whitespace() {
                let mut j = i;
                while j + 1 < chars.len() && chars[j + 1] == c {
                    j += 1;
                }
                out.push(chars[i..=j].iter().collect());
                i = j;
            }
        }
        i += 1;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Word shapes with sentence boundaries: each token of
/// [`tokenize_with_punct`] (on the original casing) becomes `Xx`
/// (capitalised), `X` (all caps, incl. `I`), `x` (lowercase), `d` (has digits)
/// or the punctuation itself; `<s>`/`</s>` mark the ends. Shape n-grams
/// capture capitalisation and punctuation placement.
pub fn shape_tokens(text: &str) -> Vec<String> {
    let mut out = vec!["<s>".to_string()];
    for w in text.split_whitespace() {
        // re-tokenise each whitespace word keeping case
        let mut cur = String::new();
        let flush = |cur: &mut String, out: &mut Vec<String>| {
            if cur.is_empty() {
                return;
            }
            let shape = if cur.chars().any(|c| c.is_ascii_digit()) {
                "d"
            } else if cur.chars().all(|c| !c.is_alphabetic() || c.is_uppercase()) {
                "X"
            } else if cur.chars().next().is_some_and(char::is_uppercase) {
                "Xx"
            } else {
                "x"
            };
            out.push(shape.to_string());
            cur.clear();
        };
        let chars: Vec<char> = w.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_alphanumeric() || ((c == '\'' || c == '’') && !cur.is_empty()) {
                cur.push(c);
            } else {
                flush(&mut cur, &mut out);
                let mut j = i;
                while j + 1 < chars.len() && chars[j + 1] == c {
                    j += 1;
                }
                out.push(chars[i..=j].iter().collect());
                i = j;
            }
            i += 1;
        }
        flush(&mut cur, &mut out);
    }
    out.push("</s>".to_string());
    out
}

/// Word n-grams of every order in `min_n..=max_n`, in order of appearance
/// (all unigrams first, then bigrams, ...).
pub fn word_ngrams(tokens: &[String], min_n: usize, max_n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for n in min_n.max(1)..=max_n {
        if tokens.len() < n {
            break;
        }
        for w in tokens.windows(n) {
            out.push(w.join(" "));
        }
    }
    out
}

/// Character n-grams of orders `min_n..=max_n` within word boundaries.
///
/// The text is lowercased and split on whitespace; each word is padded as
/// `" word "`; a padded word shorter than `n` yields itself once.
pub fn char_wb_ngrams(text: &str, min_n: usize, max_n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let lower = text.to_lowercase();
    for w in lower.split_whitespace() {
        let mut padded: Vec<char> = Vec::with_capacity(w.len() + 2);
        padded.push(' ');
        padded.extend(w.chars());
        padded.push(' ');
        let len = padded.len();
        for n in min_n.max(1)..=max_n {
            let mut offset = 0;
            out.push(padded[offset..(offset + n).min(len)].iter().collect());
            while offset + n < len {
                offset += 1;
                out.push(padded[offset..offset + n].iter().collect());
            }
            if offset == 0 {
                break;
            }
        }
    }
    out
}

/// Number of word tokens in `text` (see [`tokenize`]).
pub fn word_count(text: &str) -> usize {
    tokenize(text).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_lowercase_words() {
        assert_eq!(
            tokenize("Hi! I don't like HORROR, ok?"),
            vec!["hi", "i", "don't", "like", "horror", "ok"]
        );
        assert_eq!(tokenize("  'quoted' "), vec!["quoted"]);
        assert!(tokenize("...").is_empty());
    }

    #[test]
    fn tokenizes_with_punctuation() {
        assert_eq!(
            tokenize_with_punct("Hi!! I don't... ok?"),
            vec!["hi", "!!", "i", "don't", "...", "ok", "?"]
        );
    }

    #[test]
    fn shapes_known() {
        assert_eq!(
            shape_tokens("Hi, I saw It 2 times."),
            vec!["<s>", "Xx", ",", "X", "x", "Xx", "d", "x", ".", "</s>"]
        );
    }

    #[test]
    fn word_ngrams_known() {
        let t = tokenize("a b c");
        assert_eq!(word_ngrams(&t, 1, 2), vec!["a", "b", "c", "a b", "b c"]);
        assert_eq!(word_ngrams(&t, 3, 4), vec!["a b c"]);
    }

    #[test]
    fn char_wb_matches_sklearn() {
        // sklearn CharNGramAnalyzer char_wb (2,3) on "ab c":
        // ' a','ab','b ',' ab','ab ',' c','c ',' c '
        assert_eq!(
            char_wb_ngrams("ab c", 2, 3),
            vec![" a", "ab", "b ", " ab", "ab ", " c", "c ", " c "]
        );
        // a padded word shorter than n is counted once
        assert_eq!(char_wb_ngrams("a", 4, 5), vec![" a "]);
    }
}
