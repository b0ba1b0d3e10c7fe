//! The judging web app: server-rendered HTML over `tiny_http`, one request
//! at a time against the study file, a few lines of inline JavaScript for
//! keyboard shortcuts, nothing fetched from elsewhere (works offline).
//!
//! Invariant: nothing served names or encodes an item's source (pages carry
//! the item's random token and the turns' text only, and every item page is
//! the same template), and a request changes the study only through
//! [`Study::answer`] with the judge's own secret token and the nonce issued
//! for that judge and item: an answer is stored once and committed before
//! the reply; anything malformed, foreign or replayed gets a 4xx and
//! changes nothing.
//!
//! Routes: `GET /` (a name form), `POST /start` (new judge → `303` to their
//! link), `GET /j/<token>` (the judge's next item, or "done"), `POST
//! /j/<token>` (an answer → `303` back).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;

use super::study::{Answer, AnswerOutcome, Item, Judge, Study, Verdict};
use super::JudgeError;

/// The default address: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8377";
/// Largest form body accepted.
pub const MAX_BODY: usize = 16 * 1024;
/// Longest comment kept, in characters.
pub const MAX_COMMENT: usize = 2000;
/// Longest judge name, in characters.
pub const MAX_NAME: usize = 60;

/// Parses `--addr` and refuses a non-loopback address without `--public`.
pub fn check_addr(addr: &str, public: bool) -> Result<SocketAddr, JudgeError> {
    let sa: SocketAddr = addr.parse().map_err(|_| {
        JudgeError::Input(format!(
            "--addr {addr}: expected IP:PORT, such as {DEFAULT_ADDR}"
        ))
    })?;
    if !sa.ip().is_loopback() && !public {
        return Err(JudgeError::Input(format!(
            "--addr {addr}: not a loopback address, so other machines could open the study; add --public to serve it there"
        )));
    }
    Ok(sa)
}

/// Who can open a server bound to `addr`, in words.
pub fn reach(addr: SocketAddr) -> String {
    if addr.ip().is_loopback() {
        format!("only this machine (loopback {addr})")
    } else if addr.ip().is_unspecified() {
        format!(
            "anyone who can reach this machine on port {} (every network interface)",
            addr.port()
        )
    } else {
        format!("anyone who can reach {addr}")
    }
}

/// A reply before it is sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// HTML body.
    pub body: String,
    /// `Location` of a redirect.
    pub location: Option<String>,
}

impl Reply {
    fn page(status: u16, body: String) -> Reply {
        Reply {
            status,
            body,
            location: None,
        }
    }

    fn see_other(location: String) -> Reply {
        Reply {
            status: 303,
            body: String::new(),
            location: Some(location),
        }
    }

    fn error(status: u16, message: &str) -> Reply {
        Reply::page(
            status,
            layout(
                "usersim judge",
                &format!(
                    "<p class=\"err\">{}</p><p><a href=\"/\">Start page</a></p>",
                    esc(message)
                ),
            ),
        )
    }
}

/// A judging server bound to its address.
pub struct Server {
    http: tiny_http::Server,
    study: Study,
    addr: SocketAddr,
}

