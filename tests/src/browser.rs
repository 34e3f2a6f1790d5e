//! Headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`), for the dashboards' tests.
//!
//! chromedriver, and so Chromium, run *inside* a lab namespace (`ip netns
//! exec`), because the pages are served on that namespace's loopback
//! (lb-user's API and alb's admin listener refuse other addresses without
//! an explicit opt-in, which a test should not need). The WebDriver client
//! runs on a tokio runtime whose worker thread joined the same namespace,
//! so its connections to chromedriver's loopback port are made there too.
//! chromedriver gets its own process group, killed when the [`Browser`]
//! drops; Chromium gets a fresh profile in a temporary directory and flags
//! that keep it off any network but the lab's.

use std::{
    fs::File,
    future::Future,
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use fantoccini::{wd::WebDriverCompatibleCommand, Client, ClientBuilder};
use serde_json::{json, Value};

/// Where Debian installs them (`cargo xtask setup`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A running chromedriver with one Chromium session.
pub struct Browser {
    client: Client,
    rt: tokio::runtime::Runtime,
    driver: Child,
    // Last: removed once Chromium is gone.
    _profile: tempfile::TempDir,
}

/// The browser's console log so far (`POST /session/{id}/se/log`,
/// chromedriver's extension; needs `goog:loggingPrefs`).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }
    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({"type": "browser"}).to_string()))
    }
}

impl Browser {
    /// Starts chromedriver and Chromium inside network namespace `ns`.
    pub fn start_in(ns: &str) -> Result<Browser> {
        for path in [CHROMIUM, CHROMEDRIVER] {
            if !std::path::Path::new(path).exists() {
                bail!("{path} is missing: run `cargo xtask setup` (Debian packages chromium, chromium-driver)");
            }
        }
        let ns_file = File::open(format!("/run/netns/{ns}")).with_context(|| format!("opening network namespace {ns}"))?;
        let port = crate::netns::run_in(ns, || Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()))?;
        let driver = Command::new("ip")
            .args(["netns", "exec", ns, CHROMEDRIVER, &format!("--port={port}"), "--allowed-ips=127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting chromedriver")?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .on_thread_start(move || {
                // SAFETY: a valid namespace fd; only this worker changes namespace.
                if unsafe { libc::setns(ns_file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    panic!("setns for the WebDriver client: {}", std::io::Error::last_os_error());
                }
            })
            .build()
            .context("starting the WebDriver client's runtime")?;
        let profile = tempfile::Builder::new().prefix("xdplb-chromium-").tempdir().context("creating Chromium's profile directory")?;
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": CHROMIUM, "args": args.iter().map(|a| a.to_string()).chain([format!("--user-data-dir={}", profile.path().display())]).collect::<Vec<_>>()}),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let url = format!("http://127.0.0.1:{port}");
        let mut driver = driver;
        let client = rt.block_on(rt.spawn(async move {
            // chromedriver takes a moment to listen: retry until the deadline.
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new()).capabilities(caps.clone()).connect(&url).await {
                    Ok(c) => return Ok(c),
                    Err(e) if Instant::now() > deadline => return Err(anyhow::anyhow!("no WebDriver session from chromedriver at {url}: {e}")),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }));
        let client = match client.context("WebDriver client task")? {
            Ok(c) => c,
            Err(e) => {
                kill_group(&mut driver);
                return Err(e);
            }
        };
        Ok(Browser { client, rt, driver, _profile: profile })
    }

    /// Runs `f` with the session on the namespace's worker.
    pub fn run<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, fantoccini::error::CmdError>> + Send + 'static,
    {
        let fut = f(self.client.clone());
        self.rt.block_on(self.rt.spawn(fut)).context("WebDriver task")?.map_err(|e| anyhow::anyhow!("WebDriver: {e}"))
    }

    pub fn goto(&self, url: &str) -> Result<()> {
        let url = url.to_owned();
        self.run(|c| async move { c.goto(&url).await })
    }

    /// The value of `script` (a function body: `return …`).
    pub fn eval(&self, script: &str) -> Result<Value> {
        let script = script.to_owned();
        self.run(|c| async move { c.execute(&script, Vec::new()).await })
    }

    /// Polls `script` until it returns something other than null/false
    /// (at most `limit`), and returns that.
    pub fn wait_for(&self, what: &str, script: &str, limit: Duration) -> Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.eval(script)?;
            if !v.is_null() && v != Value::Bool(false) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("{what}: not within {limit:?} (the page's status line: {:?})", self.eval("return document.getElementById('status')?.textContent")?);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the element `css` selects (a real click, through WebDriver).
    pub fn click(&self, css: &str) -> Result<()> {
        let css = css.to_owned();
        self.run(|c| async move { c.find(fantoccini::Locator::Css(&css)).await?.click().await })
    }

    /// Accepts the page's `confirm()` dialog.
    pub fn accept_dialog(&self) -> Result<()> {
        self.run(|c| async move { c.accept_alert().await })
    }

    /// The console messages so far at level SEVERE (errors, refused loads,
    /// uncaught exceptions, content-security-policy violations).
    pub fn console_errors(&self) -> Result<Vec<String>> {
        let log = self.run(|c| async move { c.issue_cmd(BrowserLog).await })?;
        let entries = log.as_array().with_context(|| format!("browser log: {log}"))?;
        Ok(entries.iter().filter(|e| e["level"] == "SEVERE").map(|e| e["message"].as_str().unwrap_or_default().to_owned()).collect())
    }

    /// A PNG of the window, saved as `target/screenshots/NAME.png`; returns the path.
    pub fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let png = self.run(|c| async move { c.screenshot().await })?;
        let dir = crate::workspace::bin_dir()?.parent().context("the target directory")?.join("screenshots");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

fn kill_group(driver: &mut Child) {
    // chromedriver leads its own group: its Chromium processes go with it.
    // SAFETY: a plain kill(2) of the group this code started.
    unsafe { libc::kill(-(driver.id() as i32), libc::SIGKILL) };
    let _ = driver.wait();
}

impl Drop for Browser {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self.rt.block_on(self.rt.spawn(async move { tokio::time::timeout(Duration::from_secs(5), client.close()).await }));
        kill_group(&mut self.driver);
    }
}
