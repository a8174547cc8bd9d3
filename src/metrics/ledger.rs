//! The sync thread's book of the other gate instances' counts of one stage, from which it makes
//! the [`Fleet`] evaluations add: a total that never falls within the stage.
//!
//! The judge's window is the cumulative reading now minus one taken about a window ago, which
//! holds only if the reading never falls. Summing the contributions read at each tick falls
//! whenever one drops out (its row expired: a restarted process, a late tick, the 256 read
//! limit) and rises by the whole of it when it comes back: the window then misses the others'
//! failures for up to a window, and counts old errors again as a fresh burst. The book keeps
//! each instance's last-seen counts instead: the total is the sum of what every instance seen in
//! the stage last showed, so an instance that drops out keeps its counts in it (they leave the
//! window as time passes, like this process's own), and one that comes back adds only what it
//! gained.
//!
//! Memory: at most [`MAX_REMEMBERED`] instances are remembered one by one, each with its
//! counts (40 KiB with histograms), beside the total and its part first read (40 KiB each), the
//! hashes of at most [`MAX_FOLDED`] folded instances (8 KiB) and, with more folded, a 16 KiB
//! filter of the others: about 10 MiB at worst, 40 KiB per other instance in practice. An instance not read for longer than the judged window (all its counts are then
//! older than the window), or the longest gone beyond [`MAX_REMEMBERED`], is folded: it is
//! forgotten, its counts stay in the total, and it is counted among the departed.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, SystemTime};

use super::layout::LEN;
use super::{CohortCounts, Counts, Fleet, window};
use crate::decision::StageId;

/// Instances remembered one by one, at most: the store's read limit (256 per tick), so that
/// the instances read at one tick never have to be folded.
pub(crate) const MAX_REMEMBERED: usize = 256;

/// Folded instances whose ids (their hashes) are remembered, at most.
pub(crate) const MAX_FOLDED: usize = 1024;

/// Each field of the total stops here (2^62), and so do its histogram's samples together: far
/// above any real traffic, and low enough that adding this process's own counts to it, and
/// summing the histogram's buckets, cannot overflow.
pub(crate) const MAX_TOTAL: u64 = 1 << 62;

/// How far past this host's wall clock another instance's opening may be and still be taken
/// as within the window: the clocks of hosts kept by NTP differ by milliseconds, and a few
/// seconds more keep an instance opened just before its first read, on a host slightly ahead,
/// in the window. An opening later than that says only that the instance's host clock runs
/// ahead, by an unknown amount: when its gate opened is then unknown, and its first reading is
/// left out of the window as one whose id does not say (taking it as within the window would
/// put the instance's whole stage there).
pub(crate) const CLOCK_AHEAD_TOLERATED: Duration = Duration::from_secs(5);

/// One other instance's reading: its id, when its gate opened (by its host's wall clock, if
/// its id says), and its cumulative counts of the stage.
pub(crate) type FleetReading<'a> = (&'a str, Option<SystemTime>, Counts);

/// The other instances' counts of one stage, as this process last saw them.
#[derive(Debug, Default)]
pub(crate) struct FleetLedger {
    /// The stage (local, and the stored one the contributions count) the book is of.
    stage: Option<(StageId, u64)>,
    /// The instances remembered, by their id's hash.
    seen: HashMap<u64, Seen>,
    /// The sum of every instance's gains in the stage: what evaluations add.
    total: Counts,
    /// The part of `total` that instances showed when first read: counted in the stage, but
    /// before every window (when they happened is unknown here).
    joined: Counts,
    /// Instances folded: forgotten one by one, their counts still in `total`.
    departed: u32,
    /// The hashes of the newest folded instances, oldest first, at most [`MAX_FOLDED`].
    folded: VecDeque<u64>,
    /// The instances folded before those, recognized approximately in bounded memory.
    folded_long_ago: FoldedLongAgo,
    /// Updates so far: which remembered instance has been gone longest, even on a clock that
    /// does not move.
    tick: u64,
    /// Hashes the instance ids (random keys, per book).
    ids: RandomState,
}

