//! A small OpenAI-compatible server for the openai backend's fault tests:
//! answers are a pure function of the request (so runs are reproducible),
//! and it can be told to fail in each of the ways a real server does.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the server answers a chat completion.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// A well-formed completion.
    Ok,
    /// `200` with a body that is not JSON.
    Garbage,
    /// `400` with an error object.
    BadRequest,
    /// Answers after this long.
    Slow(Duration),
    /// `503` to the first N completions, then well-formed ones.
    Unavailable(u64),
}

#[derive(Default)]
pub struct Counters {
    /// Completions answered with 200.
    pub served: AtomicU64,
    /// Completion requests received (any answer).
    pub received: AtomicU64,
    /// Requests being handled now, and the most at once.
    pub current: AtomicU64,
    pub max_concurrent: AtomicU64,
    /// Request bodies received.
    pub bodies: Mutex<Vec<serde_json::Value>>,
    /// Authorization headers received.
    pub auth: Mutex<Vec<String>>,
}

pub struct FakeServer {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

const USER_LINES: [&str; 6] = [
    "I'd like a funny movie for tonight.",
    "No, I've seen that one. Something darker?",
    "Why that one?",
    "Sounds good, I'll watch it. Thanks!",
    "Do you have anything from the nineties?",
    "Maybe a thriller with a twist.",
];

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

impl FakeServer {
    /// Start on a free port.
    pub fn start(mode: Mode) -> FakeServer {
        FakeServer::start_on(0, mode, None)
    }

    /// Start on `port` (0: any); after `die_after` completions it closes its
    /// port and drops every connection, as a killed server does.
    pub fn start_on(port: u16, mode: Mode, die_after: Option<u64>) -> FakeServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind fake server");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let counters = counters.clone();
            let stop = stop.clone();
            std::thread::spawn(move || loop {
                if stop.load(Ordering::SeqCst) {
                    return; // drops the listener: the port refuses connections
                }
                match listener.accept() {
                    Ok((s, _)) => {
                        let counters = counters.clone();
                        let stop = stop.clone();
                        std::thread::spawn(move || {
                            let _ = handle(s, mode, die_after, &counters, &stop);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            })
        };
        FakeServer {
            addr,
            counters,
            stop,
            accept: Some(accept),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Close the port and drop every connection.
    pub fn kill(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }

    pub fn served(&self) -> u64 {
        self.counters.served.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nothing listens on.
pub fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

fn handle(
    stream: TcpStream,
    mode: Mode,
    die_after: Option<u64>,
    c: &Counters,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    let mut auth = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
            if k.eq_ignore_ascii_case("authorization") {
                auth = v.trim().to_string();
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let mut out = stream;
    if request_line.starts_with("GET ") && request_line.contains("/v1/models") {
        return respond(
            &mut out,
            200,
            r#"{"object":"list","data":[{"id":"fake-model"}]}"#,
        );
    }
    let chat = request_line.contains("/v1/chat/completions");
    if !chat && !request_line.contains("/v1/completions") {
        return respond(&mut out, 404, r#"{"error":"not found"}"#);
    }
    let n = c.received.fetch_add(1, Ordering::SeqCst) + 1;
    let now = c.current.fetch_add(1, Ordering::SeqCst) + 1;
    c.max_concurrent.fetch_max(now, Ordering::SeqCst);
    c.auth.lock().unwrap().push(auth);
    // The answer is decided while the request counts as in flight; the
    // count drops before it is written, so a client that sends its next
    // request on reading it is never counted twice.
    let reply = (|| -> Option<(u16, String)> {
        let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        c.bodies.lock().unwrap().push(req.clone());
        match mode {
            Mode::Garbage => return Some((200, "<html>502 Bad Gateway</html>".into())),
            Mode::BadRequest => {
                return Some((
                    400,
                    r#"{"error":{"message":"'messages' must be a list","type":"invalid_request_error"}}"#
                        .into(),
                ))
            }
            Mode::Unavailable(k) if n <= k => {
                return Some((503, r#"{"error":"loading model"}"#.into()))
            }
            Mode::Slow(d) => std::thread::sleep(d),
            _ => {}
        }
        // A killed server answers nothing more.
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        if let Some(k) = die_after {
            if c.served.load(Ordering::SeqCst) >= k {
                stop.store(true, Ordering::SeqCst);
                return None;
            }
        }
        let prompt = if chat {
            &req["messages"]
        } else {
            &req["prompt"]
        };
        let key = format!("{}|{}", prompt, req["seed"]);
        let h = fnv(key.as_bytes());
        let system = if chat {
            req["messages"][0]["content"].as_str().unwrap_or("")
        } else {
            req["prompt"].as_str().unwrap_or("")
        };
        // A transcript prompt (the seeker's, on /completions) ends on an
        // open seeker line.
        let seeker_line = system
            .trim_end()
            .rsplit('\n')
            .next()
            .is_some_and(|l| l.starts_with("Seeker"));
        let text =
            if system.contains("recommend") && !system.contains("You are a person") && !seeker_line
            {
                format!(
                    "#{:04x} You might enjoy Heat (1995), a crime thriller.",
                    h & 0xffff
                )
            } else {
                // The tag first: a seeker turn is cut after a sentence end
                // (`[length]`), and the role guard rejects bracketed notes.
                format!("#{:04x} {}", h & 0xffff, USER_LINES[(h % 6) as usize])
            };
        let max = req["max_tokens"].as_u64().unwrap_or(16);
        let words = text.split_whitespace().count() as u64;
        let finish = if words >= max { "length" } else { "stop" };
        let choice = if chat {
            serde_json::json!({"index": 0, "message": {"role": "assistant", "content": text},
                               "finish_reason": finish})
        } else {
            serde_json::json!({"index": 0, "text": text, "finish_reason": finish})
        };
        let resp = serde_json::json!({
            "id": "cmpl-1",
            "object": if chat { "chat.completion" } else { "text_completion" },
            "model": req["model"],
            "choices": [choice],
            "usage": {"prompt_tokens": key.len() / 4, "completion_tokens": words,
                      "total_tokens": key.len() / 4 + words as usize},
        });
        c.served.fetch_add(1, Ordering::SeqCst);
        Some((200, resp.to_string()))
    })();
    c.current.fetch_sub(1, Ordering::SeqCst);
    match reply {
        Some((status, text)) => respond(&mut out, status, &text),
        None => Ok(()),
    }
}

fn respond(out: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}
