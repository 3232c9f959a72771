//! Causeway's wire protocols, shared by the endpoint, the agent and sync: the agent
//! channel's frames ([`agent`]) and the sync ingestion messages ([`sync`]). Pure codecs with every length bounded before allocation;
//! it must never log, and never show a secret it carries in `Debug`.
#![forbid(unsafe_code)]

pub mod agent;
pub mod sync;
