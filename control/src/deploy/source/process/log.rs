//! A replica's log file: opened by Switchyard and handed to the replica as its stdout and
//! stderr (a file, never a pipe, so the replica outlives Switchyard and can be re-adopted),
//! tailed into the deployment log while a driver follows it, and rotated by size.
//!
//! Rotation keeps one previous file (`N.log.1`). At spawn a file over the limit is renamed;
//! while the replica runs it holds the file open in append mode, so rotation copies the file to
//! `N.log.1` and truncates it in place (the replica's next write lands at the new end). Lines
//! written between the copy and the truncation are lost; the limit bounds the disk used.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::deploy::source::Reporter;

/// Size past which a replica's log file is rotated.
pub(super) const LOG_LIMIT: u64 = 8 * 1024 * 1024;
/// Most bytes read from a log file per tail (the rest waits for the next one).
const TAIL_CHUNK: u64 = 256 * 1024;

/// One replica's log file and how far it was tailed.
#[derive(Debug)]
pub(super) struct LogFile {
    path: PathBuf,
    limit: u64,
    offset: u64,
    partial: Vec<u8>,
}

impl LogFile {
    pub(super) fn new(path: PathBuf, limit: u64) -> Self {
        Self {
            path,
            limit,
            offset: 0,
            partial: Vec::new(),
        }
    }

    fn previous(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".1");
        PathBuf::from(p)
    }

    /// Opens the file for a new replica (rotating it first when over the limit): the handle
    /// to give as stdout; stderr gets a clone. Tailing starts at its current end.
    pub(super) fn open_for_replica(&mut self) -> std::io::Result<File> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        if fs::metadata(&self.path).is_ok_and(|m| m.len() > self.limit) {
            fs::rename(&self.path, self.previous())?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.offset = file.metadata()?.len();
        self.partial.clear();
        Ok(file)
    }

    /// Skips what was written so far (nobody follows it).
    pub(super) fn skip(&mut self) {
        self.offset = fs::metadata(&self.path).map_or(0, |m| m.len());
        self.partial.clear();
    }

    /// Sends complete new lines to `report` under `name`, then rotates when over the limit.
    pub(super) fn tail(&mut self, report: &Reporter, name: &str) {
        if report.is_open() {
            for line in self.read_lines() {
                report.log(name, line);
            }
        } else {
            self.skip();
        }
        if let Err(e) = self.rotate_if_full() {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot rotate a replica log");
        }
    }

    fn read_lines(&mut self) -> Vec<String> {
        let Ok(mut file) = File::open(&self.path) else {
            return Vec::new();
        };
        let len = file.metadata().map_or(0, |m| m.len());
        if len < self.offset {
            // Truncated by a rotation: start over.
            self.offset = 0;
            self.partial.clear();
        }
        let mut buf = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err()
            || (&mut file).take(TAIL_CHUNK).read_to_end(&mut buf).is_err()
        {
            return Vec::new();
        }
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        String::from_utf8_lossy(&complete)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn rotate_if_full(&mut self) -> std::io::Result<()> {
        if !fs::metadata(&self.path).is_ok_and(|m| m.len() > self.limit) {
            return Ok(());
        }
        fs::copy(&self.path, self.previous())?;
        OpenOptions::new()
            .write(true)
            .open(&self.path)?
            .set_len(0)?;
        self.offset = 0;
        self.partial.clear();
        Ok(())
    }
}

/// The log file of replica `index` of `service`/`stack` under `dir`.
pub(super) fn path(dir: &Path, service: &str, stack: &str, index: usize) -> PathBuf {
    dir.join(service).join(stack).join(format!("{index}.log"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use tokio::sync::mpsc;

    use super::*;
    use crate::deploy::source::Report;

    #[test]
    fn lines_are_tailed_once_and_a_full_file_is_rotated_keeping_one_previous() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = LogFile::new(dir.path().join("s/a/0.log"), 64);
        let (tx, mut rx) = mpsc::channel(64);
        let report = Reporter::new(tx);
        let mut out = log.open_for_replica().expect("open");
        out.write_all(b"one\ntw").expect("write");
        log.tail(&report, "a-0");
        out.write_all(b"o\n").expect("write");
        log.tail(&report, "a-0");
        let mut lines = Vec::new();
        while let Ok(Report::Log(l)) = rx.try_recv() {
            lines.push(l.line);
        }
        assert_eq!(lines, ["one", "two"]);
        out.write_all(&[b'x'; 100]).expect("write");
        out.write_all(b"\n").expect("write");
        log.tail(&report, "a-0");
        assert_eq!(fs::metadata(&log.path).expect("log").len(), 0);
        assert_eq!(fs::metadata(log.previous()).expect("previous").len(), 109);
        out.write_all(b"after\n").expect("write");
        log.tail(&report, "a-0");
        let mut last = None;
        while let Ok(Report::Log(l)) = rx.try_recv() {
            last = Some(l.line);
        }
        assert_eq!(last.as_deref(), Some("after"));
        assert_eq!(fs::read(&log.path).expect("log"), b"after\n");
    }
}
