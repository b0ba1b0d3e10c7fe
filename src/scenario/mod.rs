//! Scenarios: the declared latent-variable schema and the templates that turn
//! drawn values into prompt text.
//!
//! A scenario is a directory `prompts/<name>/` holding `scenario.toml` and the
//! minijinja templates it names. Everything is validated at load time, before
//! any model is touched, so a typo in a template or a weight surfaces as one
//! error line naming the file and field instead of a crash mid-run.

pub mod catalog;
mod load;
mod pins;
pub mod system;

pub use pins::Pins;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use minijinja::Environment;
use serde::{Deserialize, Serialize};

use crate::backend::sampler::SamplingParams;

/// The reserved markov state that ends a conversation (the user says goodbye
/// by not speaking again).
pub const END_STATE: &str = "END";

/// Name of the scenario used when none is given.
pub const DEFAULT_SCENARIO: &str = "movies";

/// Errors while loading or validating a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML did not parse or did not fit the schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, flattened to one line.
        message: String,
    },
    /// A field holds a value outside what the schema allows.
    #[error("{path}: {field}: expected {expected}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The offending field, e.g. `session "age_group": weights`.
        field: String,
        /// What would have been accepted.
        expected: String,
    },
    /// A `--set` pin names something the scenario does not declare.
    #[error("--set {pin}: {expected}")]
    Pin {
        /// The pin as given.
        pin: String,
        /// What would have been accepted.
        expected: String,
    },
}

type Result<T> = std::result::Result<T, ScenarioError>;

// ---------------------------------------------------------------------------
// File schema (what users write)
// ---------------------------------------------------------------------------

/// `scenario.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    /// Short name, recorded in every conversation.
    name: String,
    /// One line on what the scenario simulates.
    #[serde(default)]
    description: String,
    /// Item catalog CSV (relative to the scenario directory); needed by
    /// `catalog_item` variables and by the built-in recommender's retrieval.
    catalog: Option<String>,
    /// Template files, relative to the scenario directory.
    templates: TemplateFiles,
    /// Conversation flow.
    #[serde(default)]
    conversation: ConversationSpec,
    /// Session-level variables, drawn in declared order.
    #[serde(default)]
    session: Vec<SessionVarSpec>,
    /// Turn-level variables, drawn before every user turn.
    #[serde(default)]
    turn: Vec<TurnVarSpec>,
    /// Sampling options per side; CLI flags override them.
    #[serde(default)]
    sampling: SidesSampling,
    /// The system under test (`[system]`; absent: the built-in recommender).
    #[serde(default)]
    system: system::SystemSpec,
    /// How `simulate --replay` fills session variables from what a corpus
    /// knows about each real seeker.
    #[serde(default)]
    replay: ReplaySpec,
    /// The length latent: target words per user turn (absent: off).
    length: Option<LengthSpec>,
    /// The role guard: resample seeker turns that do not read as a seeker
    /// (absent: off).
    guard: Option<GuardSpec>,
    /// How the seeker simulator is prompted.
    #[serde(default)]
    user_prompt: PromptMode,
    /// How the built-in recommender is prompted.
    #[serde(default)]
    assistant_prompt: PromptMode,
    /// Transcript prompting's layout (`user_prompt = "transcript"`; absent:
    /// the defaults).
    transcript: Option<TranscriptSpec>,
    /// Real dialogues for the transcript prefix, the exemplars and the copy
    /// guard (absent: none).
    pool: Option<PoolFileSpec>,
    /// Best-of-N seeker turns chosen by a realism critic (absent: one
    /// candidate per turn, no critic).
    critic: Option<CriticFileSpec>,
    /// Surface style: seeded rewrites in a real seeker's typing rates
    /// (absent: off).
    style: Option<StyleSpec>,
    /// The first-word latent: the word each user turn opens with, drawn
    /// from real seekers' (absent: off).
    first_word: Option<FirstWordSpec>,
}

/// `[style]`: see [`crate::session::style`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StyleSpec {
    /// File written by `usersim fit` holding `seeker_style` (one real
    /// seeker's rates each), relative to the scenario directory.
    fitted_file: String,
}

/// The session latent holding the drawn typing rates (`latents.style`).
pub const STYLE_VAR: &str = "style";

/// How a side's model is prompted (`user_prompt`, `assistant_prompt`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PromptMode {
    /// A persona system message and a per-turn instruction, through the
    /// model's chat template.
    #[default]
    Chat,
    /// No chat template: real dialogues from the pool as a plain-text
    /// transcript, then the session's profile line and its own conversation,
    /// continued on the seeker's line (works with base models).
    Transcript,
}

