//! What every Causeway configuration file shares: reading it within a size bound, errors
//! that name the file, line and column, durations as operators write them (`90s`, `15m`),
//! numbers within bounds, `host:port`, `https://` endpoints and LDAP server URLs. `serve`,
//! the agent and sync each define their own settings on top; this crate knows none of them,
//! so all three can depend on it without depending on each other.
#![forbid(unsafe_code)]

mod duration;
mod error;
pub mod files;
mod source;
mod values;

pub use duration::parse_duration;
pub use error::{line_col, read_config, ConfigError};
pub use source::Source;
pub use values::{bounded, parse_https, parse_ldap, split_host_port, Transport};