/// One remembered instance.
#[derive(Debug)]
struct Seen {
    /// Per field, the most it has shown in the stage (its baseline for what it gains next).
    counts: Counts,
    /// When it was last read (the gate's monotonic clock), and at which update.
    at: Duration,
    tick: u64,
}

impl FleetLedger {
    /// Takes one tick's reading of the other instances' cumulative counts of `stage` (the
    /// stored stage `stored_stage`), read at `now` (the gate's monotonic and wall clocks), and
    /// returns what evaluations add: the total, what of it instances showed when first read,
    /// and how many instances it is of (those remembered and the departed); `None` when no
    /// instance was ever seen in the stage. A new stage (local or stored) starts the book
    /// afresh; instances not read for longer than `window` are folded.
    ///
    /// An instance read again adds, per field, what it shows above the most it showed before,
    /// so the total never falls. Counts that go backwards within a stage add nothing until they
    /// pass that mark again: ids are unique per gate opening, so a restart is another
    /// instance and going backwards is a partial reading (the instance's gate moved to a new
    /// stage while it read its recorders), whose counts were already added; starting a new
    /// baseline there would add them again, the false burst this book exists to prevent.
    ///
    /// An instance read for the first time adds all it shows. When its gate opened within the
    /// last `window` (as its id says), those counts all happened within the window, and count
    /// in it as any gain does. Otherwise (it opened earlier, or its id does not say) when they
    /// happened is not known (so too when its opening is later than `wall` by more than
    /// [`CLOCK_AHEAD_TOLERATED`]: its host's clock runs ahead by an unknown amount): they are
    /// also added to what the others showed when first read
    /// ([`Fleet::joined`]), which the window takes as older than itself (its start, for them, is
    /// the first read). So a process that joins mid-stage judges the others' traffic from its
    /// joining on, not their whole stage as one window, and their whole stage in the stage-long
    /// evidence.
    ///
    /// A folded instance read again (longer than `window` without being read, or pushed out by
    /// the cap) is taken back at what it shows, adding nothing: what it showed before is in the
    /// total already, and what it gained while unseen cannot be told apart from it (it judges
    /// those outcomes itself, and the others see what it gains from now on).
    pub(crate) fn update<'a>(
        &mut self,
        (stage, stored_stage): (StageId, u64),
        (now, wall): (Duration, SystemTime),
        window: Duration,
        read: impl IntoIterator<Item = FleetReading<'a>>,
    ) -> Option<Fleet> {
        if self.stage != Some((stage, stored_stage)) {
            self.start(stage, stored_stage);
        }
        self.tick += 1;
        let window_start = wall.checked_sub(window);
        let latest = wall.checked_add(CLOCK_AHEAD_TOLERATED);
        for (instance, opened, counts) in read {
            let id = self.ids.hash_one(instance);
            let in_window = opened.is_some_and(|o| {
                window_start.is_some_and(|s| o >= s) && latest.is_some_and(|l| o <= l)
            });
            self.saw(id, counts, now, in_window);
        }
        self.fold_gone(now, window);
        let others = u32::try_from(self.seen.len())
            .unwrap_or(u32::MAX)
            .saturating_add(self.departed);
        (others > 0).then(|| Fleet {
            stage,
            others,
            counts: self.total.clone(),
            joined: self.joined.clone(),
        })
    }

    fn start(&mut self, stage: StageId, stored_stage: u64) {
        self.stage = Some((stage, stored_stage));
        self.seen.clear();
        self.total = window::sized();
        self.joined = window::sized();
        self.departed = 0;
        self.folded.clear();
        self.folded_long_ago.clear();
    }

    /// Adds what instance `id` gained since it was last seen, and remembers it; `in_window`:
    /// what it shows, if first read, all happened within the window.
    fn saw(&mut self, id: u64, counts: Counts, now: Duration, in_window: bool) {
        let tick = self.tick;
        if let Some(seen) = self.seen.get_mut(&id) {
            let lasts = seen.counts.iter_mut().zip(counts.iter());
            for (total, (last, new)) in self.total.iter_mut().zip(lasts) {
                gain(total, last, new);
            }
            (seen.at, seen.tick) = (now, tick);
            return;
        }
        if let Some(at) = self.folded.iter().position(|folded| *folded == id) {
            self.folded.remove(at);
            self.departed = self.departed.saturating_sub(1);
        } else if self.folded_long_ago.holds(id) {
            // Folded before the newest MAX_FOLDED (more than 1 280 instances in the stage):
            // taken back as well, or it would add its whole stage to the total again.
            self.departed = self.departed.saturating_sub(1);
        } else {
            // First read: all it counted so far joins the total, and unless it all happened
            // within the window, the part before windows.
            let sums = self.total.iter_mut().zip(self.joined.iter_mut());
            for ((total, joined), new) in sums.zip(counts.iter()) {
                gain(total, &mut CohortCounts::default(), new);
                if !in_window {
                    gain(joined, &mut CohortCounts::default(), new);
                }
            }
        }
        self.seen.insert(
            id,
            Seen {
                counts,
                at: now,
                tick,
            },
        );
    }

    /// Folds the instances not read for longer than `window`, then the longest gone while more
    /// than [`MAX_REMEMBERED`] are remembered.
    fn fold_gone(&mut self, now: Duration, window: Duration) {
        let gone: Vec<u64> = self
            .seen
            .iter()
            .filter(|(_, seen)| now.saturating_sub(seen.at) > window)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.fold(id);
        }
        let excess = self.seen.len().saturating_sub(MAX_REMEMBERED);
        if excess == 0 {
            return;
        }
        let mut oldest: Vec<(u64, u64)> = self
            .seen
            .iter()
            .map(|(id, seen)| (seen.tick, *id))
            .collect();
        oldest.sort_unstable();
        for (_, id) in oldest.into_iter().take(excess) {
            self.fold(id);
        }
    }

    /// Forgets instance `id`, leaving its counts in the total.
    fn fold(&mut self, id: u64) {
        if self.seen.remove(&id).is_none() {
            return;
        }
        self.departed = self.departed.saturating_add(1);
        if self.folded.len() == MAX_FOLDED
            && let Some(oldest) = self.folded.pop_front()
        {
            self.folded_long_ago.add(oldest);
        }
        self.folded.push_back(id);
    }
}