impl Server {
    /// Opens the study and listens on `addr` (already checked by
    /// [`check_addr`]; port 0 picks a free port).
    pub fn bind(study: &Path, addr: SocketAddr) -> Result<Server, JudgeError> {
        let study = Study::open(study)?;
        let http = tiny_http::Server::http(addr).map_err(|e| JudgeError::Listen {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
        let bound = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| JudgeError::Listen {
                addr: addr.to_string(),
                message: "not an IP socket".into(),
            })?;
        Ok(Server {
            http,
            study,
            addr: bound,
        })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The open study.
    pub fn study(&self) -> &Study {
        &self.study
    }

    /// Serves requests until the process ends.
    pub fn run(mut self) -> Result<(), JudgeError> {
        loop {
            let mut req = match self.http.recv() {
                Ok(r) => r,
                Err(_) => continue,
            };
            let method = req.method().as_str().to_string();
            let url = req.url().to_string();
            let content_type = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Content-Type"))
                .map(|h| h.value.as_str().to_string());
            let mut body = Vec::new();
            let too_big = req
                .as_reader()
                .take(MAX_BODY as u64 + 1)
                .read_to_end(&mut body)
                .is_err()
                || body.len() > MAX_BODY;
            let reply = if too_big {
                Reply::error(413, "The form is too large.")
            } else {
                handle(
                    &mut self.study,
                    &method,
                    &url,
                    content_type.as_deref(),
                    &body,
                )?
            };
            let _ = req.respond(response(reply));
        }
    }
}

fn header(name: &str, value: &str) -> Option<tiny_http::Header> {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn response(r: Reply) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut resp = tiny_http::Response::from_string(r.body).with_status_code(r.status);
    let mut headers = vec![
        ("Content-Type", "text/html; charset=utf-8".to_string()),
        ("Cache-Control", "no-store".to_string()),
        ("Referrer-Policy", "no-referrer".to_string()),
        ("X-Frame-Options", "DENY".to_string()),
        ("X-Content-Type-Options", "nosniff".to_string()),
        (
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
                .to_string(),
        ),
    ];
    if let Some(l) = r.location {
        headers.push(("Location", l));
    }
    for (k, v) in headers {
        if let Some(h) = header(k, &v) {
            resp = resp.with_header(h);
        }
    }
    resp
}

fn is_token(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Answers one request against `study`: the whole app, without sockets.
/// `Err` only when the study file itself fails.
pub fn handle(
    study: &mut Study,
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Reply, JudgeError> {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let form_ok = content_type.is_some_and(|c| {
        c.split(';').next().is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    });
    match (method, path) {
        ("GET", "/") => Ok(Reply::page(200, start_page())),
        ("POST", "/start") => {
            if !form_ok {
                return Ok(Reply::error(415, "Expected a form."));
            }
            let Some(form) = parse_form(body, &["name"]) else {
                return Ok(Reply::error(400, "Malformed form."));
            };
            let name = form.get("name").map_or("", |n| n.trim());
            if name.is_empty()
                || name.chars().count() > MAX_NAME
                || name.chars().any(char::is_control)
                || name.starts_with("crowd:")
            {
                return Ok(Reply::error(
                    400,
                    &format!("Enter a name of 1 to {MAX_NAME} characters."),
                ));
            }
            if study.judge_by_name(name)?.is_some() {
                return Ok(Reply::error(
                    409,
                    "This name is taken. If it is yours, open the link you were given when you started.",
                ));
            }
            let judge = study.add_judge(name, false)?;
            Ok(Reply::see_other(format!("/j/{}", judge.token)))
        }
        (m, p) if p.starts_with("/j/") => {
            let token = &p[3..];
            let judge = if is_token(token) {
                study.judge_by_token(token)?
            } else {
                None
            };
            let Some(judge) = judge else {
                return Ok(Reply::error(404, "Unknown link."));
            };
            match m {
                "GET" => next_item(study, &judge),
                "POST" => {
                    if !form_ok {
                        return Ok(Reply::error(415, "Expected a form."));
                    }
                    post_answer(study, &judge, body)
                }
                _ => Ok(Reply::error(405, "Method not allowed.")),
            }
        }
        ("GET", _) => Ok(Reply::error(404, "Not found.")),
        _ => Ok(Reply::error(405, "Method not allowed.")),
    }
}

/// Form fields, each at most once and all in `allowed`; `None` otherwise.
fn parse_form<'a>(body: &[u8], allowed: &[&'a str]) -> Option<HashMap<&'a str, String>> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        let key = allowed.iter().find(|a| **a == k)?;
        if out.insert(*key, v.into_owned()).is_some() {
            return None;
        }
    }
    Some(out)
}

