//! One conversation's state machine and its record.
//!
//! A conversation alternates: draw the turn latents, ask for the user's
//! message, hand it to the system, take the reply, and so on until a rule
//! ends it. It never blocks: each step returns the next generation it needs,
//! so the simulate loop can keep all conversations in one batch.
//!
//! A replayed conversation ([`Conversation::with_replay`]) follows a real
//! dialogue instead: its turn latents come from the real seeker turns, the
//! system replays the real recommender, and the history every prompt shows
//! is the real one (teacher forcing): a generated user message goes into the
//! record beside the real turn it stands for, never into later prompts.

use std::collections::BTreeMap;

use rand::Rng;
use serde_json::Value;

use crate::backend::sampler::SamplingParams;
use crate::backend::{FinishReason, Generation, GenerationRequest, Prompt};
use crate::chat::Side;
use crate::corpus::pool::{Excluded, Pool, COPY_NGRAM};
use crate::latent::{SessionLatents, TurnDecision, TurnLatents, TurnPlanner};
use crate::prompt::{
    transcript_prefix, user_messages, user_profile, user_system_prompt, user_transcript,
    HistoryTurn,
};
use crate::rng::{stream_rng, stream_seed, Stream};
use crate::scenario::catalog::Catalog;
use crate::scenario::{PromptMode, Scenario, FIRST_WORD_VAR, LENGTH_VAR, STYLE_VAR};
use crate::session::best_of::{
    choose, combined_scores, length_fit, CriticCounts, GenreRates, IntentReader, TurnScorer,
};
use crate::session::guard;
use crate::session::record::{ConversationRecord, EndReason, Outcome, RunIdentity, TurnRecord};
use crate::session::replay::ReplayScript;
use crate::session::style::{restyle, StyleRates};
use crate::session::system::{
    without_note_copy, System, SystemAction, SystemError, SystemReply, SystemTurn,
};

/// A turn's text when the prompt opened it with `first_word`
/// (`[first_word]`): the word, then what the model wrote after it. The
/// engine trims the generation's leading space, so a continuation that
/// starts with a letter or digit is read as a new word (the model's
/// vocabulary starts a word with its space) and one that starts with
/// punctuation (`,`, `!`, `'m`) as attached to the drawn word.
pub fn with_first_word(first_word: Option<&str>, generated: &str) -> String {
    match first_word {
        None => generated.to_string(),
        Some(word) => match generated.chars().next() {
            None => word.to_string(),
            Some(c) if c.is_alphanumeric() => format!("{word} {generated}"),
            Some(_) => format!("{word}{generated}"),
        },
    }
}

/// Whether a continuation of a drawn first word makes it another word:
/// it starts with an apostrophe ("I" + "'m" is "I'm").
pub fn changes_first_word(generated: &str) -> bool {
    generated.starts_with(['\'', '\u{2019}'])
}

/// `text` cut at the first sentence end (`.`, `!`, `?`, closing quotes or
/// brackets after it allowed) that comes at or after its `words`-th word;
/// the whole text when no sentence ends there. A turn aiming at a length
/// stops where a person would, not in the middle of a sentence.
///
/// `truncated`: the generation ran out of tokens, so its last sentence is
/// unfinished. Then, when no sentence ends at or past the target, the text
/// is cut back to its last sentence end, if it has one: a complete short
/// turn reads as a person's, a sentence broken off mid-word does not. With
/// no sentence end at all, it is cut at a clause end (`,` `;` `:` or a
/// dash) instead, the first at or past the target, else the last, without
/// the mark: "Hi, I am looking for a" reads as a person's "Hi", the
/// fragment does not (in IARD replay small talk ran 1.45x the real length
/// before this cut, 1.32x after). A text with neither is kept whole.
pub fn cut_to_length(text: &str, words: u32, truncated: bool) -> &str {
    let ends = Ends::of(text, words);
    if let Some(end) = ends.sentence_past {
        return text[..end].trim_end();
    }
    match (ends.last_sentence, ends.clause_past.or(ends.last_clause)) {
        (Some(end), _) if truncated => text[..end].trim_end(),
        (None, Some(end)) if truncated => {
            let clause = text[..end].trim_end_matches(CLAUSE_MARKS).trim_end();
            if clause.is_empty() {
                text
            } else {
                clause
            }
        }
        _ => text,
    }
}

/// Whether a generation is a sentence broken off: it ran out of tokens
/// (`truncated`) and has no sentence end, message join or clause end
/// anywhere, so [`cut_to_length`] has nowhere to cut it ("I would like to
/// watch a"). No person sends that; the role guard's `unfinished` test.
pub fn is_unfinished(text: &str, truncated: bool) -> bool {
    let ends = Ends::of(text, u32::MAX);
    truncated && ends.last_sentence.is_none() && ends.last_clause.is_none()
}

/// Where a text's sentences and clauses end (byte offsets), relative to a
/// target of `words` words.
struct Ends {
    /// The first sentence end at or past the target.
    sentence_past: Option<usize>,
    /// The last sentence end (before the target, when one is past it).
    last_sentence: Option<usize>,
    /// The first clause end at or past the target.
    clause_past: Option<usize>,
    /// The last clause end.
    last_clause: Option<usize>,
}