/// Bits of [`FoldedLongAgo`]'s filter: 16 KiB.
const FOLDED_LONG_AGO_BITS: usize = 1 << 17;

/// Bits set per id.
const FOLDED_LONG_AGO_HASHES: u64 = 4;

/// The ids of instances folded out of the book's exact list, in a Bloom filter of fixed size
/// (made at the first one): an id added is always recognized; one never added is taken for
/// one with a probability that grows with the ids added (about 10⁻⁶ after 1 000, 0.5 % after
/// 10 000, more only with a store written to flood it), and is then taken back without adding
/// what it shows: the others undercount, as beyond [`MAX_REMEMBERED`] they do anyway. Exact
/// sets would grow with every instance a stage ever saw.
#[derive(Debug, Default)]
struct FoldedLongAgo {
    bits: Vec<u64>,
}

impl FoldedLongAgo {
    /// The filter's bits for `id` (double hashing of its 64-bit hash).
    fn positions(id: u64) -> impl Iterator<Item = usize> {
        let step = id.rotate_left(32) | 1;
        (0..FOLDED_LONG_AGO_HASHES).map(move |i| {
            // The modulus is a power of two below 2^32: the cast keeps every bit it needs.
            (id.wrapping_add(i.wrapping_mul(step)) % FOLDED_LONG_AGO_BITS as u64) as usize
        })
    }

    fn add(&mut self, id: u64) {
        if self.bits.is_empty() {
            self.bits = vec![0; FOLDED_LONG_AGO_BITS / 64];
        }
        for at in Self::positions(id) {
            if let Some(word) = self.bits.get_mut(at / 64) {
                *word |= 1 << (at % 64);
            }
        }
    }

    fn holds(&self, id: u64) -> bool {
        !self.bits.is_empty()
            && Self::positions(id).all(|at| {
                self.bits
                    .get(at / 64)
                    .is_some_and(|word| word & (1 << (at % 64)) != 0)
            })
    }

