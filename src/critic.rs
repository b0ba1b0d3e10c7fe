//! The realism critic: the eval's context-aware discriminator (TF-IDF of
//! the seeker turn and of the system turn before it, the pair features;
//! logistic regression), fitted once on real vs simulated seeker turns and
//! saved to a small versioned file, so a run can score its own candidates
//! (`simulate --best-of N --critic FILE`, [`crate::session::best_of`]).
//!
//! The file is JSON: `{"critic": {...}, "sha256": "..."}`, where the hash
//! covers the canonical JSON of `critic` (keys sorted, floats in their
//! shortest exact form), which holds the format name and version, what it
//! was trained on (files, scenario and model of the simulated runs), the
//! held-out figures of the k-fold protocol, the TF-IDF settings,
//! vocabularies with their idf, and the weights.
//!
//! Invariant: a critic that loads scores exactly as the one that was saved
//! (the hash proves the weights and vocabularies are the saved ones; another
//! format version or a file that does not hash is refused with one line).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::corpus::pool::Pool;
use crate::corpus::CorpusKind;
use crate::error::Error;
use crate::eval::context::{train_in_context, turns_in_context, PairModel, TurnInContext};
use crate::eval::discriminator::{DiscriminatorConfig, DiscriminatorError, DiscriminatorResult};
use crate::eval::features::{TfidfConfig, TfidfVectorizer};
use crate::eval::intent::{IntentClassifier, IntentConfig, IntentError};
use crate::eval::loaders::{load_auto, LoadError};
use crate::eval::logreg::LogReg;
use crate::eval::stats::Estimate;
use crate::session::best_of::{IntentReader, TurnScorer};
use crate::session::record::{ModelRef, ScenarioRef};

/// The `format` every critic file names.
pub const CRITIC_FORMAT: &str = "usersim-critic";
/// The file version this build reads and writes.
pub const CRITIC_VERSION: u32 = 1;

/// Errors of training, saving or loading a critic.
#[derive(Debug, thiserror::Error)]
pub enum CriticError {
    /// The critic file is unreadable, corrupt or of another version.
    #[error("{path}: {problem}")]
    File {
        /// The critic file.
        path: PathBuf,
        /// What is wrong, and what was expected.
        problem: String,
    },
    /// A training corpus cannot be read.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The training sets cannot train a critic (too few turns).
    #[error("critic training: {0}")]
    Train(#[from] DiscriminatorError),
}

impl CriticError {
    /// Every critic error is the user's input: a file or corpus they named.
    pub fn is_input(&self) -> bool {
        true
    }
}

/// One training file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSource {
    /// The file, as given.
    pub path: String,
    /// Seeker turns it gave.
    pub turns: usize,
    /// The simulated run's scenario (from its first record).
    pub scenario: Option<ScenarioRef>,
    /// The simulated run's model (from its first record).
    pub model: Option<ModelRef>,
}

/// What a critic was trained on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainedOn {
    /// Real conversations.
    pub real: Vec<TrainingSource>,
    /// Simulated runs.
    pub simulated: Vec<TrainingSource>,
    /// Seeker turns per class after balancing.
    pub per_class: usize,
}

/// The k-fold figures of the protocol the critic was fitted with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldOut {
    /// Folds.
    pub folds: usize,
    /// Out-of-fold ROC AUC, real vs simulated.
    pub auc: Estimate,
    /// Out-of-fold accuracy.
    pub accuracy: Estimate,
}

/// A vectorizer's vocabulary: feature names in index order and their idf.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vocabulary {
    names: Vec<String>,
    idf: Vec<f64>,
}

impl Vocabulary {
    fn of(v: &TfidfVectorizer) -> Self {
        let (_, names, idf) = v.parts();
        Vocabulary {
            names: names.to_vec(),
            idf: idf.to_vec(),
        }
    }
}

/// Everything the hash covers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    format: String,
    version: u32,
    trained_on: TrainedOn,
    held_out: HeldOut,
    tfidf: TfidfConfig,
    turn: Vocabulary,
    context: Option<Vocabulary>,
    weights: Vec<f64>,
    intercept: f64,
}

/// A fitted realism critic.
#[derive(Clone, Debug)]
pub struct Critic {
    model: PairModel,
    trained_on: TrainedOn,
    held_out: HeldOut,
    sha256: String,
}

/// Settings of [`train`].
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Cross-validation folds of the held-out figures.
    pub folds: usize,
    /// Seed of balancing, folds and bootstrap.
    pub seed: u64,
    /// Bootstrap resamples behind the intervals.
    pub bootstrap: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        let d = DiscriminatorConfig::default();
        TrainOptions {
            folds: d.folds,
            seed: d.seed,
            bootstrap: d.n_bootstrap,
        }
    }
}

