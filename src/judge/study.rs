//! The study file: the SQLite store of a study's items, their hidden
//! sources, the judges and their answers ([`Study`]); the sample itself is
//! drawn by [`super::sample`].
//!
//! Invariant: every answer is one committed transaction (WAL,
//! `synchronous=FULL`), so killing a server loses nothing that was
//! acknowledged, and a (judge, item) pair is answered at most once. Item
//! tokens, judge tokens and form nonces come from the operating system's
//! randomness, never from the seed or the source. A judge sees the items in
//! an order seeded by (study seed, judge name).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{derive_seed, secret_token, JudgeError};

pub(super) const FORMAT: &str = "usersim-judge-study";
pub(super) const VERSION: &str = "1";

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

pub(super) fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> JudgeError + '_ {
    move |source| JudgeError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) const SCHEMA: &str = "
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