/// `[transcript]`: the plain-text prompt of `user_prompt = "transcript"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptSpec {
    /// First line of the prompt, above the real dialogues (empty: none).
    #[serde(default)]
    pub header: String,
    /// Label opening the seeker's lines.
    #[serde(default = "default_seeker_label")]
    pub seeker_label: String,
    /// Label opening the system's lines.
    #[serde(default = "default_system_label")]
    pub system_label: String,
    /// Real dialogues from the pool shown before the session's own (1 to 16).
    #[serde(default = "default_transcript_dialogues")]
    pub dialogues: usize,
    /// Only pool dialogues of at most this many words are shown, so the
    /// prefix leaves the context to the conversation.
    #[serde(default = "default_max_dialogue_words")]
    pub max_dialogue_words: usize,
    /// A turn variable whose value follows the seeker's label in every
    /// seeker line (`Seeker (REJ):`): the real dialogues show their labels,
    /// so the model learns in context what each value reads like, and the
    /// session's turns show the drawn value. Absent: no tag.
    pub tag: Option<String>,
    /// What a tag value is shown as (`REJ = "rejects"`); a value without an
    /// entry is shown as it is. Words a small model knows steer it better
    /// than codes.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Added to the label of a seeker's last line (`Seeker (small talk,
    /// says goodbye):`), of every real dialogue shown and of a session's closing
    /// turn (`conversation.closing_turn`), so the real dialogues teach the
    /// model what a leaving seeker writes. Absent, or without closing
    /// turns: last lines look like the others.
    pub closing_tag: Option<String>,
    /// `assistant_prompt = "transcript"`: the word that tags a recommender
    /// line with the movies it names (`Recommender (suggests Heat):`), in
    /// the real dialogues from their mention markup and on the built-in
    /// recommender's own line with the candidate it is to offer.
    #[serde(default = "default_suggest_tag")]
    pub suggest_tag: String,
}

fn default_suggest_tag() -> String {
    "suggests".into()
}

impl Default for TranscriptSpec {
    fn default() -> Self {
        TranscriptSpec {
            header: String::new(),
            seeker_label: default_seeker_label(),
            system_label: default_system_label(),
            dialogues: default_transcript_dialogues(),
            max_dialogue_words: default_max_dialogue_words(),
            tag: None,
            tags: BTreeMap::new(),
            closing_tag: None,
            suggest_tag: default_suggest_tag(),
        }
    }
}

fn default_seeker_label() -> String {
    "Seeker".into()
}

fn default_system_label() -> String {
    "Recommender".into()
}

/// Default real dialogues before the session's own.
pub const DEFAULT_TRANSCRIPT_DIALOGUES: usize = 4;

fn default_transcript_dialogues() -> usize {
    DEFAULT_TRANSCRIPT_DIALOGUES
}

/// Default longest pool dialogue shown in a transcript prefix, in words.
pub const DEFAULT_MAX_DIALOGUE_WORDS: usize = 250;

fn default_max_dialogue_words() -> usize {
    DEFAULT_MAX_DIALOGUE_WORDS
}

/// `[pool]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolFileSpec {
    /// Real corpora (IARD `.json`, INSPIRED `dialogs.tsv`), relative to the
    /// scenario directory; `simulate --pool` replaces them.
    corpora: Vec<String>,
    /// Real seeker turns of the turn's intent given to the `user_turn`
    /// template as `exemplars` (chat prompting; 0: none).
    #[serde(default)]
    exemplars: usize,
}

/// The pool of real dialogues a scenario declares (loaded by the run, so
/// `--pool` can replace the paths).
#[derive(Clone, Debug)]
pub struct PoolSpec {
    /// Corpus files, resolved against the scenario directory.
    pub corpora: Vec<PathBuf>,
    /// Exemplars per chat-mode turn instruction.
    pub exemplars: usize,
}

/// `[critic]` as written: see [`CriticSpec`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CriticFileSpec {
    /// Critic file written by `usersim critic train`, relative to the
    /// scenario directory (`--critic` replaces it).
    file: Option<String>,
    /// Candidates decoded per seeker turn, the most human kept (1 to
    /// [`MAX_BEST_OF`]; `--best-of` replaces it).
    #[serde(default = "default_best_of")]
    best_of: u32,
    /// Weigh each candidate by how clearly an intent classifier, fitted on
    /// the [pool]'s labelled seeker turns, reads the turn's drawn `intent`
    /// in it: the critic's score times that probability to this power (0:
    /// off, 1: the plain product; 0 to 4).
    #[serde(default)]
    intent_weight: f64,
    /// Weigh each candidate by how near its length (words) is to the
    /// turn's drawn `[length]` target: times (shorter + 1) / (longer + 1)
    /// to this power (0: off; 0 to 4; needs `[length]`).
    #[serde(default)]
    length_weight: f64,
    /// Weigh each candidate by how often real seekers' turns of its drawn
    /// intent (counted on the [pool], genres read as the catalog names
    /// them) name a genre when it names one, or do not when it does not:
    /// times that share to this power (0: off; 0 to 4; needs a [pool] and
    /// a catalog).
    #[serde(default)]
    genre_weight: f64,
}

