//! The live view of a run: [`view::render`] draws one frame from snapshots (pure, so it is
//! tested against ratatui's TestBackend), and [`app::run`] is the input loop that owns the
//! terminal. The monitor only ever reads the latest snapshot from a `watch` channel: a slow
//! terminal drops frames, never messages.

pub mod app;
mod charts;
mod faults;
mod history;
mod theme;
pub mod view;

pub use app::run;
pub use faults::FaultMark;
pub use view::{render, History, Meta, ViewState};
