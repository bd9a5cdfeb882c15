//! Who may call: the worker's own admin token (`admin_token`), the named tokens of the people
//! sharing it (`named_tokens`), and the check every request passes (`guard`).

pub mod admin_token;
mod guard;
pub mod named_tokens;

pub use guard::{Caller, Guard};
