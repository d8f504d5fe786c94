"""EEG channel sets of TUSZ, in the fixed order the cache stores them.

TUH labels look like ``EEG FP1-REF`` (01_tcp_ar, 03_tcp_ar_a) or ``EEG FP1-LE`` (02_tcp_le); the
electrode name is the part between ``EEG `` and the reference suffix. 03_tcp_ar_a recordings have no
A1/A2 electrodes, so bipolar derivations that need them are missing there.
"""

from __future__ import annotations

import re

# The 19 electrodes of the international 10-20 system, in the order TUH lists them.
TEN_TWENTY: tuple[str, ...] = (
    "FP1", "FP2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2",
    "F7", "F8", "T3", "T4", "T5", "T6", "FZ", "CZ", "PZ",
)  # fmt: skip

# The 22-channel temporal central parasagittal (TCP) bipolar montage of the TUSZ annotation guidelines.
TCP_BIPOLAR: tuple[tuple[str, str], ...] = (
    ("FP1", "F7"), ("F7", "T3"), ("T3", "T5"), ("T5", "O1"),
    ("FP2", "F8"), ("F8", "T4"), ("T4", "T6"), ("T6", "O2"),
    ("A1", "T3"), ("T3", "C3"), ("C3", "CZ"), ("CZ", "C4"), ("C4", "T4"), ("T4", "A2"),
    ("FP1", "F3"), ("F3", "C3"), ("C3", "P3"), ("P3", "O1"),
    ("FP2", "F4"), ("F4", "C4"), ("C4", "P4"), ("P4", "O2"),
)  # fmt: skip

# Every electrode a TUSZ recording may carry (10-20 set plus the ear references).
ELECTRODES: tuple[str, ...] = TEN_TWENTY + ("A1", "A2")

# Reference suffix of EEG labels under each TUSZ montage folder.
REFERENCE_SUFFIX: dict[str, str] = {"01_tcp_ar": "REF", "02_tcp_le": "LE", "03_tcp_ar_a": "REF"}

MONTAGES = ("ref19", "tcp22")

_LABEL = re.compile(r"^EEG\s+([A-Z0-9]+)-(REF|LE)$")


def electrode_of(label: str) -> str | None:
    """The electrode name of a TUH EEG label (``EEG FP1-REF`` -> ``FP1``), or None for non-EEG channels."""
    match = _LABEL.match(label.strip().upper())
    return match.group(1) if match else None


def tuh_label(electrode: str, suffix: str) -> str:
    """The TUH label of an electrode under a reference suffix (``FP1``, ``LE`` -> ``EEG FP1-LE``)."""
    return f"EEG {electrode}-{suffix}"


def channel_names(montage: str) -> tuple[str, ...]:
    """Names of the cache's channels, in stored order, for ``ref19`` or ``tcp22``."""
    if montage == "ref19":
        return TEN_TWENTY
    if montage == "tcp22":
        return tuple(f"{a}-{b}" for a, b in TCP_BIPOLAR)
    raise ValueError(f"unknown montage {montage!r}; expected one of {MONTAGES}")
