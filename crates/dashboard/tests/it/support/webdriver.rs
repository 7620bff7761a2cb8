//! A minimal W3C WebDriver client for Debian's ChromeDriver driving Debian's Chromium,
//! headless (`make stack-up` installs both): a session, `navigate`, `execute` a script,
//! a screenshot. JSON over HTTP/1.1, one connection per command.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A free loopback port (bound, then released for the caller to bind).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A browser: ChromeDriver and one Chromium session.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    profile: PathBuf,
}

/// One command; a driver that does not answer within 60 s fails the test.
async fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(60), command(addr, method, path, body))
        .await
        .unwrap_or_else(|_| panic!("chromedriver did not answer {method} {path} within 60 s"))
}

async fn command(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut socket = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to chromedriver");
    let body = body.map(Value::to_string).unwrap_or_default();
    socket
        .write_all(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .expect("send");
    // The head, then exactly the body it announces (the driver may keep the connection).
    let mut reader = tokio::io::BufReader::new(socket);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).await.expect("response head");
        if n == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let lower = head.to_ascii_lowercase();
    let body = if let Some(len) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        let mut body = vec![0; len];
        reader.read_exact(&mut body).await.expect("response body");
        String::from_utf8_lossy(&body).into_owned()
    } else if lower.contains("transfer-encoding: chunked") {
        let mut body = String::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).await.expect("chunk size");
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await.expect("chunk");
            body.push_str(&String::from_utf8_lossy(&chunk[..size]));
        }
        body
    } else {
        let mut body = String::new();
        reader
            .read_to_string(&mut body)
            .await
            .expect("response body");
        body
    };
    let value: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"));
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "{method} {path}: {head}\n{value}"
    );
    value
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium session.
    pub async fn start(dir: &Path) -> Self {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: `make stack-up` installs Debian's chromium and chromium-driver"
            );
        }
        let port = free_port();
        let log = std::fs::File::create(dir.join("chromedriver.log")).expect("log");
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start chromedriver");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).expect("profile");
        // As the machine's probe starts it: no sandbox (root), no background networking
        // (the machine's network is closed), a fresh profile.
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1440,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let created = request(addr, "POST", "/session", Some(&capabilities)).await;
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        Self {
            driver,
            addr,
            session,
            profile,
        }
    }

    /// Opens `url`.
    pub async fn navigate(&self, url: &str) {
        request(
            self.addr,
            "POST",
            &format!("/session/{}/url", self.session),
            Some(&json!({ "url": url })),
        )
        .await;
    }

    /// Runs `script` (a function body; `return` its value) in the page.
    pub async fn execute(&self, script: &str) -> Value {
        let answer = request(
            self.addr,
            "POST",
            &format!("/session/{}/execute/sync", self.session),
            Some(&json!({ "script": script, "args": [] })),
        )
        .await;
        answer["value"].clone()
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let answer = request(
            self.addr,
            "GET",
            &format!("/session/{}/screenshot", self.session),
            None,
        )
        .await;
        base64::engine::general_purpose::STANDARD
            .decode(answer["value"].as_str().expect("base64 PNG"))
            .expect("PNG")
    }

    /// Ends the session and the driver.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            request(
                self.addr,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            ),
        )
        .await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
