//! Context-aware real-vs-simulated discriminator.
//!
//! The turn-only discriminator ([`super::discriminator::discriminate`]) sees
//! a seeker turn alone, so a simulator that ignores what the recommender just
//! said, or pastes it back, can pass it. [`discriminate_in_context`] sees the
//! pair (system turn just before, seeker turn), as [`turns_in_context`]
//! gives it:
//!
//! * TF-IDF of the seeker turn (features named `turn:…`) and, fitted
//!   separately, of the system turn (`ctx:…`), in disjoint index blocks so
//!   the same n-gram on either side is a different feature;
//! * cheap pair features ([`PAIR_FEATURES`], named `pair:…`): word Jaccard,
//!   the share of the turn's words found in the context, a shared word
//!   6-gram (the echo of [`crate::session::guard`]), the turn's share of the
//!   pair's words and whether there is a context at all. A linear model has
//!   no products of the two TF-IDF blocks, so these carry the relation
//!   between the texts;
//! * with embeddings, the turn's and the context's and their cosine.
//!
//! The protocol is the turn-only one ([`super::discriminator`]'s balanced
//! sampling, stratified k-fold, AUC and accuracy with bootstrap intervals,
//! top features), so the two AUCs compare: when the context AUC is clearly
//! above the turn AUC, the simulator gives itself away by how it answers,
//! not only by how it writes. In a free run the context is the built-in
//! recommender's text, not a person's, and the `ctx:` block alone can tell
//! it apart; replay (real contexts on both sides) isolates the seeker.

use std::collections::HashSet;

use super::discriminator::{
    balance, cross_validate_fitted, dense_dim, l2, DialoguePair, DiscriminatorConfig,
    DiscriminatorError, DiscriminatorResult, Encoder,
};
use super::features::{SparseVec, TfidfVectorizer};
use super::loaders::{Corpus, EvalTurn};
use super::logreg::LogReg;
use crate::embed::cosine;
use crate::session::guard;

/// A seeker turn with the system turn just before it: the example of the
/// context-aware discriminator.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TurnInContext {
    /// The system (recommender) turn just before the seeker turn; empty when
    /// the seeker speaks first or the turn before is the seeker's own.
    pub context: String,
    /// The seeker turn.
    pub turn: String,
}

/// A corpus's seeker turns in order (as [`Corpus::seeker_turns`], so they
/// line up with its turn embeddings), each with the system turn just
/// before it.
pub fn turns_in_context(c: &Corpus) -> Vec<TurnInContext> {
    let in_context = |(before, t): (Option<&EvalTurn>, &EvalTurn)| TurnInContext {
        context: before
            .filter(|b| !b.seeker)
            .map_or_else(String::new, |b| b.text.clone()),
        turn: t.text.clone(),
    };
    c.dialogues
        .iter()
        .flat_map(|d| {
            // each turn beside the one before it (none before the first)
            std::iter::once(None)
                .chain(d.turns.iter().map(Some))
                .zip(&d.turns)
                .filter(|(_, t)| t.seeker)
                .map(in_context)
        })
        .collect()
}

/// Names of the pair features, in the order [`pair_features`] returns them.
pub const PAIR_FEATURES: [&str; 5] = [
    "pair:word jaccard",
    "pair:turn words in context",
    "pair:shares word 6-gram",
    "pair:turn share of words",
    "pair:no context",
];

/// Name of the embedding cosine feature.
pub const COSINE_FEATURE: &str = "pair:embedding cosine";

