//! Scenarios: the declared latent-variable schema and the templates that turn
//! drawn values into prompt text.
//!
//! A scenario is a directory `prompts/<name>/` holding `scenario.toml` and the
//! minijinja templates it names. Everything is validated at load time, before
//! any model is touched, so a typo in a template or a weight surfaces as one
//! error line naming the file and field instead of a crash mid-run.

pub mod catalog;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    /// How `simulate --replay` fills session variables from what a corpus
    /// knows about each real seeker.
    #[serde(default)]
    replay: ReplaySpec,
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
    /// Session variable (a `catalog_item`) holding the user's target item.
    pub target: Option<String>,
    /// The assistant's first message, shown before the user speaks; without
    /// it the user opens the conversation.
    pub opening: Option<String>,
    /// Text given to the simulator in place of an assistant message when the
    /// user opens the conversation.
    pub user_opening_cue: String,
}

/// Default most user turns.
pub const DEFAULT_MAX_USER_TURNS: u32 = 6;

impl Default for ConversationSpec {
    fn default() -> Self {
        ConversationSpec {
            max_user_turns: DEFAULT_MAX_USER_TURNS,
            min_user_turns: 1,
            end_intents: Vec::new(),
            accept_intents: Vec::new(),
            target: None,
            opening: None,
            user_opening_cue: "(The conversation starts. Write your first message.)".into(),
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
    /// Session variables that an INSPIRED replay takes from the survey.
    pub replay_inspired: Vec<SurveyMap>,
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
    /// Load and validate `dir/scenario.toml` and its templates.
    pub fn load(dir: &Path) -> Result<Scenario> {
        let path = dir.join("scenario.toml");
        if !path.is_file() {
            return Err(ScenarioError::Io {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no scenario.toml (expected a scenario directory or a name under prompts/)",
                ),
            });
        }
        let text = read(&path)?;
        let file: ScenarioFile = parse_toml(&path, &text)?;
        let mut hasher = Sha256::new();
        hasher.update(b"scenario.toml\0");
        hasher.update(text.as_bytes());
        let invalid = |field: String, expected: &str| ScenarioError::Invalid {
            path: path.clone(),
            field,
            expected: expected.to_string(),
        };

        if file.name.trim().is_empty() {
            return Err(invalid("name".into(), "a non-empty name"));
        }
        file.sampling
            .user
            .validate()
            .map_err(|e| invalid("sampling.user".into(), &e.to_string()))?;
        file.sampling
            .assistant
            .validate()
            .map_err(|e| invalid("sampling.assistant".into(), &e.to_string()))?;
        let conv = file.conversation.clone();
        if conv.max_user_turns == 0 {
            return Err(invalid("conversation.max_user_turns".into(), "at least 1"));
        }

        // Session variables, in order, each may only depend on earlier ones.
        let mut session: Vec<SessionVar> = Vec::new();
        for spec in &file.session {
            let field = |f: &str| format!("session \"{}\": {f}", spec.name);
            if spec.name.is_empty() || session.iter().any(|v| v.name() == spec.name) {
                return Err(invalid(field("name"), "a unique, non-empty name"));
            }
            let earlier = |n: &str| session.iter().find(|v| v.name() == n);
            let var = match spec.kind {
                SessionKind::Categorical => {
                    let pick = spec.pick.unwrap_or(1);
                    if pick == 0 {
                        return Err(invalid(field("pick"), "at least 1"));
                    }
                    let source = if let Some(given) = &spec.given {
                        let Some(g) = earlier(given) else {
                            return Err(invalid(
                                field("given"),
                                "the name of a session variable declared earlier",
                            ));
                        };
                        if !spec.values.is_empty() || spec.weights.is_some() {
                            return Err(invalid(
                                field("values"),
                                "values and weights inside [session.cases.<value>] when `given` is set",
                            ));
                        }
                        let g_values = g.all_values();
                        if g_values.is_empty() {
                            return Err(invalid(
                                field("given"),
                                "a categorical variable with a single value per draw",
                            ));
                        }
                        let mut cases = BTreeMap::new();
                        for v in &g_values {
                            let Some(case) = spec.cases.get(v) else {
                                return Err(invalid(
                                    field(&format!("cases.{v}")),
                                    &format!("a case for every value of \"{given}\""),
                                ));
                            };
                            let c = categorical(&case.values, case.weights.as_deref())
                                .map_err(|e| invalid(field(&format!("cases.{v}")), &e))?;
                            if (pick as usize) > c.positive() {
                                return Err(invalid(
                                    field("pick"),
                                    "no more than the number of values with positive weight",
                                ));
                            }
                            cases.insert(v.clone(), c);
                        }
                        if let Some(extra) = spec.cases.keys().find(|k| !g_values.contains(k)) {
                            return Err(invalid(
                                field(&format!("cases.{extra}")),
                                &format!("only values of \"{given}\": {}", g_values.join(", ")),
                            ));
                        }
                        CategoricalSource::Given {
                            given: given.clone(),
                            cases,
                        }
                    } else {
                        let c = categorical(&spec.values, spec.weights.as_deref())
                            .map_err(|e| invalid(field("weights"), &e))?;
                        if (pick as usize) > c.positive() {
                            return Err(invalid(
                                field("pick"),
                                "no more than the number of values with positive weight",
                            ));
                        }
                        CategoricalSource::Fixed(c)
                    };
                    let var = SessionVar::Categorical {
                        name: spec.name.clone(),
                        source,
                        pick,
                        text: spec.text.clone(),
                    };
                    let all = var.all_values();
                    if let Some(k) = spec.text.keys().find(|k| !all.contains(k)) {
                        return Err(invalid(
                            field(&format!("text.{k}")),
                            "prose only for declared values",
                        ));
                    }
                    var
                }
                SessionKind::Range => {
                    let (Some(min), Some(max)) = (spec.min, spec.max) else {
                        return Err(invalid(field("min/max"), "both min and max for a range"));
                    };
                    if !(min.is_finite() && max.is_finite() && min <= max) {
                        return Err(invalid(field("min/max"), "finite numbers with min <= max"));
                    }
                    if spec.integer && min.ceil() > max.floor() {
                        return Err(invalid(
                            field("min/max"),
                            "a whole number between min and max",
                        ));
                    }
                    SessionVar::Range {
                        name: spec.name.clone(),
                        min,
                        max,
                        integer: spec.integer,
                    }
                }
                SessionKind::CatalogItem => {
                    if file.catalog.is_none() {
                        return Err(invalid(
                            "catalog".into(),
                            "a catalog file, since a catalog_item variable is declared",
                        ));
                    }
                    if let Some(from) = &spec.prefer_genres_from {
                        if earlier(from).is_none() {
                            return Err(invalid(
                                field("prefer_genres_from"),
                                "the name of a session variable declared earlier",
                            ));
                        }
                    }
                    SessionVar::CatalogItem {
                        name: spec.name.clone(),
                        prefer_genres_from: spec.prefer_genres_from.clone(),
                    }
                }
            };
            session.push(var);
        }

        // Turn variables.
        let mut turn = Vec::new();
        for spec in &file.turn {
            let field = |f: &str| format!("turn \"{}\": {f}", spec.name);
            if spec.name.is_empty() || turn.iter().any(|v: &TurnVar| v.name == spec.name) {
                return Err(invalid(field("name"), "a unique, non-empty name"));
            }
            if spec.values.is_empty() {
                return Err(invalid(field("values"), "at least one value"));
            }
            let declared: BTreeSet<&str> = spec.values.iter().map(String::as_str).collect();
            if declared.len() != spec.values.len() || declared.contains(END_STATE) {
                return Err(invalid(
                    field("values"),
                    &format!("distinct values, none named {END_STATE}"),
                ));
            }
            let policy = match spec.policy {
                PolicyKind::Markov => {
                    let table = match (&spec.markov, &spec.markov_file) {
                        (Some(t), None) => t.clone(),
                        (None, Some(f)) => {
                            let mpath = dir.join(f);
                            let mtext = read(&mpath)?;
                            hasher.update(f.as_bytes());
                            hasher.update(b"\0");
                            hasher.update(mtext.as_bytes());
                            parse_toml(&mpath, &mtext)?
                        }
                        _ => {
                            return Err(invalid(
                                field("markov"),
                                "exactly one of `markov` (inline table) or `markov_file`",
                            ))
                        }
                    };
                    validate_markov(&table, &spec.values)
                        .map_err(|(f, e)| invalid(field(&format!("markov.{f}")), &e))?;
                    TurnPolicy::Markov(table)
                }
                PolicyKind::Scripted => {
                    if spec.script.is_empty() {
                        return Err(invalid(field("script"), "a non-empty list of values"));
                    }
                    if let Some(v) = spec.script.iter().find(|v| !declared.contains(v.as_str())) {
                        return Err(invalid(
                            field("script"),
                            &format!("declared values only (got \"{v}\")"),
                        ));
                    }
                    TurnPolicy::Scripted(spec.script.clone())
                }
                PolicyKind::Iid => TurnPolicy::Iid(
                    categorical(&spec.values, spec.weights.as_deref())
                        .map_err(|e| invalid(field("weights"), &e))?,
                ),
                PolicyKind::None => TurnPolicy::None,
            };
            if let Some(k) = spec.text.keys().find(|k| !declared.contains(k.as_str())) {
                return Err(invalid(
                    field(&format!("text.{k}")),
                    "prose only for declared values",
                ));
            }
            turn.push(TurnVar {
                name: spec.name.clone(),
                values: spec.values.clone(),
                policy,
                text: spec.text.clone(),
            });
        }
        for (field, intents) in [
            ("conversation.end_intents", &conv.end_intents),
            ("conversation.accept_intents", &conv.accept_intents),
        ] {
            for intent in intents {
                if !turn.iter().any(|t| t.values.contains(intent)) {
                    return Err(invalid(
                        field.into(),
                        &format!("values of a turn variable (got \"{intent}\")"),
                    ));
                }
            }
        }
        if let Some(target) = &conv.target {
            if !session
                .iter()
                .any(|v| matches!(v, SessionVar::CatalogItem { name, .. } if name == target))
            {
                return Err(invalid(
                    "conversation.target".into(),
                    "the name of a catalog_item session variable",
                ));
            }
        }

        // Templates: strict undefined, and every variable a template names
        // must be declared, so mistakes fail here and not in the middle of a run.
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        let files = [
            (template::USER_SYSTEM, Some(&file.templates.user_system)),
            (template::USER_TURN, Some(&file.templates.user_turn)),
            (
                template::ASSISTANT_SYSTEM,
                Some(&file.templates.assistant_system),
            ),
            (
                template::ASSISTANT_TURN,
                file.templates.assistant_turn.as_ref(),
            ),
        ];
        for (tname, rel) in files {
            let source = match rel {
                Some(rel) => {
                    let tpath = dir.join(rel);
                    let src = read(&tpath)?;
                    hasher.update(rel.as_bytes());
                    hasher.update(b"\0");
                    hasher.update(src.as_bytes());
                    check_template(&tpath, tname, &src, &session, &turn)?;
                    src
                }
                None => String::new(),
            };
            env.add_template_owned(tname.to_string(), source)
                .map_err(|e| ScenarioError::Parse {
                    path: dir.join(rel.map(String::as_str).unwrap_or(tname)),
                    message: one_line(&e.to_string()),
                })?;
        }

        for (i, m) in file.replay.inspired.iter().enumerate() {
            let field = |f: &str| format!("replay.inspired[{i}].{f}");
            let text_field = crate::corpus::INSPIRED_SURVEY_FIELDS.contains(&m.survey.as_str());
            let score_field = crate::corpus::INSPIRED_BIG_FIVE.contains(&m.survey.as_str());
            if !text_field && !score_field {
                return Err(invalid(
                    field("survey"),
                    &format!(
                        "one of {}, {}",
                        crate::corpus::INSPIRED_SURVEY_FIELDS.join(", "),
                        crate::corpus::INSPIRED_BIG_FIVE.join(", ")
                    ),
                ));
            }
            if text_field && (m.map.is_empty() || !m.ranges.is_empty()) {
                return Err(invalid(
                    field("map"),
                    &format!("a `map` of answers (and no `ranges`): {} is text", m.survey),
                ));
            }
            if score_field && (m.ranges.is_empty() || !m.map.is_empty()) {
                return Err(invalid(
                    field("ranges"),
                    &format!("`ranges` (and no `map`): {} is a score", m.survey),
                ));
            }
            if let Some((v, r)) = m
                .ranges
                .iter()
                .find(|(_, r)| !(r[0].is_finite() && r[1].is_finite() && r[0] < r[1]))
            {
                return Err(invalid(
                    field(&format!("ranges.{v}")),
                    &format!("[low, high] with low < high, not [{}, {}]", r[0], r[1]),
                ));
            }
            let var = session.iter().find(|v| v.name() == m.session);
            let declared = match var {
                Some(v @ SessionVar::Categorical { pick: 1, .. }) => v.all_values(),
                _ => {
                    return Err(invalid(
                        field("session"),
                        "a categorical session variable with one value per session",
                    ))
                }
            };
            let mut spans: Vec<(&String, &[f64; 2])> = m.ranges.iter().collect();
            spans.sort_by(|a, b| a.1[0].total_cmp(&b.1[0]));
            if let Some(w) = spans.windows(2).find(|w| w[1].1[0] < w[0].1[1]) {
                return Err(invalid(
                    field(&format!("ranges.{}", w[1].0)),
                    &format!("a range that does not overlap ranges.{}", w[0].0),
                ));
            }
            if let Some(v) = m.ranges.keys().find(|v| !declared.contains(v)) {
                return Err(invalid(
                    field(&format!("ranges.{v}")),
                    &format!("a value of {} ({})", m.session, declared.join(", ")),
                ));
            }
            if let Some((answer, v)) = m.map.iter().find(|(_, v)| !declared.contains(v)) {
                return Err(invalid(
                    field(&format!("map.\"{answer}\"")),
                    &format!(
                        "a value of {} ({}), not \"{v}\"",
                        m.session,
                        declared.join(", ")
                    ),
                ));
            }
        }

        let catalog = file.catalog.as_ref().map(|c| dir.join(c));
        Ok(Scenario {
            name: file.name,
            description: file.description,
            dir: dir.to_path_buf(),
            hash: hex::encode(hasher.finalize()),
            catalog,
            session,
            turn,
            conversation: conv,
            sampling: file.sampling,
            replay_inspired: file.replay.inspired,
            templates: env,
        })
    }

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
    normalise(&weights).map(|probs| Categorical {
        values: values.to_vec(),
        probs,
    })
}

fn normalise(weights: &[f64]) -> std::result::Result<Vec<f64>, String> {
    if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err("non-negative weights".into());
    }
    let sum: f64 = weights.iter().sum();
    if sum <= 0.0 {
        return Err("weights with a positive sum".into());
    }
    Ok(weights.iter().map(|w| w / sum).collect())
}

