//! The SQLite backend: the directory ([`SqliteStore`]) and the agent registry
//! ([`SqliteAgents`]), each on its own file, both opened by [`open::open`].

mod agents;
mod directory;
pub(crate) mod open;

pub use agents::SqliteAgents;
pub use directory::SqliteStore;