impl Ends {
    fn of(text: &str, words: u32) -> Ends {
        let mut ends = Ends {
            sentence_past: None,
            last_sentence: None,
            clause_past: None,
            last_clause: None,
        };
        let mut count = 0u32;
        let mut offset = 0;
        for token in text.split_inclusive(char::is_whitespace) {
            let start = offset;
            offset += token.len();
            let word = token.trim_end();
            if word.is_empty() {
                continue;
            }
            // A message join inside the word ("much...You"): what comes
            // before the dots is a whole message, so a sentence ends there;
            // a cut keeps neither the dots nor what follows them.
            let mut rest_start = 0;
            for (dots_start, dots_end) in message_joins(word) {
                if dots_start > rest_start {
                    count += 1;
                    ends.last_sentence = Some(start + dots_start);
                    if count >= words {
                        ends.sentence_past = ends.last_sentence;
                        return ends;
                    }
                }
                rest_start = dots_end;
            }
            let rest = &word[rest_start..];
            if rest.is_empty() {
                continue;
            }
            count += 1;
            let bare = rest.trim_end_matches(['"', '\'', ')', ']', '”', '’']);
            if bare.ends_with(['.', '!', '?']) {
                ends.last_sentence = Some(offset);
                if count >= words {
                    ends.sentence_past = ends.last_sentence;
                    return ends;
                }
            } else if bare.ends_with(CLAUSE_MARKS) {
                let end = offset - (token.len() - word.len());
                if count >= words && ends.clause_past.is_none() {
                    ends.clause_past = Some(end);
                }
                ends.last_clause = Some(end);
            }
        }
        ends
    }
}

/// Byte ranges of the message joins in one whitespace-free `word`: runs of
/// two or more dots, or an ellipsis character, as IARD writes a seeker's
/// consecutive messages ("enjoyed it...One of"). A run that ends the word
/// counts too ("Hello..." before a space).
fn message_joins(word: &str) -> Vec<(usize, usize)> {
    let mut joins = Vec::new();
    let mut run: Option<(usize, usize)> = None;
    for (i, c) in word.char_indices() {
        let end = i + c.len_utf8();
        // A dot right after a run of dots extends it; anything else ends it.
        if let Some((start, _)) = run.filter(|&(_, e)| c == '.' && e == i) {
            run = Some((start, end));
            continue;
        }
        if let Some(r) = run.take().filter(|r| is_join(word, *r)) {
            joins.push(r);
        }
        if matches!(c, '.' | '…') {
            run = Some((i, end));
        }
    }
    if let Some(r) = run.filter(|r| is_join(word, *r)) {
        joins.push(r);
    }
    joins
}

/// Whether a run of dots `(start, end)` of `word` is a join: two dots or
/// more, or the ellipsis character.
fn is_join(word: &str, (start, end): (usize, usize)) -> bool {
    end - start >= 2 || word[start..end].starts_with('…')
}

/// Marks that end a clause: where [`cut_to_length`] cuts a turn that ran
/// out of tokens before any sentence ended.
const CLAUSE_MARKS: [char; 5] = [',', ';', ':', '-', '—'];

/// What [`Conversation::pick`] decided about a turn's candidates.
enum Pick {
    /// Keep this candidate, with its final text.
    Keep(Generation, String),
    /// Every candidate was rejected: draw again.
    Again(GenerationRequest),
}

/// What a conversation needs next.
#[derive(Debug)]
pub enum Next {
    /// Generate this.
    Generate(GenerationRequest),
    /// Nothing new yet: a best-of-N candidate landed while the others
    /// still decode, or the system answers later ([`SystemAction::Pending`];
    /// then call [`Conversation::on_system_reply`]).
    Wait,
    /// It is over.
    Done(EndReason),
}

/// A conversation in progress.
pub struct Conversation<'a> {
    scenario: &'a Scenario,
    catalog: Option<&'a Catalog>,
    index: u64,
    session_seed: u64,
    latents: SessionLatents,
    user_system: String,
    planner: TurnPlanner<'a>,
    user_sampling: SamplingParams,
    turns: Vec<TurnRecord>,
    user_turns: u32,
    replies: u32,
    current: Option<TurnLatents>,
    /// Note of the generation in flight, kept with its turn when it lands.
    pending_note: Option<String>,
    /// The real dialogue this conversation replays.
    replay: Option<&'a ReplayScript>,
    /// The user request in flight, to draw again if the guard rejects it.
    user_request: Option<GenerationRequest>,
    /// Resamples of the user turn in flight so far.
    resamples: u8,
    /// What the guard rejected, by reason, and how many turns it kept
    /// after its last resample.
    guard: GuardCounts,
    /// Real dialogues for exemplars and the copy guard.
    pool: Option<&'a Pool>,
    /// Transcript prompting: the session's prefix (real dialogues and its
    /// profile line).
    transcript: Option<String>,
    /// The real seeker's typing rates the session draws (`[style]`).
    style: Option<StyleRates>,
    /// Scores each user turn's candidates (best-of-N).
    critic: Option<&'a dyn TurnScorer>,
    /// Reads each candidate's drawn intent (best-of-N's control half), and
    /// the power its probability is raised to.
    intent_reader: Option<(&'a dyn IntentReader, f64)>,
    /// How often real seekers name a genre by intent, and the power of a
    /// candidate's factor (`[critic] genre_weight`).
    genre_rates: Option<(&'a GenreRates, f64)>,
    /// Candidates per user turn (1: no forks).
    best_of: u32,
    /// The candidates of the user turn in flight, by candidate index.
    candidates: Vec<Option<Generation>>,
    /// What the critic scored.
    critic_counts: CriticCounts,
    /// Set while the user turn in flight is a leaving seeker's last
    /// (`conversation.closing_turn`): how the conversation ends after it.
    closing: Option<EndReason>,
}

/// What the role guard did in one conversation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GuardCounts {
    /// Rejected draws by reason ([`guard::Rejection::name`]).
    pub rejected: BTreeMap<&'static str, u64>,
    /// Turns kept although their last allowed draw was rejected too.
    pub kept_rejected: u64,
}

