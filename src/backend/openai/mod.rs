//! OpenAI-compatible backend: each request is one `POST /v1/chat/completions`
//! to a serving engine (vLLM, SGLang, llama.cpp's `llama-server`, TGI).
//!
//! Concurrency comes from a fixed pool of worker threads (`concurrency`), so
//! the number of requests in flight is bounded whatever the number of live
//! conversations. The batching happens on the server; `step` only collects
//! the answers that arrived. Blocking HTTP on threads rather than an async
//! runtime: a run has at most a few hundred requests in flight and the
//! workers spend their time waiting, so threads cost nothing that matters.
//!
//! Faults: connect errors, timeouts, 429 and 5xx are retried with
//! exponential backoff and jitter; a base URL that refuses connections is
//! taken out of rotation for a cooling-off period that grows while it stays
//! dead and tried again afterwards. A 4xx, or a 200 whose body is not a chat
//! completion, fails the run at once with the URL and what came back: both
//! mean the request or the server is wrong, and retrying would only repeat
//! it. A failed request fails the run (`step` returns the error); the
//! conversations already finished are on disk and `--resume` continues.
//!
//! Determinism is the server's: the session's seed goes out as `seed`, and
//! engines that honour it (llama-server, vLLM) give the same text for the
//! same request, but batching on the server may change numerics. The README
//! states the contract.
//!
//! Why one file of ~900 lines: the worker pool, retry policy and protocol mapping share the endpoint state and are tested together; about a third of the file is those tests.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{
    Backend, BackendError, BackendInfo, BackendStats, FinishReason, Generation, GenerationRequest,
    Prompt,
};
use crate::chat::ChatMessage;

/// Default requests in flight.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Default seconds one request may take.
pub const DEFAULT_TIMEOUT_SECS: f64 = 120.0;
/// Default retries of one request.
pub const DEFAULT_MAX_RETRIES: u32 = 5;
/// Default first backoff in seconds (doubles per retry, capped at 30 s).
pub const DEFAULT_BACKOFF_SECS: f64 = 0.5;
/// Default environment variable holding the API key.
pub const DEFAULT_API_KEY_ENV: &str = "OPENAI_API_KEY";
/// Default context assumed per conversation side for the sizing check.
pub const DEFAULT_CONTEXT: u32 = 8192;
/// Longest backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long `step` waits for an answer before giving the caller a chance to
/// notice Ctrl-C.
const STEP_WAIT: Duration = Duration::from_millis(200);
/// Largest response body read.
const MAX_BODY: u64 = 16 << 20;

/// Options of the OpenAI-compatible backend.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiConfig {
    /// Server base URLs (`http://host:port` or `http://host:port/v1`);
    /// requests are spread over them round-robin.
    pub base_urls: Vec<String>,
    /// Model id sent with each request; `None` asks the first server's
    /// `/v1/models` and takes the first id.
    pub model: Option<String>,
    /// Most requests in flight at once (worker threads).
    pub concurrency: usize,
    /// Seconds a request may take before it is abandoned and retried.
    pub timeout_secs: f64,
    /// Retries of one request after a connect error, timeout, 429 or 5xx.
    pub max_retries: u32,
    /// First backoff in seconds; doubles per retry, with jitter.
    pub backoff_secs: f64,
    /// Environment variable that holds the API key (sent as a bearer token,
    /// never logged or written); unset or empty sends none.
    pub api_key_env: String,
    /// Context tokens assumed per conversation side, for the sizing check
    /// before the run (the server enforces its own).
    pub context_per_sequence: u32,
    /// Also send `top_k`, `min_p` and repetition penalty, which llama-server,
    /// vLLM and SGLang accept but OpenAI's own API does not.
    pub extended_sampling: bool,
    /// Which endpoint to call.
    pub endpoint: ApiEndpoint,
    /// A jinja chat template (Hugging Face style: `messages`,
    /// `add_generation_prompt`) that renders the messages into the raw
    /// prompt of `ApiEndpoint::Completions`; required there, unused by chat.
    pub chat_template: Option<PathBuf>,
}

/// The server endpoint requests go to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiEndpoint {
    /// `/v1/chat/completions`: the server applies its model's chat template.
    #[default]
    Chat,
    /// `/v1/completions`: usersim renders the prompt with `chat_template`
    /// (for servers or models without a chat template of their own).
    Completions,
}