fn post_answer(study: &mut Study, judge: &Judge, body: &[u8]) -> Result<Reply, JudgeError> {
    let fields = [
        "item",
        "nonce",
        "verdict",
        "confidence",
        "realism",
        "comment",
    ];
    let Some(form) = parse_form(body, &fields) else {
        return Ok(Reply::error(400, "Malformed form."));
    };
    let get = |k: &str| form.get(k).map(String::as_str);
    let scale = |k: &str| match get(k).and_then(|v| v.parse::<u8>().ok()) {
        Some(v @ 1..=5) => Some(v),
        _ => None,
    };
    let (Some(item), Some(nonce), Some(verdict), Some(confidence), Some(realism)) = (
        get("item"),
        get("nonce"),
        get("verdict").and_then(Verdict::parse),
        scale("confidence"),
        scale("realism"),
    ) else {
        return Ok(Reply::error(
            400,
            "Choose person or simulator, a confidence and a realism rating (1 to 5).",
        ));
    };
    let comment = get("comment").unwrap_or("").trim();
    if comment.chars().count() > MAX_COMMENT {
        return Ok(Reply::error(
            400,
            &format!("Comments are at most {MAX_COMMENT} characters."),
        ));
    }
    let item = match is_token(item)
        .then(|| study.item_by_token(item))
        .transpose()?
    {
        Some(Some(i)) => i,
        _ => return Ok(Reply::error(400, "Unknown item.")),
    };
    let answer = Answer {
        verdict,
        confidence,
        realism,
        comment: comment.to_string(),
    };
    match study.answer(judge.id, item.id, Some(nonce), &answer)? {
        AnswerOutcome::Stored => Ok(Reply::see_other(format!("/j/{}", judge.token))),
        AnswerOutcome::AlreadyAnswered => Ok(Reply::error(
            409,
            "This item is already answered; answers cannot be changed.",
        )),
        AnswerOutcome::BadNonce => Ok(Reply::error(
            403,
            "This form was not issued to you for this item.",
        )),
    }
}