/// Most candidates per seeker turn.
pub const MAX_BEST_OF: u32 = 16;
/// Largest `[critic] intent_weight`, `length_weight` and `genre_weight`.
pub const MAX_CHOICE_WEIGHT: f64 = 4.0;
/// Default candidates per seeker turn.
pub const DEFAULT_BEST_OF: u32 = 1;

fn default_best_of() -> u32 {
    DEFAULT_BEST_OF
}

/// `[critic]`: decode `best_of` candidates of every seeker turn and keep
/// the one the critic scores most human ([`crate::session::best_of`]).
#[derive(Clone, Debug)]
pub struct CriticSpec {
    /// Critic file, resolved against the scenario directory.
    pub file: Option<PathBuf>,
    /// Candidates per seeker turn (1 to [`MAX_BEST_OF`]).
    pub best_of: u32,
    /// Power of the pool-fitted intent reader's probability of the turn's
    /// drawn intent that weighs each candidate
    /// ([`crate::critic::PoolIntentReader`]; 0: no reader).
    pub intent_weight: f64,
    /// Power of a candidate's nearness to the turn's drawn length target
    /// ([`crate::session::best_of::length_fit`]) that weighs it (0: off).
    pub length_weight: f64,
    /// Power of the pool's share of real turns of a candidate's intent that
    /// name a genre as it does ([`crate::session::best_of::GenreRates`])
    /// that weighs it (0: off).
    pub genre_weight: f64,
}

/// `[guard]`: see [`crate::session::guard`] for what is rejected.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSpec {
    /// Most new draws of one turn after rejections (0 to 8); the last draw
    /// is kept whatever it is.
    #[serde(default = "default_max_resamples")]
    pub max_resamples: u8,
    /// The copy guard: also reject a turn sharing a word 8-gram with a
    /// seeker turn of the `[pool]` or with the real turn being replayed
    /// (needs `[pool]`).
    #[serde(default)]
    pub copy: bool,
    /// Also reject a turn that ran out of tokens with no sentence end,
    /// message join or clause end anywhere: a sentence broken off, which
    /// the length cut cannot end ([`crate::session::conversation::is_unfinished`]).
    #[serde(default)]
    pub unfinished: bool,
}

/// Default most resamples of one turn.
pub const DEFAULT_MAX_RESAMPLES: u8 = 2;

fn default_max_resamples() -> u8 {
    DEFAULT_MAX_RESAMPLES
}

/// `[length]`: every user turn draws a target length in words from the
/// distribution fitted for its value of a turn variable (its intent).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LengthSpec {
    /// File written by `usersim fit` holding `[lengths.<value>]` tables
    /// (words → count), relative to the scenario directory.
    fitted_file: String,
    /// The turn variable whose value picks the distribution.
    #[serde(default = "default_length_of")]
    of: String,
    /// Enforce the target: the token budget follows it and the turn is cut
    /// at the first sentence end past it. Off: only rendered.
    #[serde(default = "default_true")]
    enforce: bool,
    /// Tokens allowed per target word when enforcing (the budget is
    /// `ceil(words × this) + 4`, never above the side's `max_tokens`).
    #[serde(default = "default_tokens_per_word")]
    tokens_per_word: f64,
    /// A categorical session variable (one value per session, declared
    /// from least to most wordy) that scales every target: the real seekers'
    /// fitted length ratios (`seeker_length_ratio`) are split into bands by
    /// the variable's weights, and each value scales by its band's mean
    /// ratio (the least wordy 40% of real seekers for a value of weight
    /// 0.4, and so on). Absent: no scaling.
    scale_by: Option<String>,
}

/// `[first_word]`: every user turn draws the word it opens with from the
/// words real seekers opened turns of its value (its intent) with, at the
/// same place in the conversation (their first turn, or a later one), and
/// the simulator continues from it. Transcript prompting only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FirstWordSpec {
    /// File written by `usersim fit` holding `[first_words.<place>.<value>]`
    /// tables (word → count), relative to the scenario directory.
    fitted_file: String,
    /// The turn variable whose value picks the distribution.
    #[serde(default = "default_length_of")]
    of: String,
    /// Words real seekers opened a turn's cell with fewer times than this
    /// are left to the model (with openings that are not a word, such as a
    /// number); 1 forces every word seen.
    #[serde(default = "default_first_word_min_count")]
    min_count: u64,
}