impl std::str::FromStr for ApiEndpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "chat" => Ok(ApiEndpoint::Chat),
            "completions" => Ok(ApiEndpoint::Completions),
            other => Err(format!("expected chat or completions, found `{other}`")),
        }
    }
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            base_urls: Vec::new(),
            model: None,
            concurrency: DEFAULT_CONCURRENCY,
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            max_retries: DEFAULT_MAX_RETRIES,
            backoff_secs: DEFAULT_BACKOFF_SECS,
            api_key_env: DEFAULT_API_KEY_ENV.to_string(),
            context_per_sequence: DEFAULT_CONTEXT,
            extended_sampling: true,
            endpoint: ApiEndpoint::Chat,
            chat_template: None,
        }
    }
}

/// One base URL and its health.
struct Endpoint {
    /// Normalised base, ending in `/v1`.
    base: String,
    /// Taken out of rotation until then.
    dead_until: Mutex<Option<Instant>>,
    /// Consecutive connect failures (sets the cooling-off period).
    failures: AtomicU64,
}

impl Endpoint {
    fn usable_at(&self) -> Option<Instant> {
        *self.dead_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mark_dead(&self) {
        let mut until = self.dead_until.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Many workers see the same outage: it lengthens the pause once per
        // cooling-off period, not once per failed request.
        if until.is_some_and(|t| t > now) {
            return;
        }
        let n = self.failures.fetch_add(1, Ordering::SeqCst).min(5);
        let pause = Duration::from_secs(1) * (1u32 << n);
        *until = Some(now + pause);
        tracing::warn!(url = %self.base, pause_s = pause.as_secs(), "endpoint unreachable, taken out of rotation");
    }

    fn mark_alive(&self) {
        if self.failures.swap(0, Ordering::SeqCst) > 0 {
            tracing::info!(url = %self.base, "endpoint back in rotation");
        }
        *self.dead_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// What the workers share.
struct Shared {
    endpoints: Vec<Endpoint>,
    next_endpoint: AtomicUsize,
    agent: ureq::Agent,
    api_key: Option<String>,
    model: String,
    cfg: OpenAiConfig,
    shutdown: AtomicBool,
    retries: AtomicU64,
    /// The compiled chat template (completions endpoint).
    template: Option<minijinja::Environment<'static>>,
}

/// Outcome of one HTTP attempt.
enum Attempt {
    Done(Value),
    /// Worth trying again; `dead` when the endpoint refused the connection.
    Retry {
        reason: String,
        dead: bool,
    },
    Fatal(String),
}

type Job = GenerationRequest;
type JobResult = Result<Generation, BackendError>;

/// The backend. Dropping it tells the workers to stop after their current
/// request.
pub struct OpenAiBackend {
    info: BackendInfo,
    shared: Arc<Shared>,
    jobs: Option<Sender<Job>>,
    results: Receiver<JobResult>,
    in_flight: usize,
    stats: BackendStats,
    /// Finished generations not yet handed out.
    ready: VecDeque<Generation>,
}

/// `http://h:p`, `http://h:p/`, `http://h:p/v1/` → `http://h:p/v1`.
fn normalise_base(url: &str) -> Result<String, BackendError> {
    let u = url.trim().trim_end_matches('/');
    if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() <= "https://".len() {
        return Err(BackendError::Config(format!(
            "--base-url: expected an http:// or https:// URL, got {url:?}"
        )));
    }
    Ok(if u.ends_with("/v1") {
        u.to_string()
    } else {
        format!("{u}/v1")
    })
}

impl OpenAiBackend {
    /// Connect: validate the options, read the API key, find the model id.
    /// No request is made when `cfg.model` is given.
    pub fn new(cfg: &OpenAiConfig) -> Result<Self, BackendError> {
        if cfg.base_urls.is_empty() {
            return Err(BackendError::Config(
                "--base-url: expected at least one server URL for the openai backend".into(),
            ));
        }
        if cfg.concurrency == 0 {
            return Err(BackendError::Config(
                "--concurrency: expected at least 1".into(),
            ));
        }
        if !(cfg.timeout_secs.is_finite() && cfg.timeout_secs > 0.0) {
            return Err(BackendError::Config(format!(
                "--timeout: expected a positive number of seconds, got {}",
                cfg.timeout_secs
            )));
        }
        if !(cfg.backoff_secs.is_finite() && cfg.backoff_secs >= 0.0) {
            return Err(BackendError::Config(format!(
                "--backoff: expected seconds >= 0, got {}",
                cfg.backoff_secs
            )));
        }
        let endpoints = cfg
            .base_urls
            .iter()
            .map(|u| {
                Ok(Endpoint {
                    base: normalise_base(u)?,
                    dead_until: Mutex::new(None),
                    failures: AtomicU64::new(0),
                })
            })
            .collect::<Result<Vec<_>, BackendError>>()?;
        let api_key = std::env::var(&cfg.api_key_env)
            .ok()
            .filter(|k| !k.is_empty());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs_f64(cfg.timeout_secs)))
            .http_status_as_error(false)
            .max_idle_connections_per_host(cfg.concurrency.max(3))
            .build()
            .into();
        let template = match (cfg.endpoint, &cfg.chat_template) {
            (ApiEndpoint::Chat, _) => None,
            (ApiEndpoint::Completions, None) => {
                return Err(BackendError::Config(
                    "--chat-template: the completions endpoint needs a jinja chat template file to render prompts".into(),
                ))
            }
            (ApiEndpoint::Completions, Some(path)) => Some(load_template(path)?),
        };
        let mut shared = Shared {
            endpoints,
            next_endpoint: AtomicUsize::new(0),
            agent,
            api_key,
            model: String::new(),
            cfg: cfg.clone(),
            shutdown: AtomicBool::new(false),
            retries: AtomicU64::new(0),
            template,
        };
        shared.model = match &cfg.model {
            Some(m) => m.clone(),
            None => shared.discover_model()?,
        };
        let info = BackendInfo {
            engine: "openai".into(),
            model: shared.model.clone(),
            // The weights are the server's: nothing here can hash them.
            model_sha256: String::new(),
            context_per_sequence: cfg.context_per_sequence,
        };
        let shared = Arc::new(shared);
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (res_tx, res_rx) = mpsc::channel::<JobResult>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for i in 0..cfg.concurrency {
            let shared = Arc::clone(&shared);
            let job_rx = Arc::clone(&job_rx);
            let res_tx = res_tx.clone();
            std::thread::Builder::new()
                .name(format!("openai-{i}"))
                .spawn(move || worker(&shared, &job_rx, &res_tx))
                .map_err(|e| BackendError::Engine(format!("cannot start a worker thread: {e}")))?;
        }
        tracing::info!(model = %info.model, urls = shared.endpoints.len(), concurrency = cfg.concurrency, "openai backend ready");
        Ok(OpenAiBackend {
            info,
            shared,
            jobs: Some(job_tx),
            results: res_rx,
            in_flight: 0,
            stats: BackendStats::default(),
            ready: VecDeque::new(),
        })
    }

    /// The base URLs in use, normalised.
    pub fn base_urls(&self) -> Vec<String> {
        self.shared
            .endpoints
            .iter()
            .map(|e| e.base.clone())
            .collect()
    }

    fn accept(&mut self, r: JobResult) -> Result<(), BackendError> {
        self.in_flight = self.in_flight.saturating_sub(1);
        let g = r?;
        self.stats.prompt_tokens_evaluated +=
            u64::from(g.prompt_tokens.saturating_sub(g.reused_prompt_tokens));
        self.stats.prompt_tokens_reused += u64::from(g.reused_prompt_tokens);
        self.stats.tokens_generated += u64::from(g.completion_tokens);
        self.ready.push_back(g);
        Ok(())
    }
}

impl Drop for OpenAiBackend {
    fn drop(&mut self) {
        // Workers finish (or time out) their current request and exit;
        // nobody waits for them.
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.jobs = None;
    }
}

impl Shared {
    fn auth(
        &self,
        req: ureq::RequestBuilder<ureq::typestate::WithBody>,
    ) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        match &self.api_key {
            Some(k) => req.header("Authorization", format!("Bearer {k}")),
            None => req,
        }
    }