/// Seeker turns in context of each file, with what the file is.
fn load_turns(
    paths: &[PathBuf],
    simulated: bool,
) -> Result<(Vec<TurnInContext>, Vec<TrainingSource>), CriticError> {
    let mut all = Vec::new();
    let mut sources = Vec::new();
    for path in paths {
        let corpus = load_auto(path)?;
        let turns = turns_in_context(&corpus);
        let (scenario, model) = if simulated {
            run_identity(path)
        } else {
            (None, None)
        };
        sources.push(TrainingSource {
            path: path.display().to_string(),
            turns: turns.len(),
            scenario,
            model,
        });
        all.extend(turns);
    }
    Ok((all, sources))
}

/// The scenario and model a usersim run's first record names, if it does.
fn run_identity(path: &Path) -> (Option<ScenarioRef>, Option<ModelRef>) {
    use std::io::BufRead;
    let first = std::fs::File::open(path)
        .ok()
        .and_then(|f| std::io::BufReader::new(f).lines().next())
        .and_then(Result::ok)
        .and_then(|l| serde_json::from_str::<Value>(&l).ok());
    let Some(v) = first else { return (None, None) };
    (
        serde_json::from_value(v["scenario"].clone()).ok(),
        serde_json::from_value(v["model"].clone()).ok(),
    )
}

/// Fit a critic on the seeker turns of `real` vs `simulated` files: the
/// k-fold protocol of the eval's context discriminator gives the held-out
/// figures, and the model fitted on every balanced turn is the critic.
pub fn train(
    real: &[PathBuf],
    simulated: &[PathBuf],
    opts: &TrainOptions,
) -> Result<(Critic, DiscriminatorResult), CriticError> {
    let (real_turns, real_sources) = load_turns(real, false)?;
    let (sim_turns, sim_sources) = load_turns(simulated, true)?;
    let cfg = DiscriminatorConfig {
        folds: opts.folds,
        seed: opts.seed,
        n_bootstrap: opts.bootstrap,
        ..DiscriminatorConfig::default()
    };
    let (result, model) = train_in_context(&real_turns, &sim_turns, &cfg)?;
    let held_out = HeldOut {
        folds: cfg.folds,
        auc: result.auc.clone(),
        accuracy: result.accuracy.clone(),
    };
    let mut critic = Critic {
        model,
        trained_on: TrainedOn {
            real: real_sources,
            simulated: sim_sources,
            per_class: result.n_per_class,
        },
        held_out,
        sha256: String::new(),
    };
    critic.sha256 = hash(&critic.body_value());
    Ok((critic, result))
}

/// sha256 of a JSON value's canonical text.
fn hash(v: &Value) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

impl Critic {
    fn body(&self) -> Body {
        let (tfidf, _, _) = self.model.turn_vectorizer.parts();
        Body {
            format: CRITIC_FORMAT.into(),
            version: CRITIC_VERSION,
            trained_on: self.trained_on.clone(),
            held_out: self.held_out.clone(),
            tfidf: tfidf.clone(),
            turn: Vocabulary::of(&self.model.turn_vectorizer),
            context: self.model.context_vectorizer.as_ref().map(Vocabulary::of),
            weights: self.model.model.weights.clone(),
            intercept: self.model.model.intercept,
        }
    }

    /// The body as a JSON value (keys sorted): what the hash covers.
    fn body_value(&self) -> Value {
        serde_json::to_value(self.body()).unwrap_or(Value::Null)
    }

    /// What it was trained on.
    pub fn trained_on(&self) -> &TrainedOn {
        &self.trained_on
    }

    /// Its held-out figures.
    pub fn held_out(&self) -> &HeldOut {
        &self.held_out
    }

