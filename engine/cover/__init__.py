"""Covers: areas crawled from the open platforms into the served index on request."""

from engine.cover.coverage import coverage_cells
from engine.cover.jobs import CoverJob, CoverPlan, CoverRequest, area_km2
from engine.cover.service import Covers

__all__ = ["CoverJob", "CoverPlan", "CoverRequest", "Covers", "area_km2", "coverage_cells"]
