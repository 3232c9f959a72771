//! A client of the Directory Replication Service remote protocol ([MS-DRSR]), the way
//! Microsoft Entra Connect reads password hashes: it replicates a domain naming context
//! with a partial attribute set that carries the secret attributes, and decrypts them.
//!
//! Layers, each readable on its own and each naming the spec section of what it encodes:
//! - [`rpc`]: connection-oriented DCE/RPC over TCP ([C706], [MS-RPCE]): the endpoint
//!   mapper, bind, and calls sealed at packet-privacy level (Samba refuses less).
//! - [`ndr`]: NDR 2.0 marshalling with bounded sizes: every count read from a server is
//!   checked against what is left of the message before anything is allocated.
//! - [`msg`]: the DRSUAPI requests and replies this client uses (`IDL_DRSBind`,
//!   `IDL_DRSDomainControllerInfo`, `IDL_DRSCrackNames`, `IDL_DRSGetNCChanges`).
//! - [`secret`]: decryption of secret attributes (`unicodePwd`, `ntPwdHistory`).
//!
//! This is a crate of its own (the design first placed it inside `causeway-sync`) so
//! that its decoders can be fuzzed and built without the sync engine.
//!
//! [MS-DRSR]: https://learn.microsoft.com/openspecs/windows_protocols/ms-drsr
//! [C706]: https://pubs.opengroup.org/onlinepubs/9629399/
//! [MS-RPCE]: https://learn.microsoft.com/openspecs/windows_protocols/ms-rpce

#![forbid(unsafe_code)]

pub mod msg;
pub mod ndr;
pub mod replicate;
pub mod rpc;
pub mod secret;