    /// The hash of its file's content.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Write the critic file (whole or not at all).
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let file = serde_json::json!({"critic": self.body_value(), "sha256": self.sha256});
        let text = serde_json::to_string(&file).map_err(|e| Error::Internal(e.to_string()))?;
        crate::atomic::write_atomic(path, text.as_bytes()).map_err(|source| Error::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Read a critic file, checking its format, version and hash.
    pub fn load(path: &Path) -> Result<Critic, CriticError> {
        let bad = |problem: String| CriticError::File {
            path: path.to_path_buf(),
            problem,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(format!("cannot read the critic file: {e}")))?;
        let file: Value = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not a critic file (expected JSON: {e})")))?;
        let body = &file["critic"];
        if body["format"] != CRITIC_FORMAT {
            return Err(bad(format!(
                "critic.format: expected \"{CRITIC_FORMAT}\" (a file written by `usersim critic train`)"
            )));
        }
        if body["version"] != CRITIC_VERSION {
            return Err(bad(format!(
                "critic.version: expected {CRITIC_VERSION}, got {} (train the critic again with this usersim)",
                body["version"]
            )));
        }
        let stored = file["sha256"].as_str().unwrap_or_default();
        if hash(body) != stored {
            return Err(bad(
                "sha256: the content does not match its hash (the file is corrupt or was edited)"
                    .into(),
            ));
        }
        let body: Body =
            serde_json::from_value(body.clone()).map_err(|e| bad(format!("critic: {e}")))?;
        let vectorizer = |v: Vocabulary, what: &str| {
            TfidfVectorizer::from_parts(body.tfidf.clone(), v.names, v.idf).ok_or_else(|| {
                bad(format!(
                    "critic.{what}: expected as many idf weights as distinct feature names"
                ))
            })
        };
        let turn_vectorizer = vectorizer(body.turn, "turn")?;
        let context_vectorizer = body.context.map(|v| vectorizer(v, "context")).transpose()?;
        let n_features = turn_vectorizer.n_features()
            + context_vectorizer
                .as_ref()
                .map_or(0, TfidfVectorizer::n_features)
            + crate::eval::context::PAIR_FEATURES.len();
        if body.weights.len() != n_features {
            return Err(bad(format!(
                "critic.weights: expected {n_features} weights (the features), got {}",
                body.weights.len()
            )));
        }
        Ok(Critic {
            model: PairModel {
                turn_vectorizer,
                context_vectorizer,
                model: LogReg {
                    weights: body.weights,
                    intercept: body.intercept,
                    iterations: 0,
                },
            },
            trained_on: body.trained_on,
            held_out: body.held_out,
            sha256: stored.to_string(),
        })
    }
}

impl TurnScorer for Critic {
    fn score(&self, context: &str, turn: &str) -> f64 {
        1.0 - self.model.proba_simulated(context, turn)
    }
}

/// The intent reader of best-of-N ([`IntentReader`]): the eval's intent
/// classifier (TF-IDF, one-vs-rest logistic regression) fitted on the
/// labelled seeker turns of the run's pool, never on a dialogue the run
/// replays (so it cannot recognise the real turn it is standing in for).
#[derive(Clone, Debug)]
pub struct PoolIntentReader {
    classifier: IntentClassifier,
}

impl PoolIntentReader {
    /// Fits on every seeker turn of `pool` that carries one of `intents`
    /// (other turns say nothing about them), skipping the `excluded`
    /// dialogues. `None` when no pool turn carries one.
    pub fn fit(
        pool: &Pool,
        intents: &[String],
        excluded: &HashSet<(CorpusKind, &str)>,
    ) -> Result<Option<Self>, IntentError> {
        let mut texts = Vec::new();
        let mut labels = Vec::new();
        for (t, known) in pool.labelled_seeker_turns(intents, excluded) {
            if !known.is_empty() {
                texts.push(t.text.as_str());
                labels.push(known);
            }
        }
        if texts.is_empty() {
            return Ok(None);
        }
        let cfg = IntentConfig {
            labels: intents.to_vec(),
            ..IntentConfig::default()
        };
        Ok(Some(Self {
            classifier: IntentClassifier::fit(&texts, &labels, &cfg)?,
        }))
    }
}

impl IntentReader for PoolIntentReader {
    fn read(&self, intent: &str, turn: &str) -> Option<f64> {
        let k = self.classifier.labels().iter().position(|l| l == intent)?;
        self.classifier.predict_proba(turn).get(k).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::Speaker;

    #[test]
    fn the_pool_intent_reader_reads_held_out_real_turns_and_never_learns_an_excluded_dialogue() {
        let iard = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/iard/iard.json");
        let pool = Pool::load(&[iard]).expect("IARD pool");
        let intents: Vec<String> = crate::eval::intent::IARD_INTENTS
            .iter()
            .map(|s| s.to_string())
            .collect();
        // Hold out every fifth dialogue, as a replay of them would.
        let held_out: Vec<usize> = (0..pool.len()).step_by(5).collect();
        let excluded: HashSet<(CorpusKind, &str)> = held_out
            .iter()
            .map(|&i| (pool.dialogue(i).corpus, pool.dialogue(i).id.as_str()))
            .collect();
        let reader = PoolIntentReader::fit(&pool, &intents, &excluded)
            .expect("fit")
            .expect("labelled turns");
        // On the held-out turns, a turn's own label reads more likely than
        // the labels it does not carry, and the top reading is right far
        // more often than the 1-in-16 of a guess.
        let (mut own, mut others, mut top_right, mut n) = (0.0, 0.0, 0, 0);
        for &i in &held_out {
            for t in pool.dialogue(i).turns.iter() {
                let Some(label) = t.labels.iter().find(|l| intents.contains(l)) else {
                    continue;
                };
                if t.speaker != Speaker::Seeker {
                    continue;
                }
                let p: Vec<f64> = intents
                    .iter()
                    .map(|k| reader.read(k, &t.text).expect("a known intent"))
                    .collect();
                let k = intents.iter().position(|x| x == label).unwrap();
                own += p[k];
                others += (p.iter().sum::<f64>() - p[k]) / (p.len() - 1) as f64;
                let top = crate::eval::logreg::argmax(&p).expect("one reading per intent");
                top_right += usize::from(t.labels.contains(&intents[top]));
                n += 1;
            }
        }
        assert!(n > 200, "{n} held-out seeker turns");
        assert!(own > 3.0 * others, "own {own} vs others {others}");
        let accuracy = top_right as f64 / n as f64;
        assert!(accuracy > 0.3, "top reading right in {accuracy}");
        assert_eq!(reader.read("NOT-AN-INTENT", "hello"), None);
        // A pool whose every dialogue is excluded teaches nothing.
        let all: HashSet<(CorpusKind, &str)> = (0..pool.len())
            .map(|i| (pool.dialogue(i).corpus, pool.dialogue(i).id.as_str()))
            .collect();
        assert!(PoolIntentReader::fit(&pool, &intents, &all)
            .unwrap()
            .is_none());
    }

    fn pairs(texts: &[&str], context: &str) -> Vec<TurnInContext> {
        texts
            .iter()
            .map(|t| TurnInContext {
                context: context.into(),
                turn: (*t).into(),
            })
            .collect()
    }

    #[test]
    fn a_critic_round_trips_through_its_file_and_refuses_a_corrupt_one() {
        let dir = tempfile::tempdir().unwrap();
        let real: Vec<String> = (0..40).map(|i| format!("lol ok maybe {i} idk")).collect();
        let sim: Vec<String> = (0..40)
            .map(|i| format!("Certainly! I would love recommendation number {i}."))
            .collect();
        let real = pairs(&real.iter().map(String::as_str).collect::<Vec<_>>(), "hi");
        let sim = pairs(&sim.iter().map(String::as_str).collect::<Vec<_>>(), "hi");
        let cfg = DiscriminatorConfig {
            n_bootstrap: 20,
            ..DiscriminatorConfig::default()
        };
        let (result, model) = train_in_context(&real, &sim, &cfg).unwrap();
        assert!(result.auc.value > 0.95, "{:?}", result.auc);
        let mut critic = Critic {
            model,
            trained_on: TrainedOn {
                real: Vec::new(),
                simulated: Vec::new(),
                per_class: result.n_per_class,
            },
            held_out: HeldOut {
                folds: 5,
                auc: result.auc.clone(),
                accuracy: result.accuracy.clone(),
            },
            sha256: String::new(),
        };
        critic.sha256 = hash(&critic.body_value());
        let path = dir.path().join("critic.json");
        critic.save(&path).unwrap();
        let back = Critic::load(&path).unwrap();
        assert_eq!(back.sha256(), critic.sha256());
        for (c, t) in [
            ("hi", "lol ok idk"),
            ("hi", "Certainly! I would love that."),
            ("", "something else entirely"),
        ] {
            assert_eq!(back.score(c, t), critic.score(c, t), "{t}");
        }
        assert!(
            critic.score("hi", "lol ok idk") > critic.score("hi", "Certainly! I would love that.")
        );

        // One changed weight: the hash no longer matches.
        let text = std::fs::read_to_string(&path).unwrap();
        let mut v: Value = serde_json::from_str(&text).unwrap();
        v["critic"]["intercept"] = serde_json::json!(1.5);
        std::fs::write(&path, v.to_string()).unwrap();
        let e = Critic::load(&path).unwrap_err().to_string();
        assert!(e.contains("sha256") && e.contains("critic.json"), "{e}");
        // Another version.
        v["critic"]["version"] = serde_json::json!(99);
        std::fs::write(&path, v.to_string()).unwrap();
        let e = Critic::load(&path).unwrap_err().to_string();
        assert!(e.contains("critic.version: expected 1, got 99"), "{e}");
        std::fs::write(&path, "{not json").unwrap();
        let e = Critic::load(&path).unwrap_err().to_string();
        assert!(e.contains("not a critic file"), "{e}");
    }
}
