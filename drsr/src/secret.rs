//! Decryption of secret attributes ([MS-DRSR] 4.1.10.6.11 and 4.1.10.6.12).
