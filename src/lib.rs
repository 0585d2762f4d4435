//! Wiring: a validated configuration and already-bound listeners become a running proxy (and,
//! once configured, its control plane). The binary (`src/main.rs`) only parses the command line,
//! installs logging and the crypto provider, and maps errors to exit codes.

pub mod completion;
mod control_runtime;
pub mod demo;
pub mod deploy_cli;
mod health_file;
pub mod lock;
pub mod manual;
pub mod notify;
mod plane;
mod serve;
pub mod store_cli;
pub mod upgrade;

pub use plane::ProxyPlane;
pub use serve::{
    Bound, ServeError, Started, bind, check_certificates, lock_state, proxy_workers,
    serve_until_signal,
};
