//! Taking orders: the desk that groups them into few transactions, and the
//! register of keys being worked on right now.

mod desk;
mod inflight;

pub use desk::{DeskError, DeskOptions, OrderDesk};
pub use inflight::{InFlight, InFlightGuard};
