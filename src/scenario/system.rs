//! The `[system]` table: which system under test the simulated users talk
//! to, and how it is reached. `simulate --system ...` flags override it
//! field by field ([`SystemOverrides`]).
//!
//! Invariant: plain data with named defaults; [`SystemSpec::check`] refuses
//! every inconsistent combination before anything starts, so the systems
//! built from a checked spec never re-check it.

use serde::{Deserialize, Serialize};

/// Default seconds an external system may take for one answer.
pub const DEFAULT_SYSTEM_TIMEOUT_SECS: f64 = 60.0;
/// Default retries of one HTTP request after a connect error, timeout, 429
/// or 5xx.
pub const DEFAULT_SYSTEM_RETRIES: u32 = 3;
/// Default first backoff in seconds (doubles per retry, with jitter).
pub const DEFAULT_SYSTEM_BACKOFF_SECS: f64 = 0.5;
/// Default HTTP requests in flight to the system.
pub const DEFAULT_SYSTEM_CONCURRENCY: usize = 8;

/// Which system answers the simulated users.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SystemKind {
    /// The built-in LLM recommender on the simulator's own model, decoding
    /// in the same batch as the users.
    #[default]
    Builtin,
    /// An external system: one JSON POST per system turn to `url`.
    Http,
    /// An external system: a child process (`cmd`) speaking JSON lines on
    /// stdin/stdout, conversations interleaved and tagged by id.
    Stdio,
    /// The built-in recommender on another engine: a second local model
    /// (`model`) or an OpenAI-compatible server (`base_url`).
    Llm,
}

impl std::str::FromStr for SystemKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "builtin" => Ok(SystemKind::Builtin),
            "http" => Ok(SystemKind::Http),
            "stdio" => Ok(SystemKind::Stdio),
            "llm" => Ok(SystemKind::Llm),
            other => Err(format!(
                "expected builtin, http, stdio or llm, found `{other}`"
            )),
        }
    }
}

/// The `[system]` table of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemSpec {
    /// Which system (`builtin`, `http`, `stdio`, `llm`).
    pub kind: SystemKind,
    /// `http`: the URL each system turn is POSTed to.
    pub url: Option<String>,
    /// `stdio`: the command line of the child process (run by `sh -c`).
    pub cmd: Option<String>,
    /// Send the session's latents with every request (oracle experiments);
    /// off by default, so a system never sees what steers the user.
    pub sees_latents: bool,
    /// Seconds one answer may take (`http`: per attempt; `stdio`: per turn).
    pub timeout_secs: f64,
    /// `http`: retries after a connect error, timeout, 429 or 5xx.
    pub max_retries: u32,
    /// `http`: first backoff in seconds; doubles per retry, with jitter.
    pub backoff_secs: f64,
    /// `http`: most requests in flight.
    pub concurrency: usize,
    /// `llm`: registry model name or GGUF path of the recommender.
    pub model: Option<String>,
    /// `llm`: an OpenAI-compatible server for the recommender instead.
    pub base_url: Option<String>,
    /// `llm` with `base_url`: the served model id (default: the server's
    /// first).
    pub api_model: Option<String>,
}

impl Default for SystemSpec {
    fn default() -> Self {
        SystemSpec {
            kind: SystemKind::Builtin,
            url: None,
            cmd: None,
            sees_latents: false,
            timeout_secs: DEFAULT_SYSTEM_TIMEOUT_SECS,
            max_retries: DEFAULT_SYSTEM_RETRIES,
            backoff_secs: DEFAULT_SYSTEM_BACKOFF_SECS,
            concurrency: DEFAULT_SYSTEM_CONCURRENCY,
            model: None,
            base_url: None,
            api_model: None,
        }
    }
}

