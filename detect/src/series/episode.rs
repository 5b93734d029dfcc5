//! Turns per-point scores into anomalous episodes, because the pipeline reports an anomaly once when it
//! starts and once when it ends, never per point. Hysteresis (a lower end threshold and a run of quiet
//! points) keeps one noisy episode from splitting into many. Confirmation (a run of anomalous points
//! before the start is announced, as a Prometheus alert's `for:`) keeps one-point blips quiet: on a
//! series that has been flat, the first blip scores as high as a real change, and only persistence
//! tells them apart.

use super::{Observation, Part, DEFAULT_THRESHOLD};

/// Settings of an [`EpisodeTracker`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpisodeConfig {
    /// A score at or above this opens an episode.
    pub threshold: f64,
    /// Scores below this count as quiet.
    pub end_threshold: f64,
    /// This many quiet points in a row close the episode.
    pub quiet_points: u32,
    /// An episode that starts on an outlier is announced once it has this many anomalous points (the
    /// first at or above `threshold`, the others at or above `end_threshold`, each within
    /// `quiet_points` of the last), or once a level shift or variance change scores at or above
    /// `end_threshold`; a candidate that goes quiet first is dropped unannounced. Level shifts and
    /// variance changes are announced at once. 1 announces every outlier at its first point.
    pub confirm_points: u32,
    /// An episode that started on a level shift counts a point as quiet only once the value is back
    /// inside the band the detector expected when the episode started: the detector re-anchors on the
    /// new level at once, so its scores alone would end the episode while the series stays shifted.
    /// After this many low-scoring points still outside that band, the shifted level is taken as the
    /// new normal and the episode ends.
    pub shifted_points: u32,
}

/// Points in a row that confirm an episode by default.
pub const DEFAULT_CONFIRM_POINTS: u32 = 2;

/// Low-scoring points outside the starting band after which a shifted episode ends by default (an hour
/// at a 10 s interval).
pub const DEFAULT_SHIFTED_POINTS: u32 = 360;

impl Default for EpisodeConfig {
    fn default() -> Self {
        Self {
            threshold: DEFAULT_THRESHOLD,
            end_threshold: DEFAULT_THRESHOLD * 0.5,
            quiet_points: 10,
            confirm_points: DEFAULT_CONFIRM_POINTS,
            shifted_points: DEFAULT_SHIFTED_POINTS,
        }
    }
}

/// One anomalous episode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Episode {
    /// Timestamp (seconds) of the first anomalous point.
    pub start: f64,
    /// Timestamp of the last anomalous point (equal to `start` while the episode is open).
    pub end: f64,
    /// The highest score seen.
    pub peak_score: f64,
    /// When the peak value was seen.
    pub peak_at: f64,
    /// The observation at the peak value: the part that fired there, with the band expected at the
    /// episode's first point (the band the deviation is measured against; the detector's own band
    /// follows the series once it shifts).
    pub peak: Observation,
    /// The worst value observed: the farthest out on the side the episode started on. Not the value
    /// of the highest score: a first partial window scores highest while the series is still on its
    /// way up, and the return to normal scores on the other side.
    pub peak_value: f64,
    /// Points from start to end, inclusive.
    pub points: u32,
}

impl Episode {
    /// `end - start` in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.end - self.start
    }

    /// The part of the ensemble that gave the peak score.
    pub fn part(&self) -> Part {
        self.peak.part
    }
}

/// What a point did to the episode state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EpisodeEvent {
    /// An episode opened at this point.
    Started(Episode),
    /// The episode closed; `end` is its last anomalous point.
    Ended(Episode),
}

/// Tracks the open episode of one series. Everything about an episode lives in a box that exists only
/// while one is open, so a quiet series (most of 100k) holds its settings and a null pointer.
#[derive(Debug, Clone, Default)]
pub struct EpisodeTracker {
    config: EpisodeConfig,
    open: Option<Box<Open>>,
    /// What the last ended episode started from, so that the series' return there is not taken for a
    /// new anomaly; boxed for the same reason as `open`.
    ended: Option<Box<Ended>>,
}

