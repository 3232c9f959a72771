//! Causeway's wire protocols, shared by the endpoint and the agent: today the agent
//! channel's frames ([`agent`]). Pure codecs with every length bounded before allocation;
//! it must never log, and never show a secret it carries in `Debug`.
#![forbid(unsafe_code)]

pub mod agent;
