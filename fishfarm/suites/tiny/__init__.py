"""The tiny suite: the default preset's tasks, small enough for a 2-core CPU (see `tasks`)."""
from fishfarm.suites.tiny.tasks import (CATEGORIES, TINY_SUITE, TINY_TASKS, TinyTaskSpec, classification_task,
                                        tiny_task)

__all__ = ["CATEGORIES", "TINY_SUITE", "TINY_TASKS", "TinyTaskSpec", "classification_task", "tiny_task"]
