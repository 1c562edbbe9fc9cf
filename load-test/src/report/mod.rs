//! Reports of a run: a terminal summary ([`summary()`]) and a self-contained HTML page with
//! time-series charts ([`html()`]). Both read the same tables, built in [`summary`].

pub mod html;
pub mod summary;

pub use html::html;
pub use summary::summary;
