"""Hourly electricity price and grid carbon intensity per region (2023, UTC hour of year).

Each region takes the hourly series of the *nearest* market by great-circle distance from its
coordinates to the market's reference point (`torta/data/prices/markets.csv`); carbon likewise
among the zones with hourly carbon data. The files are indexed by UTC hour, so each market's daily
peak falls at its own local time, as in reality.

Cleaning, applied at load (raw values are shipped unmodified apart from rounding to 0.01):
- negative prices (EU, CAISO surplus hours) are clipped to 0: the cost model charges energy and
  never pays the operator to consume;
- spikes are capped at `cap_usd_per_mwh` (default 1,000 USD/MWh: ERCOT reaches 4,112 and SG 3,361
  in 2023; a data centre would hedge such hours, and uncapped they dominate any cost mean).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import polars as pl

from torta.fleet.paths import PRICE_DIR
from torta.fleet.topology import great_circle_km

HOURS = 8760
DEFAULT_CAP_USD_PER_MWH = 1000.0


@dataclass(frozen=True)
class Market:
    name: str
    lat: float
    lon: float
    has_price: bool
    has_carbon: bool


@lru_cache(maxsize=1)
def markets() -> tuple[Market, ...]:
    with (PRICE_DIR / "markets.csv").open(newline="", encoding="utf-8") as fh:
        return tuple(Market(r["market"], float(r["lat"]), float(r["lon"]), r["has_price"] == "1",
                            r["has_carbon"] == "1") for r in csv.DictReader(fh))


@lru_cache(maxsize=1)
def _prices() -> pl.DataFrame:
    return pl.read_parquet(PRICE_DIR / "prices_2023_hourly.parquet")


@lru_cache(maxsize=1)
def _carbon() -> pl.DataFrame:
    return pl.read_parquet(PRICE_DIR / "carbon_2023_hourly.parquet")


def nearest_market(lat: float, lon: float, kind: str = "price") -> tuple[str, float]:
    """(market name, distance km) of the nearest market having `kind` ("price" or "carbon")."""
    cands = [m for m in markets() if (m.has_price if kind == "price" else m.has_carbon)]
    best = min(cands, key=lambda m: (great_circle_km(lat, lon, m.lat, m.lon), m.name))
    return best.name, great_circle_km(lat, lon, best.lat, best.lon)


def price_series(market: str, cap_usd_per_mwh: float = DEFAULT_CAP_USD_PER_MWH,
                 clip_negative: bool = True) -> np.ndarray:
    raw = _prices()[market].to_numpy().astype(float)
    lo = 0.0 if clip_negative else -np.inf
    return np.clip(raw, lo, cap_usd_per_mwh)


def raw_price_series(market: str) -> np.ndarray:
    return _prices()[market].to_numpy().astype(float)


def carbon_series(zone: str) -> np.ndarray:
    return _carbon()[zone].to_numpy().astype(float)


def available_price_markets() -> list[str]:
    return [m.name for m in markets() if m.has_price]


def available_carbon_zones() -> list[str]:
    return [m.name for m in markets() if m.has_carbon]


# ---------------------------------------------------------------- country-level carbon

# Country of each hourly carbon zone (to know when a region lies in another country).
ZONE_COUNTRY = {"US-CAL-CISO": "US", "US-TEX-ERCO": "US", "US-MIDA-PJM": "US", "US-NY-NYIS": "US",
                "CA-ON": "CA", "DE-LU": "DE", "GB": "GB", "JP-TK": "JP", "SG": "SG", "KR": "KR"}
# Topology Zoo country names that differ from Green Algorithms' countryName.
_COUNTRY_ALIASES = {"United States": "US", "Russia": "RU", "Hong Kong": "CN-HK",
                    "South Korea": "KR", "Korea": "KR", "Czech Republic": "CZ", "Macedonia": "MK"}
_SNDLIB_SUFFIX = {"uk": "GB"}


@lru_cache(maxsize=1)
def location_carbon() -> dict[str, tuple[str, float]]:
    """Green Algorithms `CI_aggregated.csv` (CC BY 4.0; Lannelongue et al., Adv. Sci. 2021):
    location code -> (country name, average gCO2e/kWh). The first line is a description row."""
    path = PRICE_DIR / "green_algorithms_CI_aggregated.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        next(fh)
        out = {}
        for r in csv.DictReader(fh):
            out[r["location"]] = (r["countryName"] if r["Type"] == "Country" else "",
                                  float(r["carbonIntensity"]))
    return out


def country_code(node_name: str, country: str = "") -> str | None:
    """Location code for a topology node: the Zoo `Country` attribute, else an SNDlib GEANT-style
    name suffix (`fr1.fr` -> FR). None when unknown or not in the Green Algorithms table."""
    table = location_carbon()
    if country:
        if country in _COUNTRY_ALIASES:
            code = _COUNTRY_ALIASES[country]
            return code if code in table else None
        for code, (name, _) in table.items():
            if name == country:
                return code
        return None
    if "." in node_name:
        suffix = node_name.rsplit(".", 1)[1].lower()
        code = _SNDLIB_SUFFIX.get(suffix, suffix.upper())
        return code if code in table and table[code][0] else None
    return None


def regional_carbon_series(zone: str, location: str | None) -> tuple[np.ndarray, float]:
    """The zone's hourly carbon shape, rescaled to the location's annual average when the
    location lies in another country than the zone (e.g. Paris on the GB zone: x 51/129).
    Returns (series, scale factor applied)."""
    series = carbon_series(zone)
    if location is None or location.split("-")[0] == ZONE_COUNTRY.get(zone, zone):
        return series, 1.0
    target = location_carbon()[location][1]
    scale = target / float(series.mean())
    return series * scale, scale