fn validate_markov(
    t: &MarkovTable,
    values: &[String],
) -> std::result::Result<(), (String, String)> {
    let known = |v: &str| values.iter().any(|x| x == v);
    let check_row = |name: String, row: &BTreeMap<String, f64>, allow_end: bool| {
        for k in row.keys() {
            if !(known(k) || (allow_end && k == END_STATE)) {
                return Err((
                    format!("{name}.{k}"),
                    format!("declared values{}", if allow_end { " or END" } else { "" }),
                ));
            }
        }
        let w: Vec<f64> = row.values().copied().collect();
        normalise(&w).map_err(|e| (name, e))?;
        Ok(())
    };
    check_row("first".into(), &t.first, false)?;
    for (from, row) in &t.transitions {
        if !known(from) {
            return Err((format!("transitions.{from}"), "declared values".into()));
        }
        check_row(format!("transitions.{from}"), row, true)?;
    }
    // Every value reachable from `first` or a transition needs its own row,
    // or the chain would have nowhere to go.
    let reachable = t
        .first
        .iter()
        .chain(t.transitions.values().flatten())
        .filter(|(k, w)| **w > 0.0 && k.as_str() != END_STATE)
        .map(|(k, _)| k);
    for v in reachable {
        if !t.transitions.contains_key(v) {
            return Err((
                format!("transitions.{v}"),
                "a row for every value that can be reached".into(),
            ));
        }
    }
    Ok(())
}

