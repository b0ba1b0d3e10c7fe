//! The item catalog a recommender retrieves from, and title spotting in text.
//!
//! A catalog is a CSV with a `title` column, an id column (`movieId` or
//! `id`), and optional `genres` and `keywords` columns holding `|`-separated
//! lists: the project's own `prompts/movies/catalog.csv` and MovieLens'
//! `movies_w_keywords.csv` both load as they are. MovieLens titles such as
//! "American President, The (1995)" are normalised to "The American
//! President" with year 1995, because that is how people write them.
//!
//! Retrieval is lexical on purpose: a genre or keyword the user said is the
//! signal the recommender is told it gets, and it is cheap enough to run for
//! every turn of every live conversation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A catalog that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// File unreadable.
    #[error("{path}: cannot read catalog: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Malformed CSV.
    #[error("{path}: line {line}: {message}")]
    Csv {
        /// File.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A required column is absent.
    #[error("{path}: missing column `{column}` (expected a header with `title` and `movieId` or `id`, optionally `genres` and `keywords`)")]
    MissingColumn {
        /// File.
        path: PathBuf,
        /// Column.
        column: &'static str,
    },
    /// No rows.
    #[error("{path}: the catalog has no items")]
    Empty {
        /// File.
        path: PathBuf,
    },
}

/// One recommendable item.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogItem {
    /// Identifier from the file.
    pub id: String,
    /// Title as people write it ("The American President").
    pub title: String,
    /// Release year, when the title carried one.
    pub year: Option<u16>,
    /// Genres as written in the file.
    pub genres: Vec<String>,
    /// Free keywords.
    pub keywords: Vec<String>,
}

/// Words that name a genre without being its name.
const GENRE_SYNONYMS: &[(&str, &str)] = &[
    ("funny", "comedy"),
    ("comedies", "comedy"),
    ("laugh", "comedy"),
    ("hilarious", "comedy"),
    ("scary", "horror"),
    ("creepy", "horror"),
    ("frightening", "horror"),
    ("spooky", "horror"),
    ("romantic", "romance"),
    ("love", "romance"),
    ("animated", "animation"),
    ("cartoon", "animation"),
    ("kids", "children"),
    ("family", "children"),
    ("suspense", "thriller"),
    ("thrillers", "thriller"),
    ("space", "sci-fi"),
    ("science", "sci-fi"),
    ("scifi", "sci-fi"),
    ("futuristic", "sci-fi"),
    ("documentaries", "documentary"),
    ("musicals", "musical"),
    ("westerns", "western"),
    ("cowboy", "western"),
    ("detective", "mystery"),
    ("whodunit", "mystery"),
    ("magic", "fantasy"),
    ("dramas", "drama"),
    ("gangster", "crime"),
    ("heist", "crime"),
    ("superhero", "action"),
    ("fight", "action"),
    ("war", "war"),
    ("noir", "film-noir"),
];

/// Words too common to count as keyword evidence.
const STOPWORDS: &[&str] = &[
    "a",
    "an",
    "the",
    "and",
    "or",
    "of",
    "to",
    "in",
    "on",
    "for",
    "with",
    "is",
    "it",
    "i",
    "me",
    "my",
    "you",
    "your",
    "that",
    "this",
    "be",
    "was",
    "are",
    "some",
    "something",
    "movie",
    "movies",
    "film",
    "films",
    "like",
    "watch",
    "good",
    "great",
    "want",
    "would",
    "do",
    "have",
    "any",
    "can",
    "what",
    "about",
    "not",
    "no",
    "yes",
    "so",
    "but",
    "just",
    "really",
    "maybe",
    "one",
    "more",
    "else",
    "other",
    "see",
    "seen",
    "also",
    "too",
    "very",
    "at",
    "as",
    "by",
    "from",
    "its",
    "we",
    "they",
    "them",
    "he",
    "she",
    "his",
    "her",
    "there",
    "recommend",
    "looking",
    "please",
    "thanks",
    "thank",
    "hi",
    "hello",
    "sure",
    "ok",
    "okay",
    "well",
    "how",
    "all",
    "if",
    "am",
    "m",
    "s",
    "t",
    "re",
];