    /// The first model id the first reachable server lists.
    fn discover_model(&self) -> Result<String, BackendError> {
        let mut last = String::new();
        for ep in &self.endpoints {
            let url = format!("{}/models", ep.base);
            let mut req = self.agent.get(&url);
            if let Some(k) = &self.api_key {
                req = req.header("Authorization", format!("Bearer {k}"));
            }
            match req.call() {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let body = resp
                        .body_mut()
                        .with_config()
                        .limit(MAX_BODY)
                        .read_to_string()
                        .unwrap_or_default();
                    if status != 200 {
                        last = format!("{url}: HTTP {status}: {}", excerpt(&body));
                        continue;
                    }
                    let v: Value = serde_json::from_str(&body).map_err(|e| {
                        BackendError::Protocol(format!(
                            "{url}: expected a JSON model list, got {}: {e}",
                            excerpt(&body)
                        ))
                    })?;
                    return v["data"][0]["id"]
                        .as_str()
                        .map(String::from)
                        .ok_or_else(|| {
                            BackendError::Protocol(format!(
                                "{url}: expected data[0].id in the model list, got {}",
                                excerpt(&body)
                            ))
                        });
                }
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        Err(BackendError::Unavailable(format!(
            "no server answered the model list ({last}); pass --api-model to skip it"
        )))
    }

    /// The next endpoint in rotation; when every one is cooling off, the one
    /// due back first (the retry backoff paces the probing, so a single
    /// server that restarts is found as soon as a retry comes round).
    fn pick(&self) -> &Endpoint {
        let n = self.endpoints.len();
        let start = self.next_endpoint.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut soonest: Option<(&Endpoint, Instant)> = None;
        for k in 0..n {
            let ep = &self.endpoints[(start + k) % n];
            match ep.usable_at() {
                Some(t) if t > now => {
                    if soonest.is_none_or(|(_, s)| t < s) {
                        soonest = Some((ep, t));
                    }
                }
                _ => return ep,
            }
        }
        soonest.map_or(&self.endpoints[start % n], |(ep, _)| ep)
    }

    fn body(&self, req: &GenerationRequest) -> Result<Value, BackendError> {
        let p = &req.sampling;
        let mut body = json!({
            "model": self.model,
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            // 31 bits: some servers keep the seed in an int32.
            "seed": req.seed & 0x7fff_ffff,
            "stream": false,
        });
        match (&req.prompt, &self.template) {
            (Prompt::Text(text), _) => body["prompt"] = json!(text),
            (Prompt::Chat(messages), Some(env)) => {
                body["prompt"] = json!(render_prompt(env, messages)?)
            }
            (Prompt::Chat(messages), None) => {
                body["messages"] = messages
                    .iter()
                    .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
                    .collect();
            }
        }
        if !p.stop.is_empty() {
            body["stop"] = json!(p.stop);
        }
        if self.cfg.extended_sampling {
            body["top_k"] = json!(p.top_k);
            body["min_p"] = json!(p.min_p);
            // llama-server's name, then vLLM's and SGLang's.
            body["repeat_penalty"] = json!(p.repeat_penalty);
            body["repeat_last_n"] = json!(p.repeat_last_n);
            body["repetition_penalty"] = json!(p.repeat_penalty);
        }
        Ok(body)
    }

    /// A text prompt always goes to the raw completions endpoint: a chat
    /// endpoint would wrap it in the server's chat template.
    fn path(&self, prompt: &Prompt) -> &'static str {
        match (self.cfg.endpoint, prompt) {
            (ApiEndpoint::Chat, Prompt::Chat(_)) => "chat/completions",
            (ApiEndpoint::Completions, _) | (_, Prompt::Text(_)) => "completions",
        }
    }

