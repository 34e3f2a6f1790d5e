//! `access_log:`: the opt-in per-request log (`crate::access_log`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Problem;

/// The line format. Only JSON for now; a key so that another format can be
/// added without changing the meaning of existing files.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    #[default]
    Json,
}

/// `access_log: {format: json, path: FILE | "-"}`. Left out: no access log
/// (and no `traceparent` handling).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    #[serde(default)]
    pub format: AccessLogFormat,
    /// A file (appended to; relative to the config file's directory), or
    /// `-` for standard output.
    pub path: PathBuf,
}

/// Where the lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget<'a> {
    Stdout,
    File(&'a Path),
}

impl AccessLogConfig {
    pub fn target(&self) -> AccessLogTarget<'_> {
        if self.path.as_os_str() == "-" {
            AccessLogTarget::Stdout
        } else {
            AccessLogTarget::File(&self.path)
        }
    }

    /// Resolves a relative file against `dir` (`-` stays stdout).
    pub(super) fn resolve(&mut self, dir: &Path) {
        if matches!(self.target(), AccessLogTarget::File(p) if p.is_relative()) {
            self.path = dir.join(&self.path);
        }
    }

    /// The problems of the values (the file itself is opened at start and on
    /// each reload, where a failure names it too).
    pub(super) fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let shown = self.path.display().to_string();
        if self.path.as_os_str().is_empty() {
            out.push(Problem { key: "access_log.path".into(), value: shown, reason: "must be a file or \"-\" for standard output".into() });
        } else if let AccessLogTarget::File(p) = self.target() {
            if p.as_os_str().to_string_lossy().ends_with('/') || p.is_dir() {
                out.push(Problem { key: "access_log.path".into(), value: shown, reason: "is a directory; name a file".into() });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    const BASE: &str = "protocol: http\nlisten: [\"127.0.0.1:0\"]\nbackend_servers: [\"http://127.0.0.1:1\"]\n";

    #[test]
    fn access_log_is_off_unless_configured_and_json_by_default() {
        assert!(Config::parse(BASE).unwrap().access_log.is_none());
        let c = Config::parse(&format!("{BASE}access_log: {{path: \"-\"}}\n")).unwrap();
        let a = c.access_log.unwrap();
        assert_eq!((a.format, a.target()), (super::AccessLogFormat::Json, super::AccessLogTarget::Stdout));
    }

    #[test]
    fn relative_paths_are_resolved_against_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("alb.yaml");
        std::fs::write(&p, format!("{BASE}access_log: {{format: json, path: logs/access.log}}\n")).unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.access_log.unwrap().path, dir.path().join("logs/access.log"));
    }

    #[test]
    fn bad_values_name_the_key_and_the_value() {
        let e = Config::parse(&format!("{BASE}access_log: {{format: text, path: a.log}}\n")).unwrap_err().to_string();
        assert!(e.contains("access_log.format") && e.contains("text") && e.contains("json"), "{e}");
        let e = Config::parse(&format!("{BASE}access_log: {{format: json}}\n")).unwrap_err().to_string();
        assert!(e.contains("access_log") && e.contains("missing field `path`"), "{e}");
        let e = Config::parse(&format!("{BASE}access_log: {{path: a.log, buffer: 4}}\n")).unwrap_err().to_string();
        assert!(e.contains("access_log") && e.contains("buffer"), "{e}");
        let e = Config::parse(&format!("{BASE}access_log: {{path: \"\"}}\n")).unwrap_err().to_string();
        assert!(e.contains("access_log.path: \"\": must be a file"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = Config::parse(&format!("{BASE}access_log: {{path: \"{}\"}}\n", dir.path().display())).unwrap_err().to_string();
        assert!(e.contains("access_log.path") && e.contains("is a directory"), "{e}");
    }
}
