//! One request's keys asked of the pool until each is answered, or charged `--retries + 1`
//! tries: retryable errors asked again after a pause, and the keys of a loader that failed
//! mid-request asked again of another, the first unanswered one charged a try.

use std::collections::HashMap;

use backon::BackoffBuilder;

use super::super::Answer;
use super::settle::Settled;
use super::{Inner, backoff};

/// What became of one key of a request.
#[derive(Debug)]
enum KeyState {
    /// Still to ask, with the tries it was charged so far and the last reason.
    Pending {
        tries: u32,
        reason: Option<String>,
    },
    Done(Answer),
}

impl Inner {
    /// Asks the loaders for `keys` until each is answered, or charged `retries + 1` tries.
    pub(super) async fn load(&self, keys: Vec<String>, retries: u32) -> Vec<Answer> {
        let mut states: Vec<KeyState> = keys
            .iter()
            .map(|_| KeyState::Pending {
                tries: 0,
                reason: None,
            })
            .collect();
        let mut pauses = backoff().build();
        let mut start_failures = 0u32;
        loop {
            let pending: Vec<usize> = (0..keys.len())
                .filter(|&i| matches!(states[i], KeyState::Pending { .. }))
                .collect();
            if pending.is_empty() {
                break;
            }
            let mut lease = self.checkout().await;
            let Some(slot) = lease.slot.as_mut() else {
                // The pool is gone (the run is ending).
                fail_all(&mut states, "loader closed");
                break;
            };
            if slot.process.is_none() {
                if let Some(at) = slot.restart_at {
                    tokio::time::sleep_until(at).await;
                }
                match self.start_in(slot).await {
                    Ok(()) => {}
                    Err(reason) => {
                        start_failures += 1;
                        if start_failures > retries {
                            self.count_errors(&reason, pending.len());
                            fail_all(&mut states, &reason);
                            break;
                        }
                        continue;
                    }
                }
            }
            let id = {
                let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
                stats.requests += 1;
                stats.requests
            };
            let asked: Vec<&str> = pending.iter().map(|&i| keys[i].as_str()).collect();
            let position: HashMap<&str, usize> =
                pending.iter().map(|&i| (keys[i].as_str(), i)).collect();
            let mut too_long = 0usize;
            let mut retry_later = false;
            let Some(process) = slot.process.as_mut() else {
                continue;
            };
            let result = process
                .request(
                    id,
                    &asked,
                    self.settings.timeout,
                    self.line_limit,
                    |answer| {
                        let Some((key, state)) = self.settle(answer) else {
                            return;
                        };
                        let Some(&i) = position.get(key.as_str()) else {
                            return;
                        };
                        let KeyState::Pending { tries, .. } = &states[i] else {
                            return;
                        };
                        states[i] = match state {
                            Settled::Final(answer) => KeyState::Done(answer),
                            Settled::Retry(reason) => {
                                retry_later = true;
                                KeyState::Pending {
                                    tries: tries + 1,
                                    reason: Some(reason),
                                }
                            }
                        };
                    },
                    || too_long += 1,
                )
                .await;
            let unanswered: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|&i| {
                    matches!(
                        states[i],
                        KeyState::Pending {
                            tries: _,
                            reason: None
                        }
                    )
                })
                .collect();
            match result {
                Ok(()) => {
                    slot.backoff = backoff().build();
                    lease.clean = true;
                    // Keys the loader passed over: when lines were dropped for their size,
                    // those were theirs.
                    let reason = if too_long > 0 {
                        format!("value over --max-value-size ({})", self.max_value_text())
                    } else {
                        "the loader gave no answer".to_owned()
                    };
                    self.count_errors(&reason, unanswered.len());
                    for i in unanswered {
                        states[i] = KeyState::Done(Answer::Failed(reason.clone()));
                    }
                }
                Err(failure) => {
                    self.failed(slot, &failure).await;
                    // The first key left unanswered is the likeliest to have broken it.
                    if let Some(&suspect) = unanswered.first()
                        && let KeyState::Pending { tries, .. } = &states[suspect]
                    {
                        states[suspect] = KeyState::Pending {
                            tries: tries + 1,
                            reason: Some(failure.reason.clone()),
                        };
                    }
                    // The others are asked again with their tries as they were.
                    for &i in unanswered.iter().skip(1) {
                        if let KeyState::Pending { tries, .. } = states[i] {
                            states[i] = KeyState::Pending {
                                tries,
                                reason: Some(failure.reason.clone()),
                            };
                        }
                    }
                }
            }
            drop(lease);
            // Keys charged more tries than allowed are failed; the rest go round again.
            let mut again = 0u64;
            for state in &mut states {
                if let KeyState::Pending { tries, reason } = state {
                    if *tries > retries {
                        let reason = reason.take().unwrap_or_default();
                        self.count_errors(&reason, 1);
                        *state = KeyState::Done(Answer::Failed(reason));
                    } else {
                        *reason = None;
                        again += 1;
                    }
                }
            }
            if again > 0 {
                self.stats.lock().unwrap_or_else(|e| e.into_inner()).retries += again;
                if retry_later && let Some(pause) = pauses.next() {
                    tokio::time::sleep(pause).await;
                }
            }
        }
        states
            .into_iter()
            .map(|state| match state {
                KeyState::Done(answer) => answer,
                KeyState::Pending { .. } => Answer::Failed("loader closed".to_owned()),
            })
            .collect()
    }
}

fn fail_all(states: &mut [KeyState], reason: &str) {
    for state in states {
        if matches!(state, KeyState::Pending { .. }) {
            *state = KeyState::Done(Answer::Failed(reason.to_owned()));
        }
    }
}