/// How the seeker turn relates to the system turn before it, each in [0, 1]
/// (names in [`PAIR_FEATURES`]): Jaccard of their word sets; share of the
/// turn's distinct words that occur in the context; 1 if they share a word
/// 6-gram; the turn's words over both texts' words; 1 if there is no context.
pub fn pair_features(context: &str, turn: &str) -> [f32; 5] {
    let (cw, tw) = (guard::words(context), guard::words(turn));
    let (cs, ts): (HashSet<&str>, HashSet<&str>) = (
        cw.iter().map(String::as_str).collect(),
        tw.iter().map(String::as_str).collect(),
    );
    let shared = ts.intersection(&cs).count();
    let union = ts.union(&cs).count();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f32 / b as f32 };
    [
        ratio(shared, union),
        ratio(shared, ts.len()),
        f32::from(u8::from(guard::shares_ngram(
            turn,
            context,
            guard::ECHO_NGRAM,
        ))),
        ratio(tw.len(), tw.len() + cw.len()),
        f32::from(u8::from(context.trim().is_empty())),
    ]
}

/// Embeddings of one side's examples, in example order.
#[derive(Clone, Copy, Debug)]
pub struct PairEmbeddings<'a> {
    /// One per seeker turn.
    pub turns: &'a [Vec<f32>],
    /// One per context; an empty vector for an example without context.
    /// `None`: the seeker turns' embeddings only (no context embedding, no
    /// cosine).
    pub contexts: Option<&'a [Vec<f32>]>,
}

/// One example's turn embedding and, if given, its context's.
type ExampleEmbeddings<'a> = Option<(&'a Vec<f32>, Option<&'a Vec<f32>>)>;

/// Features of one example, fitted on a fold's training examples: the
/// layout is `[turn TF-IDF | context TF-IDF | pair features | turn
/// embedding | context embedding | cosine]`.
struct PairEncoder<'a> {
    turn_vectorizer: TfidfVectorizer,
    /// `None` when no context n-gram is frequent enough (e.g. no example
    /// of the fold has a context).
    context_vectorizer: Option<TfidfVectorizer>,
    examples: &'a [&'a TurnInContext],
    pair: &'a [[f32; 5]],
    /// Per example: its turn's and (if given) its context's embedding.
    dense: &'a [ExampleEmbeddings<'a>],
    turn_dim: usize,
    context_dim: usize,
    dense_scale: f32,
}

impl PairEncoder<'_> {
    fn n_turn(&self) -> usize {
        self.turn_vectorizer.n_features()
    }

    fn n_context(&self) -> usize {
        self.context_vectorizer
            .as_ref()
            .map_or(0, TfidfVectorizer::n_features)
    }

    /// First index of the pair features.
    fn pair_offset(&self) -> usize {
        self.n_turn() + self.n_context()
    }

    /// First index of the embeddings.
    fn dense_offset(&self) -> usize {
        self.pair_offset() + PAIR_FEATURES.len()
    }
}

/// The text part of an example's features: `[turn TF-IDF | context TF-IDF
/// | pair features]`, as the discriminator and a saved critic both encode.
fn text_features(
    turn_vectorizer: &TfidfVectorizer,
    context_vectorizer: Option<&TfidfVectorizer>,
    context: &str,
    turn: &str,
    pair: &[f32; 5],
) -> SparseVec {
    let n_turn = turn_vectorizer.n_features();
    let mut x = turn_vectorizer.transform(turn);
    if let Some(v) = context_vectorizer {
        x.append_sparse(n_turn as u32, &v.transform(context), 1.0);
    }
    let n_context = context_vectorizer.map_or(0, TfidfVectorizer::n_features);
    x.append_dense((n_turn + n_context) as u32, pair, 1.0);
    x
}

/// A fitted context-aware discriminator without embeddings: what the
/// realism critic ([`crate::critic`]) saves and scores candidates with.
#[derive(Clone, Debug)]
pub struct PairModel {
    /// TF-IDF of the seeker turn.
    pub turn_vectorizer: TfidfVectorizer,
    /// TF-IDF of the system turn before it (`None`: no context n-gram was
    /// frequent enough).
    pub context_vectorizer: Option<TfidfVectorizer>,
    /// Logistic regression, positive class "simulated".
    pub model: LogReg,
}

