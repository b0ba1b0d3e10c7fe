//! A local llama.cpp `llama-server` as a child process, for `bench --llama-server`
//! (the openai backend against the same model on the same machine) and for
//! the tests. It is started on 127.0.0.1 on a free port, waited for until
//! `/health` answers, and killed when dropped.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::backend::BackendError;

/// How to start the server.
#[derive(Clone, Debug)]
pub struct LlamaServerConfig {
    /// The `llama-server` binary.
    pub binary: PathBuf,
    /// The GGUF it serves.
    pub model: PathBuf,
    /// Parallel slots (`-np`).
    pub slots: usize,
    /// Context tokens per slot (the server gets `slots ×` this).
    pub context_per_slot: u32,
    /// Threads (`-t`); 0 leaves llama-server's default.
    pub threads: u32,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// Seconds to wait for `/health`.
    pub startup_timeout_secs: f64,
}

/// A running llama-server; killed on drop.
pub struct LlamaServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

fn free_port() -> Result<u16, BackendError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BackendError::Engine(format!("no free local port: {e}")))
}

impl LlamaServer {
    /// Start it and wait until it serves.
    pub fn start(cfg: &LlamaServerConfig) -> Result<LlamaServer, BackendError> {
        let port = if cfg.port == 0 {
            free_port()?
        } else {
            cfg.port
        };
        let log = std::env::temp_dir().join(format!(
            "usersim-llama-server-{}-{port}.log",
            std::process::id()
        ));
        let log_file = std::fs::File::create(&log)
            .map_err(|e| BackendError::Engine(format!("{}: {e}", log.display())))?;
        let ctx = cfg.context_per_slot as u64 * cfg.slots.max(1) as u64;
        let mut cmd = Command::new(&cfg.binary);
        cmd.arg("-m")
            .arg(&cfg.model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-np", &cfg.slots.max(1).to_string(), "-c", &ctx.to_string()])
            .arg("--no-webui")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        if cfg.threads > 0 {
            cmd.args(["-t", &cfg.threads.to_string()]);
        }
        let child = cmd.spawn().map_err(|e| BackendError::Load {
            path: cfg.binary.display().to_string(),
            message: format!("cannot start llama-server: {e}"),
        })?;
        let mut server = LlamaServer { child, port, log };
        server.wait_healthy(Duration::from_secs_f64(cfg.startup_timeout_secs))?;
        tracing::info!(port, slots = cfg.slots, "llama-server up");
        Ok(server)
    }

    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log file (stderr).
    pub fn log(&self) -> &Path {
        &self.log
    }

    fn wait_healthy(&mut self, timeout: Duration) -> Result<(), BackendError> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("{}/health", self.url());
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(BackendError::Engine(format!(
                    "llama-server exited with {status} while starting: {}",
                    self.log_tail()
                )));
            }
            if let Ok(r) = agent.get(&url).call() {
                if r.status().as_u16() == 200 {
                    return Ok(());
                }
            }
            if t0.elapsed() > timeout {
                return Err(BackendError::Engine(format!(
                    "llama-server not healthy after {:.0} s: {}",
                    timeout.as_secs_f64(),
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().rev().take(3).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    /// Kill it now (SIGKILL) and wait for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}