/// The band the last ended episode started from, and its side.
#[derive(Debug, Clone)]
struct Ended {
    band: (f64, f64),
    up: bool,
    /// The detector still scored the series at or above `end_threshold` when the episode ended (it
    /// ended because the series was back in `band`): until a point scores below it, the detector's
    /// slow statistics are still catching up with the deviation, and a point inside `band` is not
    /// a new anomaly, on either side.
    settling: bool,
}

/// The open episode and its bookkeeping.
#[derive(Debug, Clone)]
struct Open {
    episode: Episode,
    /// The episode was announced (confirmed); until then it is a candidate.
    announced: bool,
    /// Anomalous points of the candidate so far.
    anomalous: u32,
    quiet: u32,
    since_last: u32,
    /// The band expected at the first point of the episode.
    first_band: (f64, f64),
    /// `first_band` once a level shift was seen in the episode; `None` for other episodes.
    start_band: Option<(f64, f64)>,
    /// Low-scoring points of the episode that were still outside `start_band`.
    shifted: u32,
    /// The episode started above its expected value: its peak is its highest value, else its lowest.
    up: bool,
}

impl EpisodeTracker {
    /// A tracker with the given settings.
    pub fn new(config: EpisodeConfig) -> Self {
        Self {
            config,
            open: None,
            ended: None,
        }
    }

    /// The open (announced) episode, if any.
    pub fn open(&self) -> Option<&Episode> {
        self.open
            .as_deref()
            .filter(|o| o.announced)
            .map(|o| &o.episode)
    }

    /// Feeds one scored point. Returns an event when an episode is announced or ends here.
    #[must_use]
    pub fn update(
        &mut self,
        timestamp_secs: f64,
        value: f64,
        obs: &Observation,
    ) -> Option<EpisodeEvent> {
        let confirm = self.config.confirm_points.max(1);
        // A level shift or variance change already needed persistence to fire (the CUSUM and the
        // short-over-long scale are the detector's own confirmation), so it is announced at once;
        // only outliers, which one point can make, wait for `confirm_points`.
        let persistent = matches!(obs.part, Part::LevelShift | Part::VarianceChange);
        // The spike cue judges the point before this one, a single point: with confirmation on it is
        // that point's evidence again, not a further point that confirms it, so it neither opens nor
        // confirms a candidate (on the RCA simulator, letting it do so cut top-1 from 95% to 83% and
        // raised false incidents from 0.31 to 1.30 an hour). An announced episode still counts it.
        if obs.part == Part::Spike
            && confirm > 1
            && !self.open.as_deref().is_some_and(|o| o.announced)
        {
            return None;
        }
        // A candidate whose last anomalous point lies more than one quiet point back is noise that
        // went away; a new deviation after it starts its own candidate, so that a fault is not stamped
        // with the time of a blip before it (and its onset not moved ahead of its callers').
        if self.open.as_deref().is_some_and(|o| {
            !o.announced && o.since_last >= 2 && obs.score >= self.config.threshold
        }) {
            self.open = None;
        }
        // An episode can end while the series is still off (the detector took the new level as
        // normal); its return into the band that held before that episode then scores on the other
        // side. That is the recovery, not a new anomaly. Nor is a point back in that band while
        // the detector is still settling after an episode that ended there.
        if self.open.is_none() {
            if let Some(e) = self.ended.as_deref_mut() {
                if obs.score < self.config.end_threshold {
                    e.settling = false;
                } else if obs.score >= self.config.threshold {
                    let back = (e.band.0..=e.band.1).contains(&value);
                    let other_side = if e.up {
                        value < obs.expected
                    } else {
                        value > obs.expected
                    };
                    if back && (other_side || e.settling) {
                        return None;
                    }
                }
            }
        }
        let Some(o) = self.open.as_deref_mut() else {
            if obs.score >= self.config.threshold {
                self.ended = None;
                let e = Episode {
                    start: timestamp_secs,
                    end: timestamp_secs,
                    peak_score: obs.score,
                    peak_at: timestamp_secs,
                    peak: *obs,
                    peak_value: value,
                    points: 1,
                };
                let first_band = (obs.lower, obs.upper);
                let announced = confirm <= 1 || persistent;
                self.open = Some(Box::new(Open {
                    episode: e,
                    announced,
                    anomalous: 1,
                    quiet: 0,
                    since_last: 0,
                    first_band,
                    start_band: (obs.part == Part::LevelShift).then_some(first_band),
                    shifted: 0,
                    up: value >= obs.expected,
                }));
                if announced {
                    return Some(EpisodeEvent::Started(e));
                }
            }
            return None;
        };
        o.since_last += 1;
        if !o.announced {
            if obs.score < self.config.end_threshold {
                o.quiet += 1;
                if o.quiet >= self.config.quiet_points {
                    self.open = None;
                }
                return None;
            }
            o.quiet = 0;
            o.episode.end = timestamp_secs;
            o.episode.points += o.since_last;
            o.since_last = 0;
            o.anomalous += 1;
            if obs.part == Part::LevelShift {
                o.start_band = Some(o.first_band);
            }
            o.raise_peak(timestamp_secs, value, obs);
            if o.anomalous >= confirm || persistent {
                o.announced = true;
                return Some(EpisodeEvent::Started(o.episode));
            }
            return None;
        }
        if obs.part == Part::LevelShift {
            o.start_band = Some(o.first_band);
        }
        let shifted = o
            .start_band
            .is_some_and(|(lo, hi)| !(lo..=hi).contains(&value));
        if shifted && obs.score < self.config.end_threshold {
            o.shifted += 1;
        }
        let held = shifted && o.shifted < self.config.shifted_points;
        // An episode that went outside the band expected at its start is over once the series is
        // back inside that band, however the detector scores it: its slow statistics (the long
        // scale of the variance cue, the level it re-anchored on) take minutes to readjust, and
        // meanwhile the return scores as a change. Ending on the score alone kept episodes open
        // minutes past their fault, and with them an incident that absorbed later faults (issue
        // #19: a 20 s fault's variance change on a p50 lasted 158 s).
        let (lo, hi) = o.first_band;
        let went_out = !(lo..=hi).contains(&o.episode.peak_value);
        let back = went_out && (lo..=hi).contains(&value);
        if (obs.score >= self.config.end_threshold && !back) || held {
            o.quiet = 0;
            o.episode.end = timestamp_secs;
            o.episode.points += o.since_last;
            o.since_last = 0;
            o.raise_peak(timestamp_secs, value, obs);
            return None;
        }
        o.quiet += 1;
        if o.quiet >= self.config.quiet_points {
            let done = o.episode;
            self.ended = Some(Box::new(Ended {
                band: o.first_band,
                up: o.up,
                settling: obs.score >= self.config.end_threshold,
            }));
            self.open = None;
            return Some(EpisodeEvent::Ended(done));
        }
        None
    }

