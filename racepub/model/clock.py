"""Phone clocks: how far ahead of the database each racer's phone stamps its fixes. Pure.

A fix cannot be recorded after it reached the database, so a stamp ahead of
its arrival means the phone's clock runs ahead (set by hand, or a device
clock never synced). A racer whose phone is consistently ahead is corrected,
not dropped: each of their fixes is moved back by the median of their last
few stamp-minus-arrival differences, and the snapshot says so
(`clock_offset_s`). Differences the other way cannot be told from upload
delay and are left alone.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

# A fix stamped more than this ahead of its arrival (after correction) is
# held back until its time comes, then judged like any other ("future"):
# accepted at once, it would make the racer's next fixes look out of order.
FUTURE_TOLERANCE_S = 10.0
# Rows stamped further ahead than this are not read, and not held.
FUTURE_HORIZON_S = 3600.0
# Fixes held back per racer at most; more are dropped for good.
MAX_HELD = 1000
# Offsets smaller than this are not corrected: phones and servers keep time
# to a second or two, and a few seconds ahead harms nothing.
CLOCK_SLACK_S = 5.0
SAMPLES = 5  # the median of this many recent differences


@dataclass
class PhoneClock:
    """One racer's phone: the offset its stamps are corrected by."""

    offset_s: float = 0.0
    samples: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))

    def observe(self, stamp: float, arrival: float) -> None:
        self.samples.append(stamp - arrival)
        # The lower median: one odd fix among honest ones corrects nothing.
        median = statistics.median_low(self.samples)
        target = median if median > CLOCK_SLACK_S else 0.0
        # Changed only for a real change: arrival is known to within a
        # publish interval, and an offset that wandered with it would shift
        # fixes a second apart into each other.
        if abs(target - self.offset_s) > CLOCK_SLACK_S:
            self.offset_s = round(target, 1)