impl PairModel {
    /// Probability that `turn`, after `context`, is simulated.
    pub fn proba_simulated(&self, context: &str, turn: &str) -> f64 {
        let x = text_features(
            &self.turn_vectorizer,
            self.context_vectorizer.as_ref(),
            context,
            turn,
            &pair_features(context, turn),
        );
        self.model.predict_proba(&x)
    }
}

impl Encoder for PairEncoder<'_> {
    fn n_features(&self) -> usize {
        // the cosine comes with the context embedding
        let cos = usize::from(self.context_dim > 0);
        self.dense_offset() + self.turn_dim + self.context_dim + cos
    }

    fn encode(&self, i: usize) -> SparseVec {
        let ex = self.examples[i];
        let mut x = text_features(
            &self.turn_vectorizer,
            self.context_vectorizer.as_ref(),
            &ex.context,
            &ex.turn,
            &self.pair[i],
        );
        if let Some((turn, context)) = self.dense[i] {
            let off = self.dense_offset() as u32;
            x.append_dense(off, &l2(turn), self.dense_scale);
            if let Some(c) = context.filter(|c| !c.is_empty()) {
                let off = off + self.turn_dim as u32;
                x.append_dense(off, &l2(c), self.dense_scale);
                let cos = cosine(turn, c);
                x.append_dense(off + self.context_dim as u32, &[cos], 1.0);
            }
        }
        x
    }

    fn feature_name(&self, j: usize) -> Option<String> {
        let (nt, nc) = (self.n_turn(), self.n_context());
        if j < nt {
            return self
                .turn_vectorizer
                .feature_name(j)
                .map(|n| format!("turn:{n}"));
        }
        if j < nt + nc {
            return self
                .context_vectorizer
                .as_ref()?
                .feature_name(j - nt)
                .map(|n| format!("ctx:{n}"));
        }
        if let Some(name) = PAIR_FEATURES.get(j - nt - nc) {
            return Some((*name).to_string());
        }
        let cosine_at = self.dense_offset() + self.turn_dim + self.context_dim;
        (self.context_dim > 0 && j == cosine_at).then(|| COSINE_FEATURE.to_string())
    }
}

/// Checks one side's context embeddings: one per example, each of length
/// `dim` or empty (no context).
fn check_contexts(
    side: &str,
    contexts: &[Vec<f32>],
    examples: &[TurnInContext],
    dim: usize,
) -> Result<(), DiscriminatorError> {
    if contexts.len() != examples.len() {
        return Err(DiscriminatorError::Embeddings(format!(
            "{} {side} context embeddings for {} examples",
            contexts.len(),
            examples.len()
        )));
    }
    if let Some(k) = contexts
        .iter()
        .position(|v| !(v.is_empty() || v.len() == dim))
    {
        return Err(DiscriminatorError::Embeddings(format!(
            "{side} context embedding {k} has {} dimensions, the turns {dim}",
            contexts[k].len()
        )));
    }
    Ok(())
}

/// Trains and cross-validates a real (label 0) vs simulated (label 1)
/// classifier on seeker turns in their context. `dense`, if given, holds the
/// embeddings of the real and the simulated examples respectively;
/// `dialogues`, the dialogue of each example (for
/// [`FoldUnit::Dialogue`](super::discriminator::FoldUnit::Dialogue)).
pub fn discriminate_in_context(
    real: &[TurnInContext],
    sim: &[TurnInContext],
    dense: Option<(PairEmbeddings<'_>, PairEmbeddings<'_>)>,
    dialogues: Option<DialoguePair<'_>>,
    cfg: &DiscriminatorConfig,
) -> Result<DiscriminatorResult, DiscriminatorError> {
    in_context(real, sim, dense, dialogues, cfg).map(|(r, _)| r)
}

/// [`discriminate_in_context`] without embeddings, also returning the
/// model fitted on every (balanced) example: a realism critic and its
/// held-out figures.
pub fn train_in_context(
    real: &[TurnInContext],
    sim: &[TurnInContext],
    cfg: &DiscriminatorConfig,
) -> Result<(DiscriminatorResult, PairModel), DiscriminatorError> {
    in_context(real, sim, None, None, cfg)
}

