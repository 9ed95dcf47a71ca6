//! The manager task's inbox: bounded, so a flood of callers waits for room
//! instead of growing memory without end. Async callers wait for room;
//! what is sent from synchronous code (a lease's release in `Drop`, a
//! node joining) goes at once when there is room, else from a task that
//! waits for it — a release is never lost, or its model would look busy
//! for ever.

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::actor::Command;

/// Commands that may wait in the inbox: admission bounds requests in hand
/// far below this, each sending a few.
pub(super) const CAPACITY: usize = 4096;

/// A sender into the manager task.
#[derive(Clone, Debug)]
pub(super) struct Inbox(mpsc::Sender<Command>);

impl Inbox {
    pub(super) fn channel() -> (Self, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        (Self(tx), rx)
    }

    /// Sends `command`, waiting for room; `false` once the manager is gone.
    pub(super) async fn send(&self, command: Command) -> bool {
        self.0.send(command).await.is_ok()
    }

    /// Sends `command` from code that cannot wait: now if there is room,
    /// else as soon as there is.
    pub(super) fn send_soon(&self, command: Command) {
        match self.0.try_send(command) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(command)) => {
                let tx = self.0.clone();
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let _ = tx.send(command).await;
                    });
                }
            }
        }
    }
}
