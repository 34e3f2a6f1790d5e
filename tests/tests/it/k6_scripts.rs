//! The lab's k6 scripts (tests/k6/) for ~3 s each against loopback targets
//! (no root): `https-mtls.js` through alb in process with mTLS required,
//! `l4-http.js` straight at a backend simulator. Each must pass its own
//! checks (status, backend, identity) and say so in its summary. k6 is the
//! one `cargo xtask setup` installs (`.venv/bin/k6`), or `$XDPLB_K6`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use xdplb_tests::backend::{Backend, Reply};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

fn k6() -> PathBuf {
    let k6 = std::env::var_os("XDPLB_K6").map(PathBuf::from).unwrap_or_else(|| workspace().join(".venv/bin/k6"));
    assert!(k6.is_file(), "k6 not found at {}: run `cargo xtask setup` (or set XDPLB_K6)", k6.display());
    k6
}

/// Runs `script` for 3 s with `env` (plus the process environment
/// `extra`); returns the summary's (check passes, check fails, requests),
/// or k6's output when it exited non-zero.
fn run(script: &str, env: &[(&str, String)], extra: &[(&str, &Path)]) -> Result<(u64, u64, u64), String> {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let mut cmd = Command::new(k6());
    cmd.args(["run", "--quiet", "--no-usage-report", "--no-color", "--vus", "2", "--duration", "3s", "--summary-export"]).arg(&summary);
    for (k, v) in env {
        cmd.arg("-e").arg(format!("{k}={v}"));
    }
    cmd.envs(extra.iter().copied()).arg(workspace().join("tests/k6").join(script));
    let o = cmd.output().unwrap();
    if !o.status.success() {
        return Err(format!("{script}: {}: {}\n{}", o.status, String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)));
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let n = |m: &str, f: &str| v["metrics"][m][f].as_u64().unwrap_or_else(|| panic!("{script}: no {m}.{f} in {v}"));
    Ok((n("checks", "passes"), n("checks", "fails"), n("http_reqs", "count")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_k6_scripts_pass_their_checks() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certgen::demo(dir.path().join("certs"), &certgen::DemoOptions::default()).unwrap().files;
    let json = Backend::builder("be1").reply(Reply::Json).start().unwrap();
    let plain = Backend::builder("be2").start().unwrap();
    let yaml = format!(
        "listen: [\"127.0.0.1:0\"]\ncert_location: {}\nkey_location: {}\nca_location: {}\nadmin: {{ enabled: false }}\n\
         health: {{ enabled: false }}\nbackend_servers:\n  - {}\n",
        certs.server_cert.display(),
        certs.server_key.display(),
        certs.ca_cert.display(),
        json.url()
    );
    let alb = alb::start(alb::Config::parse(&yaml).unwrap(), None).await.unwrap();
    let https_env = |identity: &str| {
        vec![
            ("TARGET", format!("https://localhost:{}/echo", alb.listen_addrs()[0].port())),
            ("CLIENT_CERT", certs.client1_cert.display().to_string()),
            ("CLIENT_KEY", certs.client1_key.display().to_string()),
            ("IDENTITY", identity.to_owned()),
        ]
    };
    // The three runs side by side: ~4 s in all.
    let (good, bad, ca) = (https_env("CN=client1"), https_env("CN=someone-else"), certs.ca_cert.clone());
    let https = tokio::task::spawn_blocking(move || run("https-mtls.js", &good, &[("SSL_CERT_FILE", &ca)]));
    let ca = certs.ca_cert.clone();
    // A wrong expected identity must fail the run: the checks are real.
    let wrong = tokio::task::spawn_blocking(move || run("https-mtls.js", &bad, &[("SSL_CERT_FILE", &ca)]));
    let l4_env = vec![("TARGET", format!("{}/", plain.url())), ("NEW_CONN", "1".to_owned())];
    let l4 = tokio::task::spawn_blocking(move || run("l4-http.js", &l4_env, &[]));
    let (https, l4) = (https.await.unwrap().unwrap(), l4.await.unwrap().unwrap());
    // Three checks per HTTPS request, two per L4 one, none failed.
    assert!(https.2 > 0 && https == (3 * https.2, 0, https.2), "https-mtls.js: {https:?}");
    assert!(l4.2 > 0 && l4 == (2 * l4.2, 0, l4.2), "l4-http.js: {l4:?}");
    let err = wrong.await.unwrap().expect_err("a wrong identity must fail the run");
    assert!(err.contains("the client identity reached the backend"), "{err}");
    let with_identity = json.seen.lock().unwrap().iter().filter(|h| h.get("x-client-identity").map(String::as_str) == Some("CN=client1")).count() as u64;
    // Both HTTPS runs' requests reached the backend with the identity (the counted run's at least).
    assert!(with_identity > https.2, "{with_identity} requests with the identity for {https:?}");
}
