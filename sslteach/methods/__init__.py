"""One module per paper. ``get_method(name, **options)`` builds a method; ``METHODS`` lists them."""
from __future__ import annotations

from ..utils import check_choice
from .base import Method, MethodConfig, param
from .consistency import MeanTeacher, PiModel, TemporalEnsembling
from .crmatch import CRMatch
from .fixmatch import FixMatch
from .noisy_student import NoisyStudent
from .paws import PAWS                    # 05 (issue 11)
from .swwae import SWWAE                  # 06 (issue 12)
from .inversion import Inversion          # 07 (issue 13)
from .cossl import CoSSL                  # 08 (issue 14)
from .openmatch import OpenMatch          # 09 (issue 15)
from .adaptive import FlexMatch         # 11 (issue 27)
from .adaptive import FreeMatch         # 11 (issue 27)
from .adaptive import SoftMatch         # 11 (issue 27)
from .pseudo_label import PseudoLabel
from .simmatch import SimMatch
from .supervised import Supervised

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


register(Supervised)      # 00: the baseline
register(PseudoLabel)     # 01
register(NoisyStudent)    # 01
register(PiModel)         # 02
register(TemporalEnsembling)  # 02
register(MeanTeacher)     # 02
register(FixMatch)        # 03
register(CRMatch)         # 04
register(SimMatch)        # 04
register(PAWS)            # 05
register(SWWAE)           # 06
register(Inversion)       # 07
register(CoSSL)           # 08
register(OpenMatch)       # 09
register(FlexMatch)       # 11
register(FreeMatch)       # 11
register(SoftMatch)       # 11


def get_method(name: str, **options) -> Method:
    """A fresh method object: ``get_method("fixmatch", tau=0.9)``."""
    check_choice("method", name, METHODS)
    return METHODS[name](**options)


__all__ = ["METHODS", "Method", "MethodConfig", "get_method", "param", "register"]
