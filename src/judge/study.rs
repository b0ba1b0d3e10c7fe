//! The study file: a seeded, balanced sample of items from a real corpus
//! and simulated runs ([`create`]), and the SQLite store of items, hidden
//! sources, judges and answers ([`Study`]).
//!
//! Invariant: a study file is whole or absent (built under a temporary name
//! in one transaction, then renamed), and every answer is one committed
//! transaction (WAL, `synchronous=FULL`), so killing a server loses nothing
//! that was acknowledged. Item tokens and judge tokens come from the
//! operating system's randomness, never from the seed or the source.
//!
//! Sampling: the real corpus and each simulated run give `n / sources`
//! items each, drawn without replacement from a ChaCha stream of (seed,
//! source); the items are stored in a shuffled order, so neither their
//! row ids nor their tokens follow the source. A turn item is one seeker
//! turn with the (at most [`CONTEXT_TURNS`]) turns before it; a conversation
//! item is a whole dialogue. A judge sees the items in an order seeded by
//! (study seed, judge name).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::JudgeError;
use crate::eval::loaders::{load_auto, Corpus};

/// Turns shown before a judged seeker turn (earlier ones are summarised as
/// "n earlier turns").
pub const CONTEXT_TURNS: usize = 6;

const FORMAT: &str = "usersim-judge-study";
const VERSION: &str = "1";

/// What a judge judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// One seeker turn, with the turns before it.
    Turn,
    /// A whole conversation (its seeker turns judged together).
    Conversation,
}

impl Unit {
    /// The name used in flags and files.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Turn => "turn",
            Unit::Conversation => "conversation",
        }
    }
}

impl std::str::FromStr for Unit {
    type Err = String;
    fn from_str(s: &str) -> Result<Unit, String> {
        match s {
            "turn" => Ok(Unit::Turn),
            "conversation" => Ok(Unit::Conversation),
            _ => Err(format!("expected `turn` or `conversation`, got `{s}`")),
        }
    }
}

/// A judge's call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Written by a person.
    Person,
    /// Written by a simulator.
    Simulator,
}

impl Verdict {
    /// `person` or `simulator`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Person => "person",
            Verdict::Simulator => "simulator",
        }
    }

    /// Parses `person` / `simulator` (exactly).
    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "person" => Some(Verdict::Person),
            "simulator" => Some(Verdict::Simulator),
            _ => None,
        }
    }
}

/// Real corpus or simulated run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// People wrote it.
    Real,
    /// A simulator wrote the seeker turns.
    Sim,
}

/// One source of a study.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Row id.
    pub id: i64,
    /// Real or simulated.
    pub kind: SourceKind,
    /// The file as given to `judge new`.
    pub label: String,
}

/// One turn as a judge sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shown {
    /// Whether the seeker speaks.
    pub seeker: bool,
    /// The text.
    pub text: String,
}

/// An item without its source: everything a judge may see.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// Row id (never shown).
    pub id: i64,
    /// Opaque random token that names the item in pages, forms and CSVs.
    pub token: String,
    /// Turns not shown before `context`.
    pub omitted: usize,
    /// The turns shown (for a conversation item, all of them).
    pub context: Vec<Shown>,
    /// The judged seeker turn (turn items only).
    pub target: Option<String>,
}

/// A judge.
#[derive(Clone, Debug, PartialEq)]
pub struct Judge {
    /// Row id.
    pub id: i64,
    /// Name as entered (or `crowd:<worker>` for imported answers).
    pub name: String,
    /// Secret token of the judge's link.
    pub token: String,
}

/// One answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// Person or simulator.
    pub verdict: Verdict,
    /// Confidence, 1–5.
    pub confidence: u8,
    /// Realism of the judged text, 1–5.
    pub realism: u8,
    /// Free text, possibly empty.
    pub comment: String,
}

/// An answer with who gave it and on what.
#[derive(Clone, Debug, PartialEq)]
pub struct AnswerRow {
    /// Judge row id.
    pub judge: i64,
    /// Judge name.
    pub judge_name: String,
    /// Item row id.
    pub item: i64,
    /// The answer.
    pub answer: Answer,
}

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