/// Default `[first_word] min_count`.
pub const DEFAULT_FIRST_WORD_MIN_COUNT: u64 = 1;

fn default_first_word_min_count() -> u64 {
    DEFAULT_FIRST_WORD_MIN_COUNT
}

fn default_length_of() -> String {
    "intent".into()
}

fn default_true() -> bool {
    true
}

/// Default tokens per word of the length budget: English text runs about
/// 1.3 tokens a word in SmolLM2's and Gemma's vocabularies; the rest is
/// room to reach a sentence end.
pub const DEFAULT_TOKENS_PER_WORD: f64 = 1.6;

fn default_tokens_per_word() -> f64 {
    DEFAULT_TOKENS_PER_WORD
}

/// What `usersim fit` writes: the intent chain and, per intent, the
/// lengths (in words) of real seeker turns.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FittedTables {
    /// Distribution of the first user turn's value.
    pub first: BTreeMap<String, f64>,
    /// From each value, the distribution of the next (or `END`).
    pub transitions: BTreeMap<String, BTreeMap<String, f64>>,
    /// Per value, how many real turns had each length in words (keys are
    /// word counts as strings, as TOML keys are).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lengths: BTreeMap<String, BTreeMap<String, u64>>,
    /// Per real seeker, their typing rates `[lower_first, bare_end,
    /// ellipsis]` ([`crate::session::style::StyleRates`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeker_style: Vec<[f64; 3]>,
    /// Per real seeker, the mean of their turns' words ÷ the mean words of
    /// each turn's intent (`[length] scale_by`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeker_length_ratio: Vec<f64>,
    /// Per place ([`FIRST_TURN`] or [`LATER_TURNS`]), per value, how many
    /// real turns opened with each word (lower case; [`OTHER_FIRST_WORD`]
    /// counts openings that are not a word).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub first_words: BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>>,
    /// See [`MarkovTable::after_question`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub after_question: BTreeMap<String, f64>,
    /// See [`MarkovTable::after_statement`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub after_statement: BTreeMap<String, f64>,
}

/// `[replay]`: per corpus, survey answers that set session variables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplaySpec {
    /// `[[replay.inspired]]`: INSPIRED's seeker survey.
    #[serde(default)]
    inspired: Vec<SurveyMap>,
}

/// One session variable set from one survey answer of the real seeker
/// (conditional realism): answers in `map` pin the variable for that
/// session, other answers leave it drawn as usual.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveyMap {
    /// Categorical session variable (one value per session).
    pub session: String,
    /// Survey field: one of [`crate::corpus::INSPIRED_SURVEY_FIELDS`]
    /// (answers are text: use `map`) or [`crate::corpus::INSPIRED_BIG_FIVE`]
    /// (scores 1–6: use `ranges`).
    pub survey: String,
    /// Text answer → declared value.
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    /// Declared value → `[low, high)` range of a numeric answer (the range
    /// whose `high` is the largest also takes `high` itself).
    #[serde(default)]
    pub ranges: BTreeMap<String, [f64; 2]>,
}

