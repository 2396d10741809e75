"""Read a fleetbench interval log with HdrHistogram's Python implementation (hdrhistogram on
PyPI) and print, per tag, the total count the median and the maximum in microseconds as JSON."""

import json
import sys

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

HIGHEST_US = 3_600_000_000


def main(path):
    reader = HistogramLogReader(path, HdrHistogram(1, HIGHEST_US, 3))
    totals = {}
    intervals = 0
    while True:
        h = reader.get_next_interval_histogram()
        if h is None:
            break
        intervals += 1
        tag = h.get_tag()
        if tag not in totals:
            totals[tag] = HdrHistogram(1, HIGHEST_US, 3)
        totals[tag].add(h)
    out = {
        "intervals": intervals,
        "tags": {
            t: {
                "count": h.get_total_count(),
                "p50_us": h.get_value_at_percentile(50),
                "max_us": h.get_max_value(),
            }
            for t, h in totals.items()
        },
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
