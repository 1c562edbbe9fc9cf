//! End-to-end encryption (being written).
