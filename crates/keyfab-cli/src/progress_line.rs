//! `keyfab build`'s progress on a terminal: one line saying how far the
//! build has got (planning, compiling N/M objects, linking), drawn only
//! once the build has run for a moment (a no-op or a build from the cache
//! ends first) and cleared before the build's own output.

use keyfab_build::exec::Progress;
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// How long a build runs before the line appears.
const SHOWN_AFTER: Duration = Duration::from_millis(300);

/// The line; cleared when dropped.
pub struct ProgressLine {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressLine {
    /// Starts drawing `progress` when stderr is a terminal; `None` else.
    pub fn start(progress: Arc<Progress>) -> Option<ProgressLine> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            if stopped.recv_timeout(SHOWN_AFTER) != Err(RecvTimeoutError::Timeout) {
                return;
            }
            let line = indicatif::ProgressBar::new_spinner();
            line.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                    .expect("valid template"),
            );
            loop {
                line.set_message(describe(&progress));
                line.tick();
                if stopped.recv_timeout(Duration::from_millis(100))
                    != Err(RecvTimeoutError::Timeout)
                {
                    break;
                }
            }
            line.finish_and_clear();
        });
        Some(ProgressLine {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the line says for `p`.
fn describe(p: &Progress) -> String {
    let done = p.compiles_done.load(Ordering::Relaxed);
    let planned = p.compiles_planned.load(Ordering::Relaxed);
    if p.links_started.load(Ordering::Relaxed) > 0 {
        format!("linking ({planned} objects)")
    } else if planned > 0 {
        format!("compiling: {}/{planned} objects", done.min(planned))
    } else if done > 0 {
        format!("planning; {done} objects compiled meanwhile")
    } else {
        "planning".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_follows_the_build() {
        let p = Progress::default();
        assert_eq!(describe(&p), "planning");
        // Early compiles run while make still plans.
        p.compiles_done.store(3, Ordering::Relaxed);
        assert_eq!(describe(&p), "planning; 3 objects compiled meanwhile");
        p.compiles_planned.store(70, Ordering::Relaxed);
        assert_eq!(describe(&p), "compiling: 3/70 objects");
        p.links_started.store(1, Ordering::Relaxed);
        assert_eq!(describe(&p), "linking (70 objects)");
    }
}