fn next_item(study: &Study, judge: &Judge) -> Result<Reply, JudgeError> {
    let order = study.order(judge)?;
    let done = study.answered(judge.id)?;
    let total = order.len();
    let Some(next) = order.iter().find(|i| !done.contains(i)) else {
        return Ok(Reply::page(
            200,
            layout(
                "usersim judge: done",
                &format!(
                    "<header><span class=\"progress\" id=\"progress\">{total} of {total}</span> · {name}</header>\
                     <h1 id=\"done\">All {total} items answered. Thank you!</h1>",
                    name = esc(&judge.name)
                ),
            ),
        ));
    };
    let item = study
        .items()?
        .into_iter()
        .find(|i| i.id == *next)
        .ok_or_else(|| JudgeError::Input("item vanished from the study".into()))?;
    let nonce = study.nonce(judge.id, item.id)?;
    Ok(Reply::page(
        200,
        item_page(judge, &item, &nonce, done.len() + 1, total),
    ))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:0 auto;max-width:760px;padding:1em;color:#222}\
header{color:#555;margin-bottom:1em}.progress{font-weight:bold}\
.turn{margin:.4em 0;padding:.5em .8em;border-radius:8px;max-width:85%}\
.turn .who{display:block;font-size:.75em;color:#666}\
.seeker{background:#e8f0fe;margin-left:auto}.recommender{background:#f1f1f1}\
.target{outline:3px solid #f0a000}.omitted{color:#777;font-style:italic}\
fieldset{border:1px solid #ccc;margin:.6em 0;border-radius:6px}\
label{margin-right:1em;white-space:nowrap}kbd{border:1px solid #aaa;border-radius:3px;padding:0 .3em;font-size:.8em;color:#555}\
textarea{width:100%;height:4em}button{font-size:1.1em;padding:.4em 1.4em}.err{color:#b00;font-weight:bold}";

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n",
        esc(title)
    )
}

fn start_page() -> String {
    layout(
        "usersim judge",
        "<h1>Person or simulator?</h1>\
         <p>You will read short conversations in which someone asks for movie recommendations. \
         For each, decide whether the highlighted words were written by a person or by a computer simulator, \
         how sure you are, and how natural they read. Your answers are saved as you give them; \
         keep the link you get to come back later.</p>\
         <form method=\"post\" action=\"/start\"><label>Your name \
         <input name=\"name\" id=\"name\" maxlength=\"60\" required autofocus></label> \
         <button type=\"submit\" id=\"start\">Start</button></form>",
    )
}

/// The item page. Every item gets this same template: only the turns'
/// text, the progress, the item token and the nonce differ.
fn item_page(judge: &Judge, item: &Item, nonce: &str, position: usize, total: usize) -> String {
    let mut turns = String::new();
    if item.omitted > 0 {
        let _ = write!(
            turns,
            "<p class=\"omitted\">({} earlier turns not shown)</p>",
            item.omitted
        );
    }
    let turn = |out: &mut String, seeker: bool, text: &str, target: bool| {
        let (class, who) = if seeker {
            ("seeker", "Seeker")
        } else {
            ("recommender", "Recommender")
        };
        let _ = write!(
            out,
            "<div class=\"turn {class}{}\"><span class=\"who\">{who}</span>{}</div>",
            if target { " target" } else { "" },
            esc(text)
        );
    };
    let conversation = item.target.is_none();
    for t in &item.context {
        turn(&mut turns, t.seeker, &t.text, conversation && t.seeker);
    }
    if let Some(t) = &item.target {
        turn(&mut turns, true, t, true);
    }
    let question = if conversation {
        "Were the <b>seeker's turns</b> (highlighted) written by a person or by a simulator?"
    } else {
        "Was the <b>highlighted seeker turn</b> written by a person or by a simulator?"
    };
    let radios = |name: &str, prefix: &str, keys: &str| {
        (1..=5)
            .map(|v| {
                format!(
                    "<label><input type=\"radio\" name=\"{name}\" value=\"{v}\" id=\"{prefix}{v}\" required> {v}</label>"
                )
            })
            .collect::<String>()
            + &format!(" <kbd>{keys}</kbd>")
    };
    let body = format!(
        "<header><span class=\"progress\" id=\"progress\">{position} of {total}</span> · {name}</header>\
         <p>{question}</p>\
         <div class=\"turns\" id=\"turns\">{turns}</div>\
         <form method=\"post\" action=\"/j/{jt}\" id=\"answer\">\
         <input type=\"hidden\" name=\"item\" value=\"{it}\"><input type=\"hidden\" name=\"nonce\" value=\"{nonce}\">\
         <fieldset><legend>Written by</legend>\
         <label><input type=\"radio\" name=\"verdict\" value=\"person\" id=\"v-person\" required> a person <kbd>P</kbd></label>\
         <label><input type=\"radio\" name=\"verdict\" value=\"simulator\" id=\"v-simulator\"> a simulator <kbd>S</kbd></label></fieldset>\
         <fieldset><legend>How sure are you? (1 guessing … 5 certain)</legend>{conf}</fieldset>\
         <fieldset><legend>How natural does it read? (1 not at all … 5 fully)</legend>{real}</fieldset>\
         <fieldset><legend>Comment (optional)</legend><textarea name=\"comment\" id=\"comment\" maxlength=\"{MAX_COMMENT}\"></textarea></fieldset>\
         <button type=\"submit\" id=\"submit\">Submit <kbd>Enter</kbd></button></form>\
         <script>document.addEventListener('keydown',function(e){{\
         if(e.target.tagName==='TEXTAREA'||e.ctrlKey||e.altKey||e.metaKey)return;\
         var k=e.key.toLowerCase(),id=null,d=/^Digit([1-5])$/.exec(e.code)||/^([1-5])$/.exec(e.key);\
         if(k==='p')id='v-person';else if(k==='s')id='v-simulator';\
         else if(d)id=(e.shiftKey?'r':'c')+d[1];\
         else if(e.key==='Enter'){{e.preventDefault();document.getElementById('answer').requestSubmit();return;}}\
         if(id){{document.getElementById(id).checked=true;e.preventDefault();}}}});</script>",
        name = esc(&judge.name),
        jt = judge.token,
        it = item.token,
        conf = radios("confidence", "c", "1–5"),
        real = radios("realism", "r", "Shift+1–5"),
    );
    layout("usersim judge", &body)
}
