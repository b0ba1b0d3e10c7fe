//! Drawing a study ([`create`]): a seeded, balanced sample of items from a
//! real corpus and simulated runs, written as a new study file.
//!
//! Invariant: a study file is whole or absent (built under a temporary name
//! in one transaction, then renamed), and the sample is a function of the
//! inputs and the seed: the real corpus and each simulated run give
//! `n / sources` items each, drawn without replacement from a ChaCha stream
//! of (seed, source); the items are stored in a shuffled order, so neither
//! their row ids nor their (random) tokens follow the source. A turn item is
//! one seeker turn with the (at most [`CONTEXT_TURNS`]) turns before it; a
//! conversation item is a whole dialogue.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rusqlite::{params, Connection};
use serde::Serialize;

use super::study::{sql_err, Shown, SourceKind, Unit, FORMAT, SCHEMA, VERSION};
use super::{derive_seed, secret_token, JudgeError};
use crate::eval::loaders::{load_auto, Corpus};

/// Turns shown before a judged seeker turn (earlier ones are summarised as
/// "n earlier turns").
pub const CONTEXT_TURNS: usize = 6;

/// Settings of [`create`].
#[derive(Clone, Debug)]
pub struct NewStudyConfig {
    /// Real corpus (IARD `.json`, INSPIRED `.tsv`, or JSONL).
    pub real: PathBuf,
    /// Simulated runs (usersim or chat JSONL).
    pub sims: Vec<PathBuf>,
    /// What is judged.
    pub unit: Unit,
    /// Items in all; a multiple of the number of sources.
    pub n: usize,
    /// Sampling seed.
    pub seed: u64,
    /// The study file to write.
    pub output: PathBuf,
    /// Replace an existing study file.
    pub force: bool,
}

/// What [`create`] wrote.
#[derive(Clone, Debug, Serialize)]
pub struct StudySummary {
    /// The study file.
    pub path: PathBuf,
    /// Items in all.
    pub items: usize,
    /// Items per source, in source order (real first).
    pub per_source: Vec<(String, usize)>,
}

/// A candidate item of one source.
struct Draft {
    dialogue: String,
    turn: Option<usize>,
    omitted: usize,
    context: Vec<Shown>,
    target: Option<String>,
}

fn candidates(corpus: &Corpus, unit: Unit) -> Vec<(usize, Option<usize>)> {
    let mut out = Vec::new();
    for (d, dia) in corpus.dialogues.iter().enumerate() {
        let said = |t: &crate::eval::EvalTurn| t.seeker && !t.text.trim().is_empty();
        match unit {
            Unit::Turn => {
                for (k, t) in dia.turns.iter().enumerate() {
                    if said(t) {
                        out.push((d, Some(k)));
                    }
                }
            }
            Unit::Conversation => {
                if dia.turns.iter().any(said) {
                    out.push((d, None));
                }
            }
        }
    }
    out
}

fn draft(corpus: &Corpus, (d, turn): (usize, Option<usize>)) -> Draft {
    let dia = &corpus.dialogues[d];
    let shown = |t: &crate::eval::EvalTurn| Shown {
        seeker: t.seeker,
        text: t.text.clone(),
    };
    match turn {
        Some(k) => {
            let start = k.saturating_sub(CONTEXT_TURNS);
            Draft {
                dialogue: dia.id.clone(),
                turn: Some(k),
                omitted: start,
                context: dia.turns[start..k].iter().map(shown).collect(),
                target: Some(dia.turns[k].text.clone()),
            }
        }
        None => Draft {
            dialogue: dia.id.clone(),
            turn: None,
            omitted: 0,
            context: dia.turns.iter().map(shown).collect(),
            target: None,
        },
    }
}

