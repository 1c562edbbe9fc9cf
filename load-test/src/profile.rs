//! Load profiles: the target rate over time, and the schedule of sends it implies.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Target messages per second as a function of time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "shape", rename_all = "snake_case")]
pub enum Profile {
    /// The same rate throughout.
    Constant { rate: f64 },
    /// From `from` to `to` linearly over the run.
    Ramp { from: f64, to: f64 },
    /// `start`, plus `step` every `every_secs`.
    Step {
        start: f64,
        step: f64,
        every_secs: f64,
    },
    /// `base`, and `peak` between `at_secs` and `at_secs + for_secs`.
    Spike {
        base: f64,
        peak: f64,
        at_secs: f64,
        for_secs: f64,
    },
}

impl Profile {
    /// The target rate at `t` seconds into a run of `duration` seconds.
    pub fn rate_at(&self, t: f64, duration: f64) -> f64 {
        let rate = match *self {
            Profile::Constant { rate } => rate,
            Profile::Ramp { from, to } => {
                let progress = if duration > 0.0 {
                    (t / duration).clamp(0.0, 1.0)
                } else {
                    1.0
                };
                from + (to - from) * progress
            }
            Profile::Step {
                start,
                step,
                every_secs,
            } => start + step * (t / every_secs.max(0.001)).floor(),
            Profile::Spike {
                base,
                peak,
                at_secs,
                for_secs,
            } => {
                if t >= at_secs && t < at_secs + for_secs {
                    peak
                } else {
                    base
                }
            }
        };
        rate.max(0.0)
    }

    /// The same shape at `factor` times the rate (an agent's share of the whole).
    pub fn scaled(&self, factor: f64) -> Profile {
        match *self {
            Profile::Constant { rate } => Profile::Constant {
                rate: rate * factor,
            },
            Profile::Ramp { from, to } => Profile::Ramp {
                from: from * factor,
                to: to * factor,
            },
            Profile::Step {
                start,
                step,
                every_secs,
            } => Profile::Step {
                start: start * factor,
                step: step * factor,
                every_secs,
            },
            Profile::Spike {
                base,
                peak,
                at_secs,
                for_secs,
            } => Profile::Spike {
                base: base * factor,
                peak: peak * factor,
                at_secs,
                for_secs,
            },
        }
    }

    /// The highest rate the profile reaches within `duration`.
    pub fn peak(&self, duration: f64) -> f64 {
        (0..=1000)
            .map(|i| self.rate_at(duration * f64::from(i) / 1000.0, duration))
            .fold(0.0, f64::max)
    }
}

/// `constant:RATE`, `ramp:FROM:TO`, `step:START:STEP:EVERY_SECS`, `spike:BASE:PEAK:AT:FOR`, or
/// a bare number (constant).
impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        let numbers = |expected: usize| -> Result<Vec<f64>, String> {
            if parts.len() != expected + 1 {
                return Err(format!(
                    "profile {s:?}: {} takes {expected} numbers",
                    parts[0]
                ));
            }
            parts[1..]
                .iter()
                .map(|p| {
                    p.parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite() && *v >= 0.0)
                        .ok_or_else(|| format!("profile {s:?}: {p:?} is not a non-negative number"))
                })
                .collect()
        };
        if let Ok(rate) = s.parse::<f64>() {
            return if rate.is_finite() && rate >= 0.0 {
                Ok(Profile::Constant { rate })
            } else {
                Err(format!("rate {s:?} must be a non-negative number"))
            };
        }
        match parts[0] {
            "constant" => Ok(Profile::Constant {
                rate: numbers(1)?[0],
            }),
            "ramp" => {
                let n = numbers(2)?;
                Ok(Profile::Ramp {
                    from: n[0],
                    to: n[1],
                })
            }
            "step" => {
                let n = numbers(3)?;
                Ok(Profile::Step {
                    start: n[0],
                    step: n[1],
                    every_secs: n[2],
                })
            }
            "spike" => {
                let n = numbers(4)?;
                Ok(Profile::Spike {
                    base: n[0],
                    peak: n[1],
                    at_secs: n[2],
                    for_secs: n[3],
                })
            }
            other => Err(format!(
                "unknown profile {other:?} (expected constant, ramp, step or spike)"
            )),
        }
    }
}

