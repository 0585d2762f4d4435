//! Manual pages generated from the command line definition (`switchyard man`), so the pages
//! can never disagree with `--help`.
//!
//! One page per command: `switchyard.1` for the binary and `switchyard-SUB.1` (and deeper, e.g.
//! `switchyard-certs-self-signed.1`) for each visible subcommand, the layout `git` and `cargo`
//! use, ready to be copied into `/usr/share/man/man1`.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the pages could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    /// A page could not be written.
    #[error("cannot write the manual page {path}")]
    Write {
        /// The page's file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Writes the top-level page (`switchyard.1`) as roff to `out`.
pub fn render(cmd: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    clap_mangen::Man::new(prepared(cmd)).render(out)
}

/// Writes one page per command into `dir` (which must exist) and returns their paths, the
/// top-level page first.
pub fn write_pages(cmd: clap::Command, dir: &Path) -> Result<Vec<PathBuf>, ManualError> {
    let mut written = Vec::new();
    write_tree(prepared(cmd), dir, &mut written)?;
    Ok(written)
}

/// Builds the command so subcommands carry their full display names (`switchyard-certs`).
fn prepared(cmd: clap::Command) -> clap::Command {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    cmd
}

fn write_tree(
    cmd: clap::Command,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), ManualError> {
    let man = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(man.get_filename());
    man.generate_to(dir).map_err(|source| ManualError::Write {
        path: path.clone(),
        source,
    })?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_tree(sub.clone(), dir, written)?;
    }
    Ok(())
}