/// A seed for `purpose` derived from the study seed (SHA-256, so seeds of
/// different purposes are unrelated).
pub fn derive_seed(seed: u64, purpose: &str) -> u64 {
    let h = Sha256::digest(format!("usersim-judge/{seed}/{purpose}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    u64::from_le_bytes(b)
}

/// A fresh secret: 16 bytes of OS-seeded randomness as hex.
pub fn secret_token() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> JudgeError + '_ {
    move |source| JudgeError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
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

const SCHEMA: &str = "
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sources(id INTEGER PRIMARY KEY, kind TEXT NOT NULL CHECK(kind IN ('real','sim')),
  label TEXT NOT NULL);
CREATE TABLE items(id INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE,
  source INTEGER NOT NULL REFERENCES sources(id), dialogue TEXT NOT NULL, turn INTEGER,
  omitted INTEGER NOT NULL, context TEXT NOT NULL, target TEXT);
CREATE TABLE judges(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, token TEXT NOT NULL UNIQUE,
  origin TEXT NOT NULL CHECK(origin IN ('web','crowd')));
CREATE TABLE nonces(judge INTEGER NOT NULL REFERENCES judges(id),
  item INTEGER NOT NULL REFERENCES items(id), nonce TEXT NOT NULL UNIQUE, PRIMARY KEY(judge, item));
CREATE TABLE answers(judge INTEGER NOT NULL REFERENCES judges(id),
  item INTEGER NOT NULL REFERENCES items(id),
  verdict TEXT NOT NULL CHECK(verdict IN ('person','simulator')),
  confidence INTEGER NOT NULL CHECK(confidence BETWEEN 1 AND 5),
  realism INTEGER NOT NULL CHECK(realism BETWEEN 1 AND 5),
  comment TEXT NOT NULL, answered_at INTEGER NOT NULL, PRIMARY KEY(judge, item));
";

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

/// An open study file.
pub struct Study {
    conn: Connection,
    path: PathBuf,
    /// What is judged.
    pub unit: Unit,
    /// The sampling seed (also seeds each judge's order).
    pub seed: u64,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Whether [`Study::answer`] stored the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerOutcome {
    /// Stored and committed.
    Stored,
    /// The judge had already answered this item: nothing changed.
    AlreadyAnswered,
    /// The form's nonce is not the one issued to this judge for this item:
    /// nothing changed.
    BadNonce,
}

impl Study {
    /// Opens an existing study file.
    pub fn open(path: &Path) -> Result<Study, JudgeError> {
        if !path.is_file() {
            return Err(JudgeError::Input(format!(
                "{}: no such study file",
                path.display()
            )));
        }
        let e = sql_err(path);
        let not_study = |message: String| JudgeError::NotStudy {
            path: path.to_path_buf(),
            message,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(&e)?;
        let meta: BTreeMap<String, String> = (|| -> rusqlite::Result<_> {
            let mut st = conn.prepare("SELECT key, value FROM meta")?;
            let rows =
                st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            rows.collect()
        })()
        .map_err(|err| not_study(err.to_string()))?;
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(not_study("no `format` entry in its meta table".into()));
        }
        if meta.get("version").map(String::as_str) != Some(VERSION) {
            return Err(not_study(format!(
                "version {:?}, expected {VERSION}",
                meta.get("version")
            )));
        }
        let unit = meta
            .get("unit")
            .and_then(|u| u.parse().ok())
            .ok_or_else(|| not_study("meta `unit` missing or unknown".into()))?;
        let seed = meta
            .get("seed")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| not_study("meta `seed` missing or not a number".into()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(&e)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(&e)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(&e)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(&e)?;
        Ok(Study {
            conn,
            path: path.to_path_buf(),
            unit,
            seed,
        })
    }

    /// The study file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn e(&self) -> impl Fn(rusqlite::Error) -> JudgeError + '_ {
        sql_err(&self.path)
    }

    fn item_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
        let context: String = r.get(3)?;
        let context: Vec<Shown> = serde_json::from_str(&context).map_err(|err| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(err))
        })?;
        Ok(Item {
            id: r.get(0)?,
            token: r.get(1)?,
            omitted: r.get::<_, i64>(2)? as usize,
            context,
            target: r.get(4)?,
        })
    }

    /// Every item, by row id (no sources).
    pub fn items(&self) -> Result<Vec<Item>, JudgeError> {
        let mut st = self
            .conn
            .prepare("SELECT id, token, omitted, context, target FROM items ORDER BY id")
            .map_err(self.e())?;
        let rows = st
            .query_map([], Self::item_from_row)
            .map_err(self.e())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.e())?;
        Ok(rows)
    }

    /// The item with `token`, if any.
    pub fn item_by_token(&self, token: &str) -> Result<Option<Item>, JudgeError> {
        self.conn
            .query_row(
                "SELECT id, token, omitted, context, target FROM items WHERE token = ?1",
                [token],
                Self::item_from_row,
            )
            .optional()
            .map_err(self.e())
    }

    /// The study's sources, real first.
    pub fn sources(&self) -> Result<Vec<Source>, JudgeError> {
        let mut st = self
            .conn
            .prepare("SELECT id, kind, label FROM sources ORDER BY id")
            .map_err(self.e())?;
        let rows = st
            .query_map([], |r| {
                let kind: String = r.get(1)?;
                Ok(Source {
                    id: r.get(0)?,
                    kind: if kind == "real" {
                        SourceKind::Real
                    } else {
                        SourceKind::Sim
                    },
                    label: r.get(2)?,
                })
            })
            .map_err(self.e())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.e())?;
        Ok(rows)
    }

    /// Each item's source id and origin (dialogue id), by item row id: for
    /// the report only.
    pub fn item_sources(&self) -> Result<BTreeMap<i64, (i64, String)>, JudgeError> {
        let mut st = self
            .conn
            .prepare("SELECT id, source, dialogue, turn FROM items")
            .map_err(self.e())?;
        let rows = st
            .query_map([], |r| {
                let turn: Option<i64> = r.get(3)?;
                let dialogue: String = r.get(2)?;
                let origin = match turn {
                    Some(t) => format!("{dialogue} turn {t}"),
                    None => dialogue,
                };
                Ok((r.get(0)?, (r.get(1)?, origin)))
            })
            .map_err(self.e())?
            .collect::<rusqlite::Result<BTreeMap<_, _>>>()
            .map_err(self.e())?;
        Ok(rows)
    }

    /// Adds a judge named `name`; a taken name is an input error.
    pub fn add_judge(&self, name: &str, crowd: bool) -> Result<Judge, JudgeError> {
        let token = secret_token();
        let origin = if crowd { "crowd" } else { "web" };
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO judges(name, token, origin) VALUES (?1, ?2, ?3)",
                params![name, token, origin],
            )
            .map_err(self.e())?;
        if n == 0 {
            return Err(JudgeError::Input(format!(
                "judge name `{name}` is taken in {}",
                self.path.display()
            )));
        }
        Ok(Judge {
            id: self.conn.last_insert_rowid(),
            name: name.to_string(),
            token,
        })
    }

    fn judge_where(&self, column: &str, value: &str) -> Result<Option<Judge>, JudgeError> {
        self.conn
            .query_row(
                &format!("SELECT id, name, token FROM judges WHERE {column} = ?1"),
                [value],
                |r| {
                    Ok(Judge {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        token: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(self.e())
    }

    /// The judge whose link carries `token`.
    pub fn judge_by_token(&self, token: &str) -> Result<Option<Judge>, JudgeError> {
        self.judge_where("token", token)
    }

    /// The judge named `name`.
    pub fn judge_by_name(&self, name: &str) -> Result<Option<Judge>, JudgeError> {
        self.judge_where("name", name)
    }

    /// Every item id in `judge`'s order, seeded by (study seed, name).
    pub fn order(&self, judge: &Judge) -> Result<Vec<i64>, JudgeError> {
        let mut ids: Vec<i64> = self.items()?.into_iter().map(|i| i.id).collect();
        let mut rng =
            ChaCha8Rng::seed_from_u64(derive_seed(self.seed, &format!("judge/{}", judge.name)));
        ids.shuffle(&mut rng);
        Ok(ids)
    }

    /// The items `judge` has answered.
    pub fn answered(&self, judge: i64) -> Result<HashSet<i64>, JudgeError> {
        let mut st = self
            .conn
            .prepare("SELECT item FROM answers WHERE judge = ?1")
            .map_err(self.e())?;
        let rows = st
            .query_map([judge], |r| r.get(0))
            .map_err(self.e())?
            .collect::<rusqlite::Result<HashSet<i64>>>()
            .map_err(self.e())?;
        Ok(rows)
    }

    /// The form nonce of (judge, item): issued once, then the same.
    pub fn nonce(&self, judge: i64, item: i64) -> Result<String, JudgeError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO nonces(judge, item, nonce) VALUES (?1, ?2, ?3)",
                params![judge, item, secret_token()],
            )
            .map_err(self.e())?;
        self.conn
            .query_row(
                "SELECT nonce FROM nonces WHERE judge = ?1 AND item = ?2",
                [judge, item],
                |r| r.get(0),
            )
            .map_err(self.e())
    }

    /// Stores `answer` of `judge` on `item` in one transaction, once:
    /// with `nonce` (web forms) it must be the nonce issued for the pair.
    pub fn answer(
        &mut self,
        judge: i64,
        item: i64,
        nonce: Option<&str>,
        answer: &Answer,
    ) -> Result<AnswerOutcome, JudgeError> {
        let e = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        if let Some(nonce) = nonce {
            let issued: Option<String> = tx
                .query_row(
                    "SELECT nonce FROM nonces WHERE judge = ?1 AND item = ?2",
                    [judge, item],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&e)?;
            if issued.as_deref() != Some(nonce) {
                return Ok(AnswerOutcome::BadNonce);
            }
        }
        let n = tx
            .execute(
                "INSERT OR IGNORE INTO answers(judge, item, verdict, confidence, realism, comment, answered_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    judge,
                    item,
                    answer.verdict.as_str(),
                    answer.confidence,
                    answer.realism,
                    answer.comment,
                    now()
                ],
            )
            .map_err(&e)?;
        if n == 0 {
            return Ok(AnswerOutcome::AlreadyAnswered);
        }
        tx.commit().map_err(&e)?;
        Ok(AnswerOutcome::Stored)
    }

    /// Stores crowd answers `(worker, item, answer)` in one transaction:
    /// judge `crowd:<worker>` is created when new. A pair already answered
    /// refuses the whole batch (the caller checks first with
    /// [`Study::has_answer`]); nothing is stored then.
    pub fn import_crowd(&mut self, rows: &[(String, i64, Answer)]) -> Result<(), JudgeError> {
        let e = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        for (worker, item, a) in rows {
            let name = format!("crowd:{worker}");
            tx.execute(
                "INSERT OR IGNORE INTO judges(name, token, origin) VALUES (?1, ?2, 'crowd')",
                params![name, secret_token()],
            )
            .map_err(&e)?;
            let judge: i64 = tx
                .query_row("SELECT id FROM judges WHERE name = ?1", [&name], |r| {
                    r.get(0)
                })
                .map_err(&e)?;
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO answers(judge, item, verdict, confidence, realism, comment, answered_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![judge, item, a.verdict.as_str(), a.confidence, a.realism, a.comment, now()],
                )
                .map_err(&e)?;
            if n == 0 {
                return Err(JudgeError::Input(format!(
                    "{}: worker `{worker}` already answered an item; nothing imported",
                    self.path.display()
                )));
            }
        }
        tx.commit().map_err(&e)
    }

    /// Whether `judge_name` has answered `item`.
    pub fn has_answer(&self, judge_name: &str, item: i64) -> Result<bool, JudgeError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM answers a JOIN judges j ON j.id = a.judge
                 WHERE j.name = ?1 AND a.item = ?2",
                params![judge_name, item],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(self.e())
    }

    /// Every answer, by judge then item.
    pub fn answers(&self) -> Result<Vec<AnswerRow>, JudgeError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT a.judge, j.name, a.item, a.verdict, a.confidence, a.realism, a.comment
                 FROM answers a JOIN judges j ON j.id = a.judge ORDER BY a.judge, a.item",
            )
            .map_err(self.e())?;
        let rows = st
            .query_map([], |r| {
                let verdict: String = r.get(3)?;
                Ok(AnswerRow {
                    judge: r.get(0)?,
                    judge_name: r.get(1)?,
                    item: r.get(2)?,
                    answer: Answer {
                        verdict: Verdict::parse(&verdict).unwrap_or(Verdict::Simulator),
                        confidence: r.get(4)?,
                        realism: r.get(5)?,
                        comment: r.get(6)?,
                    },
                })
            })
            .map_err(self.e())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.e())?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
