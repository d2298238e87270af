//! Answers, in this process, the keyfab calls make makes while it plans a
//! target: the recorded generator calls of the makefiles' `$(shell …)`
//! (`generate-rules-mk`, `generate-version-h`, …) and QMK's `cc-option`
//! probes. make runs every `$(shell …)` through keyfab-shell
//! ([`crate::plan::make_shell`]), which sends a plain call of this keyfab
//! to the socket [`serve_while`] listens on (see `keyfab_shell::host`);
//! each would otherwise be a keyfab process (~3 ms to start, and a
//! generator re-reads and merges the keyboard's info this process holds).
//! A call not known here, or one that fails, is answered "not known" and
//! keyfab-shell starts it as before, so failures are reported as they were.

use crate::generated::Generation;
use crate::plan_cache::{log_answer, log_call, PlanContext};
use crate::probe::{Probes, Question};
use keyfab_cas::LocalCas;
use keyfab_shell::host::{self, Reply};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};

/// The calls of one plan that this process can answer.
pub(crate) struct Calls<'c, 'a> {
    ctx: &'c PlanContext<'a>,
    log: &'c Path,
    /// `<recorder> --log LOG --`, before the generator call it records.
    recorder: Vec<String>,
    /// `<prober> --log LOG`, before the four probe arguments.
    prober: Vec<String>,
    /// How many calls were answered here.
    pub answered: AtomicUsize,
    probes: Probes<'c>,
    /// Takes make's first probe (compiler, question) to the prefetch that
    /// [`serve_while`] runs, which then asks the tree's other probes of it.
    first_probe: Mutex<Option<mpsc::Sender<(String, Question)>>>,
}

impl<'c, 'a> Calls<'c, 'a> {
    pub fn new(ctx: &'c PlanContext<'a>, cas: &'c LocalCas, log: &'c Path) -> Option<Self> {
        let log_arg = log.to_str()?.to_string();
        // The words the shell gets once make has undone its `$$`.
        let words = |line: &str| shlex::split(&line.replace("$$", "$"));
        let mut recorder = words(&ctx.recorder)?;
        recorder.extend(["--log".into(), log_arg.clone(), "--".into()]);
        let mut prober = words(&ctx.prober)?;
        prober.extend(["--log".into(), log_arg]);
        Some(Calls {
            ctx,
            log,
            recorder,
            prober,
            answered: AtomicUsize::new(0),
            probes: Probes::new(cas, ctx.tree),
            first_probe: Mutex::new(None),
        })
    }

    /// The program whose calls come here (this keyfab).
    fn program(&self) -> &str {
        &self.recorder[0]
    }

    /// What `argv` prints and exits with, run here; `None` when it is not
    /// a call this plan knows, or it failed.
    fn run(&self, argv: &[String]) -> Option<Reply> {
        let reply = if let Some(call) = argv.strip_prefix(self.recorder.as_slice()) {
            self.generate(call)
        } else if let Some([cc, option, fallback, extra]) =
            argv.strip_prefix(self.prober.as_slice())
        {
            self.probe(cc, option, fallback, extra)
        } else {
            None
        };
        if reply.is_some() {
            self.answered.fetch_add(1, Ordering::Relaxed);
        }
        reply
    }

    /// A generator call, logged as the recorder logs it (the log is what a
    /// cached plan replays).
    fn generate(&self, call: &[String]) -> Option<Reply> {
        let g = self.ctx.host.as_ref()?.generate(call)?.ok()?;
        let (stdout, stderr) = g.printed.clone()?;
        keep(&g, call, self.log).then_some(Reply {
            status: 0,
            stdout,
            stderr,
        })
    }

    /// Asks `questions` of `cc` ahead of make, all at once (each is a short
    /// compiler run, or a link, that would otherwise stop make's serial
    /// parse, one after another), until `done`; then identifies the
    /// compiler, which the tests do not wait for. A prefetch that panics
    /// leaves make to ask.
    fn prefetch(&self, cc: &str, questions: &[crate::probe::Question], done: &AtomicBool) {
        std::thread::scope(|p| {
            for _ in 0..questions.len().min(PREFETCH_THREADS) {
                p.spawn(|| {
                    let prefetch = || self.probes.prefetch(cc, questions, done);
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(prefetch));
                });
            }
        });
        let identify = || self.probes.identify(cc);
        let _ = std::panic::catch_unwind(AssertUnwindSafe(identify));
    }

    /// A `cc-option` probe, logged as `keyfab probe-cc-option` logs it.
    /// The first one starts the prefetch of the others.
    fn probe(&self, cc: &str, option: &str, fallback: &str, extra: &str) -> Option<Reply> {
        let question = Question {
            option: option.into(),
            fallback: fallback.into(),
            extra: extra.into(),
        };
        let first = self
            .first_probe
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(first) = first {
            let _ = first.send((cc.to_string(), question.clone()));
        }
        let answer = self.probes.answer(cc, &question).ok()?;
        log_answer(self.log, &answer).ok()?;
        Some(Reply {
            status: 0,
            stdout: format!("{}\n", answer.printed).into_bytes(),
            stderr: Vec::new(),
        })
    }
}

/// Writes what a generator call made, as the call itself would, and logs
/// the call in the plan's `log`; false when either failed.
pub(crate) fn keep(g: &Generation, call: &[String], log: &Path) -> bool {
    crate::generated::write_generated(&g.output, &g.contents).is_ok() && log_call(log, call).is_ok()
}