/// Turns a profile into send times: call [`Schedule::due`] as time passes to get the offsets
/// (seconds since the start) of the sends that became due.
pub struct Schedule {
    profile: Profile,
    duration: f64,
    /// Sends expected by the last call (the integral of the rate).
    expected: f64,
    emitted: u64,
    last_t: f64,
}

impl Schedule {
    pub fn new(profile: Profile, duration: f64) -> Self {
        Schedule {
            profile,
            duration,
            expected: 0.0,
            emitted: 0,
            last_t: 0.0,
        }
    }

    /// The scheduled times of the sends due between the previous call and `t` (≤ duration).
    pub fn due(&mut self, t: f64) -> Vec<f64> {
        let t = t.min(self.duration);
        if t <= self.last_t {
            return Vec::new();
        }
        let rate_start = self.profile.rate_at(self.last_t, self.duration);
        let rate_end = self.profile.rate_at(t, self.duration);
        let span = t - self.last_t;
        let added = (rate_start + rate_end) / 2.0 * span;
        let before = self.expected;
        self.expected += added;
        let mut times = Vec::new();
        // A little slack so that floating-point sums do not drop the last send of a run.
        while (self.emitted as f64) + 1.0 <= self.expected + 1e-6 {
            self.emitted += 1;
            // Place each send where the expected count crosses it (linear within the step).
            let fraction = if added > 0.0 {
                ((self.emitted as f64) - before) / added
            } else {
                1.0
            };
            times.push(self.last_t + span * fraction.clamp(0.0, 1.0));
        }
        self.last_t = t;
        times
    }

    pub fn expected(&self) -> f64 {
        self.expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_profiles_and_rejects_nonsense() {
        assert_eq!(
            "500".parse::<Profile>().unwrap(),
            Profile::Constant { rate: 500.0 }
        );
        assert_eq!(
            "ramp:10:100".parse::<Profile>().unwrap(),
            Profile::Ramp {
                from: 10.0,
                to: 100.0
            }
        );
        assert!("ramp:10".parse::<Profile>().is_err());
        assert!("-5".parse::<Profile>().is_err());
        assert!("wobble:1".parse::<Profile>().is_err());
        assert!("spike:1:2:x:4".parse::<Profile>().is_err());
    }

    #[test]
    fn a_constant_schedule_spreads_sends_evenly() {
        let mut schedule = Schedule::new(Profile::Constant { rate: 1000.0 }, 2.0);
        let mut all = Vec::new();
        let mut t = 0.0;
        while t < 2.0 {
            t += 0.0007;
            all.extend(schedule.due(t));
        }
        assert_eq!(all.len(), 2000);
        assert!((all[0] - 0.001).abs() < 1e-9);
        assert!((all[999] - 1.0).abs() < 1e-9);
        assert!(all.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn a_ramp_integrates_to_its_area() {
        let mut schedule = Schedule::new(
            Profile::Ramp {
                from: 0.0,
                to: 200.0,
            },
            10.0,
        );
        let mut count = 0;
        for step in 1..=1000 {
            count += schedule.due(f64::from(step) * 0.01).len();
        }
        assert_eq!(count, 1000, "area of the triangle: 10 s × 200/s ÷ 2");
        let spike = Profile::Spike {
            base: 10.0,
            peak: 100.0,
            at_secs: 5.0,
            for_secs: 1.0,
        };
        assert_eq!(spike.rate_at(5.5, 10.0), 100.0);
        assert_eq!(spike.peak(10.0), 100.0);
    }
}
