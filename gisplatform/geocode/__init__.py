"""Geocoding (地名地址匹配): Chinese addresses to places and back, at any instant.

- parse.py: normalisation and the structure of an address (`normalize`, `parse`);
- rank.py: scoring a standard address against a query (rapidfuzz), `MATCH`;
- geocoder.py: candidates from PostGIS and their ranking (`geocode`), placing a record
  at an address (`locate`), `reverse`;
- routes.py: `GET /api/geocode`, `GET /api/reverse`;
- cli.py: `gisplatform geocode IN.csv OUT.csv`.
"""

from .geocoder import Candidate, Source, Sources, geocode, locate, reverse
from .parse import AddressError, check_query, normalize, parse
from .rank import MATCH

__all__ = ["MATCH", "AddressError", "Candidate", "Source", "Sources", "check_query", "geocode",
           "locate", "normalize", "parse", "reverse"]
