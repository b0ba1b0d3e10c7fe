//! A pool of worker threads that POST JSON to a set of base URLs: the one
//! HTTP client of usersim, shared by the OpenAI-compatible backend
//! ([`super::openai`]) and the `http` system under test
//! ([`crate::session::external`]).
//!
//! Concurrency is a fixed number of workers, so the requests in flight are
//! bounded whatever the number of jobs queued. Faults: connect errors,
//! timeouts, 429 and 5xx are retried with exponential backoff and jitter; a
//! base URL that refuses connections leaves the rotation for a cooling-off
//! period that grows while it stays dead (1 s, doubling, up to 32 s) and is
//! tried again afterwards. Any other status, or a 200 whose body is not
//! JSON, is fatal at once: retrying would only repeat it. What a JSON answer
//! means is the caller's business.
//!
//! Invariant: every submitted job comes back exactly once, tagged as it was
//! submitted, with the JSON answer and the URL that gave it, or with one
//! error line naming the URL and what came back.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;

/// Longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Largest response body read.
const MAX_BODY: u64 = 16 << 20;

/// How the pool talks to its servers.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Base URLs, already normalised by the caller (no trailing `/`); a job's
    /// path is appended after a `/` (an empty path posts to the base itself).
    pub bases: Vec<String>,
    /// Worker threads: most requests in flight.
    pub concurrency: usize,
    /// Seconds one attempt may take.
    pub timeout_secs: f64,
    /// Retries of one job after a connect error, timeout, 429 or 5xx.
    pub max_retries: u32,
    /// First backoff in seconds; doubles per retry, with jitter.
    pub backoff_secs: f64,
    /// Bearer token sent with every request (never logged).
    pub api_key: Option<String>,
    /// Thread name prefix (`openai`, `system`).
    pub name: &'static str,
    /// What a 200 must hold, for the error when it does not
    /// (`a JSON completion`).
    pub expect: &'static str,
}

/// How a job failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// A 4xx or a non-JSON 200: the request or the server is wrong.
    Fatal(String),
    /// Retries used up; the last reason.
    GaveUp(String),
    /// The pool is shutting down.
    Shutdown,
}

impl std::fmt::Display for PoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolError::Fatal(m) | PoolError::GaveUp(m) => f.write_str(m),
            PoolError::Shutdown => f.write_str("HTTP pool shut down"),
        }
    }
}

/// A finished job: its tag, and the JSON answer with the URL that gave it.
pub type PoolResult = (u64, Result<(Value, String), PoolError>);

struct Job {
    tag: u64,
    path: String,
    body: String,
}

/// One base URL and its health.
pub(crate) struct Endpoint {
    pub(crate) base: String,
    dead_until: Mutex<Option<Instant>>,
    failures: AtomicU64,
}

impl Endpoint {
    fn new(base: String) -> Self {
        Endpoint {
            base,
            dead_until: Mutex::new(None),
            failures: AtomicU64::new(0),
        }
    }

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
pub(crate) struct PoolShared {
    pub(crate) endpoints: Vec<Endpoint>,
    next_endpoint: AtomicUsize,
    pub(crate) agent: ureq::Agent,
    pub(crate) cfg: PoolConfig,
    shutdown: AtomicBool,
    retries: AtomicU64,
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

/// The pool. Dropping it tells the workers to stop after their current
/// attempt.
pub struct HttpPool {
    shared: Arc<PoolShared>,
    jobs: Option<Sender<Job>>,
    results: Receiver<PoolResult>,
    in_flight: usize,
}

impl HttpPool {
    /// Start `cfg.concurrency` workers. Errors are one line (a thread that
    /// would not start, no URL, no worker).
    pub fn new(cfg: PoolConfig) -> Result<Self, String> {
        if cfg.bases.is_empty() {
            return Err("no URL to send requests to".into());
        }
        if cfg.concurrency == 0 {
            return Err("concurrency must be at least 1".into());
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs_f64(cfg.timeout_secs)))
            .http_status_as_error(false)
            .max_idle_connections_per_host(cfg.concurrency.max(3))
            .build()
            .into();
        let shared = Arc::new(PoolShared {
            endpoints: cfg.bases.iter().cloned().map(Endpoint::new).collect(),
            next_endpoint: AtomicUsize::new(0),
            agent,
            cfg: cfg.clone(),
            shutdown: AtomicBool::new(false),
            retries: AtomicU64::new(0),
        });
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (res_tx, res_rx) = mpsc::channel::<PoolResult>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for i in 0..cfg.concurrency {
            let shared = Arc::clone(&shared);
            let job_rx = Arc::clone(&job_rx);
            let res_tx = res_tx.clone();
            std::thread::Builder::new()
                .name(format!("{}-{i}", cfg.name))
                .spawn(move || worker(&shared, &job_rx, &res_tx))
                .map_err(|e| format!("cannot start a worker thread: {e}"))?;
        }
        Ok(HttpPool {
            shared,
            jobs: Some(job_tx),
            results: res_rx,
            in_flight: 0,
        })
    }