impl SystemSpec {
    /// One line naming the flag at fault, or nothing.
    pub fn check(&self) -> Result<(), String> {
        if !(self.timeout_secs.is_finite() && self.timeout_secs > 0.0) {
            return Err(format!(
                "--system-timeout: expected a positive number of seconds, got {}",
                self.timeout_secs
            ));
        }
        if !(self.backoff_secs.is_finite() && self.backoff_secs >= 0.0) {
            return Err(format!(
                "--system-backoff: expected seconds >= 0, got {}",
                self.backoff_secs
            ));
        }
        if self.concurrency == 0 {
            return Err("--system-concurrency: expected at least 1".into());
        }
        match self.kind {
            SystemKind::Builtin => Ok(()),
            SystemKind::Http => match self.url.as_deref().map(str::trim) {
                Some(u) if u.starts_with("http://") || u.starts_with("https://") => Ok(()),
                Some(u) => Err(format!(
                    "--system-url: expected an http:// or https:// URL, got {u:?}"
                )),
                None => Err("--system http needs --system-url URL".into()),
            },
            SystemKind::Stdio => match self.cmd.as_deref().map(str::trim) {
                Some(c) if !c.is_empty() => Ok(()),
                _ => Err("--system stdio needs --system-cmd \"COMMAND\"".into()),
            },
            SystemKind::Llm => match (&self.model, &self.base_url) {
                (Some(_), Some(_)) => {
                    Err("--system llm takes --system-model or --system-base-url, not both".into())
                }
                (None, None) => Err(
                    "--system llm needs --system-model NAME|PATH or --system-base-url URL".into(),
                ),
                _ => Ok(()),
            },
        }
    }
}

/// Command-line values that replace the scenario's `[system]` fields.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SystemOverrides {
    /// `--system`.
    pub kind: Option<SystemKind>,
    /// `--system-url`.
    pub url: Option<String>,
    /// `--system-cmd`.
    pub cmd: Option<String>,
    /// `--system-sees-latents`.
    pub sees_latents: Option<bool>,
    /// `--system-timeout`.
    pub timeout_secs: Option<f64>,
    /// `--system-retries`.
    pub max_retries: Option<u32>,
    /// `--system-backoff`.
    pub backoff_secs: Option<f64>,
    /// `--system-concurrency`.
    pub concurrency: Option<usize>,
    /// `--system-model`.
    pub model: Option<String>,
    /// `--system-base-url`.
    pub base_url: Option<String>,
    /// `--system-api-model`.
    pub api_model: Option<String>,
}

impl SystemOverrides {
    /// `spec` with every given flag in place of its field.
    pub fn apply(&self, spec: &SystemSpec) -> SystemSpec {
        let mut s = spec.clone();
        if let Some(v) = self.kind {
            s.kind = v;
        }
        if let Some(v) = &self.url {
            s.url = Some(v.clone());
        }
        if let Some(v) = &self.cmd {
            s.cmd = Some(v.clone());
        }
        if let Some(v) = self.sees_latents {
            s.sees_latents = v;
        }
        if let Some(v) = self.timeout_secs {
            s.timeout_secs = v;
        }
        if let Some(v) = self.max_retries {
            s.max_retries = v;
        }
        if let Some(v) = self.backoff_secs {
            s.backoff_secs = v;
        }
        if let Some(v) = self.concurrency {
            s.concurrency = v;
        }
        if let Some(v) = &self.model {
            s.model = Some(v.clone());
        }
        if let Some(v) = &self.base_url {
            s.base_url = Some(v.clone());
        }
        if let Some(v) = &self.api_model {
            s.api_model = Some(v.clone());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_table_and_bad_combinations_name_the_flag() {
        let spec: SystemSpec = toml::from_str("kind = \"http\"\nurl = \"http://a:1\"").unwrap();
        assert!(spec.check().is_ok());
        let o = SystemOverrides {
            url: Some("http://b:2/crs".into()),
            ..SystemOverrides::default()
        };
        let s = o.apply(&spec);
        assert_eq!(s.url.as_deref(), Some("http://b:2/crs"));
        assert_eq!(s.timeout_secs, DEFAULT_SYSTEM_TIMEOUT_SECS);
        assert!(toml::from_str::<SystemSpec>("kind = \"http\"\nurll = \"x\"").is_err());
        let none = SystemSpec {
            kind: SystemKind::Stdio,
            ..SystemSpec::default()
        };
        assert!(none.check().unwrap_err().contains("--system-cmd"));
        let bad = SystemSpec {
            kind: SystemKind::Http,
            url: Some("localhost:8".into()),
            ..SystemSpec::default()
        };
        assert!(bad.check().unwrap_err().contains("--system-url"));
    }
}