    /// Closes the open episode, e.g. when its series is evicted or the agent stops. An unannounced
    /// candidate is dropped: nobody was told it started.
    pub fn close(&mut self) -> Option<Episode> {
        self.open.take().filter(|o| o.announced).map(|o| o.episode)
    }
}

impl Open {
    fn raise_peak(&mut self, timestamp_secs: f64, value: f64, obs: &Observation) {
        let e = &mut self.episode;
        e.peak_score = e.peak_score.max(obs.score);
        let worse = if self.up {
            value > e.peak_value
        } else {
            value < e.peak_value
        };
        if worse {
            e.peak_at = timestamp_secs;
            e.peak_value = value;
            e.peak = Observation {
                score: obs.score,
                part: obs.part,
                ..e.peak
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(score: f64, expected: f64, upper: f64, part: Part) -> Observation {
        Observation {
            score,
            expected,
            lower: 0.0,
            upper,
            part,
        }
    }

    #[test]
    fn the_peak_is_the_worst_value_against_the_starting_band() {
        let mut t = EpisodeTracker::new(EpisodeConfig {
            quiet_points: 2,
            ..EpisodeConfig::default()
        });
        // An error ratio: the first, partial window scores highest; the ratio keeps climbing while
        // the detector's band follows it; the return to 0 scores on the other side.
        let steps = [
            (1.0, 0.05, obs(1.0, 0.0, 0.01, Part::Outlier)),
            (2.0, 0.40, obs(0.7, 0.02, 0.1, Part::LevelShift)),
            (3.0, 0.38, obs(0.6, 0.3, 0.45, Part::LevelShift)),
            (4.0, 0.0, obs(0.9, 0.38, 0.45, Part::LevelShift)),
            (5.0, 0.0, obs(0.0, 0.0, 0.01, Part::None)),
            (6.0, 0.0, obs(0.0, 0.0, 0.01, Part::None)),
        ];
        let events: Vec<EpisodeEvent> = steps
            .iter()
            .filter_map(|(ts, v, o)| t.update(*ts, *v, o))
            .collect();
        let Some(EpisodeEvent::Ended(e)) = events.last() else {
            panic!("the episode ends: {events:?}");
        };
        assert_eq!(e.peak_value, 0.40);
        assert_eq!(e.peak_at, 2.0);
        assert_eq!(e.peak_score, 1.0);
        assert_eq!((e.peak.expected, e.peak.upper), (0.0, 0.01));
        assert_eq!(e.peak.part, Part::LevelShift);
    }

    #[test]
    fn the_return_after_an_episode_ended_is_not_a_new_one() {
        let mut t = EpisodeTracker::new(EpisodeConfig {
            quiet_points: 2,
            shifted_points: 1,
            ..EpisodeConfig::default()
        });
        // An error ratio jumps to 0.5 and stays; the shifted level is taken as the new normal and the
        // episode ends.
        let up = obs(0.9, 0.0, 0.01, Part::LevelShift);
        let settled = obs(0.0, 0.5, 0.6, Part::None);
        assert!(matches!(
            t.update(1.0, 0.5, &up),
            Some(EpisodeEvent::Started(_))
        ));
        assert!(t.update(2.0, 0.5, &settled).is_none());
        assert!(matches!(
            t.update(3.0, 0.5, &settled),
            Some(EpisodeEvent::Ended(_))
        ));
        // The fault ends: 0 scores as a change below 0.5, but it is back in the band of before.
        let back = obs(0.9, 0.5, 0.6, Part::VarianceChange);
        assert!(t.update(4.0, 0.0, &back).is_none());
        assert!(t.update(5.0, 0.0, &back).is_none());
        // Another rise is news again.
        assert!(matches!(
            t.update(6.0, 0.6, &obs(0.9, 0.0, 0.01, Part::LevelShift)),
            Some(EpisodeEvent::Started(_))
        ));
    }

    // Issue #19: a 20 s latency fault's p50 opened an episode that the variance cue kept open for
    // 158 s after the series was back, and with it an incident that absorbed four later faults.
    #[test]
    fn an_episode_ends_when_the_series_is_back_in_its_band() {
        let config = EpisodeConfig {
            quiet_points: 3,
            confirm_points: 3,
            ..EpisodeConfig::default()
        };
        let mut t = EpisodeTracker::new(config);
        // p50 about 4 ms, band 3-5; a fault makes it 150 ms for three points.
        let fault = obs(1.0, 4.0, 5.0, Part::Outlier);
        assert!(t.update(1.0, 150.0, &fault).is_none());
        assert!(t.update(2.0, 151.0, &fault).is_none());
        assert!(matches!(
            t.update(3.0, 152.0, &fault),
            Some(EpisodeEvent::Started(_))
        ));
        // Back at 4 ms; the variance cue, judging against a long scale that grew with the fault,
        // still scores the return 0.8.
        let settling = Observation {
            score: 0.8,
            expected: 4.0,
            lower: 3.0,
            upper: 5.0,
            part: Part::VarianceChange,
        };
        assert!(t.update(4.0, 4.2, &settling).is_none());
        assert!(t.update(5.0, 3.9, &settling).is_none());
        match t.update(6.0, 4.1, &settling) {
            Some(EpisodeEvent::Ended(e)) => {
                assert_eq!((e.start, e.end, e.peak_value), (1.0, 3.0, 152.0))
            }
            other => panic!("the episode ends 3 points after the series is back: {other:?}"),
        }
        // While the detector keeps scoring the settled series, a point in the band is not a new
        // anomaly, on either side of the expected value.
        assert!(t.update(7.0, 4.5, &settling).is_none());
        assert!(t.update(8.0, 3.5, &settling).is_none());
        assert!(t.open().is_none());
        // A point outside the band is news at once.
        assert!(matches!(
            t.update(9.0, 40.0, &obs(0.9, 4.0, 5.0, Part::VarianceChange)),
            Some(EpisodeEvent::Started(_))
        ));
        // An episode that stayed inside its band (a small shift the CUSUM saw) still ends on the
        // score alone.
        let mut t = EpisodeTracker::new(config);
        let small = obs(0.8, 4.0, 5.0, Part::LevelShift);
        assert!(matches!(
            t.update(1.0, 4.8, &small),
            Some(EpisodeEvent::Started(_))
        ));
        for ts in 2..10 {
            assert!(t.update(f64::from(ts), 4.8, &small).is_none());
        }
        assert!(t.open().is_some());
        // Once the detector has settled (a point below the end threshold), a deviation in the band
        // of before is news again.
        let mut t = EpisodeTracker::new(config);
        assert!(t.update(1.0, 150.0, &fault).is_none());
        assert!(t.update(2.0, 150.0, &fault).is_none());
        assert!(t.update(3.0, 150.0, &fault).is_some());
        for ts in 4..7 {
            let _ = t.update(f64::from(ts), 4.0, &settling);
        }
        assert!(t.open().is_none());
        assert!(t
            .update(7.0, 4.0, &obs(0.1, 4.0, 5.0, Part::None))
            .is_none());
        assert!(matches!(
            t.update(8.0, 4.9, &small),
            Some(EpisodeEvent::Started(_))
        ));
    }

    #[test]
    fn a_blip_before_a_change_does_not_stamp_its_start() {
        let mut t = EpisodeTracker::new(EpisodeConfig::default());
        let high = obs(0.9, 1.0, 2.0, Part::Outlier);
        let calm = obs(0.0, 1.0, 2.0, Part::None);
        assert!(t.update(1.0, 5.0, &high).is_none());
        assert!(t.update(2.0, 1.0, &calm).is_none());
        assert!(t.update(3.0, 1.0, &calm).is_none());
        assert!(t.update(4.0, 6.0, &high).is_none());
        match t.update(5.0, 6.0, &high) {
            Some(EpisodeEvent::Started(e)) => assert_eq!(e.start, 4.0),
            other => panic!("a start: {other:?}"),
        }
        // One quiet point between two anomalous ones still confirms (an export landing late).
        let mut t = EpisodeTracker::new(EpisodeConfig::default());
        assert!(t.update(1.0, 5.0, &high).is_none());
        assert!(t.update(2.0, 1.0, &calm).is_none());
        match t.update(3.0, 6.0, &high) {
            Some(EpisodeEvent::Started(e)) => assert_eq!(e.start, 1.0),
            other => panic!("a start: {other:?}"),
        }
    }

    // The spike cue scores the point before it: one blip is one point of evidence, however the cues
    // describe it, so a blip and its one-step-late spike score do not confirm an episode; a blip that
    // goes on does.
    #[test]
    fn a_spike_score_does_not_confirm_its_own_blip() {
        let blip = obs(0.9, 1.0, 2.0, Part::Outlier);
        let spike = obs(0.9, 1.0, 2.0, Part::Spike);
        let calm = obs(0.0, 1.0, 2.0, Part::None);
        let mut t = EpisodeTracker::new(EpisodeConfig {
            confirm_points: 2,
            ..EpisodeConfig::default()
        });
        assert!(t.update(1.0, 5.0, &blip).is_none());
        assert!(t.update(2.0, 1.0, &spike).is_none());
        assert!(t.update(3.0, 1.0, &calm).is_none());
        assert!(t.update(4.0, 1.0, &calm).is_none());
        assert!(
            t.update(5.0, 1.0, &spike).is_none(),
            "a spike alone opens nothing"
        );
        assert!(t.update(6.0, 5.0, &blip).is_none());
        assert!(matches!(
            t.update(7.0, 5.0, &blip),
            Some(EpisodeEvent::Started(_))
        ));
        // Without confirmation every scored point counts, the spike's too.
        let mut t = EpisodeTracker::new(EpisodeConfig {
            confirm_points: 1,
            ..EpisodeConfig::default()
        });
        assert!(matches!(
            t.update(1.0, 1.0, &spike),
            Some(EpisodeEvent::Started(_))
        ));
    }
}
