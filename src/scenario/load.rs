//! `Scenario::load`: read `scenario.toml`, check every variable, weight,
//! policy and template against the schema, and build the [`Scenario`].
//!
//! Invariant: a scenario that loads is fully valid: every weight list sums
//! to something positive, every markov row names declared states, every
//! template renders only declared variables (strict undefined). Nothing
//! downstream re-checks.
//!
//! `load` is long (about 440 lines) because it is one pass over the file's
//! sections in order, each check next to the field it guards, with the
//! error naming that field; its helpers below hold everything reusable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use sha2::{Digest, Sha256};

use super::*;

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
        if !(0.0..=1.0).contains(&conv.system_opens) {
            return Err(invalid(
                "conversation.system_opens".into(),
                "a share from 0 to 1",
            ));
        }
        if conv.stay_for_patience && conv.patience.is_none() {
            return Err(invalid(
                "conversation.stay_for_patience".into(),
                "false when conversation.patience is not set (the seeker stays for its patience)",
            ));
        }
        if conv.system_opens > 0.0 && conv.opening.is_some() {
            return Err(invalid(
                "conversation.system_opens".into(),
                "0 when conversation.opening is set (a fixed opening opens every session)",
            ));
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
            if spec.name == LENGTH_VAR {
                return Err(invalid(
                    field("name"),
                    "a name other than `length` (reserved for the [length] latent)",
                ));
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
                            let fitted: FittedTables = parse_toml(&mpath, &mtext)?;
                            MarkovTable {
                                first: fitted.first,
                                transitions: fitted.transitions,
                                after_question: fitted.after_question,
                                after_statement: fitted.after_statement,
                            }
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
            for (svar, cases) in &spec.by {
                let Some(allowed) = session.iter().find_map(|v| match v {
                    SessionVar::Categorical { name, pick: 1, .. } if name == svar => {
                        Some(v.all_values())
                    }
                    _ => None,
                }) else {
                    return Err(invalid(
                        field(&format!("by.{svar}")),
                        "the name of a categorical session variable drawing one value",
                    ));
                };
                for (value, factors) in cases {
                    let here = |f: &str| field(&format!("by.{svar}.{value}{f}"));
                    if !allowed.contains(value) {
                        return Err(invalid(
                            here(""),
                            &format!(
                                "a value of session variable `{svar}`: {}",
                                allowed.join(", ")
                            ),
                        ));
                    }
                    for (k, f) in factors {
                        if !(declared.contains(k.as_str()) || k == END_STATE) {
                            return Err(invalid(here(&format!(".{k}")), "declared values or END"));
                        }
                        if !(f.is_finite() && *f > 0.0) {
                            return Err(invalid(here(&format!(".{k}")), "a positive factor"));
                        }
                    }
                }
            }
            turn.push(TurnVar {
                name: spec.name.clone(),
                values: spec.values.clone(),
                policy,
                text: spec.text.clone(),
                by: spec.by.clone(),
            });
        }
        for (field, intents) in [
            ("conversation.end_intents", &conv.end_intents),
            ("conversation.accept_intents", &conv.accept_intents),
            ("conversation.reject_intents", &conv.reject_intents),
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
        if let Some(p) = &conv.patience {
            if !session
                .iter()
                .any(|v| matches!(v, SessionVar::Range { name, integer: true, .. } if name == p))
            {
                return Err(invalid(
                    "conversation.patience".into(),
                    "the name of an integer range session variable",
                ));
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

        let length = file
            .length
            .as_ref()
            .map(|spec| load_length(dir, &path, spec, (&turn, &session), &mut hasher))
            .transpose()?;
        if let Some(g) = &file.guard {
            if g.max_resamples > 8 {
                return Err(invalid(
                    "guard.max_resamples".into(),
                    &format!("a number from 0 to 8 (got {})", g.max_resamples),
                ));
            }
            if g.copy && file.pool.is_none() {
                return Err(invalid(
                    "guard.copy".into(),
                    "a [pool] of real dialogues to compare with (or copy = false)",
                ));
            }
        }
        let pool = load_pool_spec(dir, &path, &file)?;
        let critic = match &file.critic {
            Some(c) => {
                if !(1..=MAX_BEST_OF).contains(&c.best_of) {
                    return Err(invalid(
                        "critic.best_of".into(),
                        &format!("a number from 1 to {MAX_BEST_OF} (got {})", c.best_of),
                    ));
                }
                for (field, weight) in [
                    ("intent_weight", c.intent_weight),
                    ("length_weight", c.length_weight),
                    ("genre_weight", c.genre_weight),
                ] {
                    if !(0.0..=MAX_CHOICE_WEIGHT).contains(&weight) {
                        return Err(invalid(
                            format!("critic.{field}"),
                            &format!("a number from 0 to {MAX_CHOICE_WEIGHT} (got {weight})"),
                        ));
                    }
                }
                Some(CriticSpec {
                    file: c.file.as_ref().map(|f| dir.join(f)),
                    best_of: c.best_of,
                    intent_weight: c.intent_weight,
                    length_weight: c.length_weight,
                    genre_weight: c.genre_weight,
                })
            }
            None => None,
        };
        let style = match &file.style {
            Some(spec) => load_style(dir, &path, spec, &session, &mut hasher)?,
            None => Vec::new(),
        };
        let transcript = load_transcript(&path, &file, pool.as_ref(), &turn)?;
        let first_word = match &file.first_word {
            Some(spec) => {
                if file.user_prompt != PromptMode::Transcript {
                    return Err(invalid(
                        "first_word".into(),
                        "user_prompt = \"transcript\" (the simulator continues a seeker line from the drawn word), or no [first_word]",
                    ));
                }
                Some(load_first_word(dir, &path, spec, &turn, &mut hasher)?)
            }
            None => None,
        };
        if critic.as_ref().is_some_and(|c| c.intent_weight > 0.0)
            && (pool.is_none() || !turn.iter().any(|t| t.name == "intent"))
        {
            return Err(invalid(
                "critic.intent_weight".into(),
                "a [pool] of labelled real dialogues and an `intent` turn variable to read (or intent_weight = 0)",
            ));
        }
        if critic.as_ref().is_some_and(|c| c.genre_weight > 0.0)
            && (pool.is_none() || file.catalog.is_none())
        {
            return Err(invalid(
                "critic.genre_weight".into(),
                "a [pool] of real dialogues and a catalog whose genres a turn names (or genre_weight = 0)",
            ));
        }
        if critic.as_ref().is_some_and(|c| c.length_weight > 0.0) && length.is_none() {
            return Err(invalid(
                "critic.length_weight".into(),
                "a [length] latent whose drawn target the candidates are weighed against (or length_weight = 0)",
            ));
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
            (template::USER_PROFILE, file.templates.user_profile.as_ref()),
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
            system: file.system,
            replay_inspired: file.replay.inspired,
            length,
            first_word,
            guard: file.guard,
            user_prompt: file.user_prompt,
            assistant_prompt: file.assistant_prompt,
            transcript,
            pool,
            critic,
            style,
            templates: env,
        })
    }
}

pub(super) fn normalise(weights: &[f64]) -> std::result::Result<Vec<f64>, String> {
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
    for (name, factors) in [
        ("after_question", &t.after_question),
        ("after_statement", &t.after_statement),
    ] {
        for (k, f) in factors {
            if !known(k) {
                return Err((format!("{name}.{k}"), "declared values".into()));
            }
            if !(f.is_finite() && *f > 0.0) {
                return Err((format!("{name}.{k}"), "a positive factor".into()));
            }
        }
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
        template::USER_SYSTEM | template::USER_PROFILE => &["scenario", "session", "text"],
        template::USER_TURN => &[
            "scenario",
            "session",
            "text",
            "turn",
            "turn_text",
            "turn_index",
            "last_turn",
            "assistant_message",
            "exemplars",
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
            // Reserved: defined when `[length]` is on, so a template can
            // test `turn.length is defined` and work with it on or off.
            "turn" if sub == LENGTH_VAR => {}
            "turn" | "turn_text" if !turn.iter().any(|v| v.name == sub) => {
                let mut names: Vec<&str> = turn.iter().map(|t| t.name.as_str()).collect();
                if root == "turn" {
                    names.push(LENGTH_VAR);
                }
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

/// `[pool]`: its corpus paths (resolved against the scenario directory,
/// read by the run) and exemplar count, checked.
fn load_pool_spec(dir: &Path, path: &Path, file: &ScenarioFile) -> Result<Option<PoolSpec>> {
    let invalid = |field: String, expected: &str| ScenarioError::Invalid {
        path: path.to_path_buf(),
        field,
        expected: expected.to_string(),
    };
    let pool = match &file.pool {
        Some(p) => {
            if p.corpora.is_empty() {
                return Err(invalid(
                    "pool.corpora".into(),
                    "at least one corpus path (IARD .json or INSPIRED dialogs.tsv)",
                ));
            }
            if p.exemplars > 16 {
                return Err(invalid(
                    "pool.exemplars".into(),
                    &format!("a number from 0 to 16 (got {})", p.exemplars),
                ));
            }
            for (i, c) in p.corpora.iter().enumerate() {
                crate::corpus::CorpusKind::of_path(Path::new(c)).map_err(|_| {
                    invalid(
                        format!("pool.corpora[{i}]"),
                        &format!("an IARD .json or INSPIRED .tsv file (got \"{c}\")"),
                    )
                })?;
            }
            Some(PoolSpec {
                corpora: p.corpora.iter().map(|c| dir.join(c)).collect(),
                exemplars: p.exemplars,
            })
        }
        None => None,
    };
    Ok(pool)
}

/// `user_prompt` and `[transcript]`, checked against the pool and the
/// turn variables.
fn load_transcript(
    path: &Path,
    file: &ScenarioFile,
    pool: Option<&PoolSpec>,
    turn: &[TurnVar],
) -> Result<TranscriptSpec> {
    let invalid = |field: String, expected: &str| ScenarioError::Invalid {
        path: path.to_path_buf(),
        field,
        expected: expected.to_string(),
    };
    let transcript = file.transcript.clone().unwrap_or_default();
    if file.user_prompt == PromptMode::Transcript && pool.is_none() {
        return Err(invalid(
            "user_prompt".into(),
            "\"chat\", or a [pool] of real dialogues for \"transcript\" to show",
        ));
    }
    if file.assistant_prompt == PromptMode::Transcript && file.user_prompt != PromptMode::Transcript
    {
        return Err(invalid(
            "assistant_prompt".into(),
            "\"chat\", or user_prompt = \"transcript\" (the recommender continues the seeker's real dialogues)",
        ));
    }
    if file.transcript.is_some() {
        let t = &transcript;
        if !(1..=16).contains(&t.dialogues) {
            return Err(invalid(
                "transcript.dialogues".into(),
                &format!("a number from 1 to 16 (got {})", t.dialogues),
            ));
        }
        if t.max_dialogue_words < 10 {
            return Err(invalid(
                "transcript.max_dialogue_words".into(),
                &format!("at least 10 words (got {})", t.max_dialogue_words),
            ));
        }
        for (field, label) in [
            ("transcript.seeker_label", &t.seeker_label),
            ("transcript.system_label", &t.system_label),
        ] {
            if label.trim().is_empty() || label.contains('\n') || label.contains(':') {
                return Err(invalid(
                    field.into(),
                    "a non-empty one-line label without a colon",
                ));
            }
        }
        if t.seeker_label.trim() == t.system_label.trim() {
            return Err(invalid(
                "transcript.system_label".into(),
                "a label other than the seeker's",
            ));
        }
        if let Some(tag) = &t.tag {
            let Some(var) = turn.iter().find(|v| &v.name == tag) else {
                let names: Vec<&str> = turn.iter().map(|v| v.name.as_str()).collect();
                return Err(invalid(
                    "transcript.tag".into(),
                    &format!("a declared turn variable: {}", names.join(", ")),
                ));
            };
            if let Some((k, _)) = t.tags.iter().find(|(k, _)| !var.values.contains(k)) {
                return Err(invalid(
                    format!("transcript.tags.{k}"),
                    &format!("a value of turn variable `{tag}`"),
                ));
            }
            if let Some((k, _)) = t.tags.iter().find(|(_, v)| !is_tag_text(v)) {
                return Err(invalid(
                    format!("transcript.tags.{k}"),
                    "a non-empty one-line text without parentheses or colons",
                ));
            }
        } else if !t.tags.is_empty() {
            return Err(invalid(
                "transcript.tags".into(),
                "a `tag` variable to show them for",
            ));
        }
        if !is_tag_text(&t.suggest_tag) {
            return Err(invalid(
                "transcript.suggest_tag".into(),
                "a non-empty one-line text without parentheses or colons",
            ));
        }
        if t.closing_tag.as_deref().is_some_and(|c| !is_tag_text(c)) {
            return Err(invalid(
                "transcript.closing_tag".into(),
                "a non-empty one-line text without parentheses or colons",
            ));
        }
    }
    Ok(transcript)
}

/// Text that fits inside a transcript label's parentheses: non-empty, one
/// line, no parenthesis or colon (either would end the label early).
fn is_tag_text(text: &str) -> bool {
    !text.trim().is_empty() && !text.contains(['\n', '(', ')', ':'])
}

/// A file `usersim fit` wrote (relative to the scenario directory), parsed
/// and added to the scenario's hash.
fn read_fitted(dir: &Path, file: &str, hasher: &mut Sha256) -> Result<(PathBuf, FittedTables)> {
    let fpath = dir.join(file);
    let text = read(&fpath)?;
    hasher.update(file.as_bytes());
    hasher.update(b"\0");
    hasher.update(text.as_bytes());
    let fitted = parse_toml(&fpath, &text)?;
    Ok((fpath, fitted))
}

/// `[style]`: the fitted file's `seeker_style` rates, each checked.
fn load_style(
    dir: &Path,
    scenario_path: &Path,
    spec: &StyleSpec,
    session: &[SessionVar],
    hasher: &mut Sha256,
) -> Result<Vec<crate::session::style::StyleRates>> {
    if session.iter().any(|v| v.name() == STYLE_VAR) {
        return Err(ScenarioError::Invalid {
            path: scenario_path.to_path_buf(),
            field: format!("session \"{STYLE_VAR}\""),
            expected: format!("a name other than `{STYLE_VAR}` (reserved for the [style] latent)"),
        });
    }
    let (fpath, fitted) = read_fitted(dir, &spec.fitted_file, hasher)?;
    if fitted.seeker_style.is_empty() {
        return Err(ScenarioError::Invalid {
            path: fpath,
            field: "seeker_style".into(),
            expected:
                "a list of [lower_first, bare_end, ellipsis] rates (written by `usersim fit`)"
                    .into(),
        });
    }
    let mut out = Vec::with_capacity(fitted.seeker_style.len());
    for (i, r) in fitted.seeker_style.iter().enumerate() {
        let rates = crate::session::style::StyleRates {
            lower_first: r[0],
            bare_end: r[1],
            ellipsis: r[2],
        };
        if !rates.is_valid() {
            return Err(ScenarioError::Invalid {
                path: fpath,
                field: format!("seeker_style[{i}]"),
                expected: format!("three rates from 0 to 1, not {r:?}"),
            });
        }
        out.push(rates);
    }
    Ok(out)
}

/// `[length]`: the fitted file's `[lengths.<value>]` tables, each checked,
/// as one distribution per value with enough turns and one pooled.
fn load_length(
    dir: &Path,
    scenario_path: &Path,
    spec: &LengthSpec,
    (turn, session): (&[TurnVar], &[SessionVar]),
    hasher: &mut Sha256,
) -> Result<LengthModel> {
    let invalid = |path: &Path, field: String, expected: String| ScenarioError::Invalid {
        path: path.to_path_buf(),
        field,
        expected,
    };
    let Some(of) = turn.iter().find(|t| t.name == spec.of) else {
        let names: Vec<&str> = turn.iter().map(|t| t.name.as_str()).collect();
        return Err(invalid(
            scenario_path,
            "length.of".into(),
            format!("a declared turn variable: {}", names.join(", ")),
        ));
    };
    if !(1.0..=10.0).contains(&spec.tokens_per_word) {
        return Err(invalid(
            scenario_path,
            "length.tokens_per_word".into(),
            format!("a number from 1 to 10 (got {})", spec.tokens_per_word),
        ));
    }
    let (fpath, fitted) = read_fitted(dir, &spec.fitted_file, hasher)?;
    if fitted.lengths.is_empty() {
        return Err(invalid(
            &fpath,
            "lengths".into(),
            "[lengths.<value>] tables of word counts (written by `usersim fit`)".into(),
        ));
    }
    let mut per_value = BTreeMap::new();
    let mut pooled: BTreeMap<u32, u64> = BTreeMap::new();
    for (value, counts) in &fitted.lengths {
        if !of.values.contains(value) {
            return Err(invalid(
                &fpath,
                format!("lengths.{value}"),
                format!("a value of turn variable `{}`", of.name),
            ));
        }
        let mut parsed: BTreeMap<u32, u64> = BTreeMap::new();
        for (words, n) in counts {
            let w = words
                .parse::<u32>()
                .ok()
                .filter(|w| *w >= 1)
                .ok_or_else(|| {
                    invalid(
                        &fpath,
                        format!("lengths.{value}.{words}"),
                        "a word count of at least 1 as the key".into(),
                    )
                })?;
            *parsed.entry(w).or_default() += n;
            *pooled.entry(w).or_default() += n;
        }
        let d = length_distribution(&parsed);
        if d.samples >= MIN_LENGTH_SAMPLES {
            per_value.insert(value.clone(), d);
        }
    }
    let pooled = length_distribution(&pooled);
    if pooled.samples == 0 {
        return Err(invalid(
            &fpath,
            "lengths".into(),
            "at least one turn counted".into(),
        ));
    }
    let scale = match &spec.scale_by {
        Some(name) => Some(length_scale(scenario_path, &fpath, name, session, &fitted)?),
        None => None,
    };
    Ok(LengthModel {
        of: of.name.clone(),
        per_value,
        pooled,
        enforce: spec.enforce,
        tokens_per_word: spec.tokens_per_word,
        scale,
    })
}

/// `[first_word]`: the fitted file's `[first_words.<place>.<value>]`
/// tables, each checked, as one distribution per place and value with
/// enough turns and one pooled per place.
fn load_first_word(
    dir: &Path,
    scenario_path: &Path,
    spec: &FirstWordSpec,
    turn: &[TurnVar],
    hasher: &mut Sha256,
) -> Result<FirstWordModel> {
    let invalid = |path: &Path, field: String, expected: String| ScenarioError::Invalid {
        path: path.to_path_buf(),
        field,
        expected,
    };
    if turn.iter().any(|t| t.name == FIRST_WORD_VAR) {
        return Err(invalid(
            scenario_path,
            format!("turn \"{FIRST_WORD_VAR}\""),
            format!("a name other than `{FIRST_WORD_VAR}` (reserved for the [first_word] latent)"),
        ));
    }
    let Some(of) = turn.iter().find(|t| t.name == spec.of) else {
        let names: Vec<&str> = turn.iter().map(|t| t.name.as_str()).collect();
        return Err(invalid(
            scenario_path,
            "first_word.of".into(),
            format!("a declared turn variable: {}", names.join(", ")),
        ));
    };
    if spec.min_count == 0 {
        return Err(invalid(
            scenario_path,
            "first_word.min_count".into(),
            "a count of at least 1".into(),
        ));
    }
    let (fpath, fitted) = read_fitted(dir, &spec.fitted_file, hasher)?;
    let mut per_value: [BTreeMap<String, FirstWordDistribution>; 2] = Default::default();
    let mut pooled: [FirstWordDistribution; 2] = Default::default();
    for (slot, place) in [(1, FIRST_TURN), (0, LATER_TURNS)] {
        let Some(cells) = fitted.first_words.get(place).filter(|c| !c.is_empty()) else {
            return Err(invalid(
                &fpath,
                format!("first_words.{place}"),
                "[first_words.first_turn.<value>] and [first_words.later_turns.<value>] tables of word counts (written by `usersim fit`)".into(),
            ));
        };
        let mut all: BTreeMap<&str, u64> = BTreeMap::new();
        for (value, counts) in cells {
            if !of.values.contains(value) {
                return Err(invalid(
                    &fpath,
                    format!("first_words.{place}.{value}"),
                    format!("a value of turn variable `{}`", of.name),
                ));
            }
            if let Some(word) = counts.keys().find(|w| !is_fitted_first_word(w)) {
                return Err(invalid(
                    &fpath,
                    format!("first_words.{place}.{value}.\"{word}\""),
                    format!("a lower-case word (letters and apostrophes) or \"{OTHER_FIRST_WORD}\" as the key"),
                ));
            }
            for (w, n) in counts {
                *all.entry(w.as_str()).or_default() += n;
            }
            let d = first_word_distribution(
                counts.iter().map(|(w, n)| (w.as_str(), *n)),
                spec.min_count,
            );
            if d.samples >= MIN_LENGTH_SAMPLES {
                per_value[slot].insert(value.clone(), d);
            }
        }
        pooled[slot] = first_word_distribution(all.into_iter(), spec.min_count);
        if pooled[slot].samples == 0 {
            return Err(invalid(
                &fpath,
                format!("first_words.{place}"),
                "at least one turn counted".into(),
            ));
        }
    }
    Ok(FirstWordModel {
        of: of.name.clone(),
        per_value,
        pooled,
    })
}

/// A key of `[first_words]`: a lower-case word or the "not a word" count.
fn is_fitted_first_word(w: &str) -> bool {
    w == OTHER_FIRST_WORD
        || (w.chars().any(|c| c.is_alphabetic())
            && w.chars()
                .all(|c| (c.is_alphabetic() && !c.is_uppercase()) || c == '\''))
}

/// Words seen at least `min_count` times, as the prompt writes them (first
/// letter upper case, as a line starts), and the rest pooled into one
/// "left to the model" entry.
fn first_word_distribution<'w>(
    counts: impl Iterator<Item = (&'w str, u64)>,
    min_count: u64,
) -> FirstWordDistribution {
    let mut words = Vec::new();
    let mut weights = Vec::new();
    let mut free = 0;
    for (w, n) in counts {
        if w == OTHER_FIRST_WORD || n < min_count {
            free += n;
        } else {
            let mut chars = w.chars();
            let shown: String = chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_default();
            words.push(Some(shown));
            weights.push(n);
        }
    }
    if free > 0 {
        words.push(None);
        weights.push(free);
    }
    let samples: u64 = weights.iter().sum();
    FirstWordDistribution {
        words,
        probs: weights
            .iter()
            .map(|n| *n as f64 / samples.max(1) as f64)
            .collect(),
        samples,
    }
}

/// `[length] scale_by`: each value's factor, the mean fitted length ratio
/// of its band of real seekers (bands cut by the variable's weights, in
/// declared order, over the ratios sorted ascending).
fn length_scale(
    scenario_path: &Path,
    fpath: &Path,
    name: &str,
    session: &[SessionVar],
    fitted: &FittedTables,
) -> Result<(String, BTreeMap<String, f64>)> {
    let c =
        match session.iter().find(|v| v.name() == name) {
            Some(SessionVar::Categorical {
                source: CategoricalSource::Fixed(c),
                pick: 1,
                ..
            }) => c,
            _ => return Err(ScenarioError::Invalid {
                path: scenario_path.to_path_buf(),
                field: "length.scale_by".into(),
                expected:
                    "a categorical session variable with fixed weights and one value per session"
                        .into(),
            }),
        };
    let mut ratios: Vec<f64> = fitted.seeker_length_ratio.clone();
    if ratios.len() < c.values.len() || ratios.iter().any(|r| !r.is_finite() || *r <= 0.0) {
        return Err(ScenarioError::Invalid {
            path: fpath.to_path_buf(),
            field: "seeker_length_ratio".into(),
            expected: format!(
                "at least {} positive ratios, one per real seeker (written by `usersim fit`)",
                c.values.len()
            ),
        });
    }
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    let mut factors = BTreeMap::new();
    let mut cumulative = 0.0;
    let mut start = 0;
    for (i, (value, p)) in c.values.iter().zip(&c.probs).enumerate() {
        cumulative += p;
        let end = if i + 1 == c.values.len() {
            n
        } else {
            ((cumulative * n as f64).round() as usize).clamp(start + 1, n)
        };
        let band = &ratios[start.min(n - 1)..end.max(start + 1).min(n)];
        factors.insert(value.clone(), band.iter().sum::<f64>() / band.len() as f64);
        start = end;
    }
    Ok((name.to_string(), factors))
}

fn length_distribution(counts: &BTreeMap<u32, u64>) -> LengthDistribution {
    let samples: u64 = counts.values().sum();
    LengthDistribution {
        words: counts.keys().copied().collect(),
        probs: counts
            .values()
            .map(|n| *n as f64 / samples.max(1) as f64)
            .collect(),
        samples,
    }
}
