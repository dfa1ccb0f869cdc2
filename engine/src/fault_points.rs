//! Deliberate bugs the simulator can switch on (simulated build only), to prove that its
//! checkers catch what they claim to: a checker that never fails proves nothing.
//!
//! Each switch is a flag of the current thread — a madsim runtime runs every node on the
//! thread that drives it, so a run's switches never leak into another run on another
//! thread — read at one place in the engine. The scenario runner sets it at the start of a
//! run and clears it after; production builds do not contain this module.

use std::cell::Cell;
use std::time::Duration;

/// How often the buggy SYNC_FLUSH of [`set_ack_sync_flush_before_sync`] syncs.
pub const BUGGY_SYNC_FLUSH_INTERVAL: Duration = Duration::from_millis(500);

thread_local! {
    static ACK_SYNC_FLUSH_BEFORE_SYNC: Cell<bool> = const { Cell::new(false) };
}

/// Makes SYNC_FLUSH acknowledge appends without waiting for their sync, and sync only every
/// [`BUGGY_SYNC_FLUSH_INTERVAL`] (a SYNC_FLUSH broker wired to ASYNC_FLUSH's flush service
/// but answering as SYNC_FLUSH): acknowledged writes a power loss can still take away.
pub fn set_ack_sync_flush_before_sync(on: bool) {
    ACK_SYNC_FLUSH_BEFORE_SYNC.set(on);
}

/// Whether [`set_ack_sync_flush_before_sync`] is on.
pub(crate) fn ack_sync_flush_before_sync() -> bool {
    ACK_SYNC_FLUSH_BEFORE_SYNC.get()
}