    fn attempt(&self, ep: &Endpoint, path: &str, body: &str) -> Attempt {
        let url = format!("{}/{path}", ep.base);
        let req = self
            .auth(self.agent.post(&url))
            .header("Content-Type", "application/json");
        let mut resp = match req.send(body) {
            Ok(r) => r,
            Err(e) => {
                let dead = matches!(e, ureq::Error::ConnectionFailed | ureq::Error::HostNotFound)
                    || matches!(&e, ureq::Error::Io(io) if matches!(io.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::UnexpectedEof));
                let reason = match e {
                    ureq::Error::Timeout(_) => format!(
                        "{url}: no answer within {} s (--timeout)",
                        self.cfg.timeout_secs
                    ),
                    e => format!("{url}: {e}"),
                };
                return Attempt::Retry { reason, dead };
            }
        };
        let status = resp.status().as_u16();
        let text = match resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
        {
            Ok(t) => t,
            Err(ureq::Error::Timeout(_)) => {
                return Attempt::Retry {
                    reason: format!(
                        "{url}: body not complete within {} s (--timeout)",
                        self.cfg.timeout_secs
                    ),
                    dead: false,
                }
            }
            Err(e) => {
                return Attempt::Retry {
                    reason: format!("{url}: reading the answer: {e}"),
                    dead: false,
                }
            }
        };
        match status {
            200 => match serde_json::from_str::<Value>(&text) {
                Ok(v) => Attempt::Done(v),
                Err(e) => Attempt::Fatal(format!(
                    "{url}: expected a JSON completion, got {}: {e}",
                    excerpt(&text)
                )),
            },
            429 | 500..=599 => Attempt::Retry {
                reason: format!("{url}: HTTP {status}: {}", excerpt(&text)),
                dead: false,
            },
            _ => Attempt::Fatal(format!("{url}: HTTP {status}: {}", excerpt(&text))),
        }
    }

