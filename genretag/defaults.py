"""Every default of genretag in one place (CLI, library and beets plugin read them here).

Cheap to import: no torch, no PyAV.
"""
from __future__ import annotations

#: Slices analysed per track: at most this many 3-s slices spread evenly over it (~30 s),
#: so a 2-hour mix costs what a 30-s clip does. ``None`` means every slice.
MAX_SLICES = 10
#: Adaptive analysis: visit those slices coarse to fine and stop once the head is sure
#: (:data:`SETTLED_MARGIN`), checking after :data:`FIRST_CHECK` slices and then every
#: :data:`CHECK_EVERY`. Multi-label heads always analyse every planned slice.
ADAPTIVE = True
FIRST_CHECK = 3
CHECK_EVERY = 2
#: Lead of the best class over the second (in the mean of the slices so far) that ends
#: an adaptive analysis. Measured on GTZAN + Emotify (bench/RESULTS.md): 5.0 slices
#: instead of 9.5 on average, the same genre on 99.3 % of clips, held-out accuracy unchanged.
SETTLED_MARGIN = 0.35
#: Seconds a worker may spend on one file (from when it is ready) before it is given up.
TIMEOUT_S = 120.0
#: Slices per backbone call. Small batches keep each slice's activations in the CPU
#: cache: 2 was 1.6x faster than 16 per slice here (bench/RESULTS.md), same results.
BATCH_SIZE = 2
#: Peak level (linear) below which a track counts as silent: -80 dBFS.
SILENCE_PEAK = 1e-4
#: Network arithmetic: "fp32", "bf16", or "auto" (bf16 where the CPU has it natively).
PRECISION = "fp32"
PRECISIONS = ("auto", "fp32", "bf16")
#: The vocabulary used unless the caller names another (see :mod:`genretag.vocabularies`).
VOCABULARY = "genres"
#: Genres stored per item by the beets plugin.
COUNT = 1