impl SurveyMap {
    /// The declared value this survey answer maps to, if any.
    pub fn value_for(&self, answer: &serde_json::Value) -> Option<&str> {
        if let Some(a) = answer.as_str() {
            return self.map.get(a).map(String::as_str);
        }
        let x = answer.as_f64()?;
        let top = self
            .ranges
            .values()
            .map(|r| r[1])
            .fold(f64::NEG_INFINITY, f64::max);
        self.ranges
            .iter()
            .find(|(_, r)| x >= r[0] && (x < r[1] || (x == top && r[1] == top)))
            .map(|(v, _)| v.as_str())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFiles {
    /// Simulator's system prompt: the persona built from session latents.
    user_system: String,
    /// Instruction appended to the simulator's latest input for one turn.
    user_turn: String,
    /// The built-in system's (assistant's) system prompt.
    assistant_system: String,
    /// Per-turn note for the assistant (e.g. retrieved candidates).
    assistant_turn: Option<String>,
    /// The session's profile line in transcript prompting, above its own
    /// conversation (absent: none).
    user_profile: Option<String>,
}

/// How conversations run and end.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConversationSpec {
    /// Most user turns in one conversation.
    pub max_user_turns: u32,
    /// Fewest user turns before a drawn END is honoured.
    pub min_user_turns: u32,
    /// A user turn with one of these intents ends the conversation.
    pub end_intents: Vec<String>,
    /// Intents that accept a recommendation: accepting the target item
    /// (named in the latest assistant message) ends the conversation.
    pub accept_intents: Vec<String>,
    /// Intents that reject a recommendation: the items of the system turn
    /// before such a user turn count as rejected in the record's outcome.
    pub reject_intents: Vec<String>,
    /// Session variable (a `catalog_item`) holding the user's target item.
    pub target: Option<String>,
    /// The assistant's first message, shown before the user speaks; without
    /// it the user opens the conversation (unless `system_opens` says
    /// otherwise).
    pub opening: Option<String>,
    /// Share of sessions (0 to 1) in which the system writes the first
    /// message itself, before the user speaks, drawn per session from a
    /// stream of its own (so 0 leaves every other draw as it was). Real
    /// recommenders open 194 of IARD's 280 dialogues (`usersim fit` reports
    /// the share). Only a system that can open a conversation does (the
    /// built-in recommender, on the run's engine or one of its own); a
    /// session drawn to open with an HTTP or stdio system under test opens
    /// with its user. Not with a fixed `opening`.
    pub system_opens: f64,
    /// With `system_opens`, what a chat-prompted built-in recommender is
    /// given as the user's message before it writes its opening (a chat
    /// template expects one); it stays first in its later prompts.
    pub system_opening_cue: String,
    /// Text given to the simulator in place of an assistant message when the
    /// user opens the conversation.
    pub user_opening_cue: String,
    /// Session variable (an integer `range`) holding the seeker's patience:
    /// after that many user turns without accepting the target the seeker
    /// leaves (`user_left`), however the turn policy goes on.
    pub patience: Option<String>,
    /// Whether the seeker stays until its `patience` runs out: a markov
    /// turn variable's chain never draws END, so the seeker leaves only
    /// when patience is spent, it accepts the target, says an `end_intents`
    /// intent or reaches `max_user_turns`. Each turn's value is drawn
    /// from the chain given that it goes on until then: its row weighed by
    /// each value's chance of not ending in the turns left. Off, the chain ends a
    /// conversation before its patience in about two sessions in five, and
    /// the drawn patience hardly shows in the text. Needs `patience`.
    pub stay_for_patience: bool,
    /// Whether a seeker who leaves (patience spent, or the last turn
    /// `max_user_turns` allows) says so in a last turn, instead of falling
    /// silent after the system's reply: real seekers close with thanks or a
    /// goodbye (62% of IARD dialogues end on one). A markov turn variable
    /// draws that turn's value from its chain given that the turn is the
    /// last, P(v | previous) · P(END | v); other policies draw as usual.
    pub closing_turn: bool,
}

/// Default `system_opening_cue`.
pub const DEFAULT_SYSTEM_OPENING_CUE: &str =
    "(Someone has just joined the chat. Greet them in a few words.)";

/// Default most user turns.
pub const DEFAULT_MAX_USER_TURNS: u32 = 6;

impl Default for ConversationSpec {
    fn default() -> Self {
        ConversationSpec {
            max_user_turns: DEFAULT_MAX_USER_TURNS,
            min_user_turns: 1,
            end_intents: Vec::new(),
            accept_intents: Vec::new(),
            reject_intents: Vec::new(),
            target: None,
            opening: None,
            system_opens: 0.0,
            system_opening_cue: DEFAULT_SYSTEM_OPENING_CUE.into(),
            user_opening_cue: "(The conversation starts. Write your first message.)".into(),
            patience: None,
            stay_for_patience: false,
            closing_turn: false,
        }
    }
}

/// Sampling options of both sides.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SidesSampling {
    /// The user simulator.
    pub user: SamplingParams,
    /// The built-in system.
    pub assistant: SamplingParams,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum SessionKind {
    Categorical,
    Range,
    CatalogItem,
}

/// One `[[session]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionVarSpec {
    /// Variable name, used in templates as `session.<name>`.
    name: String,
    /// `categorical`, `range` or `catalog_item`.
    kind: SessionKind,
    /// Categorical values.
    #[serde(default)]
    values: Vec<String>,
    /// Weights of `values` (uniform when absent).
    weights: Option<Vec<f64>>,
    /// Draw this many distinct values (a list) instead of one.
    pick: Option<u32>,
    /// Name of an earlier variable whose value selects a case.
    given: Option<String>,
    /// Per value of `given`: its own values and weights.
    #[serde(default)]
    cases: BTreeMap<String, CaseSpec>,
    /// Range bounds.
    min: Option<f64>,
    max: Option<f64>,
    /// Range: draw whole numbers.
    #[serde(default)]
    integer: bool,
    /// Catalog item: prefer items having a genre named by this variable.
    prefer_genres_from: Option<String>,
    /// Prose for each categorical value, offered to templates as `text.<name>`.
    #[serde(default)]
    text: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    values: Vec<String>,
    weights: Option<Vec<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum PolicyKind {
    Markov,
    Scripted,
    Iid,
    None,
}

/// One `[[turn]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TurnVarSpec {
    /// Variable name, used in templates as `turn.<name>`.
    name: String,
    /// Declared values (labels).
    values: Vec<String>,
    /// `markov`, `scripted`, `iid` or `none` (uncontrolled baseline).
    policy: PolicyKind,
    /// Markov table inline.
    markov: Option<MarkovTable>,
    /// Markov table in a file of its own (as `fit-intents` writes it).
    markov_file: Option<String>,
    /// Scripted values, one per user turn; the last repeats.
    #[serde(default)]
    script: Vec<String>,
    /// Weights of `values` for `iid`.
    weights: Option<Vec<f64>>,
    /// `[turn.by.<session variable>.<value>]`: factors on this variable's
    /// values (and `END`) for sessions with that value, applied to every
    /// markov row or iid draw: how a session's profile shows in what the
    /// seeker does (a picky seeker rejects more). Values not named: 1.
    #[serde(default)]
    by: BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>,
    /// Instruction prose per value, offered to templates as `turn_text.<name>`.
    #[serde(default)]
    text: BTreeMap<String, String>,
}