    fn backoff(&self, retry: u32) -> Duration {
        let base = self.cfg.backoff_secs * f64::from(1u32 << retry.min(16));
        let capped = base.min(MAX_BACKOFF.as_secs_f64());
        // Jitter in [capped/2, capped]: workers that failed together do not
        // all come back at the same instant.
        let f = rand::rng().random_range(0.5..=1.0);
        Duration::from_secs_f64(capped * f)
    }

    fn run(&self, req: &GenerationRequest) -> JobResult {
        let body = self.body(req)?.to_string();
        let started = Instant::now();
        let mut last = String::new();
        for attempt in 0..=self.cfg.max_retries {
            if self.shutdown.load(Ordering::SeqCst) {
                return Err(BackendError::Engine("backend shut down".into()));
            }
            if attempt > 0 {
                self.retries.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(self.backoff(attempt - 1));
            }
            let ep = self.pick();
            let path = self.path(&req.prompt);
            match self.attempt(ep, path, &body) {
                Attempt::Done(v) => {
                    ep.mark_alive();
                    let url = format!("{}/{path}", ep.base);
                    return parse_completion(&v, req, &url).map_err(BackendError::Protocol);
                }
                Attempt::Fatal(msg) => return Err(BackendError::Protocol(msg)),
                Attempt::Retry { reason, dead } => {
                    if dead {
                        ep.mark_dead();
                    }
                    tracing::debug!(attempt, %reason, "request failed, retrying");
                    last = reason;
                }
            }
        }
        Err(BackendError::Unavailable(format!(
            "{last} (gave up after {} attempts over {:.1} s; finished conversations are saved, rerun with --resume)",
            self.cfg.max_retries + 1,
            started.elapsed().as_secs_f64()
        )))
    }
}

fn worker(shared: &Shared, jobs: &Mutex<Receiver<Job>>, results: &Sender<JobResult>) {
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        let Ok(job) = job else { return };
        let r = shared.run(&job);
        if results.send(r).is_err() {
            return;
        }
    }
}

