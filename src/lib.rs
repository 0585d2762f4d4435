//! Wiring: a validated configuration and already-bound listeners become a running proxy (and,
//! once configured, its control plane). The binary (`src/main.rs`) only parses the command line,
//! installs logging and the crypto provider, and maps errors to exit codes.

pub mod demo;
pub mod deploy_cli;
mod plane;
mod serve;

pub use plane::ProxyPlane;
pub use serve::{Bound, ServeError, Started, bind, serve_until_signal};