/// A first-order markov chain over turn values. `END` may appear as a
/// transition target and ends the conversation.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MarkovTable {
    /// Distribution of the first user turn's value.
    pub first: BTreeMap<String, f64>,
    /// From each value, the distribution of the next (or `END`).
    pub transitions: BTreeMap<String, BTreeMap<String, f64>>,
    /// Per value, P(value | the system's turn before asked a question) ÷
    /// P(value): a drawn row's weights are multiplied by these after a
    /// system turn with a `?` (absent values: 1), so a seeker answers a
    /// question as often as real ones do, and ignores it as often too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub after_question: BTreeMap<String, f64>,
    /// The same after a system turn without a `?` (a seeker rarely
    /// "answers" nothing).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub after_statement: BTreeMap<String, f64>,
}

// ---------------------------------------------------------------------------
// Validated form (what the rest of the crate uses)
// ---------------------------------------------------------------------------

/// A categorical distribution with validated, normalised weights.
#[derive(Clone, Debug, Serialize)]
pub struct Categorical {
    /// The values.
    pub values: Vec<String>,
    /// Normalised probabilities, same order.
    pub probs: Vec<f64>,
}

/// The distribution of a categorical session variable.
#[derive(Clone, Debug)]
pub enum CategoricalSource {
    /// One distribution.
    Fixed(Categorical),
    /// A distribution per value of an earlier variable.
    Given {
        /// The conditioning variable.
        given: String,
        /// Its value → distribution.
        cases: BTreeMap<String, Categorical>,
    },
}

/// A validated session-level variable.
#[derive(Clone, Debug)]
pub enum SessionVar {
    /// Drawn from a (possibly conditional) categorical.
    Categorical {
        /// Name.
        name: String,
        /// Distribution.
        source: CategoricalSource,
        /// Number of distinct values drawn (1 = a single value).
        pick: u32,
        /// Prose per value.
        text: BTreeMap<String, String>,
    },
    /// Uniform in [min, max].
    Range {
        /// Name.
        name: String,
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
        /// Whole numbers only.
        integer: bool,
    },
    /// One item of the catalog.
    CatalogItem {
        /// Name.
        name: String,
        /// Prefer items with a genre named by this earlier variable.
        prefer_genres_from: Option<String>,
    },
}

impl Scenario {
    /// Every declared value of each categorical session variable (what
    /// `eval --scenario` measures coverage against).
    pub fn declared_session_values(&self) -> BTreeMap<String, Vec<String>> {
        self.session
            .iter()
            .map(|v| (v.name().to_string(), v.all_values()))
            .filter(|(_, vals)| !vals.is_empty())
            .collect()
    }
}

impl SessionVar {
    /// The variable's name.
    pub fn name(&self) -> &str {
        match self {
            SessionVar::Categorical { name, .. }
            | SessionVar::Range { name, .. }
            | SessionVar::CatalogItem { name, .. } => name,
        }
    }

    /// Every value the variable can take, for categorical variables.
    pub fn all_values(&self) -> Vec<String> {
        match self {
            SessionVar::Categorical { source, .. } => match source {
                CategoricalSource::Fixed(c) => c.values.clone(),
                CategoricalSource::Given { cases, .. } => {
                    let set: BTreeSet<&String> = cases.values().flat_map(|c| &c.values).collect();
                    set.into_iter().cloned().collect()
                }
            },
            _ => Vec::new(),
        }
    }
}

