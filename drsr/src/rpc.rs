//! Connection-oriented DCE/RPC over TCP ([C706] 12, [MS-RPCE] 2.2).
