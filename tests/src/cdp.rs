//! Driving Debian's `chromium` headless through the Chrome DevTools
//! Protocol, for tests of what a page does (`report.html`'s charts): real
//! mouse events, values read back from the DOM, screenshots, and every
//! console error or uncaught exception the page raised.
//!
//! The browser is started with `--remote-debugging-pipe`: the protocol's
//! JSON messages, each ended by a NUL byte, go in on its fd 3 and come out
//! on its fd 4. A shell maps those to the child's stdin and stdout, so
//! there is no port to pick or race for and no WebSocket client to carry,
//! only `serde_json`. Commands are answered in order; events that arrive
//! meanwhile are kept.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// Longest wait for an answer or an event: generous, since tests run in
/// parallel on 2 cores and a page may be loading beside a controller run.
const WAIT: Duration = Duration::from_secs(60);

/// The browser: `chromium` (Debian) or `chromium-browser`, from the PATH.
/// `scripts/install-test-deps.sh` installs it.
pub fn chromium_bin() -> &'static str {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            Command::new("sh")
                .args(["-c", &format!("command -v {b}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium is missing: run scripts/install-test-deps.sh (apt-get install chromium)")
}

/// Flags for a headless browser that stays off the network and out of the
/// user's profile (a fresh `--user-data-dir` is added by the caller).
pub const HEADLESS: [&str; 11] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--mute-audio",
];

/// One headless browser with one page attached; killed when dropped.
pub struct Page {
    child: Child,
    to: ChildStdin,
    from: Receiver<Value>,
    next_id: u64,
    session: String,
    /// Events received so far, in order (`{"method", "params"}`).
    pub events: Vec<Value>,
    /// The browser's stderr, quoted when it fails.
    log: PathBuf,
}

