//! The run's threads give way on the host's CPUs while live traffic is protected.
//!
//! The throttle keeps the store's queue short, but a live client's latency is also the CPU of
//! the host it shares with the run: a deploy step on an application server, a store on the
//! deploy host, or both on a small machine. There a live client's command waits for a core
//! while the run's threads decode and encode batches. On the 2-core machine of
//! `bench/throttle/run`, the same smooth writer at 30,000 writes/s cost a live reader a median
//! of 2.0× its idle p99 with the run at normal priority, and 1.6× with the run's threads at
//! Linux's `SCHED_IDLE` (docs/benchmarks.md).
//!
//! So once the throttle sees live traffic, `give_way` moves the run's threads to
//! `SCHED_IDLE`: they run on cores nothing else wants, and a client that wakes takes the core
//! from them at once. The runtime's worker threads follow at their next wakeup, through the
//! hooks the binary installs ([`follow`]), and the threads the run starts itself call
//! [`follow`] as they work.
//!
//! The move is one way: an unprivileged thread may not leave `SCHED_IDLE` (sched(7)). That is
//! why it waits for live traffic: a run on an idle store never makes it, and keeps the whole
//! CPU. The throttle's probe thread never moves, since it must time the store as a live client
//! does. Elsewhere than Linux nothing moves.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the run's threads give way now.
static GIVING_WAY: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Whether this thread has moved.
    static MOVED: Cell<bool> = const { Cell::new(false) };
}

/// From now on the run's threads give way on the CPU, this one at once.
pub(crate) fn give_way() {
    if !GIVING_WAY.swap(true, Ordering::Relaxed) {
        tracing::info!("live traffic: the run's threads give way on the host's CPUs from now on");
    }
    follow();
}

/// Moves this thread to the idle policy if the run gives way and the thread has not moved
/// yet. Cheap enough for the runtime's park and unpark hooks: a relaxed load and a
/// thread-local flag.
pub fn follow() {
    if !GIVING_WAY.load(Ordering::Relaxed) || MOVED.get() {
        return;
    }
    MOVED.set(true);
    if let Err(error) = lower_this_thread() {
        tracing::debug!(?error, "could not lower this thread's CPU priority");
    }
}

#[cfg(target_os = "linux")]
fn lower_this_thread() -> Result<(), thread_priority::Error> {
    use thread_priority::ThreadPriority;
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id,
    };

    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
    )
}

#[cfg(not(target_os = "linux"))]
fn lower_this_thread() -> Result<(), std::convert::Infallible> {
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, thread_schedule_policy,
    };

    use super::*;

    fn policy() -> ThreadSchedulePolicy {
        thread_schedule_policy().expect("the thread's policy")
    }

    const IDLE: ThreadSchedulePolicy =
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);

    /// A thread started before the run gives way moves when it next follows; the thread
    /// that gives way moves at once. (The flag is process-wide, so the whole test runs on
    /// threads of its own, and no other test of this crate looks at a thread's policy.)
    #[test]
    fn threads_move_to_the_idle_policy_once_the_run_gives_way() {
        let (ready, wait) = std::sync::mpsc::channel();
        let (go, given) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            let before = policy();
            ready.send(()).unwrap();
            given.recv().unwrap();
            let unmoved = policy();
            follow();
            (before, unmoved, policy())
        });
        wait.recv().unwrap();
        let giver = std::thread::spawn(|| {
            let before = policy();
            give_way();
            (before, policy())
        });
        let (giver_before, giver_after) = giver.join().unwrap();
        go.send(()).unwrap();
        let (before, unmoved, after) = worker.join().unwrap();
        assert_ne!(giver_before, IDLE);
        assert_eq!(giver_after, IDLE);
        assert_ne!(before, IDLE);
        assert_ne!(unmoved, IDLE, "a thread moves when it follows, not before");
        assert_eq!(after, IDLE);
    }
}
