//! DRSUAPI requests and replies ([MS-DRSR] 4.1).