/// How a turn variable is chosen at each user turn.
#[derive(Clone, Debug)]
pub enum TurnPolicy {
    /// First-order chain, `END` ends the conversation.
    Markov(MarkovTable),
    /// Fixed list; the last value repeats.
    Scripted(Vec<String>),
    /// Independent draws.
    Iid(Categorical),
    /// Not controlled: no value is drawn nor rendered.
    None,
}

/// A validated turn-level variable.
#[derive(Clone, Debug)]
pub struct TurnVar {
    /// Name.
    pub name: String,
    /// Declared values.
    pub values: Vec<String>,
    /// Policy.
    pub policy: TurnPolicy,
    /// Instruction prose per value.
    pub text: BTreeMap<String, String>,
    /// Session variable → its value → factors on this variable's values
    /// (and `END`): `[turn.by]`.
    pub by: BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>,
}

/// The validated length latent (`[length]`).
#[derive(Clone, Debug)]
pub struct LengthModel {
    /// The turn variable whose value picks the distribution.
    pub of: String,
    /// Per value, lengths in words with their probabilities.
    pub per_value: BTreeMap<String, LengthDistribution>,
    /// All values pooled: used for a value with fewer than
    /// [`MIN_LENGTH_SAMPLES`] fitted turns, or none.
    pub pooled: LengthDistribution,
    /// Whether the budget follows the target and turns are cut.
    pub enforce: bool,
    /// Tokens per target word of the budget.
    pub tokens_per_word: f64,
    /// `scale_by`: the session variable and each value's length factor.
    pub scale: Option<(String, BTreeMap<String, f64>)>,
}

/// The name templates and records give the drawn length: `turn.length`,
/// `latents.length`.
pub const LENGTH_VAR: &str = "length";

/// Fewest fitted turns a value needs for a distribution of its own.
pub const MIN_LENGTH_SAMPLES: u64 = 10;

/// The validated first-word latent (`[first_word]`).
#[derive(Clone, Debug)]
pub struct FirstWordModel {
    /// The turn variable whose value picks the distribution.
    pub of: String,
    /// Per place (`true`: the seeker's first turn), per value, the words
    /// with their probabilities; `None` in a list is "left to the model".
    pub per_value: [BTreeMap<String, FirstWordDistribution>; 2],
    /// Per place, all values pooled: used for a value with fewer than
    /// [`MIN_LENGTH_SAMPLES`] fitted turns at that place, or none.
    pub pooled: [FirstWordDistribution; 2],
}

/// Words a turn may open with, and their probabilities.
#[derive(Clone, Debug, Default)]
pub struct FirstWordDistribution {
    /// Words as written into the prompt (first letter upper case); `None`:
    /// the model chooses.
    pub words: Vec<Option<String>>,
    /// Probabilities, same order.
    pub probs: Vec<f64>,
    /// Turns behind it.
    pub samples: u64,
}

/// The name records give the drawn first word: `latents.first_word`.
pub const FIRST_WORD_VAR: &str = "first_word";

/// `[first_words.<place>]` of the seeker's first turn.
pub const FIRST_TURN: &str = "first_turn";

/// `[first_words.<place>]` of the seeker's later turns.
pub const LATER_TURNS: &str = "later_turns";

/// The fitted key counting openings that are not a word.
pub const OTHER_FIRST_WORD: &str = "*";

/// Lengths in words and their probabilities.
#[derive(Clone, Debug, Default)]
pub struct LengthDistribution {
    /// Word counts, ascending.
    pub words: Vec<u32>,
    /// Probabilities, same order.
    pub probs: Vec<f64>,
    /// Turns behind it.
    pub samples: u64,
}

