//! The header catalog.
