//! [`Interrupt`]: cancels a running SQL statement from another thread.
//!
//! Invariants: the first reason given wins and stays; a statement that is interrupted before
//! it commits changes nothing and fails with `Error::Cancelled`; a statement whose write has
//! begun is never interrupted (its result reports what was applied).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::Notify;

use crate::error::{CancelReason, Error, Result};
use crate::query_meter::Meter;

const NONE: u8 = 0;

/// A cancel signal shared by a statement and whoever may cancel it. Clones share the signal.
#[derive(Clone, Debug, Default)]
pub struct Interrupt {
    inner: Arc<Inner>,
}

/// An [`Interrupt`] that does not keep its statement's state alive: whoever watches what a
/// statement holds (a session, for its suspended portals) without owning it.
#[derive(Clone, Debug)]
pub struct WeakInterrupt(std::sync::Weak<Inner>);

impl WeakInterrupt {
    /// The bytes the statement holds, or `None` once everything of it is gone.
    pub fn held_bytes(&self) -> Option<usize> {
        self.0.upgrade().map(|inner| inner.meter.held())
    }
}

#[derive(Debug, Default)]
struct Inner {
    reason: AtomicU8,
    notify: Notify,
    /// What the statement holds (`crate::query_meter`).
    meter: Meter,
}

fn encode(reason: CancelReason) -> u8 {
    match reason {
        CancelReason::UserRequest => 1,
        CancelReason::StatementTimeout => 2,
        CancelReason::Shutdown => 3,
    }
}

fn decode(code: u8) -> Option<CancelReason> {
    match code {
        1 => Some(CancelReason::UserRequest),
        2 => Some(CancelReason::StatementTimeout),
        3 => Some(CancelReason::Shutdown),
        _ => None,
    }
}

impl Interrupt {
    /// A signal not yet given.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels the statements watching this signal (the first reason given is kept).
    pub fn interrupt(&self, reason: CancelReason) {
        let _ = self.inner.reason.compare_exchange(
            NONE,
            encode(reason),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        self.inner.notify.notify_waiters();
    }

    /// The bytes the statement holds now, as its meter counts them (0 unless the binary
    /// installed `MeteredAllocator`).
    pub fn held_bytes(&self) -> usize {
        self.inner.meter.held()
    }

    /// A handle that does not keep the statement's state alive.
    pub fn downgrade(&self) -> WeakInterrupt {
        WeakInterrupt(Arc::downgrade(&self.inner))
    }

    /// Why the signal was given, if it was.
    pub fn reason(&self) -> Option<CancelReason> {
        decode(self.inner.reason.load(Ordering::SeqCst))
    }

    /// `Err(Cancelled)` once the signal was given.
    pub(crate) fn check(&self) -> Result<()> {
        match self.reason() {
            Some(reason) => Err(Error::Cancelled(reason)),
            None => Ok(()),
        }
    }

    /// The statement's meter.
    pub(crate) fn meter(&self) -> &Meter {
        &self.inner.meter
    }

    /// Charges what this thread allocates and frees to the statement until the guard drops
    /// (`crate::query_meter`): a server that drops a query's batches on threads of its own
    /// does so under this guard, so the query stops holding them.
    pub fn charged(&self) -> impl Drop + use<> {
        self.inner.meter.enter()
    }

    /// Resolves when the signal is given.
    pub async fn given(&self) -> CancelReason {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a signal between the two is not missed.
            notified.as_mut().enable();
            if let Some(reason) = self.reason() {
                return reason;
            }
            notified.await;
        }
    }

    /// Runs `work` until it ends or the signal is given; dropping `work` then cancels it
    /// (DataFusion's tasks end with their stream).
    pub(crate) async fn run<T, E>(
        &self,
        work: impl std::future::Future<Output = std::result::Result<T, E>>,
    ) -> Result<T>
    where
        Error: From<E>,
    {
        // While `work` is polled, planning code on this thread can see the signal
        // ([`check_current`]): planning is one long poll that `select!` cannot preempt.
        let mut work = std::pin::pin!(work);
        let watched = std::future::poll_fn(|cx| {
            let _current = Current::enter(self);
            let _charged = self.inner.meter.enter();
            work.as_mut().poll(cx)
        });
        tokio::select! {
            biased;
            reason = self.given() => Err(Error::Cancelled(reason)),
            done = watched => done.map_err(Error::from),
        }
    }
}

thread_local! {
    /// The signal of the statement this thread is working on, if any.
    static CURRENT: std::cell::RefCell<Option<Interrupt>> = const { std::cell::RefCell::new(None) };
}

/// Sets [`CURRENT`] for the lifetime of the guard, then restores what it was.
struct Current(Option<Interrupt>);

impl Current {
    fn enter(interrupt: &Interrupt) -> Self {
        Current(CURRENT.with(|c| c.replace(Some(interrupt.clone()))))
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// The signal of the statement this thread is working on, if any.
pub(crate) fn current() -> Option<Interrupt> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Makes `interrupt` this thread's current signal until the guard drops: an operator's
/// stream sets it while it polls its input, so that functions evaluated inside one long
/// poll (a join's filter over a whole batch of pairs) can stop ([`check_current`]).
pub(crate) fn enter(interrupt: &Interrupt) -> impl Drop {
    Current::enter(interrupt)
}

/// [`enter`], for tests of the checks inside planning.
#[cfg(test)]
pub(crate) fn tests_enter(interrupt: &Interrupt) -> impl Drop {
    enter(interrupt)
}

/// `Err(Cancelled)` once the signal of the statement this thread is working on was given
/// (`Ok` outside a statement).
pub(crate) fn check_current() -> Result<()> {
    CURRENT.with(|c| c.borrow().as_ref().map_or(Ok(()), Interrupt::check))
}

/// `ResourcesExhausted` when allocating `bytes` more would take the statement this thread
/// works on past its memory limit (`crate::query_meter`): functions check before they
/// build a large result, since the operators check only between batches.
pub(crate) fn check_current_growth(bytes: usize) -> datafusion::common::Result<()> {
    CURRENT.with(
        |c| match c.borrow().as_ref().map(|i| i.meter().exceeded_with(bytes)) {
            Some(Some(exceeded)) => Err(datafusion::error::DataFusionError::ResourcesExhausted(
                exceeded,
            )),
            _ => Ok(()),
        },
    )
}

/// [`check_current`] as a DataFusion error, for the functions and operators we evaluate.
pub(crate) fn check_current_in_plan() -> datafusion::common::Result<()> {
    check_current().map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_signal_ends_pending_work_and_keeps_its_first_reason() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let interrupt = Interrupt::new();
        assert!(interrupt.check().is_ok());
        let signal = interrupt.clone();
        let giver = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            signal.interrupt(CancelReason::StatementTimeout);
            signal.interrupt(CancelReason::UserRequest);
        });
        let result = runtime
            .block_on(interrupt.run(std::future::pending::<std::result::Result<(), Error>>()));
        giver.join().expect("giver");
        assert!(matches!(
            result,
            Err(Error::Cancelled(CancelReason::StatementTimeout))
        ));
        assert_eq!(interrupt.reason(), Some(CancelReason::StatementTimeout));
        // A signal given before the work starts ends it at once.
        let done = runtime.block_on(interrupt.run(async { Ok::<_, Error>(1) }));
        assert!(done.is_err());
    }
}