impl<'a> Conversation<'a> {
    /// Start session `index` with its drawn latents.
    pub fn new(
        scenario: &'a Scenario,
        catalog: Option<&'a Catalog>,
        planner: TurnPlanner<'a>,
        index: u64,
        session_seed: u64,
        latents: SessionLatents,
        user_sampling: SamplingParams,
    ) -> Result<Self, SystemError> {
        let mut latents = latents;
        let style = (!scenario.style.is_empty()).then(|| {
            let mut rng = stream_rng(session_seed, Stream::Style);
            let rates = scenario.style[rng.random_range(0..scenario.style.len())];
            latents.values.insert(
                STYLE_VAR.to_string(),
                serde_json::to_value(rates).unwrap_or_default(),
            );
            rates
        });
        let user_system = user_system_prompt(scenario, &latents)?;
        let mut turns = Vec::new();
        if let Some(opening) = &scenario.conversation.opening {
            turns.push(TurnRecord::fixed(Side::Assistant, opening.clone()));
        }
        Ok(Conversation {
            scenario,
            catalog,
            index,
            session_seed,
            latents,
            user_system,
            planner,
            user_sampling,
            turns,
            user_turns: 0,
            replies: 0,
            current: None,
            pending_note: None,
            replay: None,
            user_request: None,
            resamples: 0,
            guard: GuardCounts::default(),
            pool: None,
            transcript: None,
            style,
            critic: None,
            intent_reader: None,
            genre_rates: None,
            best_of: 1,
            candidates: Vec::new(),
            critic_counts: CriticCounts::default(),
            closing: None,
        })
    }

    /// Decode `best_of` candidates of every user turn and keep the one
    /// `critic` scores most human (with `best_of` 1 the critic only
    /// scores, for the stats).
    pub fn with_critic(mut self, critic: &'a dyn TurnScorer, best_of: u32) -> Self {
        self.critic = Some(critic);
        self.best_of = best_of.max(1);
        self
    }

    /// Weigh the critic's score of every candidate by how clearly `reader`
    /// reads the turn's drawn intent in it, to the power `weight` (only
    /// with a critic).
    pub fn with_intent_reader(mut self, reader: &'a dyn IntentReader, weight: f64) -> Self {
        self.intent_reader = Some((reader, weight));
        self
    }

    /// Weigh the critic's score of every candidate by the share of real
    /// seekers' turns of its intent that name a genre as it does (or do
    /// not as it does not), to the power `weight` (only with a critic and
    /// a catalog, whose genres a turn names).
    pub fn with_genre_rates(mut self, rates: &'a GenreRates, weight: f64) -> Self {
        self.genre_rates = Some((rates, weight));
        self
    }

    /// Seeds of the further candidates of user turn draw `draw` (0: the
    /// first, `r`: the guard's `r`-th resample).
    fn fork_seeds(&self, draw: u8) -> Vec<u64> {
        (1..self.best_of)
            .map(|k| {
                let k = u8::try_from(k).unwrap_or(u8::MAX);
                stream_seed(
                    self.session_seed,
                    Stream::UserCandidate(self.user_turns, draw, k),
                )
            })
            .collect()
    }

