//! A minimal WebDriver client (the W3C HTTP JSON protocol through `ureq`)
//! driving headless Chromium through Debian's `chromedriver`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

pub struct Driver {
    chromedriver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

fn which(candidates: &[&str]) -> String {
    candidates
        .iter()
        .find(|c| Path::new(c).is_file())
        .unwrap_or_else(|| {
            panic!("none of {candidates:?}: .ci/run installs chromium and chromium-driver")
        })
        .to_string()
}

impl Driver {
    /// Starts chromedriver on a free port and a headless Chromium session
    /// with a fresh profile.
    pub fn start() -> Driver {
        let driver = which(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
        let chromium = which(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"]);
        let profile = tempfile::tempdir().expect("profile dir");
        let port = free_port();
        let chromedriver = Command::new(driver)
            .arg(format!("--port={port}"))
            .env("HOME", profile.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut d = Driver {
            chromedriver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            agent,
            _profile: profile,
        };
        // Ready when /status answers; chromedriver exiting first fails.
        loop {
            if let Ok(mut r) = d.agent.get(format!("{}/status", d.base)).call() {
                if r.body_mut()
                    .read_to_string()
                    .is_ok_and(|b| b.contains("\"ready\":true"))
                {
                    break;
                }
            }
            assert!(
                d.chromedriver.try_wait().expect("chromedriver").is_none(),
                "chromedriver exited"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let user_data = d._profile.path().join("chromium");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--hide-scrollbars", "--force-device-scale-factor=1",
                "--window-size=900,1000",
                format!("--user-data-dir={}", user_data.display())
            ]}
        }}});
        let v = d.raw("POST", "/session", Some(caps));
        d.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        d
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{}", self.base, path);
        let resp = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(json!({})).to_string()),
        };
        let mut resp = resp.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .expect("webdriver body");
        let v: Value = serde_json::from_str(&text).expect("webdriver JSON");
        assert!(status < 400, "{method} {path}: {status} {v}");
        v["value"].clone()
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.raw(method, &format!("/session/{}{}", self.session, path), body)
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .expect("url")
            .to_string()
    }

    pub fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .as_str()
            .expect("source")
            .to_string()
    }

    fn element(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    pub fn click(&self, css: &str) {
        let e = self.element(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Presses `keys` (WebDriver key values) one after another on the
    /// focused element.
    pub fn press(&self, keys: &[&str]) {
        let mut actions = Vec::new();
        for k in keys {
            actions.push(json!({"type": "keyDown", "value": k}));
            actions.push(json!({"type": "keyUp", "value": k}));
        }
        self.cmd(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
    }

    /// Whether the checkbox or radio `css` is selected.
    pub fn selected(&self, css: &str) -> bool {
        let e = self.element(css);
        self.cmd("GET", &format!("/element/{e}/selected"), None)
            .as_bool()
            .expect("selected")
    }

    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let b64 = self.cmd("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 screenshot"))
            .expect("decode screenshot")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .agent
                .delete(format!("{}/session/{}", self.base, self.session))
                .call();
        }
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
    }
}

/// Decodes a PNG and checks it is not blank: at least 2% of its pixels
/// differ from the most common colour, in at least 8 colours.
pub fn assert_not_blank(png_bytes: &[u8], what: &str) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let channels = info.color_type.samples();
    let mut counts = std::collections::HashMap::new();
    for px in buf[..info.buffer_size()].chunks(channels) {
        *counts.entry((px[0], px[1], px[2])).or_insert(0usize) += 1;
    }
    let total: usize = counts.values().sum();
    let top = counts.values().copied().max().unwrap_or(0);
    assert!(
        (total - top) * 50 >= total && counts.len() >= 8,
        "{what} screenshot looks blank: {} colours, {} of {total} pixels off the background",
        counts.len(),
        total - top
    );
    (info.width, info.height)
}