/// Roots each template may use, besides loop variables it declares itself.
fn allowed_roots(tname: &str) -> &'static [&'static str] {
    match tname {
        template::USER_SYSTEM => &["scenario", "session", "text"],
        template::USER_TURN => &[
            "scenario",
            "session",
            "text",
            "turn",
            "turn_text",
            "turn_index",
            "assistant_message",
        ],
        template::ASSISTANT_SYSTEM => &["scenario"],
        _ => &["scenario", "user_message", "candidates", "turn_index"],
    }
}

fn check_template(
    path: &Path,
    tname: &str,
    src: &str,
    session: &[SessionVar],
    turn: &[TurnVar],
) -> Result<()> {
    let env = Environment::new();
    let tmpl = env
        .template_from_str(src)
        .map_err(|e| ScenarioError::Parse {
            path: path.to_path_buf(),
            message: one_line(&e.to_string()),
        })?;
    let roots = allowed_roots(tname);
    let mut names: Vec<String> = tmpl.undeclared_variables(true).into_iter().collect();
    names.sort();
    for full in names {
        let mut parts = full.splitn(2, '.');
        let root = parts.next().unwrap_or_default();
        let sub = parts.next();
        let unknown = |expected: String| ScenarioError::Invalid {
            path: path.to_path_buf(),
            field: format!("variable `{full}`"),
            expected,
        };
        if !roots.contains(&root) {
            return Err(unknown(format!("one of: {}", roots.join(", "))));
        }
        let Some(sub) = sub else { continue };
        let sub = sub.split('.').next().unwrap_or(sub);
        match root {
            "session" | "text" if !session.iter().any(|v| v.name() == sub) => {
                let names: Vec<&str> = session.iter().map(SessionVar::name).collect();
                return Err(unknown(format!(
                    "a declared session variable: {}",
                    names.join(", ")
                )));
            }
            "turn" | "turn_text" if !turn.iter().any(|v| v.name == sub) => {
                let names: Vec<&str> = turn.iter().map(|t| t.name.as_str()).collect();
                return Err(unknown(format!(
                    "a declared turn variable: {}",
                    names.join(", ")
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Pins (`--set`)
// ---------------------------------------------------------------------------

/// Values pinned from the command line, e.g. `session.age_group=teen`.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Pins {
    /// Session variable → raw value.
    pub session: BTreeMap<String, String>,
    /// Turn variable → value used at every turn.
    pub turn: BTreeMap<String, String>,
}

impl Pins {
    /// Parse `--set` arguments and check them against the scenario. Catalog
    /// items are checked later, when the catalog is loaded.
    pub fn parse(args: &[String], scenario: &Scenario) -> Result<Pins> {
        let mut pins = Pins::default();
        for arg in args {
            let bad = |expected: String| ScenarioError::Pin {
                pin: arg.clone(),
                expected,
            };
            let Some((key, value)) = arg.split_once('=') else {
                return Err(bad(
                    "expected session.<name>=<value> or turn.<name>=<value>".into(),
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            match key.split_once('.') {
                Some(("session", name)) => {
                    let Some(var) = scenario.session_var(name) else {
                        let names: Vec<&str> =
                            scenario.session.iter().map(SessionVar::name).collect();
                        return Err(bad(format!(
                            "unknown session variable \"{name}\" (scenario {} declares: {})",
                            scenario.name,
                            names.join(", ")
                        )));
                    };
                    match var {
                        SessionVar::Categorical { pick, .. } => {
                            let all = var.all_values();
                            let parts: Vec<&str> = value.split(',').map(str::trim).collect();
                            if parts.len() != *pick as usize {
                                return Err(bad(format!("{pick} comma-separated value(s)")));
                            }
                            if let Some(p) = parts.iter().find(|p| !all.iter().any(|a| a == *p)) {
                                return Err(bad(format!(
                                    "unknown value \"{p}\" (expected one of: {})",
                                    all.join(", ")
                                )));
                            }
                        }
                        SessionVar::Range {
                            min, max, integer, ..
                        } => {
                            let ok = value.parse::<f64>().ok().filter(|x| {
                                *x >= *min && *x <= *max && (!*integer || x.fract() == 0.0)
                            });
                            if ok.is_none() {
                                return Err(bad(format!(
                                    "a {} between {min} and {max}",
                                    if *integer { "whole number" } else { "number" }
                                )));
                            }
                        }
                        SessionVar::CatalogItem { .. } => {}
                    }
                    pins.session.insert(name.to_string(), value.to_string());
                }
                Some(("turn", name)) => {
                    let Some(var) = scenario.turn_var(name) else {
                        return Err(bad(format!("unknown turn variable \"{name}\"")));
                    };
                    if !var.values.iter().any(|v| v == value) {
                        return Err(bad(format!(
                            "unknown value \"{value}\" (expected one of: {})",
                            var.values.join(", ")
                        )));
                    }
                    pins.turn.insert(name.to_string(), value.to_string());
                }
                _ => {
                    return Err(bad(
                        "expected session.<name>=<value> or turn.<name>=<value>".into(),
                    ))
                }
            }
        }
        Ok(pins)
    }
}