    /// Queue a POST of `body` to `<base>/<path>`, tagged `tag`.
    pub fn submit(&mut self, tag: u64, path: &str, body: String) -> Result<(), String> {
        let tx = self.jobs.as_ref().ok_or("HTTP pool shut down")?;
        tx.send(Job {
            tag,
            path: path.to_string(),
            body,
        })
        .map_err(|_| "every worker thread has stopped".to_string())?;
        self.in_flight += 1;
        Ok(())
    }

    /// Finished jobs: waits up to `wait` for the first when none is ready
    /// and some are in flight, then takes whatever else has arrived.
    pub fn collect(&mut self, wait: Duration) -> Result<Vec<PoolResult>, String> {
        let mut out = Vec::new();
        if self.in_flight > 0 && !wait.is_zero() {
            match self.results.recv_timeout(wait) {
                Ok(r) => out.push(r),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("every worker thread has stopped".into())
                }
            }
        }
        while let Ok(r) = self.results.try_recv() {
            out.push(r);
        }
        self.in_flight = self.in_flight.saturating_sub(out.len());
        Ok(out)
    }

    /// Jobs submitted and not yet collected.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Retries made so far.
    pub fn retries(&self) -> u64 {
        self.shared.retries.load(Ordering::Relaxed)
    }

    /// The base URLs, as given.
    pub fn bases(&self) -> Vec<String> {
        self.shared.cfg.bases.clone()
    }

    /// A GET of `<base>/<path>` on each base in turn: the first 200's body,
    /// or the last failure as one line.
    pub fn get_first(&self, path: &str) -> Result<(String, String), String> {
        let mut last = String::new();
        for ep in &self.shared.endpoints {
            let url = format!("{}/{path}", ep.base);
            let mut req = self.shared.agent.get(&url);
            if let Some(k) = &self.shared.cfg.api_key {
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
                    if status == 200 {
                        return Ok((body, url));
                    }
                    last = format!("{url}: HTTP {status}: {}", excerpt(&body));
                }
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        Err(last)
    }
}

impl Drop for HttpPool {
    fn drop(&mut self) {
        // Workers finish (or time out) their current attempt and exit;
        // nobody waits for them.
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.jobs = None;
    }
}

impl PoolShared {
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

    fn attempt(&self, ep: &Endpoint, path: &str, body: &str) -> Attempt {
        let url = join(&ep.base, path);
        let mut req = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json");
        if let Some(k) = &self.cfg.api_key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
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
                    "{url}: expected {}, got {}: {e}",
                    self.cfg.expect,
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

    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        backoff(self.cfg.backoff_secs, retry)
    }

    fn run(&self, job: &Job) -> Result<(Value, String), PoolError> {
        let started = Instant::now();
        let mut last = String::new();
        for attempt in 0..=self.cfg.max_retries {
            if self.shutdown.load(Ordering::SeqCst) {
                return Err(PoolError::Shutdown);
            }
            if attempt > 0 {
                self.retries.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(self.backoff(attempt - 1));
            }
            let ep = self.pick();
            match self.attempt(ep, &job.path, &job.body) {
                Attempt::Done(v) => {
                    ep.mark_alive();
                    return Ok((v, join(&ep.base, &job.path)));
                }
                Attempt::Fatal(msg) => return Err(PoolError::Fatal(msg)),
                Attempt::Retry { reason, dead } => {
                    if dead {
                        ep.mark_dead();
                    }
                    tracing::debug!(attempt, %reason, "request failed, retrying");
                    last = reason;
                }
            }
        }
        Err(PoolError::GaveUp(format!(
            "{last} (gave up after {} attempts over {:.1} s; finished conversations are saved, rerun with --resume)",
            self.cfg.max_retries + 1,
            started.elapsed().as_secs_f64()
        )))
    }
}

/// `base/path`, or `base` for an empty path.
fn join(base: &str, path: &str) -> String {
    if path.is_empty() {
        base.to_string()
    } else {
        format!("{base}/{path}")
    }
}

/// The pause before retry `retry` (0-based): `backoff_secs · 2^retry`,
/// capped at [`MAX_BACKOFF`], times a jitter factor in [0.5, 1], so workers
/// that failed together do not all come back at the same instant.
pub fn backoff(backoff_secs: f64, retry: u32) -> Duration {
    let base = backoff_secs * f64::from(1u32 << retry.min(16));
    let capped = base.min(MAX_BACKOFF.as_secs_f64());
    let f = rand::rng().random_range(0.5..=1.0);
    Duration::from_secs_f64(capped * f)
}

fn worker(shared: &PoolShared, jobs: &Mutex<Receiver<Job>>, results: &Sender<PoolResult>) {
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        let Ok(job) = job else { return };
        let r = shared.run(&job);
        if results.send((job.tag, r)).is_err() {
            return;
        }
    }
}

/// A short, single-line excerpt of a body for error messages.
pub fn excerpt(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        for retry in 0..4 {
            let full = f64::from(1u32 << retry);
            let d = backoff(1.0, retry).as_secs_f64();
            assert!(d >= full / 2.0 - 1e-9 && d <= full + 1e-9, "{retry}: {d}");
        }
        assert!(backoff(1.0, 20) <= MAX_BACKOFF);
    }

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(excerpt("  "), "an empty body");
        assert_eq!(excerpt("a\n b"), "\"a b\"");
        assert!(excerpt(&"x".repeat(500)).chars().count() < 170);
    }
}
