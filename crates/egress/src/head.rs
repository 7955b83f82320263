//! A small HTTP/1.x request-head reader for the transparent listener.
