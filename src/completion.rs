//! Shell completion scripts generated from the command line definition
//! (`switchyard completions bash|zsh|fish`), so completion never lags behind the commands.

/// The completion script for `shell`, for a binary installed as `switchyard`.
///
/// Rendered into memory first: clap_complete panics on a failed write, and the caller's
/// stdout may be a closed pipe.
pub fn script(mut cmd: clap::Command, shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "switchyard", &mut out);
    out
}