/// Leading articles MovieLens moves to the end of a title.
const ARTICLES: &[&str] = &[
    "The", "A", "An", "Les", "La", "Le", "L'", "Il", "El", "Los", "Las", "Das", "Der", "Die",
    "Den", "Det",
];

/// Lowercase words of `text` (letters, digits, `'` and `-` kept inside words).
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '-'))
        .map(|w| w.trim_matches(|c| c == '\'' || c == '-').to_lowercase())
        .filter(|w| !w.is_empty())
}

/// Title key: lowercase words joined by single spaces, punctuation dropped.
fn title_key(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// "American President, The (1995)" → ("The American President", Some(1995)).
pub fn normalise_title(raw: &str) -> (String, Option<u16>) {
    let mut t = raw.trim();
    let mut year = None;
    if let Some(stripped) = t.strip_suffix(')') {
        if let Some(open) = stripped.rfind('(') {
            let inner = stripped[open + 1..].trim();
            if let Ok(y) = inner.get(..4).unwrap_or_default().parse::<u16>() {
                if inner.len() == 4 || inner.chars().nth(4) == Some('-') {
                    year = Some(y);
                    t = stripped[..open].trim_end();
                }
            }
        }
    }
    // An alternative title "(a.k.a. ...)" or a translation "(Cité des enfants perdus, La)".
    if let Some(stripped) = t.strip_suffix(')') {
        if let Some(open) = stripped.find(" (") {
            t = stripped[..open].trim_end();
        }
    }
    let mut title = t.to_string();
    for art in ARTICLES {
        let suffix = format!(", {art}");
        if let Some(head) = t.strip_suffix(suffix.as_str()) {
            title = if art.ends_with('\'') {
                format!("{art}{head}")
            } else {
                format!("{art} {head}")
            };
            break;
        }
    }
    (title, year)
}

/// A loaded catalog with its retrieval indexes.
#[derive(Debug, Clone)]
pub struct Catalog {
    items: Vec<CatalogItem>,
    /// Distinct genres in first-seen order.
    genres: Vec<String>,
    /// Lowercased genre → items.
    by_genre: HashMap<String, Vec<u32>>,
    /// Keyword word → items, for keyword evidence.
    by_word: HashMap<String, Vec<u32>>,
    /// Title key → items.
    by_title: HashMap<String, Vec<u32>>,
    /// Longest title key, in words.
    longest_title: usize,
}

impl Catalog {
    /// Load a catalog CSV.
    pub fn load_csv(path: &Path) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_csv_str(&text, path)
    }

    /// Parse catalog CSV text; `path` names it in errors.
    pub fn from_csv_str(text: &str, path: &Path) -> Result<Catalog, CatalogError> {
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(false)
            .from_reader(text.as_bytes());
        let csv_err = |e: csv::Error| CatalogError::Csv {
            path: path.to_path_buf(),
            line: e.position().map(|p| p.line()).unwrap_or(0),
            message: e.to_string(),
        };
        let headers = rdr.headers().map_err(csv_err)?.clone();
        let col = |names: &[&str]| headers.iter().position(|h| names.contains(&h.trim()));
        let missing = |column| CatalogError::MissingColumn {
            path: path.to_path_buf(),
            column,
        };
        let title_col = col(&["title"]).ok_or_else(|| missing("title"))?;
        let id_col = col(&["movieId", "id", "item_id"]).ok_or_else(|| missing("movieId"))?;
        let genres_col = col(&["genres"]);
        let keywords_col = col(&["keywords"]);
        let list = |s: &str| -> Vec<String> {
            s.split('|')
                .map(str::trim)
                .filter(|g| !g.is_empty() && *g != "(no genres listed)")
                .map(String::from)
                .collect()
        };
        let mut items = Vec::new();
        for rec in rdr.records() {
            let rec = rec.map_err(csv_err)?;
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            let field = |i: usize| rec.get(i).unwrap_or_default();
            let id = field(id_col).trim();
            let (title, year) = normalise_title(field(title_col));
            if id.is_empty() || title.is_empty() {
                return Err(CatalogError::Csv {
                    path: path.to_path_buf(),
                    line,
                    message: "empty id or title".into(),
                });
            }
            items.push(CatalogItem {
                id: id.to_string(),
                title,
                year,
                genres: genres_col.map(|c| list(field(c))).unwrap_or_default(),
                keywords: keywords_col.map(|c| list(field(c))).unwrap_or_default(),
            });
        }
        if items.is_empty() {
            return Err(CatalogError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Self::from_items(items))
    }

    /// Build the indexes over `items`.
    pub fn from_items(items: Vec<CatalogItem>) -> Catalog {
        let mut genres: Vec<String> = Vec::new();
        let mut by_genre: HashMap<String, Vec<u32>> = HashMap::new();
        let mut by_word: HashMap<String, Vec<u32>> = HashMap::new();
        let mut by_title: HashMap<String, Vec<u32>> = HashMap::new();
        let mut longest_title = 0;
        for (i, it) in items.iter().enumerate() {
            let i = i as u32;
            for g in &it.genres {
                if !genres.contains(g) {
                    genres.push(g.clone());
                }
                by_genre.entry(g.to_lowercase()).or_default().push(i);
            }
            let mut ws: Vec<String> = it
                .keywords
                .iter()
                .flat_map(|k| words(k).collect::<Vec<_>>())
                .filter(|w| w.len() > 2 && !STOPWORDS.contains(&w.as_str()))
                .collect();
            ws.sort_unstable();
            ws.dedup();
            for w in ws {
                by_word.entry(w).or_default().push(i);
            }
            let key = title_key(&it.title);
            longest_title = longest_title.max(key.split(' ').count());
            by_title.entry(key).or_default().push(i);
        }
        Catalog {
            items,
            genres,
            by_genre,
            by_word,
            by_title,
            longest_title,
        }
    }

    /// All items, in file order.
    pub fn items(&self) -> &[CatalogItem] {
        &self.items
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Distinct genres, in first-seen order.
    pub fn genres(&self) -> &[String] {
        &self.genres
    }

    /// Items having genre `genre` (case-insensitive).
    pub fn items_with_genre(&self, genre: &str) -> Vec<usize> {
        self.by_genre
            .get(&genre.to_lowercase())
            .map(|v| v.iter().map(|&i| i as usize).collect())
            .unwrap_or_default()
    }

    /// Genres (lowercased) that `text` names, directly or by a synonym.
    pub fn genres_in(&self, text: &str) -> Vec<String> {
        let lower = text.to_lowercase();
        let mut out: Vec<String> = Vec::new();
        let mut add = |g: &str| {
            if self.by_genre.contains_key(g) && !out.iter().any(|o| o == g) {
                out.push(g.to_string());
            }
        };
        for g in self.by_genre.keys() {
            // Multi-word or hyphenated genres ("sci-fi", "film-noir") match as substrings.
            if g.contains(['-', ' ']) && lower.contains(g.as_str()) {
                add(g);
            }
        }
        for w in words(&lower) {
            let w = w.as_str();
            if self.by_genre.contains_key(w) {
                add(w);
            } else if let Some(stem) = w
                .strip_suffix('s')
                .filter(|s| self.by_genre.contains_key(*s))
            {
                add(stem);
            }
            for (syn, g) in GENRE_SYNONYMS {
                if *syn == w {
                    add(g);
                }
            }
        }
        out.sort();
        out
    }

    /// The `k` items that best match `query` (genres and keywords it names),
    /// leaving out `exclude` and items the query names by title. Ties keep
    /// file order, so the result is a pure function of its inputs.
    pub fn retrieve(&self, query: &str, exclude: &[usize], k: usize) -> Vec<usize> {
        let mut score = vec![0f32; self.items.len()];
        let mut banned = vec![false; self.items.len()];
        for &i in exclude {
            if let Some(b) = banned.get_mut(i) {
                *b = true;
            }
        }
        let named = self.mentioned_items(query);
        for &i in &named {
            banned[i] = true;
        }
        // "Something like Toy Story": the named items' genres count as asked for.
        let mut genres = self.genres_in(query);
        for &i in &named {
            genres.extend(self.items[i].genres.iter().map(|g| g.to_lowercase()));
        }
        genres.sort();
        genres.dedup();
        for g in &genres {
            for &i in self.by_genre.get(g).into_iter().flatten() {
                score[i as usize] += 3.0;
            }
        }
        let n = self.items.len() as f32;
        let mut qwords: Vec<String> = words(query)
            .filter(|w| w.len() > 2 && !STOPWORDS.contains(&w.as_str()))
            .collect();
        qwords.sort_unstable();
        qwords.dedup();
        for w in &qwords {
            if let Some(hits) = self.by_word.get(w) {
                // Rarer keywords say more.
                let idf = (n / hits.len() as f32).ln().max(0.1);
                for &i in hits {
                    score[i as usize] += idf;
                }
            }
        }
        let mut order: Vec<usize> = (0..self.items.len()).filter(|&i| !banned[i]).collect();
        order.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
        order.truncate(k);
        order
    }

    /// Items whose title appears in `text` (whole words, case-insensitive;
    /// one-word titles shorter than four letters must be capitalised as in
    /// the catalog, so "it" or "up" in a sentence is not a film).
    pub fn mentioned_items(&self, text: &str) -> Vec<usize> {
        let toks: Vec<&str> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let lower: Vec<String> = toks.iter().map(|w| w.to_lowercase()).collect();
        let mut out: Vec<usize> = Vec::new();
        let mut key = String::new();
        for start in 0..lower.len() {
            key.clear();
            for (n, w) in lower[start..].iter().take(self.longest_title).enumerate() {
                if n > 0 {
                    key.push(' ');
                }
                key.push_str(w);
                let Some(hits) = self.by_title.get(key.as_str()) else {
                    continue;
                };
                for &i in hits {
                    let title = &self.items[i as usize].title;
                    let short = n == 0 && title.chars().count() < 4;
                    if short && toks[start] != title.as_str() {
                        continue;
                    }
                    // Single common words as titles ("Her", "Home") need a capital letter.
                    if n == 0
                        && STOPWORDS.contains(&w.as_str())
                        && !toks[start].starts_with(char::is_uppercase)
                    {
                        continue;
                    }
                    out.push(i as usize);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "movieId,title,genres,keywords\n\
        1,Toy Story (1995),Adventure|Animation|Children|Comedy,pixar animation|toys\n\
        2,\"American President, The (1995)\",Comedy|Drama|Romance,president|white house\n\
        3,\"City of Lost Children, The (Cité des enfants perdus, La) (1995)\",Adventure|Drama|Fantasy|Mystery|Sci-Fi,dreams\n\
        4,Up (2009),Adventure|Animation|Children|Drama,balloons|old man\n\
        5,Alien (1979),Horror|Sci-Fi,space|alien monster\n";

    fn cat() -> Catalog {
        Catalog::from_csv_str(CSV, Path::new("t.csv")).unwrap()
    }

    #[test]
    fn titles_are_normalised() {
        let c = cat();
        assert_eq!(c.items()[1].title, "The American President");
        assert_eq!(c.items()[1].year, Some(1995));
        assert_eq!(c.items()[2].title, "The City of Lost Children");
        assert_eq!(normalise_title("Ring, The (2002)").0, "The Ring");
        assert_eq!(normalise_title("Plain"), ("Plain".to_string(), None));
    }

    #[test]
    fn mentions_need_whole_words_and_case_for_short_titles() {
        let c = cat();
        assert_eq!(
            c.mentioned_items("You might like The American President."),
            vec![1]
        );
        assert_eq!(c.mentioned_items("what's up? i want toy story"), vec![0]);
        assert_eq!(c.mentioned_items("Try Up, it's lovely"), vec![3]);
        assert!(c.mentioned_items("Aliens everywhere").is_empty());
    }

    #[test]
    fn retrieval_follows_genres_keywords_and_exclusions() {
        let c = cat();
        assert_eq!(c.retrieve("something scary", &[], 1), vec![4]);
        assert_eq!(c.retrieve("a film about the president", &[], 1), vec![1]);
        assert_eq!(c.retrieve("animated please", &[0], 1), vec![3]);
        // Named items are not offered back; their genres steer the rest.
        assert_eq!(c.retrieve("I loved Toy Story", &[], 1), vec![3]);
    }

    #[test]
    fn errors_name_file_and_column() {
        let e = Catalog::from_csv_str("name,genres\nx,Drama\n", Path::new("c.csv")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("c.csv") && msg.contains("`title`"), "{msg}");
        let e = Catalog::from_csv_str("id,title\n", Path::new("c.csv")).unwrap_err();
        assert!(matches!(e, CatalogError::Empty { .. }));
    }
}
