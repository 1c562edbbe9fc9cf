//! The open-model loop the scenarios share: sends follow the schedule of a rate profile,
//! whatever the server does, and measuring starts when the warm-up ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::agent::start_ticker;
use crate::profile::{Profile, Schedule};
use crate::recorder::{Counter, Recorder, unix_micros};
use crate::result::ProcessSample;

/// The measured phase of a run: its per-second ticker, to stop at the end.
pub struct Phase {
    ticker: Option<JoinHandle<Vec<ProcessSample>>>,
    stop: watch::Sender<bool>,
}

impl Phase {
    /// Starts measuring now (closed model, connection scenarios).
    pub fn measure_now(recorder: &Arc<Recorder>) -> Phase {
        let (stop, stop_rx) = watch::channel(false);
        recorder.start_measuring();
        let ticker = start_ticker(Arc::clone(recorder), Instant::now(), stop_rx);
        Phase {
            ticker: Some(ticker),
            stop,
        }
    }

    /// Waits `grace` for messages still in flight, stops the ticker and returns the samples of
    /// the generator process.
    pub async fn finish(self, grace: Duration) -> Vec<ProcessSample> {
        tokio::time::sleep(grace).await;
        // The ticker may have ended already; it is joined below either way.
        let _ = self.stop.send(true);
        match self.ticker {
            Some(ticker) => ticker.await.unwrap_or_default(),
            None => Vec::new(),
        }
    }
}

/// Runs `profile` for `warmup + duration` seconds, calling `send(n, scheduled_us)` for the
/// n-th send (from 0) when it falls due, with its scheduled time in µs since the Unix epoch.
pub async fn run(
    profile: Profile,
    warmup: f64,
    duration: f64,
    recorder: &Arc<Recorder>,
    mut send: impl FnMut(u64, u64),
) -> Phase {
    let warmup = warmup.max(0.0);
    let total = warmup + duration;
    let mut schedule = Schedule::new(profile, total);
    let (stop, stop_rx) = watch::channel(false);
    let start_us = unix_micros();
    let started = Instant::now();
    let mut ticker = None;
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let t = started.elapsed().as_secs_f64();
        if ticker.is_none() && t >= warmup {
            recorder.start_measuring();
            ticker = Some(start_ticker(
                Arc::clone(recorder),
                Instant::now(),
                stop_rx.clone(),
            ));
        }
        let due = schedule.due(t);
        recorder.count(Counter::Target, due.len() as u64);
        for offset in due {
            send(sent, start_us + (offset * 1e6) as u64);
            sent += 1;
        }
        if t >= total {
            break;
        }
    }
    Phase { ticker, stop }
}
