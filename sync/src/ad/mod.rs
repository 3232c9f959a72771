//! The Active Directory connector: what a DC's answers mean. [`dirsync`] is the delta
//! control, [`entry`] reads one entry of an answer into checked values (anchor GUID, SID,
//! plain DN, tombstone flag, attribute values and incremental linked-value changes), [`map`]
//! turns an object's attributes into what the endpoint stores.
//!
//! The connector's run loop (bind with failover, paged full import, DirSync deltas with the
//! `uSNChanged` fallback, change notification) is built in the sync issue on top of these.

pub mod consistency;
pub mod dirsync;
pub mod entry;
pub mod import;
pub mod map;
pub mod notify;
pub mod paged;
pub mod usn;