/// Draws the sample and writes the study file (whole or not at all).
pub fn create(cfg: &NewStudyConfig) -> Result<StudySummary, JudgeError> {
    let sources = 1 + cfg.sims.len();
    if cfg.sims.is_empty() {
        return Err(JudgeError::Input(
            "--sim: expected at least one simulated run".into(),
        ));
    }
    if cfg.n == 0 || !cfg.n.is_multiple_of(sources) {
        return Err(JudgeError::Input(format!(
            "-n {}: expected a positive multiple of {sources} (the real corpus and {} simulated run(s) in equal shares)",
            cfg.n,
            cfg.sims.len()
        )));
    }
    let mut seen = HashSet::new();
    for s in &cfg.sims {
        if !seen.insert(s) {
            return Err(JudgeError::Input(format!(
                "--sim {}: given twice",
                s.display()
            )));
        }
    }
    if cfg.output.exists() && !cfg.force {
        return Err(JudgeError::Input(format!(
            "{}: exists (use --force to replace it)",
            cfg.output.display()
        )));
    }
    let share = cfg.n / sources;
    let mut paths = vec![(SourceKind::Real, cfg.real.clone())];
    paths.extend(cfg.sims.iter().map(|p| (SourceKind::Sim, p.clone())));
    let mut drafts: Vec<(usize, Draft)> = Vec::with_capacity(cfg.n);
    for (s, (_, path)) in paths.iter().enumerate() {
        let corpus = load_auto(path)?;
        let cands = candidates(&corpus, cfg.unit);
        if cands.len() < share {
            return Err(JudgeError::Input(format!(
                "{}: {} {} item(s) with seeker text, expected at least {share} (-n {} over {sources} sources)",
                path.display(),
                cands.len(),
                cfg.unit.as_str(),
                cfg.n
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(cfg.seed, &format!("source/{s}")));
        let mut picked = rand::seq::index::sample(&mut rng, cands.len(), share).into_vec();
        picked.sort_unstable();
        drafts.extend(picked.into_iter().map(|i| (s, draft(&corpus, cands[i]))));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(cfg.seed, "store-order"));
    drafts.shuffle(&mut rng);

    let tmp = temp_path(&cfg.output);
    let result = write_study(&tmp, cfg, &paths, &drafts).and_then(|()| {
        // A replaced study's write-ahead log would be replayed into the new
        // file: remove it first.
        for side in [wal_path(&cfg.output, "-wal"), wal_path(&cfg.output, "-shm")] {
            match std::fs::remove_file(&side) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(JudgeError::Write {
                        path: side,
                        source: e,
                    })
                }
                _ => {}
            }
        }
        std::fs::rename(&tmp, &cfg.output).map_err(|source| JudgeError::Write {
            path: cfg.output.clone(),
            source,
        })
    });
    if result.is_err() {
        for p in [tmp.clone(), wal_path(&tmp, "-wal"), wal_path(&tmp, "-shm")] {
            let _ = std::fs::remove_file(p);
        }
    }
    result?;
    Ok(StudySummary {
        path: cfg.output.clone(),
        items: drafts.len(),
        per_source: paths
            .iter()
            .map(|(_, p)| (p.display().to_string(), share))
            .collect(),
    })
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "study".into());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn wal_path(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn write_study(
    tmp: &Path,
    cfg: &NewStudyConfig,
    paths: &[(SourceKind, PathBuf)],
    drafts: &[(usize, Draft)],
) -> Result<(), JudgeError> {
    let _ = std::fs::remove_file(tmp);
    let e = sql_err(tmp);
    let mut conn = Connection::open(tmp).map_err(&e)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(&e)?;
    let tx = conn.transaction().map_err(&e)?;
    tx.execute_batch(SCHEMA).map_err(&e)?;
    for (k, v) in [
        ("format", FORMAT.to_string()),
        ("version", VERSION.to_string()),
        ("unit", cfg.unit.as_str().to_string()),
        ("seed", cfg.seed.to_string()),
        ("n", cfg.n.to_string()),
    ] {
        tx.execute(
            "INSERT INTO meta(key, value) VALUES (?1, ?2)",
            params![k, v],
        )
        .map_err(&e)?;
    }
    for (s, (kind, path)) in paths.iter().enumerate() {
        let kind = match kind {
            SourceKind::Real => "real",
            SourceKind::Sim => "sim",
        };
        tx.execute(
            "INSERT INTO sources(id, kind, label) VALUES (?1, ?2, ?3)",
            params![s as i64, kind, path.display().to_string()],
        )
        .map_err(&e)?;
    }
    for (s, d) in drafts {
        let context = serde_json::to_string(&d.context)
            .map_err(|err| JudgeError::Input(format!("cannot store an item: {err}")))?;
        tx.execute(
            "INSERT INTO items(token, source, dialogue, turn, omitted, context, target)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                secret_token(),
                *s as i64,
                d.dialogue,
                d.turn.map(|t| t as i64),
                d.omitted as i64,
                context,
                d.target
            ],
        )
        .map_err(&e)?;
    }
    tx.commit().map_err(&e)?;
    conn.close().map_err(|(_, err)| e(err))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::study::Study;

    fn corpus(n: usize, prefix: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "usersim-judge-study-{}-{prefix}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{prefix}.jsonl"));
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&format!(
                "{{\"id\":\"{prefix}-{i}\",\"turns\":[{{\"role\":\"user\",\"text\":\"{prefix} hello {i}\"}},{{\"role\":\"assistant\",\"text\":\"hi\"}},{{\"role\":\"user\",\"text\":\"{prefix} bye {i}\"}}]}}\n"
            ));
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn judge_sample_is_balanced_seeded_and_orders_differ_by_judge() {
        let real = corpus(10, "realx");
        let sim = corpus(10, "simx");
        let dir = real.parent().unwrap().to_path_buf();
        let mk = |name: &str, seed: u64| {
            let cfg = NewStudyConfig {
                real: real.clone(),
                sims: vec![sim.clone()],
                unit: Unit::Turn,
                n: 8,
                seed,
                output: dir.join(name),
                force: true,
            };
            create(&cfg).unwrap();
            let s = Study::open(&dir.join(name)).unwrap();
            let src = s.item_sources().unwrap();
            let mut texts: Vec<(i64, String)> = s
                .items()
                .unwrap()
                .into_iter()
                .map(|i| (src[&i.id].0, i.target.unwrap()))
                .collect();
            texts.sort();
            (s, texts)
        };
        let (a, ta) = mk("a.sqlite", 1);
        let (_, tb) = mk("b.sqlite", 1);
        let (_, tc) = mk("c.sqlite", 2);
        assert_eq!(ta, tb, "same seed, same sample");
        assert_ne!(ta, tc, "another seed, another sample");
        assert_eq!(ta.iter().filter(|(s, _)| *s == 0).count(), 4);
        assert!(ta
            .iter()
            .all(|(s, t)| t.starts_with(if *s == 0 { "realx" } else { "simx" })));
        let alice = a.add_judge("alice", false).unwrap();
        let bob = a.add_judge("bob", false).unwrap();
        assert!(a.add_judge("alice", false).unwrap_err().is_input());
        let (oa, ob) = (a.order(&alice).unwrap(), a.order(&bob).unwrap());
        assert_eq!(oa, a.order(&alice).unwrap());
        assert_ne!(oa, ob);
        let mut sorted = oa.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            a.items().unwrap().iter().map(|i| i.id).collect::<Vec<_>>()
        );
        // Conversation items: whole dialogues, no target turn.
        let conv = NewStudyConfig {
            real: real.clone(),
            sims: vec![sim.clone()],
            unit: Unit::Conversation,
            n: 4,
            seed: 1,
            output: dir.join("conv.sqlite"),
            force: true,
        };
        create(&conv).unwrap();
        let s = Study::open(&conv.output).unwrap();
        assert_eq!(s.unit, Unit::Conversation);
        for it in s.items().unwrap() {
            assert!(it.target.is_none() && it.omitted == 0);
            assert_eq!(it.context.len(), 3);
        }
        // -n not a multiple of the sources: refused, nothing written.
        let bad = NewStudyConfig {
            real: real.clone(),
            sims: vec![sim.clone()],
            unit: Unit::Turn,
            n: 7,
            seed: 1,
            output: dir.join("bad.sqlite"),
            force: false,
        };
        let err = create(&bad).unwrap_err();
        assert!(err.is_input() && err.to_string().contains("-n 7"), "{err}");
        assert!(!dir.join("bad.sqlite").exists());
    }
}