    /// The dialogue this conversation replays, which the pool must not show.
    fn excluded(&self) -> Excluded<'a> {
        self.replay
            .map(|s| (s.source.corpus, s.source.dialogue_id.as_str()))
    }

    /// Use the scenario's `pool` (after [`Conversation::with_replay`]): its
    /// exemplars and copy guard and, in transcript prompting, the first
    /// `dialogues` of `prefix_candidates` that are not the replayed one.
    pub fn with_pool(
        mut self,
        pool: &'a Pool,
        prefix_candidates: &[usize],
    ) -> Result<Self, SystemError> {
        self.pool = Some(pool);
        if self.scenario.user_prompt == PromptMode::Transcript {
            let excluded = self.excluded();
            let shown: Vec<_> = prefix_candidates
                .iter()
                .map(|&i| pool.dialogue(i))
                .filter(|d| excluded.is_none_or(|(kind, id)| d.corpus != kind || d.id != id))
                .take(self.scenario.transcript.dialogues)
                .collect();
            let profile = user_profile(self.scenario, &self.latents)?;
            self.transcript = Some(transcript_prefix(self.scenario, &shown, &profile));
        }
        Ok(self)
    }

    /// Replay `script`: its opening (the recommender's words before the
    /// seeker's first turn) replaces the scenario's, its seeker turns
    /// replace the turn planner, and the conversation ends with them.
    pub fn with_replay(mut self, script: &'a ReplayScript) -> Self {
        self.turns.clear();
        if let Some(opening) = &script.opening {
            self.turns
                .push(TurnRecord::fixed(Side::Assistant, opening.clone()));
        }
        self.replay = Some(script);
        self
    }

    fn history(&self) -> Vec<HistoryTurn<'_>> {
        let tag = self.scenario.transcript.tag.as_ref();
        self.turns
            .iter()
            .map(|t| HistoryTurn {
                side: t.role,
                // Teacher forcing: a replayed turn shows what was really said.
                text: t.real.as_ref().map_or(t.text.as_str(), |r| r.text.as_str()),
                note: t.note.as_deref(),
                tag: tag.and_then(|v| t.latents.get(v)).map(String::as_str),
            })
            .collect()
    }

    /// The user's next turn: draw its latents and build its request.
    pub fn user_turn(&mut self) -> Result<Next, SystemError> {
        let decision = match self.replay {
            Some(script) => match script.seeker_turns.get(self.user_turns as usize) {
                Some(real) => TurnDecision::Speak(self.planner.replayed(&real.intents)),
                None => return Ok(Next::Done(EndReason::ReplayEnd)),
            },
            None => {
                let mut rng = stream_rng(self.session_seed, Stream::TurnLatents(self.user_turns));
                // A question is a `?` in the system's last turn: the same
                // test `usersim fit` fitted the tilt with.
                let asked = self.last_text_of(Side::Assistant).map(|t| t.contains('?'));
                let conv = &self.scenario.conversation;
                let out_of_patience = self.out_of_patience();
                let leaving = if out_of_patience {
                    Some(EndReason::UserLeft)
                } else if self.user_turns + 1 == conv.max_user_turns {
                    Some(EndReason::TurnLimit)
                } else {
                    None
                };
                match leaving.filter(|_| conv.closing_turn) {
                    Some(reason) => {
                        let decision = self.planner.closing(self.user_turns, asked, &mut rng);
                        if matches!(decision, TurnDecision::Speak(_)) {
                            self.closing = Some(reason);
                        }
                        decision
                    }
                    None => {
                        let decision = self.planner.next(self.user_turns, asked, &mut rng);
                        if matches!(decision, TurnDecision::Speak(_)) && out_of_patience {
                            // Drawn first, so patience on or off leaves every
                            // other turn's draws as they were.
                            return Ok(Next::Done(EndReason::UserLeft));
                        }
                        decision
                    }
                }
            }
        };
        match decision {
            TurnDecision::End => Ok(Next::Done(
                if self.user_turns >= self.scenario.conversation.max_user_turns {
                    EndReason::TurnLimit
                } else {
                    EndReason::UserLeft
                },
            )),
            TurnDecision::Speak(mut turn) => {
                let mut sampling = self.user_sampling.clone();
                if let Some(length) = &self.scenario.length {
                    // Its own stream: the length latent on or off leaves
                    // every other draw as it was.
                    let mut rng =
                        stream_rng(self.session_seed, Stream::TurnLength(self.user_turns));
                    let words = length.draw(
                        turn.values.get(&length.of).map(String::as_str),
                        &self.latents.values,
                        &mut rng,
                    );
                    turn.values
                        .insert(LENGTH_VAR.to_string(), words.to_string());
                    if length.enforce {
                        sampling.max_tokens = length.budget(words, sampling.max_tokens);
                    }
                }
                if let Some(model) = &self.scenario.first_word {
                    // Its own stream, as the length's: on or off, every
                    // other draw stays as it was.
                    let mut rng =
                        stream_rng(self.session_seed, Stream::TurnFirstWord(self.user_turns));
                    let value = turn.values.get(&model.of).map(String::as_str);
                    if let Some(word) = model.draw(value, self.user_turns == 0, &mut rng) {
                        turn.values.insert(FIRST_WORD_VAR.to_string(), word);
                    }
                }
                let (prompt, note) = match &self.transcript {
                    Some(prefix) => {
                        // A turn is one line of the transcript.
                        sampling.stop_at_line_end();
                        let text = user_transcript(
                            self.scenario,
                            prefix,
                            &self.history(),
                            &turn,
                            self.closing.is_some(),
                        );
                        (Prompt::Text(text), String::new())
                    }
                    None => {
                        let exemplars = self.exemplars(&turn);
                        let (messages, note) = user_messages(
                            self.scenario,
                            &self.user_system,
                            &self.latents,
                            &self.history(),
                            (&turn, &exemplars),
                            (self.user_turns, self.closing.is_some()),
                        )?;
                        (Prompt::Chat(messages), note)
                    }
                };
                self.current = Some(turn);
                self.pending_note = Some(note.clone()).filter(|n| !n.is_empty());
                self.resamples = 0;
                let request = GenerationRequest {
                    conversation: self.index,
                    side: Side::User,
                    prompt,
                    sampling,
                    seed: stream_seed(self.session_seed, Stream::UserSampling(self.user_turns)),
                    forks: self.fork_seeds(0),
                    candidate: 0,
                    note,
                };
                self.candidates = vec![None; self.best_of as usize];
                if self.scenario.guard.is_some() {
                    self.user_request = Some(request.clone());
                }
                Ok(Next::Generate(request))
            }
        }
    }

    /// Take a finished generation and say what comes next.
    pub fn on_generation(
        &mut self,
        g: Generation,
        system: &mut dyn System,
    ) -> Result<Next, SystemError> {
        match g.side {
            Side::User => {
                let Some(candidates) = self.collect_candidate(g) else {
                    return Ok(Next::Wait);
                };
                let turn = self.current.take().unwrap_or_default();
                let intent = turn.intent().map(str::to_string);
                let (chosen, text) = match self.pick(candidates, &turn) {
                    Pick::Keep(g, text) => (g, text),
                    Pick::Again(request) => {
                        self.current = Some(turn);
                        return Ok(Next::Generate(request));
                    }
                };
                let g = chosen;
                let context_full = g.finish == FinishReason::ContextFull;
                let real = self
                    .replay
                    .and_then(|s| s.seeker_turns.get(self.user_turns as usize))
                    .cloned();
                let replayed = self.replay.is_some();
                self.turns.push(TurnRecord {
                    role: Side::User,
                    text,
                    latents: turn.values,
                    tokens: g.completion_tokens,
                    real,
                    items: Vec::new(),
                    note: self.pending_note.take(),
                });
                self.user_turns += 1;
                if context_full {
                    return Ok(Next::Done(EndReason::ContextFull));
                }
                if let Some(script) = self.replay {
                    // The real dialogue may end on the seeker's words.
                    if script.replies.len() < self.user_turns as usize {
                        return Ok(Next::Done(EndReason::ReplayEnd));
                    }
                }
                // A replay ends with its real dialogue, not on intents.
                if let Some(intent) = intent.as_ref().filter(|_| !replayed) {
                    let conv = &self.scenario.conversation;
                    if conv.end_intents.contains(intent) {
                        return Ok(Next::Done(EndReason::EndIntent));
                    }
                    if conv.accept_intents.contains(intent) && self.target_was_offered() {
                        return Ok(Next::Done(EndReason::TargetAccepted));
                    }
                }
                if let Some(reason) = self.closing.take() {
                    return Ok(Next::Done(reason));
                }
                self.ask_system(system)
            }
            Side::Assistant => {
                let context_full = g.finish == FinishReason::ContextFull;
                let text = match self.pending_note.as_deref() {
                    Some(note) => without_note_copy(&g.text, note),
                    None => g.text,
                };
                self.push_reply(text, g.completion_tokens, None);
                if context_full {
                    return Ok(Next::Done(EndReason::ContextFull));
                }
                self.user_turn()
            }
        }
    }

    /// The system's next message: what it answers to the conversation so
    /// far (nothing yet: its opening).
    fn ask_system(&mut self, system: &mut dyn System) -> Result<Next, SystemError> {
        let history = self.history();
        let action = system.respond(&SystemTurn {
            conversation: self.index,
            history: &history,
            latents: &self.latents.values,
            reply_index: self.replies,
            seed: stream_seed(self.session_seed, Stream::SystemSampling(self.replies)),
        })?;
        match action {
            SystemAction::Generate(req) => {
                self.pending_note = Some(req.note.clone()).filter(|n| !n.is_empty());
                Ok(Next::Generate(req))
            }
            SystemAction::Reply(text) => {
                self.push_reply(text, 0, None);
                self.user_turn()
            }
            SystemAction::Pending => Ok(Next::Wait),
        }
    }

    /// The conversation's first request: the system's opening when the
    /// session draws one (`conversation.system_opens`, from a stream of its
    /// own) and the system can write one, else the user's first turn. A
    /// replay opens as its real dialogue did, and a fixed `opening` is
    /// already in place.
    pub fn start(&mut self, system: &mut dyn System) -> Result<Next, SystemError> {
        let share = self.scenario.conversation.system_opens;
        if share > 0.0 && self.replay.is_none() && self.turns.is_empty() {
            let mut rng = stream_rng(self.session_seed, Stream::SystemOpens);
            if rng.random::<f64>() < share && system.opens() {
                return self.ask_system(system);
            }
        }
        self.user_turn()
    }

    /// Whether the seeker has spent their patience: as many user turns as
    /// the session's `conversation.patience` variable says.
    fn out_of_patience(&self) -> bool {
        let Some(var) = &self.scenario.conversation.patience else {
            return false;
        };
        self.latents
            .values
            .get(var)
            .and_then(Value::as_u64)
            .is_some_and(|p| u64::from(self.user_turns) >= p)
    }

    /// Real seeker turns of the turn's intent for its instruction, drawn
    /// from the turn's own stream (none without a pool or `exemplars`).
    fn exemplars(&self, turn: &TurnLatents) -> Vec<&'a str> {
        let (Some(pool), Some(spec), Some(intent)) =
            (self.pool, self.scenario.pool.as_ref(), turn.intent())
        else {
            return Vec::new();
        };
        if spec.exemplars == 0 {
            return Vec::new();
        }
        let mut rng = stream_rng(self.session_seed, Stream::Exemplars(self.user_turns));
        pool.draw_exemplars(intent, spec.exemplars, self.excluded(), &mut rng)
    }

    /// Keep `g` as candidate `g.candidate` of the turn in flight; all of
    /// them, in candidate order, once the last one has landed.
    fn collect_candidate(&mut self, g: Generation) -> Option<Vec<Generation>> {
        if self.candidates.len() <= 1 {
            return Some(vec![g]);
        }
        let k = g.candidate as usize;
        if let Some(slot) = self.candidates.get_mut(k) {
            *slot = Some(g);
        }
        if self.candidates.iter().any(Option::is_none) {
            return None;
        }
        let all = std::mem::take(&mut self.candidates);
        self.candidates = vec![None; all.len()];
        Some(all.into_iter().flatten().collect())
    }

    /// A candidate's text as the record would keep it: cut to the turn's
    /// target length, restyled (every candidate with the turn's same style
    /// stream, so they differ only in what the model wrote).
    fn final_text(&self, g: &Generation, turn: &TurnLatents) -> String {
        let target = turn
            .length()
            .filter(|_| self.scenario.length.as_ref().is_some_and(|l| l.enforce));
        let written = with_first_word(turn.first_word(), &g.text);
        let mut text = match target {
            Some(words) => {
                cut_to_length(&written, words, g.finish == FinishReason::Length).to_string()
            }
            None => written,
        };
        if let Some(rates) = &self.style {
            let mut rng = stream_rng(self.session_seed, Stream::TurnStyle(self.user_turns));
            text = restyle(&text, rates, &mut rng);
        }
        text
    }

    /// The role guard and the critic over a turn's candidates: the most
    /// human candidate the guard lets through, or, when it rejects them
    /// all and resamples remain, a request for a new draw (from the turn's
    /// next resample streams). After the last resample the most human of
    /// all is kept.
    fn pick(&mut self, candidates: Vec<Generation>, turn: &TurnLatents) -> Pick {
        let texts: Vec<String> = candidates
            .iter()
            .map(|g| self.final_text(g, turn))
            .collect();
        let mut allowed = Vec::with_capacity(texts.len());
        for (i, (g, text)) in candidates.iter().zip(&texts).enumerate() {
            // A turn that filled the context ends the conversation as it is.
            let rejection = (g.finish != FinishReason::ContextFull)
                .then(|| self.rejection(text))
                .flatten()
                .or_else(|| {
                    self.broken_off(g, turn)
                        .then_some(guard::Rejection::Unfinished)
                });
            match rejection {
                Some(r) => *self.guard.rejected.entry(r.name()).or_default() += 1,
                None => allowed.push(i),
            }
        }
        if allowed.is_empty() {
            let max = self.scenario.guard.as_ref().map_or(0, |g| g.max_resamples);
            if self.resamples < max {
                if let Some(mut request) = self.user_request.clone() {
                    self.resamples += 1;
                    request.seed = stream_seed(
                        self.session_seed,
                        Stream::UserResample(self.user_turns, self.resamples),
                    );
                    request.forks = self.fork_seeds(self.resamples);
                    self.candidates = vec![None; self.best_of as usize];
                    return Pick::Again(request);
                }
            }
            self.guard.kept_rejected += 1;
            allowed = (0..texts.len()).collect();
        }
        if turn.first_word().is_some() {
            // A candidate that made the drawn word another ("I" + "'m")
            // is kept only when all do: real seekers open with "I" ten
            // times as often as with "I'm", and the draw already gives each
            // its share.
            let keeping: Vec<usize> = allowed
                .iter()
                .copied()
                .filter(|&i| !changes_first_word(&candidates[i].text))
                .collect();
            if !keeping.is_empty() {
                allowed = keeping;
            }
        }
        // Scored only once a round is kept: a round the guard rejects
        // whole is drawn again and its scores would be thrown away.
        let context = self
            .turns
            .last()
            .filter(|t| t.role == Side::Assistant)
            .map_or("", |t| t.text.as_str());
        let scores: Option<Vec<f64>> = self
            .critic
            .map(|c| texts.iter().map(|t| c.score(context, t)).collect());
        let intent_read: Option<Vec<f64>> = match (self.intent_reader, turn.intent()) {
            (Some((r, _)), Some(intent)) if scores.is_some() => texts
                .iter()
                .map(|t| r.read(intent, t))
                .collect::<Option<Vec<f64>>>(),
            _ => None,
        };
        let length_weight = self
            .scenario
            .critic
            .as_ref()
            .map_or(0.0, |c| c.length_weight);
        let length_fits: Option<Vec<f64>> = match turn.length() {
            Some(target) if scores.is_some() && length_weight > 0.0 => Some(
                texts
                    .iter()
                    .map(|t| length_fit(t.split_whitespace().count(), target))
                    .collect(),
            ),
            _ => None,
        };
        let genre_fits: Option<Vec<f64>> = match (self.genre_rates, self.catalog) {
            (Some((rates, weight)), Some(catalog)) if scores.is_some() && weight > 0.0 => Some(
                texts
                    .iter()
                    .map(|t| rates.fit(turn.intent(), !catalog.genres_in(t).is_empty()))
                    .collect(),
            ),
            _ => None,
        };
        let mut factors: Vec<(&[f64], f64)> = Vec::new();
        if let Some(p) = &intent_read {
            factors.push((p, self.intent_weight()));
        }
        if let Some(f) = &length_fits {
            factors.push((f, length_weight));
        }
        if let (Some(f), Some((_, weight))) = (&genre_fits, self.genre_rates) {
            factors.push((f, weight));
        }
        let choice_scores = scores.as_deref().map(|h| combined_scores(h, &factors));
        let best = choose(choice_scores.as_deref(), &allowed).unwrap_or(0);
        for (counts, values) in [
            (&mut self.critic_counts.score, &scores),
            (&mut self.critic_counts.intent, &intent_read),
            (&mut self.critic_counts.length, &length_fits),
            (&mut self.critic_counts.genre, &genre_fits),
        ] {
            if let Some(values) = values {
                counts.record(values, best);
            }
        }
        let text = texts.into_iter().nth(best).unwrap_or_default();
        let g = candidates
            .into_iter()
            .nth(best)
            .expect("best is a candidate's index");
        Pick::Keep(g, text)
    }

    /// The power of the intent reader's probability in the choice.
    fn intent_weight(&self) -> f64 {
        self.intent_reader.map_or(0.0, |(_, w)| w)
    }

    /// The text of `side`'s latest turn so far.
    fn last_text_of(&self, side: Side) -> Option<&str> {
        self.turns
            .iter()
            .rev()
            .find(|t| t.role == side)
            .map(|t| t.text.as_str())
    }

    /// Why the role guard (and the copy guard) rejects a user turn's text,
    /// if it does; never without a `[guard]`.
    fn rejection(&self, text: &str) -> Option<guard::Rejection> {
        self.scenario.guard.as_ref()?;
        let system_before = self.last_text_of(Side::Assistant);
        let own_before = self.last_text_of(Side::User);
        guard::check(text, system_before, own_before)
            .or_else(|| self.copies(text).then_some(guard::Rejection::Copy))
    }

    /// The unfinished test (`[guard] unfinished = true`): whether `g` ran
    /// out of tokens before any sentence or clause ended. Read on the
    /// generation, not the cut text: the cut only shortens a turn that has
    /// an end to cut at.
    fn broken_off(&self, g: &Generation, turn: &TurnLatents) -> bool {
        self.scenario.guard.as_ref().is_some_and(|s| s.unfinished)
            && is_unfinished(
                &with_first_word(turn.first_word(), &g.text),
                g.finish == FinishReason::Length,
            )
    }

    /// The copy guard: whether `text` shares a word 8-gram with a seeker
    /// turn of the pool or with the real turn it stands for.
    fn copies(&self, text: &str) -> bool {
        if !self.scenario.guard.as_ref().is_some_and(|g| g.copy) {
            return false;
        }
        let real = self
            .replay
            .and_then(|s| s.seeker_turns.get(self.user_turns as usize));
        self.pool.is_some_and(|p| p.copies(text))
            || real.is_some_and(|r| guard::shares_ngram(text, &r.text, COPY_NGRAM))
    }

    /// What the role guard did so far.
    pub fn guard_counts(&self) -> &GuardCounts {
        &self.guard
    }

    /// What the critic scored so far.
    pub fn critic_counts(&self) -> &CriticCounts {
        &self.critic_counts
    }

    /// Take the answer of a system that answered [`SystemAction::Pending`]
    /// and say what comes next.
    pub fn on_system_reply(&mut self, reply: SystemReply) -> Result<Next, SystemError> {
        self.push_reply(reply.text, reply.tokens, reply.items);
        if reply.end {
            return Ok(Next::Done(EndReason::SystemEnded));
        }
        self.user_turn()
    }

    /// Record a system message with the items it recommended: `items` as
    /// the system gave them, or else the catalog titles its text names.
    fn push_reply(&mut self, text: String, tokens: u32, items: Option<Vec<String>>) {
        let items = items.unwrap_or_else(|| match self.catalog {
            Some(cat) => cat
                .mentioned_items(&text)
                .into_iter()
                .map(|i| cat.items()[i].id.clone())
                .collect(),
            None => Vec::new(),
        });
        let mut unique: Vec<String> = Vec::with_capacity(items.len());
        for item in items {
            if !unique.contains(&item) {
                unique.push(item);
            }
        }
        self.turns.push(TurnRecord {
            role: Side::Assistant,
            text,
            latents: BTreeMap::new(),
            tokens,
            real: None,
            items: unique,
            note: self.pending_note.take(),
        });
        self.replies += 1;
    }

    /// The session's target item id, when the scenario has one.
    fn target_id(&self) -> Option<&str> {
        let var = self.scenario.conversation.target.as_ref()?;
        self.latents
            .values
            .get(var)
            .and_then(|v| v.get("id"))
            .and_then(Value::as_str)
    }

    /// Whether the latest assistant message recommended the session's
    /// target item (its `items`: given by the system or spotted in its text).
    fn target_was_offered(&self) -> bool {
        let Some(target_id) = self.target_id() else {
            return false;
        };
        self.turns
            .iter()
            .rev()
            .find(|t| t.role == Side::Assistant)
            .is_some_and(|last| last.items.iter().any(|i| i == target_id))
    }

    /// The finished record.
    pub fn into_record(
        self,
        run: &RunIdentity,
        system: &str,
        end: EndReason,
    ) -> ConversationRecord {
        let conv = &self.scenario.conversation;
        let outcome = self.target_id().map(|target| {
            Outcome::of(
                &self.turns,
                target,
                &conv.accept_intents,
                &conv.reject_intents,
            )
        });
        ConversationRecord {
            id: format!("{}-{}-{:06}", run.scenario.name, run.run_seed, self.index),
            session_index: self.index,
            run_seed: run.run_seed,
            session_seed: self.session_seed,
            scenario: run.scenario.clone(),
            model: run.model.clone(),
            system: system.to_string(),
            sampling: run.sampling.clone(),
            latents: self.latents.values,
            turns: self.turns,
            end_reason: end,
            replay: self.replay.map(|s| s.source.clone()),
            outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{changes_first_word, cut_to_length, is_unfinished, with_first_word};

    #[test]
    fn cuts_at_the_first_sentence_end_past_the_target() {
        let t = "Hi there. I want a horror movie. Something from the 80s, maybe?";
        for truncated in [false, true] {
            assert_eq!(cut_to_length(t, 1, truncated), "Hi there.");
            assert_eq!(cut_to_length(t, 2, truncated), "Hi there.");
            assert_eq!(
                cut_to_length(t, 3, truncated),
                "Hi there. I want a horror movie."
            );
            assert_eq!(cut_to_length(t, 8, truncated), t);
            assert_eq!(cut_to_length(t, 40, truncated), t, "ends on a sentence");
            assert_eq!(
                cut_to_length("He said \"great!\" and left", 2, truncated),
                "He said \"great!\""
            );
            assert_eq!(cut_to_length("", 3, truncated), "");
        }
        let broken = "I like horror. Something from the 80s with a";
        assert_eq!(cut_to_length(broken, 5, false), broken);
        assert_eq!(
            cut_to_length(broken, 5, true),
            "I like horror.",
            "an unfinished sentence goes when the budget ran out"
        );
        assert_eq!(
            cut_to_length("no end here at all", 2, true),
            "no end here at all",
            "nothing to cut back to"
        );
    }

    #[test]
    fn a_turn_without_a_sentence_end_is_cut_at_a_clause_end() {
        // Out of tokens before any sentence ended: the last clause end
        // when none comes at or past the target, the mark dropped.
        assert_eq!(cut_to_length("Hi, I am looking for a", 5, true), "Hi");
        assert_eq!(
            cut_to_length("hey there, thanks a lot; I was wondering if", 2, true),
            "hey there",
            "the first clause end at or past the target"
        );
        assert_eq!(
            cut_to_length("hey there, thanks a lot; I was wondering if", 4, true),
            "hey there, thanks a lot"
        );
        assert_eq!(
            cut_to_length("ok - so maybe something with", 3, true),
            "ok",
            "a free-standing dash ends a clause"
        );
        // Not truncated: the model stopped on its own, so the text is whole.
        assert_eq!(
            cut_to_length("Hi, I am looking for a", 5, false),
            "Hi, I am looking for a"
        );
        // A sentence end still wins over a clause end.
        assert_eq!(
            cut_to_length("Thanks, that helps. And maybe, if you", 6, true),
            "Thanks, that helps."
        );
        // A lone mark is not a clause.
        assert_eq!(cut_to_length(", and then", 1, true), ", and then");
    }

    #[test]
    fn a_turn_out_of_tokens_with_no_end_anywhere_is_unfinished() {
        for t in [
            "I would like to watch a",
            "You know I did a lot of your recommendations for me but I don'",
            "Is it possible to watch The Black",
        ] {
            assert!(is_unfinished(t, true), "{t}");
            assert!(!is_unfinished(t, false), "stopped on its own: {t}");
        }
        // Anything the length cut can end it at.
        for t in [
            "Thanks for your help.",
            "I like horror. Something from the 80s with a",
            "Hi, I am looking for a",
            "Thank you very much...You",
            "ok - so maybe something with",
            "Really?",
        ] {
            assert!(!is_unfinished(t, true), "{t}");
        }
    }

    #[test]
    fn a_drawn_first_word_joins_what_the_model_wrote_after_it() {
        // The engine trims the leading space: a word follows with one, a
        // punctuation mark attaches.
        assert_eq!(
            with_first_word(Some("Yes"), "I have seen it."),
            "Yes I have seen it."
        );
        assert_eq!(with_first_word(Some("Yes"), ", I have."), "Yes, I have.");
        assert_eq!(with_first_word(Some("I"), "'m in."), "I'm in.");
        assert_eq!(
            with_first_word(Some("Hi"), "!...I want a comedy"),
            "Hi!...I want a comedy"
        );
        assert_eq!(
            with_first_word(Some("Bye"), ""),
            "Bye",
            "the line ended at once"
        );
        assert_eq!(with_first_word(None, "Hello there."), "Hello there.");
        assert!(changes_first_word("'m in.") && changes_first_word("\u{2019}ve seen it"));
        assert!(!changes_first_word(", I have.") && !changes_first_word("have seen it"));
        // The whole turn is what the length cut counts.
        assert_eq!(
            cut_to_length(
                &with_first_word(Some("Yes"), "I did. It was long."),
                2,
                false
            ),
            "Yes I did."
        );
    }

    #[test]
    fn a_message_join_ends_a_sentence() {
        // IARD joins a seeker's consecutive messages with dots: the message
        // before the dots is whole, so the turn can end there (the dots go).
        let t = "Hello...I am looking for something related to my favorite movie";
        assert_eq!(cut_to_length(t, 1, true), "Hello");
        assert_eq!(cut_to_length(t, 1, false), "Hello");
        assert_eq!(cut_to_length(t, 4, true), "Hello", "cut back to it");
        assert_eq!(cut_to_length(t, 4, false), t, "stopped on its own");
        assert_eq!(cut_to_length(t, 40, false), t);
        assert_eq!(
            cut_to_length("That is awesome!...You're right", 2, false),
            "That is awesome!",
            "the sentence's own mark stays, the join goes"
        );
        assert_eq!(
            cut_to_length("Thank you very much…You", 1, true),
            "Thank you very much",
            "an ellipsis character joins too"
        );
        assert_eq!(
            cut_to_length("hello.... You're always asking", 1, true),
            "hello",
            "dots before a space"
        );
        assert_eq!(
            cut_to_length("hi...ok...so what about a", 2, true),
            "hi...ok",
            "the first join at or past the target"
        );
        // One dot inside a word is not a join.
        assert_eq!(
            cut_to_length("I like the U.S. version of it", 1, false),
            "I like the U.S.",
        );
        assert_eq!(cut_to_length("St.Elmo is good", 1, true), "St.Elmo is good");
    }
}
