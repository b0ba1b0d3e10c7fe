//! The `http` system under test: one JSON POST per system turn to a URL,
//! through the worker pool the OpenAI backend uses
//! ([`crate::backend::http_pool`]): bounded requests in flight, retries
//! with backoff and jitter on connect errors, timeouts, 429 and 5xx.
//!
//! Invariant: every turn handed to the pool comes back as one answer for
//! its conversation or fails the run with one line naming the URL.

use std::time::Duration;

use crate::backend::http_pool::{HttpPool, PoolConfig, PoolError};
use crate::scenario::system::SystemSpec;
use crate::session::external::{parse_answer, RequestContext};
use crate::session::system::{System, SystemAction, SystemError, SystemReply, SystemTurn};

/// An external system behind a URL.
pub struct HttpSystem {
    ctx: RequestContext,
    pool: HttpPool,
    url: String,
}

impl HttpSystem {
    /// Start the pool for `spec` (checked: `url` is set).
    pub fn new(spec: &SystemSpec, ctx: RequestContext) -> Result<Self, SystemError> {
        let url = spec
            .url
            .as_deref()
            .map(|u| u.trim().to_string())
            .ok_or_else(|| SystemError::Config("--system http needs --system-url URL".into()))?;
        let pool = HttpPool::new(PoolConfig {
            bases: vec![url.clone()],
            concurrency: spec.concurrency,
            timeout_secs: spec.timeout_secs,
            max_retries: spec.max_retries,
            backoff_secs: spec.backoff_secs,
            api_key: None,
            name: "system",
            expect: "a JSON answer",
        })
        .map_err(|e| SystemError::External(format!("{url}: {e}")))?;
        Ok(HttpSystem { ctx, pool, url })
    }
}

impl System for HttpSystem {
    fn name(&self) -> &str {
        "http"
    }

    fn respond(&mut self, turn: &SystemTurn<'_>) -> Result<SystemAction, SystemError> {
        let body = self.ctx.request(turn).to_string();
        self.pool
            .submit(turn.conversation, "", body)
            .map_err(|e| SystemError::External(format!("{}: {e}", self.url)))?;
        Ok(SystemAction::Pending)
    }

    fn poll(&mut self, wait: Duration) -> Result<Vec<(u64, SystemReply)>, SystemError> {
        let done = self
            .pool
            .collect(wait)
            .map_err(|e| SystemError::External(format!("{}: {e}", self.url)))?;
        let mut out = Vec::with_capacity(done.len());
        for (conversation, r) in done {
            let (v, url) = r.map_err(|e| match e {
                PoolError::Fatal(m) | PoolError::GaveUp(m) => SystemError::External(m),
                PoolError::Shutdown => SystemError::External(format!("{}: shut down", self.url)),
            })?;
            let id = self.ctx.id(conversation);
            if let Some(got) = v.get("id").filter(|x| !x.is_null()) {
                if got.as_str() != Some(id.as_str()) {
                    return Err(SystemError::External(format!(
                        "{url}: answer to {id} carries id {got}"
                    )));
                }
            }
            let reply = parse_answer(&v)
                .map_err(|e| SystemError::External(format!("{url}: answer to {id}: {e}")))?;
            out.push((conversation, reply));
        }
        Ok(out)
    }

    fn pending(&self) -> usize {
        self.pool.in_flight()
    }
}
