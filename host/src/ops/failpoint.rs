//! Fault injection for the crash tests: `MASQ_FAILPOINT=crash-after-commit` kills the process
//! right after a batch commits and before its messages are deleted, the one moment a crash
//! can make SQS redeliver messages that are already written. Unset, it costs one load.

use std::sync::OnceLock;

fn active() -> &'static str {
    static FAILPOINT: OnceLock<String> = OnceLock::new();
    FAILPOINT.get_or_init(|| std::env::var("MASQ_FAILPOINT").unwrap_or_default())
}

/// Dies like `kill -9` would (no unwinding, no cleanup) if the failpoint is set.
pub fn crash_after_commit() {
    if active() == "crash-after-commit" {
        crate::ops::logging::fatal(
            "failpoint crash-after-commit: aborting after a commit, before deleting",
        );
        std::process::abort();
    }
}
