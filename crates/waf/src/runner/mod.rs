//! CRS regression tests, run in-process.