/// The protocol of [`discriminate_in_context`], with the final model (its
/// text part: with embeddings, those weights are dropped).
fn in_context(
    real: &[TurnInContext],
    sim: &[TurnInContext],
    dense: Option<(PairEmbeddings<'_>, PairEmbeddings<'_>)>,
    dialogues: Option<DialoguePair<'_>>,
    cfg: &DiscriminatorConfig,
) -> Result<(DiscriminatorResult, PairModel), DiscriminatorError> {
    let sample = balance(real.len(), sim.len(), dialogues, cfg)?;
    let (mut turn_dim, mut context_dim) = (0, 0);
    if let Some((r, s)) = dense {
        turn_dim = dense_dim("turn", (r.turns, s.turns), (real.len(), sim.len()))?;
        match (r.contexts, s.contexts) {
            (Some(rc), Some(sc)) => {
                check_contexts("real", rc, real, turn_dim)?;
                check_contexts("simulated", sc, sim, turn_dim)?;
                context_dim = turn_dim;
            }
            (None, None) => {}
            _ => {
                return Err(DiscriminatorError::Embeddings(
                    "context embeddings for one side only".into(),
                ))
            }
        }
    }
    // examples: real ones first, then simulated ones
    let picked = sample
        .real
        .iter()
        .map(|&i| (&real[i], dense.map(|d| (d.0, i))))
        .chain(
            sample
                .sim
                .iter()
                .map(|&i| (&sim[i], dense.map(|d| (d.1, i)))),
        );
    let mut examples: Vec<&TurnInContext> = Vec::with_capacity(2 * sample.n);
    let mut vectors = Vec::with_capacity(2 * sample.n);
    for (ex, emb) in picked {
        examples.push(ex);
        vectors.push(emb.map(|(e, i)| (&e.turns[i], e.contexts.map(|c| &c[i]))));
    }
    let pair: Vec<[f32; 5]> = examples
        .iter()
        .map(|e| pair_features(&e.context, &e.turn))
        .collect();
    let fitted = cross_validate_fitted(&sample, dense.is_some(), cfg, |train| {
        let turns: Vec<&str> = train.iter().map(|&i| examples[i].turn.as_str()).collect();
        let contexts: Vec<&str> = train
            .iter()
            .map(|&i| examples[i].context.as_str())
            .collect();
        // The vectorizer's one failure is an empty vocabulary: no context
        // n-gram frequent enough, so no context block.
        let context_vectorizer = TfidfVectorizer::fit(&contexts, &cfg.tfidf).ok();
        Ok(PairEncoder {
            turn_vectorizer: TfidfVectorizer::fit(&turns, &cfg.tfidf)?,
            context_vectorizer,
            examples: &examples,
            pair: &pair,
            dense: &vectors,
            turn_dim,
            context_dim,
            dense_scale: cfg.dense_scale,
        })
    });
    let (result, encoder, mut model) = fitted?;
    let n_text = encoder.dense_offset();
    model.weights.truncate(n_text);
    let pair = PairModel {
        turn_vectorizer: encoder.turn_vectorizer,
        context_vectorizer: encoder.context_vectorizer,
        model,
    };
    Ok((result, pair))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(context: &str, turn: &str) -> TurnInContext {
        TurnInContext {
            context: context.into(),
            turn: turn.into(),
        }
    }

    fn fast() -> DiscriminatorConfig {
        DiscriminatorConfig {
            n_bootstrap: 50,
            ..DiscriminatorConfig::default()
        }
    }

    #[test]
    fn each_seeker_turn_gets_the_system_turn_just_before_it() {
        use crate::eval::loaders::EvalDialogue;
        let turn = |seeker: bool, text: &str| EvalTurn {
            seeker,
            text: text.into(),
            intents: Vec::new(),
        };
        let dialogue = |turns: Vec<EvalTurn>| EvalDialogue {
            id: "d".into(),
            turns,
            latents: serde_json::Value::Null,
            profile: Default::default(),
        };
        let c = Corpus {
            dialogues: vec![
                dialogue(vec![
                    turn(true, "hi"),
                    turn(false, "what do you like?"),
                    turn(true, "comedies"),
                    turn(true, "and you?"),
                ]),
                dialogue(vec![turn(false, "hello"), turn(true, "hey")]),
            ],
        };
        // Speaking first or right after itself, the seeker has no context.
        assert_eq!(
            turns_in_context(&c),
            [
                pair("", "hi"),
                pair("what do you like?", "comedies"),
                pair("", "and you?"),
                pair("hello", "hey"),
            ]
        );
    }

    #[test]
    fn pair_features_measure_overlap_echo_length_and_absence() {
        let f = pair_features(
            "How about The Shining, a classic horror movie from 1980?",
            "The Shining, a classic horror movie from 1980? Seen it.",
        );
        // turn words: the shining a classic horror movie from 1980 seen it (10);
        // context adds how about (12 in all); 8 shared.
        assert!((f[0] - 8.0 / 12.0).abs() < 1e-6, "{f:?}");
        assert!((f[1] - 8.0 / 10.0).abs() < 1e-6, "{f:?}");
        assert_eq!((f[2], f[4]), (1.0, 0.0));
        assert!((f[3] - 10.0 / 20.0).abs() < 1e-6, "{f:?}");
        let none = pair_features("", "Hi, I want a comedy.");
        assert_eq!(none, [0.0, 0.0, 0.0, 1.0, 1.0]);
        assert_eq!(pair_features("", ""), [0.0, 0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn names_cover_every_block_and_embeddings_are_checked() {
        let real: Vec<TurnInContext> = (0..20)
            .map(|i| pair(&format!("try film {}", i % 4), &format!("maybe {}", i % 3)))
            .collect();
        let sim = real.clone();
        let turns: Vec<Vec<f32>> = (0..20).map(|i| vec![1.0, (i % 5) as f32]).collect();
        let contexts: Vec<Vec<f32>> = (0..20)
            .map(|i| if i == 0 { Vec::new() } else { vec![0.5, 1.0] })
            .collect();
        let side = PairEmbeddings {
            turns: &turns,
            contexts: Some(&contexts),
        };
        let r = discriminate_in_context(&real, &sim, Some((side, side)), None, &fast()).unwrap();
        assert!(r.used_dense);
        let names: Vec<&str> = r
            .top_simulated
            .iter()
            .chain(&r.top_real)
            .map(|(n, _)| n.as_str())
            .collect();
        for prefix in ["turn:", "ctx:", "pair:"] {
            assert!(names.iter().any(|n| n.starts_with(prefix)), "{names:?}");
        }
        // Only a context embedding of the turns' length, or none, is taken.
        let bad: Vec<Vec<f32>> = (0..20).map(|_| vec![1.0]).collect();
        let wrong = PairEmbeddings {
            turns: &turns,
            contexts: Some(&bad),
        };
        assert!(discriminate_in_context(&real, &sim, Some((side, wrong)), None, &fast()).is_err());
        let turns_only = PairEmbeddings {
            turns: &turns,
            contexts: None,
        };
        assert!(
            discriminate_in_context(&real, &sim, Some((side, turns_only)), None, &fast()).is_err()
        );
        assert!(discriminate_in_context(
            &real,
            &sim,
            Some((turns_only, turns_only)),
            None,
            &fast()
        )
        .is_ok());
        // Without any context, the context block is left out, not an error.
        let bare: Vec<TurnInContext> = real.iter().map(|p| pair("", &p.turn)).collect();
        assert!(discriminate_in_context(&bare, &bare, None, None, &fast()).is_ok());
        assert!(discriminate_in_context(&bare[..1], &bare, None, None, &fast()).is_err());
    }
}
