"""Seeds: each real tumor cut out of its labelled scan (:mod:`.extraction`; thick slices resliced,
:mod:`.reslice`), and the bank on disk (:mod:`.bank`)."""
from __future__ import annotations

from .bank import BankReport, SeedBank, build_seed_bank
from .extraction import Seed, extract_seeds

__all__ = ["BankReport", "Seed", "SeedBank", "build_seed_bank", "extract_seeds"]
