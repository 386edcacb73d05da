//! A headless Chromium driven over the DevTools protocol (a websocket, JSON commands): enough to
//! load the dashboard, run script in it, wait for what it shows and take a screenshot. Chromium
//! is Debian's `chromium` (`MAILROOM_CHROMIUM` names another binary).

use std::io::BufRead;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The Chromium binary, if one runs here.
pub fn find() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("MAILROOM_CHROMIUM") {
        Some(p) => vec![PathBuf::from(p)],
        None => vec!["chromium".into(), "chromium-browser".into()],
    };
    candidates.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A running headless Chromium with one page attached.
pub struct Chromium {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// Starts Chromium (fresh profile, no network but loopback traffic the page makes) and opens a
    /// blank page of `width`×`height`.
    pub fn launch(bin: &Path, width: u32, height: u32) -> Result<Self, String> {
        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        // Chromium says where DevTools listens on stderr; keep draining it afterwards.
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("chromium did not say where DevTools listens within 30 s".into());
            }
        };
        let (ws, _) = tungstenite::connect(url.as_str()).map_err(|e| format!("connect to {url}: {e}"))?;
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
        }
        let mut me = Self { child, ws, session: String::new(), next_id: 0, _profile: profile };
        let target = me.send(None, "Target.createTarget", serde_json::json!({"url": "about:blank"}))?;
        let id = target["targetId"].as_str().ok_or("no targetId")?.to_string();
        let attached =
            me.send(None, "Target.attachToTarget", serde_json::json!({"targetId": id, "flatten": true}))?;
        me.session = attached["sessionId"].as_str().ok_or("no sessionId")?.to_string();
        me.call(
            "Emulation.setDeviceMetricsOverride",
            serde_json::json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )?;
        Ok(me)
    }

    /// Sends a command (to the page's session, or to the browser with `None`) and waits for its
    /// answer, skipping the events in between.
    fn send(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = serde_json::json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        self.ws.send(Message::Text(msg.to_string().into())).map_err(|e| format!("{method}: {e}"))?;
        loop {
            let m = self.ws.read().map_err(|e| format!("{method}: {e}"))?;
            let Message::Text(t) = m else { continue };
            let v: serde_json::Value = serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?;
            if v["id"].as_u64() == Some(id) {
                if let Some(err) = v.get("error") {
                    return Err(format!("{method}: {err}"));
                }
                return Ok(v["result"].clone());
            }
        }
    }

    /// A command to the page.
    pub fn call(&mut self, method: &str, params: serde_json::Value) -> Result<serde_json::Value, String> {
        let s = self.session.clone();
        self.send(Some(&s), method, params)
    }

    /// Evaluates `expr` in the page (promises awaited) and returns its value.
    pub fn eval(&mut self, expr: &str) -> Result<serde_json::Value, String> {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(format!("{expr}: {e}"));
        }
        Ok(r["result"]["value"].clone())
    }

    pub fn navigate(&mut self, url: &str) -> Result<(), String> {
        self.call("Page.navigate", serde_json::json!({"url": url})).map(|_| ())
    }

    /// Polls `expr` until it is `true`; false if `timeout` passes first.
    pub fn wait_until(&mut self, expr: &str, timeout: Duration) -> Result<bool, String> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.eval(expr)? == serde_json::Value::Bool(true) {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(false)
    }

    /// A PNG of the page as it is now.
    pub fn screenshot(&mut self) -> Result<Vec<u8>, String> {
        use base64::Engine;
        let r = self.call("Page.captureScreenshot", serde_json::json!({"format": "png"}))?;
        let data = r["data"].as_str().ok_or("no screenshot data")?;
        base64::engine::general_purpose::STANDARD.decode(data).map_err(|e| e.to_string())
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // Closing the browser lets it take its helper processes down; the kill is the backstop.
        let _ = self.send(None, "Browser.close", serde_json::json!({}));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