/// The most probes a plan asks ahead of make at once (QMK's AVR builds ask 5).
const PREFETCH_THREADS: usize = 8;

/// Runs `f` with the environment that sends make's calls to `calls`,
/// answering them on a socket of a temp folder until `f` returns. Without
/// a socket (it cannot be made), `f` gets no environment and make starts
/// every call.
pub(crate) fn serve_while<T>(calls: &Calls<'_, '_>, f: impl FnOnce(&[(String, String)]) -> T) -> T {
    let Some((dir, listener)) = tempfile::Builder::new()
        .prefix("keyfab-plan")
        .tempdir()
        .ok()
        .and_then(|d| {
            let l = std::os::unix::net::UnixListener::bind(d.path().join("s")).ok()?;
            Some((d, l))
        })
    else {
        return f(&[]);
    };
    let socket = dir.path().join("s");
    let done = AtomicBool::new(false);
    let (first_probe, asked_first) = mpsc::channel();
    *calls.first_probe.lock().unwrap_or_else(|p| p.into_inner()) = Some(first_probe);
    let out = std::thread::scope(|s| {
        let done = &done;
        s.spawn(move || {
            let tree = calls.ctx.tree;
            let platform = calls.ctx.host.as_ref().and_then(|h| {
                std::panic::catch_unwind(AssertUnwindSafe(|| h.platform(calls.ctx.keyboard)))
                    .ok()
                    .flatten()
            });
            let expected = platform
                .as_deref()
                .and_then(|p| crate::probe::platform_compiler(tree, p));
            // Read once, and only when asked of (make asks no probe when
            // every answer is on its command line).
            let questions = std::sync::OnceLock::new();
            let questions = || {
                questions.get_or_init(|| crate::probe::tree_questions(tree, platform.as_deref()))
            };
            std::thread::scope(|p| {
                // The platform's compiler is asked now, while make reads
                // the makefiles before the first probe (~50 ms for QMK).
                if let Some(cc) = &expected {
                    p.spawn(|| calls.prefetch(cc, questions(), done));
                }
                // Nothing more to do when make asks no probe (the sender is
                // dropped when it is done), or asks the expected compiler.
                let Ok((cc, first)) = asked_first.recv() else {
                    return;
                };
                if !expected
                    .as_deref()
                    .is_some_and(|e| crate::probe::same_compiler(e, &cc))
                {
                    calls.prefetch(&cc, &crate::probe::after(&first, questions().clone()), done);
                }
            });
        });
        s.spawn(|| {
            for stream in listener.incoming() {
                if done.load(Ordering::Acquire) {
                    break;
                }
                if let Ok(stream) = stream {
                    // A client gone mid-call is its own failure. A call
                    // that panics here (a bug) is started as a process, as
                    // calls not known here are, rather than ending keyfab.
                    let _ = host::serve(stream, |argv| {
                        std::panic::catch_unwind(AssertUnwindSafe(|| calls.run(argv)))
                            .ok()
                            .flatten()
                    });
                }
            }
        });
        let env = [
            (host::SOCKET_VAR.to_string(), socket.display().to_string()),
            (host::PROGRAM_VAR.to_string(), calls.program().to_string()),
        ];
        let out = f(&env);
        done.store(true, Ordering::Release);
        calls
            .first_probe
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        // Wakes the accept loop, which then sees `done`.
        let _ = std::os::unix::net::UnixStream::connect(&socket);
        out
    });
    calls.probes.keep_tested();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generator host with a bug: it panics on every call.
    struct Panics;
    impl crate::exec::GeneratorHost for Panics {
        fn generate(&self, _: &[String]) -> Option<Result<Generation, String>> {
            panic!("a bug in a generator")
        }
        fn salt(&self) -> String {
            String::new()
        }
    }

    /// A call whose handler panics is answered "not known" (keyfab-shell
    /// then starts it as a process), and the host answers the next call.
    #[test]
    fn a_call_that_panics_is_left_to_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let cas = LocalCas::open(dir.path().join("cache")).unwrap();
        let answers = crate::probe::Answers::default();
        let ctx = PlanContext {
            tree: dir.path(),
            keyboard: "kb",
            make_args: vec![],
            qmk_bin: "keyfab qmk".into(),
            recorder: "keyfab record-generator".into(),
            prober: "keyfab probe-cc-option".into(),
            answers: &answers,
            host: Some(std::sync::Arc::new(Panics)),
            shell: None,
            early: None,
        };
        let log = dir.path().join("plan.log");
        let calls = Calls::new(&ctx, &cas, &log).unwrap();
        let call: Vec<String> = ["keyfab", "record-generator", "--log"]
            .iter()
            .map(|w| w.to_string())
            .chain([log.display().to_string(), "--".into()])
            .chain(["keyfab", "qmk", "generate-version-h"].map(String::from))
            .collect();
        let replies = serve_while(&calls, |env| {
            // Asked from a thread of its own: a host that died would
            // leave it waiting for a reply.
            let (socket, call) = (std::path::PathBuf::from(&env[0].1), call.clone());
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let ask = || host::ask(&socket, &call).ok();
                let _ = tx.send([ask(), ask()]);
            });
            rx.recv_timeout(std::time::Duration::from_secs(20))
        });
        assert_eq!(replies, Ok([Some(None), Some(None)]));
    }
}
