//! OpenAI-compatible backend: each request is one `POST /v1/chat/completions`
//! to a serving engine (vLLM, SGLang, llama.cpp's `llama-server`, TGI).
//!
//! Concurrency comes from a fixed pool of worker threads (`concurrency`,
//! [`super::http_pool`], shared with the `http` system under test), so
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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::http_pool::{excerpt, HttpPool, PoolConfig, PoolError};
use super::{
    Backend, BackendError, BackendInfo, BackendStats, FinishReason, Generation, GenerationRequest,
    Prompt,
};
use crate::chat::{ChatMessage, Side};

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
/// How long `step` waits for an answer before giving the caller a chance to
/// notice Ctrl-C.
const STEP_WAIT: Duration = Duration::from_millis(200);

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

/// How requests are written (shared with nothing: the pool's workers only
/// carry bodies).
struct Shared {
    model: String,
    cfg: OpenAiConfig,
    /// The compiled chat template (completions endpoint).
    template: Option<minijinja::Environment<'static>>,
}

/// The backend. Dropping it drops the pool, whose workers stop after their
/// current request.
pub struct OpenAiBackend {
    info: BackendInfo,
    shared: Shared,
    pool: HttpPool,
    /// Tag of each request in flight → (conversation, side).
    pending: HashMap<u64, (u64, Side, u32)>,
    next_tag: u64,
    stats: BackendStats,
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
        let bases = cfg
            .base_urls
            .iter()
            .map(|u| normalise_base(u))
            .collect::<Result<Vec<_>, BackendError>>()?;
        let api_key = std::env::var(&cfg.api_key_env)
            .ok()
            .filter(|k| !k.is_empty());
        let template = match (cfg.endpoint, &cfg.chat_template) {
            (ApiEndpoint::Chat, _) => None,
            (ApiEndpoint::Completions, None) => {
                return Err(BackendError::Config(
                    "--chat-template: the completions endpoint needs a jinja chat template file to render prompts".into(),
                ))
            }
            (ApiEndpoint::Completions, Some(path)) => Some(load_template(path)?),
        };
        let pool = HttpPool::new(PoolConfig {
            bases,
            concurrency: cfg.concurrency,
            timeout_secs: cfg.timeout_secs,
            max_retries: cfg.max_retries,
            backoff_secs: cfg.backoff_secs,
            api_key,
            name: "openai",
            expect: "a JSON completion",
        })
        .map_err(BackendError::Engine)?;
        let model = match &cfg.model {
            Some(m) => m.clone(),
            None => discover_model(&pool)?,
        };
        let info = BackendInfo {
            engine: "openai".into(),
            model: model.clone(),
            // The weights are the server's: nothing here can hash them.
            model_sha256: String::new(),
            context_per_sequence: cfg.context_per_sequence,
        };
        tracing::info!(model = %info.model, urls = cfg.base_urls.len(), concurrency = cfg.concurrency, "openai backend ready");
        Ok(OpenAiBackend {
            info,
            shared: Shared {
                model,
                cfg: cfg.clone(),
                template,
            },
            pool,
            pending: HashMap::new(),
            next_tag: 0,
            stats: BackendStats::default(),
        })
    }

    /// The base URLs in use, normalised.
    pub fn base_urls(&self) -> Vec<String> {
        self.pool.bases()
    }
}

/// The first model id the first reachable server lists.
fn discover_model(pool: &HttpPool) -> Result<String, BackendError> {
    let (body, url) = pool.get_first("models").map_err(|last| {
        BackendError::Unavailable(format!(
            "no server answered the model list ({last}); pass --api-model to skip it"
        ))
    })?;
    let v: Value = serde_json::from_str(&body).map_err(|e| {
        BackendError::Protocol(format!(
            "{url}: expected a JSON model list, got {}: {e}",
            excerpt(&body)
        ))
    })?;
    v["data"][0]["id"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| {
            BackendError::Protocol(format!(
                "{url}: expected data[0].id in the model list, got {}",
                excerpt(&body)
            ))
        })
}