/// A loaded, validated scenario.
#[derive(Debug)]
pub struct Scenario {
    /// Short name.
    pub name: String,
    /// One-line description.
    pub description: String,
    /// Directory it was loaded from.
    pub dir: PathBuf,
    /// sha256 over scenario.toml and every file it references.
    pub hash: String,
    /// Catalog path declared by the scenario (resolved against `dir`).
    pub catalog: Option<PathBuf>,
    /// Session variables in draw order.
    pub session: Vec<SessionVar>,
    /// Turn variables.
    pub turn: Vec<TurnVar>,
    /// Conversation flow.
    pub conversation: ConversationSpec,
    /// Sampling defaults per side.
    pub sampling: SidesSampling,
    /// The system under test (`[system]`).
    pub system: system::SystemSpec,
    /// Session variables that an INSPIRED replay takes from the survey.
    pub replay_inspired: Vec<SurveyMap>,
    /// The length latent, when declared.
    pub length: Option<LengthModel>,
    /// The first-word latent, when declared.
    pub first_word: Option<FirstWordModel>,
    /// The role guard, when declared.
    pub guard: Option<GuardSpec>,
    /// How the seeker simulator is prompted.
    pub user_prompt: PromptMode,
    /// How the built-in recommender is prompted: `chat` (its system
    /// message and the candidates through the chat template) or
    /// `transcript` (the seeker's real dialogues, recommender lines tagged
    /// with the movies they name, continued on a `Recommender (suggests
    /// <candidate>):` line; needs `user_prompt = "transcript"`).
    pub assistant_prompt: PromptMode,
    /// Transcript layout (defaults when not declared).
    pub transcript: TranscriptSpec,
    /// Real dialogues the run loads, when declared.
    pub pool: Option<PoolSpec>,
    /// Best-of-N with a realism critic, when declared.
    pub critic: Option<CriticSpec>,
    /// Real seekers' typing rates a session draws from (`[style]`; empty:
    /// off).
    pub style: Vec<crate::session::style::StyleRates>,
    templates: Environment<'static>,
}

/// Template names inside the scenario's environment.
pub mod template {
    /// Simulator persona.
    pub const USER_SYSTEM: &str = "user_system";
    /// Simulator per-turn instruction.
    pub const USER_TURN: &str = "user_turn";
    /// Assistant system prompt.
    pub const ASSISTANT_SYSTEM: &str = "assistant_system";
    /// Assistant per-turn note.
    pub const ASSISTANT_TURN: &str = "assistant_turn";
    /// The session's profile line (transcript prompting).
    pub const USER_PROFILE: &str = "user_profile";
}

/// Resolve a scenario given by name (a directory under `prompts/`) or path.
pub fn resolve_scenario_dir(name_or_path: &str, prompts_dir: &Path) -> PathBuf {
    let p = Path::new(name_or_path);
    if p.components().count() > 1 || p.is_dir() {
        if p.is_file() {
            return p.parent().map(Path::to_path_buf).unwrap_or_default();
        }
        return p.to_path_buf();
    }
    prompts_dir.join(name_or_path)
}

/// The `prompts/` directory: `$USERSIM_PROMPTS`, else `./prompts` when it
/// exists, else the one in the source tree this binary was built from.
pub fn default_prompts_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("USERSIM_PROMPTS") {
        return PathBuf::from(p);
    }
    let local = PathBuf::from("prompts");
    if local.join(DEFAULT_SCENARIO).is_dir() {
        return local;
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/prompts"))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parse a TOML file into `T`, errors naming the file.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| ScenarioError::Parse {
        path: path.to_path_buf(),
        message: one_line(&e.to_string()),
    })
}

impl Scenario {
    /// Render one of the scenario's templates.
    pub fn render(&self, name: &str, ctx: &serde_json::Value) -> Result<String> {
        let t = self
            .templates
            .get_template(name)
            .map_err(|e| ScenarioError::Parse {
                path: self.dir.clone(),
                message: one_line(&e.to_string()),
            })?;
        t.render(ctx).map_err(|e| ScenarioError::Parse {
            path: self.dir.join(name),
            message: one_line(&format!("{e:#}")),
        })
    }

    /// The session variable named `name`.
    pub fn session_var(&self, name: &str) -> Option<&SessionVar> {
        self.session.iter().find(|v| v.name() == name)
    }

    /// The turn variable named `name`.
    pub fn turn_var(&self, name: &str) -> Option<&TurnVar> {
        self.turn.iter().find(|v| v.name == name)
    }
}

impl Categorical {
    /// Number of values with positive probability.
    pub fn positive(&self) -> usize {
        self.probs.iter().filter(|p| **p > 0.0).count()
    }
}

/// Build a categorical, rejecting negative weights, mismatched lengths and a
/// zero sum (the error is the "expected" half of a message).
pub fn categorical(
    values: &[String],
    weights: Option<&[f64]>,
) -> std::result::Result<Categorical, String> {
    if values.is_empty() {
        return Err("at least one value".into());
    }
    let set: BTreeSet<&String> = values.iter().collect();
    if set.len() != values.len() {
        return Err("distinct values".into());
    }
    let weights: Vec<f64> = match weights {
        Some(w) => w.to_vec(),
        None => vec![1.0; values.len()],
    };
    if weights.len() != values.len() {
        return Err(format!(
            "one weight per value ({} values, {} weights)",
            values.len(),
            weights.len()
        ));
    }
    load::normalise(&weights).map(|probs| Categorical {
        values: values.to_vec(),
        probs,
    })
}
