//! Yielding to the worker's other tasks, which monoio does not do the usual way.
//!
//! In tokio, `cx.waker().wake_by_ref(); return Pending` puts a task at the back of the run
//! queue. monoio's task harness sees a task woken *while it is being polled* as "notified" and
//! puts it at the *front* of the queue: it runs again at once, ahead of everything that was
//! waiting, so that idiom yields nothing (a flooding connection's read budget would not let any
//! other connection run, and a probe measuring one pass of the loop would measure none).
//!
//! [`poll_yield`] instead has a fresh, tiny task wake the yielder: a spawned task goes to the
//! back of the queue, and a wake from another task's poll is an ordinary schedule (back of the
//! queue too). So the yielder runs again only after every task that was ready when it yielded.
//! One small task per yield: yields happen after bounded work (64 KiB read, a probe tick), never
//! per request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Arranges for the current task to be polled again after the worker's other ready tasks, and
/// answers `Pending`; the caller returns it (its next poll comes after them).
pub fn poll_yield(cx: &mut Context<'_>) -> Poll<()> {
    let waker = cx.waker().clone();
    monoio::spawn(async move { waker.wake() });
    Poll::Pending
}

/// `poll_yield` as a future: ready on the poll after the one that yielded.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        poll_yield(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>> {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("io_uring runtime")
    }

    /// Two tasks that each do three steps, yielding between steps, interleave; with the
    /// self-wake idiom the first would finish all its steps before the second starts.
    #[test]
    fn a_yielding_task_lets_the_others_run_first() {
        let order = Rc::new(RefCell::new(Vec::new()));
        let run = |name: &'static str, order: Rc<RefCell<Vec<String>>>| async move {
            for step in 0..3 {
                order.borrow_mut().push(format!("{name}{step}"));
                yield_now().await;
            }
        };
        runtime().block_on(async {
            let a = monoio::spawn(run("a", order.clone()));
            let b = monoio::spawn(run("b", order.clone()));
            a.await;
            b.await;
        });
        assert_eq!(
            *order.borrow(),
            ["a0", "b0", "a1", "b1", "a2", "b2"],
            "the yield did not let the other task run"
        );
    }

    /// The idiom this module replaces, to show why: the self-woken task runs again first.
    #[test]
    fn monoio_runs_a_self_woken_task_again_first() {
        let order = Rc::new(RefCell::new(Vec::new()));
        let run = |name: &'static str, order: Rc<RefCell<Vec<String>>>| async move {
            for step in 0..3 {
                order.borrow_mut().push(format!("{name}{step}"));
                let mut woke = false;
                std::future::poll_fn(|cx| {
                    if woke {
                        Poll::Ready(())
                    } else {
                        woke = true;
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                })
                .await;
            }
        };
        runtime().block_on(async {
            let a = monoio::spawn(run("a", order.clone()));
            let b = monoio::spawn(run("b", order.clone()));
            a.await;
            b.await;
        });
        assert_eq!(*order.borrow(), ["a0", "a1", "a2", "b0", "b1", "b2"]);
    }
}