impl Shared {
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

/// A completion response (chat or raw) → [`Generation`].
fn parse_completion(
    v: &Value,
    conversation: u64,
    side: Side,
    url: &str,
) -> Result<Generation, String> {
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
        conversation,
        side,
        text: text.trim().to_string(),
        prompt_tokens,
        reused_prompt_tokens: reused.min(prompt_tokens),
        completion_tokens,
        finish,
        candidate: 0,
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
        // Best-of-N: one server request per candidate, each with its seed.
        for one in request.split_candidates() {
            let body = self.shared.body(&one)?.to_string();
            let tag = self.next_tag;
            self.next_tag += 1;
            self.pool
                .submit(tag, self.shared.path(&one.prompt), body)
                .map_err(BackendError::Engine)?;
            self.pending
                .insert(tag, (one.conversation, one.side, one.candidate));
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Vec<Generation>, BackendError> {
        let t0 = Instant::now();
        let mut out = Vec::new();
        for (tag, r) in self.pool.collect(STEP_WAIT).map_err(BackendError::Engine)? {
            let (conversation, side, candidate) = self
                .pending
                .remove(&tag)
                .ok_or_else(|| BackendError::Engine(format!("answer to unknown request {tag}")))?;
            let (v, url) = r.map_err(|e| match e {
                PoolError::Fatal(m) => BackendError::Protocol(m),
                PoolError::GaveUp(m) => BackendError::Unavailable(m),
                PoolError::Shutdown => BackendError::Engine("backend shut down".into()),
            })?;
            let mut g =
                parse_completion(&v, conversation, side, &url).map_err(BackendError::Protocol)?;
            g.candidate = candidate;
            self.stats.prompt_tokens_evaluated +=
                u64::from(g.prompt_tokens.saturating_sub(g.reused_prompt_tokens));
            self.stats.prompt_tokens_reused += u64::from(g.reused_prompt_tokens);
            self.stats.tokens_generated += u64::from(g.completion_tokens);
            out.push(g);
        }
        self.stats.steps += 1;
        self.stats.decode_seconds += t0.elapsed().as_secs_f64();
        Ok(out)
    }

    fn in_flight(&self) -> usize {
        self.pool.in_flight()
    }

    fn release(&mut self, _conversation: u64) {}

    fn stats(&self) -> BackendStats {
        let mut s = self.stats.clone();
        s.requests_retried = self.pool.retries();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::sampler::SamplingParams;
    use crate::chat::ChatRole;

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
        let g = parse_completion(
            &v,
            req.conversation,
            req.side,
            "http://h/v1/chat/completions",
        )
        .unwrap();
        assert_eq!(g.text, "Hello there");
        assert_eq!(
            (g.prompt_tokens, g.reused_prompt_tokens, g.completion_tokens),
            (40, 32, 3)
        );
        assert_eq!(g.finish, FinishReason::Length);
        assert_eq!((g.conversation, g.side), (4, Side::User));
        let err = parse_completion(
            &json!({"choices":[]}),
            4,
            Side::User,
            "http://h/v1/chat/completions",
        )
        .unwrap_err();
        assert!(
            err.contains("choices[0]") && err.contains("http://h/v1/chat/completions"),
            "{err}"
        );
        let err = parse_completion(
            &json!({"choices":[{"message":{"content":"x"}}]}),
            4,
            Side::User,
            "http://h/v1/chat/completions",
        )
        .unwrap_err();
        assert!(err.contains("usage.completion_tokens"), "{err}");
    }

    #[test]
    fn bodies_carry_the_request_and_its_seed() {
        let shared = Shared {
            model: "m".into(),
            cfg: OpenAiConfig::default(),
            template: None,
        };
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
        let g = parse_completion(&v, 4, Side::User, "http://h/v1/completions").unwrap();
        assert_eq!((g.text.as_str(), g.completion_tokens), ("raw reply", 2));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
