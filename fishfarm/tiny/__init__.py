"""The tiny suite: the default preset's tasks, small enough for a 2-core CPU (see `suite`)."""
from fishfarm.tiny.suite import (CATEGORIES, TINY_TASKS, TRAINING, UNSEEN, TinyTaskSpec,
                                 classification_task, tiny_task)

__all__ = ["CATEGORIES", "TINY_TASKS", "TRAINING", "UNSEEN", "TinyTaskSpec",
           "classification_task", "tiny_task"]