    fn clear(&mut self) {
        self.bits = Vec::new();
    }
}

/// Adds to `total` what `new` shows above `last`, field by field (bucket by bucket), and raises
/// `last` to it: `total` never falls, and whatever went backwards adds nothing. Each field, and
/// the histogram's samples together, stop at [`MAX_TOTAL`] (each instance's samples are at most
/// its requests, but any number of instances may add theirs).
fn gain(total: &mut CohortCounts, last: &mut CohortCounts, new: &CohortCounts) {
    let field = |total: &mut u64, last: &mut u64, new: u64| {
        *total = total
            .saturating_add(new.saturating_sub(*last))
            .min(MAX_TOTAL);
        *last = (*last).max(new);
    };
    field(&mut total.requests, &mut last.requests, new.requests);
    field(&mut total.errors, &mut last.errors, new.errors);
    field(&mut total.compliant, &mut last.compliant, new.compliant);
    let len = new.histogram.len().min(LEN);
    for histogram in [&mut total.histogram, &mut last.histogram] {
        if histogram.len() < len {
            histogram.resize(len, 0);
        }
    }
    let samples = total
        .histogram
        .iter()
        .fold(0, |sum: u64, n| sum.saturating_add(*n));
    let mut room = MAX_TOTAL.saturating_sub(samples);
    for ((total, last), new) in total
        .histogram
        .iter_mut()
        .zip(last.histogram.iter_mut())
        .zip(&new.histogram)
    {
        let added = new.saturating_sub(*last).min(room);
        room -= added;
        *total = total.saturating_add(added);
        *last = (*last).max(*new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::PerCohort;
    use crate::metrics::tests_support::cohort;
    use proptest::prelude::*;

    const STAGE: (StageId, u64) = (StageId(3), 7);
    const WINDOW: Duration = Duration::from_secs(300);

    /// `canary` requests with `errors` of them failed, and ten times the stable requests.
    fn counts(canary: u64, errors: u64) -> Counts {
        PerCohort {
            canary: cohort(canary, errors, 2_000, 90_000),
            stable: cohort(canary * 10, errors / 10, 2_000, 90_000),
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// The monotonic and wall clocks `s` seconds after the test's start.
    fn at(s: u64) -> (Duration, SystemTime) {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        (secs(s), start + secs(s))
    }

    /// `book` updated at `s` seconds (of `STAGE`) with each `(instance, canary requests,
    /// canary errors)`.
    fn tick(book: &mut FleetLedger, s: u64, rows: &[(&'static str, u64, u64)]) -> Option<Fleet> {
        let read = rows.iter().map(|&(i, r, e)| (i, None, counts(r, e)));
        book.update(STAGE, at(s), WINDOW, read)
    }

    #[test]
    fn the_totals_histogram_stops_at_max_total_however_many_instances_add_to_it() {
        // Eight instances, each within its own bounds (samples at most its requests, 2^61),
        // 2^64 samples together: the total's buckets add up to MAX_TOTAL, and a process's own
        // counts added to it and every sum over its buckets stay within a u64.
        let mut book = FleetLedger::default();
        let ids: Vec<String> = (0..8).map(|i| format!("i{i}")).collect();
        let read = ids.iter().enumerate().map(|(i, id)| {
            let mut c = counts(1, 0);
            c.canary.requests = 1 << 61;
            c.canary.histogram = vec![0; LEN];
            c.canary.histogram[10 * (i + 1)] = 1 << 61;
            (id.as_str(), None, c)
        });
        let fleet = book.update(STAGE, at(1), WINDOW, read).unwrap();
        let h = &fleet.counts.canary.histogram;
        let samples: u128 = h.iter().map(|&n| u128::from(n)).sum();
        assert_eq!(samples, u128::from(MAX_TOTAL));
        let mut judged = window::sized();
        judged.canary.add_histogram(&counts(1_000, 0).canary);
        judged.canary.add_histogram(&fleet.counts.canary);
        let p99 = crate::metrics::quantile_micros(&judged.canary.histogram, 0.99);
        assert!(p99 > 0);
    }

    /// The canary's `[requests, errors]` and the instances of an update's fleet.
    fn canary(fleet: &Option<Fleet>) -> ([u64; 2], u32) {
        let fleet = fleet.as_ref().unwrap();
        let c = &fleet.counts.canary;
        assert_eq!(
            c.histogram.iter().sum::<u64>(),
            c.requests,
            "histogram and counters agree"
        );
        ([c.requests, c.errors], fleet.others)
    }

    #[test]
    fn an_instance_that_drops_out_keeps_its_counts_and_adds_only_what_it_gained_on_return() {
        let mut book = FleetLedger::default();
        assert_eq!(tick(&mut book, 0, &[]), None, "nobody yet");
        let both = tick(&mut book, 1, &[("a", 100, 10), ("b", 200, 100)]);
        assert_eq!(canary(&both), ([300, 110], 2));
        assert_eq!(both.as_ref().unwrap().stage, StageId(3));
        // b's row expired: its counts stay in the total.
        let alone = tick(&mut book, 2, &[("a", 150, 10)]);
        assert_eq!(canary(&alone), ([350, 110], 2));
        let nobody = tick(&mut book, 3, &[]);
        assert_eq!(
            canary(&nobody),
            ([350, 110], 2),
            "a store read with no rows"
        );
        // b comes back with 20 more requests, 5 more errors: only those are added.
        let back = tick(&mut book, 4, &[("b", 220, 105), ("a", 150, 10)]);
        assert_eq!(canary(&back), ([370, 115], 2));
        assert_eq!(
            back.unwrap().counts.stable.requests,
            1500 + 2200,
            "every cohort"
        );
    }

    #[test]
    fn what_an_instance_shows_when_first_read_is_kept_apart_as_joined() {
        let mut book = FleetLedger::default();
        tick(&mut book, 1, &[("a", 100, 10)]);
        let on = tick(&mut book, 2, &[("a", 150, 20), ("b", 40, 4)]).unwrap();
        let joined = |fleet: &Fleet| [fleet.joined.canary.requests, fleet.joined.canary.errors];
        assert_eq!(joined(&on), [140, 14], "a's first reading and b's");
        assert_eq!(on.joined.canary.histogram.iter().sum::<u64>(), 140);
        assert_eq!(
            [on.counts.canary.requests, on.counts.canary.errors],
            [190, 24]
        );
        // Later gains are not joined: they happened between two reads.
        let later = tick(&mut book, 3, &[("a", 200, 30), ("b", 60, 9)]).unwrap();
        assert_eq!(joined(&later), [140, 14]);
        // A new stage starts it afresh.
        let next = book.update((StageId(4), 8), at(4), WINDOW, [("a", None, counts(5, 1))]);
        assert_eq!(joined(&next.unwrap()), [5, 1]);
        // An instance whose gate opened within the window: all it shows is of the window.
        let (_, wall) = at(400);
        let opened = |ago: u64| Some(wall - secs(ago));
        let rows = [
            ("fresh", opened(WINDOW.as_secs()), counts(70, 7)),
            ("old", opened(WINDOW.as_secs() + 1), counts(30, 3)),
        ];
        let read = book.update((StageId(4), 8), at(400), WINDOW, rows).unwrap();
        assert_eq!(joined(&read), [5 + 30, 1 + 3]);
        assert_eq!(read.counts.canary.requests, 5 + 70 + 30);
    }

    #[test]
    fn an_opening_past_this_hosts_clock_is_not_taken_as_within_the_window() {
        // B's gate opened 25 minutes ago and shows all of its stage so far, on a host whose
        // clock runs an hour ahead: its id says it opens 35 minutes from now. When it opened is
        // not known here: the window leaves out its first reading.
        let (_, wall) = at(10);
        let ago_25_min = wall - secs(25 * 60);
        let first_read = |opened: SystemTime| {
            let mut book = FleetLedger::default();
            let read = [("b", Some(opened), counts(30_000, 300))];
            let fleet = book.update(STAGE, at(10), WINDOW, read).unwrap();
            [fleet.joined.canary.requests, fleet.joined.canary.errors]
        };
        assert_eq!(first_read(ago_25_min), [30_000, 300], "clocks that agree");
        assert_eq!(
            first_read(ago_25_min + secs(3600)),
            [30_000, 300],
            "an hour ahead"
        );
        let ahead = |by: Duration| first_read(wall + by);
        assert_eq!(ahead(CLOCK_AHEAD_TOLERATED), [0, 0], "a little ahead");
        assert_eq!(ahead(CLOCK_AHEAD_TOLERATED + secs(1)), [30_000, 300]);
    }

    #[test]
    fn counts_that_go_backwards_never_lower_the_total() {
        let mut book = FleetLedger::default();
        tick(&mut book, 1, &[("a", 100, 50)]);
        // A partial reading: fewer requests, more errors.
        let dip = tick(&mut book, 2, &[("a", 60, 55)]);
        assert_eq!(canary(&dip).0, [100, 55], "only the errors above the mark");
        let before = dip.unwrap();
        // Back above the marks: only what passes them is added.
        let on = tick(&mut book, 3, &[("a", 130, 61)]);
        assert_eq!(canary(&on).0, [130, 61]);
        let on = on.unwrap();
        for (before, after) in before.counts.iter().zip(on.counts.iter()) {
            assert!(after.requests >= before.requests && after.errors >= before.errors);
            assert!(after.compliant >= before.compliant);
            assert!(
                after
                    .histogram
                    .iter()
                    .zip(&before.histogram)
                    .all(|(a, b)| a >= b)
            );
        }
    }

    #[test]
    fn a_new_stage_starts_the_book_afresh() {
        let mut book = FleetLedger::default();
        tick(&mut book, 1, &[("a", 100, 50)]);
        let next = (StageId(4), 8);
        let fresh = book.update(next, at(2), WINDOW, [("b", None, counts(10, 1))]);
        assert_eq!(canary(&fresh), ([10, 1], 1));
        assert_eq!(fresh.unwrap().stage, StageId(4));
        // The stored stage alone moving is another stage too.
        let fresh = book.update((StageId(4), 9), at(3), WINDOW, [("b", None, counts(10, 1))]);
        assert_eq!(canary(&fresh), ([10, 1], 1));
        assert_eq!(book.update((StageId(5), 10), at(4), WINDOW, []), None);
    }

    #[test]
    fn instances_gone_longer_than_the_window_are_folded_and_taken_back_without_adding() {
        let mut book = FleetLedger::default();
        tick(&mut book, 0, &[("a", 100, 10), ("b", 200, 20)]);
        let kept = tick(&mut book, 300, &[("a", 100, 10)]);
        assert_eq!((book.seen.len(), book.departed), (2, 0), "gone one window");
        let folded = tick(&mut book, 301, &[("a", 100, 10)]);
        assert_eq!((book.seen.len(), book.departed), (1, 1));
        assert_eq!(canary(&folded), canary(&kept), "its counts stay");
        // b publishes again: what it shows is taken as its mark, nothing added.
        let back = tick(&mut book, 302, &[("a", 100, 10), ("b", 250, 30)]);
        assert_eq!(canary(&back), ([300, 30], 2));
        assert_eq!((book.seen.len(), book.departed), (2, 0));
        let on = tick(&mut book, 303, &[("b", 260, 31)]);
        assert_eq!(canary(&on).0, [310, 31], "then its gains");
    }

    #[test]
    fn instances_folded_beyond_the_exact_list_are_taken_back_without_adding() {
        // More live instances than the book remembers and lists as folded together, read 256
        // at a time in turn (the store's newest-256): each read again after it left the list
        // must add nothing, or its whole stage would count again at every turn.
        let mut book = FleetLedger::default();
        let n = MAX_REMEMBERED + MAX_FOLDED + 120;
        let names: Vec<String> = (0..n).map(|i| format!("i{i}")).collect();
        let mut last = None;
        for t in 0..30 {
            let read: Vec<_> = (0..MAX_REMEMBERED)
                .map(|j| {
                    let name = names[(t * MAX_REMEMBERED + j) % n].as_str();
                    (name, None, counts(10, 1))
                })
                .collect();
            last = book.update(STAGE, at(t as u64), WINDOW, read);
        }
        let fleet = last.unwrap();
        let n = n as u64;
        assert_eq!(
            (fleet.counts.canary.requests, fleet.counts.canary.errors),
            (10 * n, n)
        );
        assert_eq!(u64::from(fleet.others), n);
    }

    #[test]
    fn the_cap_holds_and_folding_keeps_the_total() {
        let mut book = FleetLedger::default();
        let names: Vec<String> = (0..3 * MAX_REMEMBERED).map(|i| format!("i{i}")).collect();
        let read = |range: std::ops::Range<usize>| {
            names[range]
                .iter()
                .map(|n| (n.as_str(), None, counts(10, 1)))
                .collect::<Vec<_>>()
        };
        // A clock that never moves: the cap folds those gone longest, never those just read.
        let first = book.update(STAGE, at(0), WINDOW, read(0..MAX_REMEMBERED));
        assert_eq!(canary(&first), ([2560, 256], 256));
        let second = book.update(
            STAGE,
            at(0),
            WINDOW,
            read(MAX_REMEMBERED..2 * MAX_REMEMBERED),
        );
        assert_eq!(book.seen.len(), MAX_REMEMBERED);
        assert_eq!(canary(&second), ([5120, 512], 512));
        assert!(
            names[MAX_REMEMBERED..2 * MAX_REMEMBERED]
                .iter()
                .all(|n| book.seen.contains_key(&book.ids.hash_one(n.as_str()))),
            "the instances just read are remembered"
        );
        // Beyond the store's read limit: the cap still holds.
        let flood = book.update(STAGE, at(0), WINDOW, read(0..3 * MAX_REMEMBERED));
        assert_eq!(book.seen.len(), MAX_REMEMBERED);
        assert!(book.folded.len() <= MAX_FOLDED);
        assert_eq!(
            canary(&flood),
            ([7680, 768], 768),
            "the newcomers added once"
        );
    }

    proptest! {
        /// Whatever the instances show, and whichever are read at each tick, no field of the
        /// total ever falls; with counts that only grow and nothing folded, the total is the
        /// sum of each instance's last-seen counts.
        #[test]
        fn the_total_never_falls(
            ticks in prop::collection::vec(
                prop::collection::vec((0usize..5, 0u64..400, 0u64..100), 0..6),
                1..40,
            ),
            grows in any::<bool>(),
        ) {
            let mut book = FleetLedger::default();
            let names = ["a", "b", "c", "d", "e"];
            let mut last: [Option<(u64, u64)>; 5] = [None; 5];
            let mut previous = window::sized();
            for (t, reads) in ticks.into_iter().enumerate() {
                let mut read = Vec::new();
                for (i, requests, errors) in reads {
                    let (requests, errors) = if grows {
                        let (r, e) = last[i].unwrap_or((0, 0));
                        (r + requests, e + errors.min(requests))
                    } else {
                        (requests, errors.min(requests))
                    };
                    last[i] = Some((requests, errors));
                    read.push((names[i], None, counts(requests, errors)));
                }
                let Some(fleet) = book.update(STAGE, at(t as u64), WINDOW, read) else {
                    continue;
                };
                for (before, now) in previous.iter().zip(fleet.counts.iter()) {
                    prop_assert!(now.requests >= before.requests);
                    prop_assert!(now.errors >= before.errors);
                    prop_assert!(now.compliant >= before.compliant);
                    prop_assert!(now.histogram.iter().zip(&before.histogram).all(|(n, b)| n >= b));
                }
                if grows {
                    let sum = |f: fn(&(u64, u64)) -> u64| last.iter().flatten().map(f).sum::<u64>();
                    prop_assert_eq!(fleet.counts.canary.requests, sum(|c| c.0));
                    prop_assert_eq!(fleet.counts.canary.errors, sum(|c| c.1));
                }
                previous = fleet.counts;
            }
        }
    }
}
