"""Hosts: the lungs of a scan (:mod:`.lungseg`), where tumors may go (:mod:`.host`), its soft-tissue
noise (:mod:`.noise`), and the bank on disk (:mod:`.bank`)."""
from __future__ import annotations

from .bank import HostBank, build_host_bank
from .host import Host, PlacementZone, make_host, placement_zone
from .lungseg import segment_lungs

__all__ = ["Host", "HostBank", "PlacementZone", "build_host_bank", "make_host", "placement_zone", "segment_lungs"]