impl Page {
    /// Starts the browser with a fresh profile in `profile` (created) and
    /// opens a blank page of `width` × `height` CSS pixels, its console,
    /// exceptions and log reported from the start.
    pub fn open(profile: &Path, width: u32, height: u32) -> Page {
        std::fs::create_dir_all(profile).unwrap();
        let log = profile.join("chromium.log");
        let mut child = Command::new("sh")
            // fd 3: what the browser reads (our stdin pipe); fd 4: what it
            // writes (our stdout pipe); its own stdout joins its stderr.
            .args(["-c", r#"exec "$@" 3<&0 4>&1 0</dev/null 1>&2"#, "sh"])
            .arg(chromium_bin())
            .args(HEADLESS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--remote-debugging-pipe")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start chromium");
        let to = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (tx, from) = channel();
        // A thread reads, so a silent browser is a timeout, not a hang.
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match out.read_until(0, &mut buf) {
                    Ok(n) if n > 0 && buf.last() == Some(&0) => {
                        let msg = serde_json::from_slice(&buf[..n - 1]).expect("CDP message");
                        if tx.send(msg).is_err() {
                            return;
                        }
                    }
                    _ => return,
                }
            }
        });
        let mut page = Page {
            child,
            to,
            from,
            next_id: 0,
            session: String::new(),
            events: Vec::new(),
            log,
        };
        let target = page.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = page.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        page.session = attached["sessionId"].as_str().unwrap().to_string();
        for domain in ["Runtime", "Log", "Page"] {
            page.call(&format!("{domain}.enable"), json!({}));
        }
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        page
    }

    /// Sends a command (to the page, once attached) and returns its result;
    /// panics on an error answer or after [`WAIT`].
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        if let Err(e) = self.to.write_all(&bytes).and_then(|_| self.to.flush()) {
            self.fail(&format!("cannot send {method}: {e}"));
        }
        loop {
            let m = self.receive(method);
            if m["id"] == id {
                if let Some(e) = m.get("error") {
                    self.fail(&format!("{method} failed: {e}"));
                }
                return m["result"].clone();
            }
            self.events.push(m);
        }
    }

    /// The first event named `method` received from now on, or already
    /// kept since `from` (an index into [`Page::events`]).
    pub fn wait_event(&mut self, method: &str, from: usize) -> Value {
        if let Some(e) = self.events[from..].iter().find(|e| e["method"] == method) {
            return e.clone();
        }
        loop {
            let m = self.receive(method);
            self.events.push(m.clone());
            if m["method"] == method {
                return m;
            }
        }
    }

    /// Loads `url` and waits for its `load` event (scripts have run).
    pub fn navigate(&mut self, url: &str) {
        let from = self.events.len();
        self.call("Page.navigate", json!({"url": url}));
        self.wait_event("Page.loadEventFired", from);
    }

    /// The value of a JavaScript expression (JSON-serializable); panics if
    /// it throws.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            self.fail(&format!("{expression} threw: {e}"));
        }
        r["result"]["value"].clone()
    }

    /// A mouse event at (`x`, `y`) in CSS pixels of the viewport: `kind`
    /// is `mouseMoved`, `mousePressed` or `mouseReleased`; `pressed`
    /// whether the left button is down during it; `clicks` the click count
    /// of a press or release (2 makes a double-click).
    pub fn mouse(&mut self, kind: &str, (x, y): (f64, f64), pressed: bool, clicks: u32) {
        let mut p = json!({"type": kind, "x": x, "y": y, "buttons": u32::from(pressed)});
        if pressed || kind != "mouseMoved" {
            p["button"] = json!("left");
        }
        if kind != "mouseMoved" {
            p["clickCount"] = json!(clicks);
        }
        self.call("Input.dispatchMouseEvent", p);
    }

    /// A left-button drag from `a` to `b` through a few points between, as a
    /// hand would move.
    pub fn drag(&mut self, a: (f64, f64), b: (f64, f64)) {
        self.mouse("mousePressed", a, true, 1);
        for k in 1..=4 {
            let t = f64::from(k) / 4.0;
            let at = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
            self.mouse("mouseMoved", at, true, 0);
        }
        self.mouse("mouseReleased", b, false, 1);
    }

    /// A left click (`clicks` = 1) or double-click (2) at `at`.
    pub fn click(&mut self, at: (f64, f64), clicks: u32) {
        for n in 1..=clicks {
            self.mouse("mousePressed", at, true, n);
            self.mouse("mouseReleased", at, false, n);
        }
    }

    /// A PNG of the viewport, written to `path`; returns its size in bytes.
    pub fn screenshot(&mut self, path: &Path) -> usize {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        std::fs::write(path, &png).unwrap();
        png.len()
    }

    /// Every error the page reported so far: uncaught exceptions (also
    /// in promises), `console.error` and `console.assert` failures, and
    /// the browser's log entries of level error (a resource that failed to
    /// load, a bad SVG attribute).
    pub fn errors(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| {
                let p = &e["params"];
                let text = match e["method"].as_str()? {
                    "Runtime.exceptionThrown" => {
                        let d = &p["exceptionDetails"];
                        let what = d["exception"]["description"].as_str();
                        format!("exception: {}", what.or(d["text"].as_str())?)
                    }
                    "Runtime.consoleAPICalled"
                        if matches!(p["type"].as_str(), Some("error" | "assert")) =>
                    {
                        format!("console.{}: {}", p["type"].as_str()?, p["args"])
                    }
                    "Log.entryAdded" if p["entry"]["level"] == "error" => {
                        format!("log: {} {}", p["entry"]["text"], p["entry"]["url"])
                    }
                    _ => return None,
                };
                Some(text)
            })
            .collect()
    }

    fn receive(&mut self, waiting_for: &str) -> Value {
        match self.from.recv_timeout(WAIT) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                self.fail(&format!("no answer to {waiting_for} in {WAIT:?}"))
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.fail(&format!("chromium exited waiting for {waiting_for}"))
            }
        }
    }

    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        panic!(
            "{what}\nchromium's last log lines:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // Closed, so it ends its renderer and other processes itself;
        // killed if it has not within a few seconds (or cannot be told).
        let close = br#"{"id":0,"method":"Browser.close","params":{}}"#;
        let told = self
            .to
            .write_all(close)
            .and_then(|_| self.to.write_all(&[0]));
        let deadline = Instant::now() + Duration::from_secs(5);
        while told.is_ok() && Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
