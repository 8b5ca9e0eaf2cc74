"""Duplicate detection on the ../shared UTKFace folder: groups, conflicts and time.

    python benchmarks/bench_duplicates.py [--images DIR] [--threshold 20] [--workers 1]

Prints the number of records, byte-identical groups, all duplicate groups, conflicting
groups (members with different ages), the largest age spread and the seconds taken.
"""

import argparse
import os
import time

from data_prep.adapters import make_adapter
from data_prep.adapters.base import Record
from data_prep.duplicates import DEFAULT_NEAR_THRESHOLD, find_groups

DEFAULT_IMAGES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              os.pardir, "shared", "datasets", "utkface", "images")


def main() -> None:
    """Parse the flags, run find_groups once, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=os.path.normpath(DEFAULT_IMAGES))
    parser.add_argument("--threshold", type=int, default=DEFAULT_NEAR_THRESHOLD)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    records = [item for item in make_adapter("utkface", root=args.images).records()
               if isinstance(item, Record)]
    start = time.monotonic()
    groups, report = find_groups(records, args.threshold, args.workers)
    seconds = time.monotonic() - start
    spread = max((max(c["labels"]) - min(c["labels"]) for c in report["conflicts"]), default=0)
    print(f"records {len(records)}, threshold {args.threshold} bits, workers {args.workers}")
    print(f"byte-identical groups {report['exact_groups']}, duplicate groups {len(groups)} "
          f"({report['images_in_groups']} images, largest {report['largest_group']})")
    print(f"conflicting groups {report['conflicting_groups']} (largest age spread {spread:g})")
    print(f"undecodable {report['undecodable']}, seconds {seconds:.1f} "
          f"(reading and hashing {report['seconds_reading']:.1f})")


if __name__ == "__main__":
    main()
