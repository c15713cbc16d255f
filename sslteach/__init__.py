"""sslteach: deep semi-supervised learning, one paper at a time.

The pieces a notebook uses::

    from sslteach import load_dataset, balanced_split, train, get_device, show_code
    result = train("supervised", "digits", labels_per_class=2, steps=300)
"""
from .data import DATASETS, balanced_split, load_dataset, long_tailed_split, open_set_split
from .methods import METHODS, get_method
from .train import EMA, RunSpec, TrainConfig, Trainer, TrainResult, evaluate, predict, prepare_run, run, train
from .utils import get_device, seed_everything, show_code

__version__ = "0.1.0"
__all__ = ["DATASETS", "METHODS", "EMA", "TrainConfig", "Trainer", "TrainResult", "balanced_split", "evaluate",
           "get_device", "get_method", "load_dataset", "long_tailed_split", "open_set_split", "predict",
           "prepare_run", "run", "RunSpec", "seed_everything", "show_code", "train"]