/// Compile a chat template file; a broken one is refused before any request.
fn load_template(path: &Path) -> Result<minijinja::Environment<'static>, BackendError> {
    let bad = |m: String| BackendError::Config(format!("{}: chat template: {m}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let mut env = minijinja::Environment::new();
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env.add_template_owned("chat", text)
        .map_err(|e| bad(e.to_string()))?;
    let probe = [
        ChatMessage::new(crate::chat::ChatRole::System, "s"),
        ChatMessage::new(crate::chat::ChatRole::User, "u"),
    ];
    render_prompt(&env, &probe).map_err(|e| bad(e.to_string()))?;
    Ok(env)
}

/// Messages → raw prompt, ending where the model's reply begins.
fn render_prompt(
    env: &minijinja::Environment<'static>,
    messages: &[ChatMessage],
) -> Result<String, BackendError> {
    let msgs: Vec<Value> = messages
        .iter()
        .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
        .collect();
    env.get_template("chat")
        .and_then(|t| {
            t.render(json!({
                "messages": msgs,
                "add_generation_prompt": true,
                "bos_token": "",
                "eos_token": "",
            }))
        })
        .map_err(|e| BackendError::Config(format!("chat template: {e}")))
}

/// A short, single-line excerpt of a response body for error messages.
fn excerpt(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.is_empty() {
        return "an empty body".into();
    }
    let mut out: String = one.chars().take(160).collect();
    if one.chars().count() > 160 {
        out.push('…');
    }
    format!("{out:?}")
}

/// A completion response (chat or raw) → [`Generation`].
fn parse_completion(v: &Value, req: &GenerationRequest, url: &str) -> Result<Generation, String> {
    let bad = |what: &str| {
        format!(
            "{url}: expected {what} in the completion, got {}",
            excerpt(&v.to_string())
        )
    };
    let choice = v["choices"].get(0).ok_or_else(|| bad("choices[0]"))?;
    let text = match choice["message"]["content"].as_str() {
        Some(t) => t,
        None => choice["text"]
            .as_str()
            .ok_or_else(|| bad("choices[0].message.content or choices[0].text"))?,
    };
    let finish = match choice["finish_reason"].as_str() {
        Some("length") => FinishReason::Length,
        _ => FinishReason::Stop,
    };
    let usage = &v["usage"];
    let count = |x: &Value| x.as_u64().map(|n| n.min(u64::from(u32::MAX)) as u32);
    let completion_tokens =
        count(&usage["completion_tokens"]).ok_or_else(|| bad("usage.completion_tokens"))?;
    let prompt_tokens = count(&usage["prompt_tokens"]).unwrap_or(0);
    let reused = count(&usage["prompt_tokens_details"]["cached_tokens"]).unwrap_or(0);
    Ok(Generation {
        conversation: req.conversation,
        side: req.side,
        text: text.trim().to_string(),
        prompt_tokens,
        reused_prompt_tokens: reused.min(prompt_tokens),
        completion_tokens,
        finish,
        candidate: req.candidate,
    })
}

impl Backend for OpenAiBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    fn max_conversations(&self) -> usize {
        // Live conversations are cheap here (no local state); the caller's
        // `parallel` bounds them, the workers bound the requests.
        usize::MAX
    }

    fn count_prompt_tokens(&self, prompt: &Prompt) -> Result<usize, BackendError> {
        // No tokenizer here: about 4 bytes a token in English, plus the
        // template's framing per message. Only the sizing check uses it.
        Ok(prompt.contents().iter().map(|c| c.len() / 4 + 6).sum())
    }

    fn submit(&mut self, request: GenerationRequest) -> Result<(), BackendError> {
        let tx = self
            .jobs
            .as_ref()
            .ok_or_else(|| BackendError::Engine("backend shut down".into()))?;
        // Best-of-N: one server request per candidate, each with its seed.
        for one in request.split_candidates() {
            tx.send(one)
                .map_err(|_| BackendError::Engine("every worker thread has stopped".into()))?;
            self.in_flight += 1;
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Vec<Generation>, BackendError> {
        let t0 = Instant::now();
        if self.ready.is_empty() && self.in_flight > 0 {
            match self.results.recv_timeout(STEP_WAIT) {
                Ok(r) => self.accept(r)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(BackendError::Engine(
                        "every worker thread has stopped".into(),
                    ))
                }
            }
        }
        while let Ok(r) = self.results.try_recv() {
            self.accept(r)?;
        }
        self.stats.steps += 1;
        self.stats.decode_seconds += t0.elapsed().as_secs_f64();
        Ok(self.ready.drain(..).collect())
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn release(&mut self, _conversation: u64) {}

    fn stats(&self) -> BackendStats {
        let mut s = self.stats.clone();
        s.requests_retried = self.shared.retries.load(Ordering::Relaxed);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::sampler::SamplingParams;
    use crate::chat::ChatRole;
    use crate::chat::Side;

    fn request() -> GenerationRequest {
        GenerationRequest {
            conversation: 4,
            side: Side::User,
            prompt: Prompt::Chat(vec![
                ChatMessage::new(ChatRole::System, "sys"),
                ChatMessage::new(ChatRole::User, "hi"),
            ]),
            sampling: SamplingParams {
                stop: vec!["\n\n".into()],
                ..SamplingParams::default()
            },
            seed: 0xdead_beef_1234_5678,
            forks: Vec::new(),
            candidate: 0,
            note: String::new(),
        }
    }

    #[test]
    fn base_urls_are_normalised_to_v1() {
        for (given, want) in [
            ("http://h:8080", "http://h:8080/v1"),
            ("http://h:8080/", "http://h:8080/v1"),
            ("https://h/v1/", "https://h/v1"),
            (" http://10.0.0.2:8000/v1 ", "http://10.0.0.2:8000/v1"),
        ] {
            assert_eq!(normalise_base(given).unwrap(), want);
        }
        for bad in ["h:8080", "ftp://h", "http://", ""] {
            assert!(
                matches!(normalise_base(bad), Err(BackendError::Config(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_completion_maps_to_a_generation_and_missing_fields_are_named() {
        let req = request();
        let v = json!({"choices":[{"message":{"content":"  Hello there \n"},"finish_reason":"length"}],
                       "usage":{"prompt_tokens":40,"completion_tokens":3,
                                "prompt_tokens_details":{"cached_tokens":32}}});
        let g = parse_completion(&v, &req, "http://h/v1/chat/completions").unwrap();
        assert_eq!(g.text, "Hello there");
        assert_eq!(
            (g.prompt_tokens, g.reused_prompt_tokens, g.completion_tokens),
            (40, 32, 3)
        );
        assert_eq!(g.finish, FinishReason::Length);
        assert_eq!((g.conversation, g.side), (4, Side::User));
        let err = parse_completion(&json!({"choices":[]}), &req, "http://h/v1/chat/completions")
            .unwrap_err();
        assert!(
            err.contains("choices[0]") && err.contains("http://h/v1/chat/completions"),
            "{err}"
        );
        let err = parse_completion(
            &json!({"choices":[{"message":{"content":"x"}}]}),
            &req,
            "http://h/v1/chat/completions",
        )
        .unwrap_err();
        assert!(err.contains("usage.completion_tokens"), "{err}");
    }

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let shared = Shared {
            endpoints: Vec::new(),
            next_endpoint: AtomicUsize::new(0),
            agent: ureq::Agent::new_with_defaults(),
            api_key: None,
            model: "m".into(),
            cfg: OpenAiConfig {
                backoff_secs: 1.0,
                ..OpenAiConfig::default()
            },
            shutdown: AtomicBool::new(false),
            retries: AtomicU64::new(0),
            template: None,
        };
        for retry in 0..4 {
            let full = f64::from(1u32 << retry);
            let d = shared.backoff(retry).as_secs_f64();
            assert!(d >= full / 2.0 - 1e-9 && d <= full + 1e-9, "{retry}: {d}");
        }
        assert!(shared.backoff(20) <= MAX_BACKOFF);
        let body = shared.body(&request()).unwrap();
        assert_eq!(body["seed"], json!(0x1234_5678u64 & 0x7fff_ffff));
        assert_eq!(
            body["messages"][1],
            json!({"role": "user", "content": "hi"})
        );
        assert_eq!(body["stop"], json!(["\n\n"]));
        assert_eq!(body["model"], "m");
        assert_eq!(shared.path(&request().prompt), "chat/completions");
        // A transcript goes out as it is, to the raw endpoint.
        let text = GenerationRequest {
            prompt: Prompt::Text("Seeker: hi\nRecommender:".into()),
            ..request()
        };
        let body = shared.body(&text).unwrap();
        assert_eq!(body["prompt"], json!("Seeker: hi\nRecommender:"));
        assert!(body.get("messages").is_none(), "{body}");
        assert_eq!(shared.path(&text.prompt), "completions");
    }

    #[test]
    fn the_completions_endpoint_renders_the_prompt_with_the_template() {
        let dir = std::env::temp_dir().join(format!("usersim-tpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chatml.jinja");
        std::fs::write(
            &path,
            "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        )
        .unwrap();
        let env = load_template(&path).unwrap();
        let p = render_prompt(&env, request().prompt.messages().unwrap_or_default()).unwrap();
        assert_eq!(
            p,
            "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        std::fs::write(&path, "{% for m in messages %}{{ m.content }").unwrap();
        let err = load_template(&path).unwrap_err().to_string();
        assert!(err.contains("chatml.jinja: chat template:"), "{err}");
        let v = json!({"choices":[{"text":" raw reply","finish_reason":"stop"}],
                       "usage":{"prompt_tokens":9,"completion_tokens":2}});
        let g = parse_completion(&v, &request(), "http://h/v1/completions").unwrap();
        assert_eq!((g.text.as_str(), g.completion_tokens), ("raw reply", 2));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
