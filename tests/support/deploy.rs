//! What the deployment tests share: the two tokens every test config carries (`ci`, role
//! deploy; `ops`, role operate) and when a deployment view is final.

use serde_json::Value;

use super::sha256_hex;

/// The `ci` token (role deploy).
pub const CI: &str = "ci-secret";
/// The `ops` token (role operate).
pub const OPS: &str = "ops-secret";

/// The `[[tokens]]` tables for [`CI`] and [`OPS`].
pub fn tokens() -> String {
    format!(
        "[[tokens]]\nname = \"ci\"\nrole = \"deploy\"\nsha256 = \"{}\"\n\n[[tokens]]\nname = \"ops\"\nrole = \"operate\"\nsha256 = \"{}\"\n",
        sha256_hex(CI),
        sha256_hex(OPS)
    )
}

/// Whether a deployment view is in a final phase.
pub fn is_terminal(v: &Value) -> bool {
    matches!(
        v["phase"].as_str(),
        Some("succeeded" | "rolled_back" | "failed")
    )
}
