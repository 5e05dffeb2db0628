//! Child processes in tests: waits that end.
//!
//! A test that waits on a child with `Child::wait` hangs forever (and with it the whole test
//! binary and CI) when the child ignores the signal it was sent. [`wait_bounded`] waits at most a
//! given time, then kills the child and reports it as a failure the test can assert on.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Wait up to `limit` for `child` to exit. `Err` names what happened if it did not (the child
/// is then killed and reaped, so no process outlives the test).
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Result<ExitStatus, String> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Ok(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "pid {} did not exit within {limit:?}: killed",
                    child.id()
                ));
            }
            Err(e) => return Err(format!("wait for pid {}: {e}", child.id())),
        }
    }
}
