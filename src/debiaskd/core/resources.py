"""What a process has used: the one place that measures peak memory."""

from __future__ import annotations

import resource
import sys


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process (with ``children``: or of its largest finished child
    process, such as a kfp task), in MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if children:
        rss = max(rss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return round(rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024, 1)
