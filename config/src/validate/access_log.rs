//! The `[access_log]` table: where the JSON access log goes and how many lines may wait for
//! its writer.

use super::{positive, resolve};
use crate::error::{FieldPath, Problems};
use crate::raw;
use crate::settings::{AccessLogSpec, AccessLogTarget};
use std::path::Path;

/// Validates `[access_log]`; `None` (no access log) when the table is absent or invalid.
pub(super) fn access_log(
    r: Option<&raw::AccessLog>,
    at: &FieldPath,
    base: &Path,
    p: &mut Problems,
) -> Option<AccessLogSpec> {
    let r = r?;
    let buffer = positive(
        r.buffer,
        &at.key("buffer"),
        AccessLogSpec::DEFAULT_BUFFER,
        AccessLogSpec::MAX_BUFFER,
        p,
    );
    let path_at = at.key("path");
    p.expect(&path_at, "a file path or \"stdout\"");
    let target = match r.path.as_deref() {
        None => {
            p.push(
                &path_at,
                "missing: expected a file path or \"stdout\" (leave [access_log] out to turn the access log off)",
            );
            return None;
        }
        Some("") => {
            p.push(&path_at, "empty: expected a file path or \"stdout\"");
            return None;
        }
        Some("stdout") => AccessLogTarget::Stdout,
        Some(path) if path.ends_with('/') => {
            p.push(
                &path_at,
                format!("{path:?} names a folder: expected a file path or \"stdout\""),
            );
            return None;
        }
        Some(path) => AccessLogTarget::File(resolve(base, path)),
    };
    Some(AccessLogSpec { target, buffer })
}

#[cfg(test)]
mod tests {
    use crate::{AccessLogSpec, AccessLogTarget, parse};
    use std::path::Path;

    const LISTENER: &str = "[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:8080\"\n";

    #[test]
    fn the_access_log_is_off_by_default() {
        let c = parse(LISTENER, Path::new("/etc/sy/t.toml")).expect("valid");
        assert_eq!(c.access_log(), None);
    }

    #[test]
    fn a_relative_path_resolves_against_the_file_and_stdout_is_stdout() {
        let text = format!("{LISTENER}[access_log]\npath = \"logs/access.log\"\n");
        let c = parse(&text, Path::new("/etc/sy/t.toml")).expect("valid");
        assert_eq!(
            c.access_log(),
            Some(&AccessLogSpec {
                target: AccessLogTarget::File("/etc/sy/logs/access.log".into()),
                buffer: AccessLogSpec::DEFAULT_BUFFER,
            })
        );
        let text = format!("{LISTENER}[access_log]\npath = \"stdout\"\nbuffer = 4\n");
        let c = parse(&text, Path::new("/etc/sy/t.toml")).expect("valid");
        assert_eq!(
            c.access_log(),
            Some(&AccessLogSpec {
                target: AccessLogTarget::Stdout,
                buffer: 4,
            })
        );
    }

    #[test]
    fn a_missing_path_and_a_bad_buffer_are_reported_with_lines() {
        let text = format!("{LISTENER}[access_log]\nbuffer = 0\n");
        let e = parse(&text, Path::new("t.toml")).expect_err("invalid");
        let got: Vec<(String, Option<usize>)> = e
            .problems
            .iter()
            .map(|p| (p.field.to_string(), p.location.map(|l| l.line)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("access_log.path".to_string(), Some(4)),
                ("access_log.buffer".to_string(), Some(5)),
            ],
            "{e}"
        );
        let text = format!("{LISTENER}[access_log]\npath = 7\n");
        let e = parse(&text, Path::new("t.toml")).expect_err("invalid");
        assert!(e.to_string().contains("access_log.path"), "{e}");
        assert!(e.to_string().contains("t.toml:5:"), "{e}");
    }
}
