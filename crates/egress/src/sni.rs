//! The server name of a TLS ClientHello, read without terminating TLS.
