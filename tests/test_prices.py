"""Hourly 2023 prices and carbon: nearest-market mapping and cleaning."""

from __future__ import annotations

import numpy as np
import pytest

from torta.fleet import prices


@pytest.mark.parametrize("lat,lon,market", [
    (37.39, -122.03, "US-CAL-CISO"),  # Sunnyvale
    (29.77, -95.52, "US-TEX-ERCO"),  # Houston
    (40.78, -73.97, "US-NY-NYIS"),  # New York
    (50.11, 8.68, "DE-LU"),  # Frankfurt
    (40.42, -3.70, "ES"),  # Madrid
    (35.61, 139.58, "JP-TK"),  # Tokyo
    (43.70, -79.42, "CA-ON"),  # Toronto
])
def test_nearest_market(lat, lon, market):
    assert prices.nearest_market(lat, lon)[0] == market


def test_london_has_hourly_carbon_but_takes_the_nearest_price_market():
    assert prices.nearest_market(51.51, -0.13, "carbon")[0] == "GB"
    assert prices.nearest_market(51.51, -0.13, "price")[0] in {"FR", "NL"}


def test_raw_series_match_the_published_2023_means():
    # ../shared/prices/README.md table: CAISO 61.5, ERCOT 55.9, PJM 35.7, JP-TK 89.3 USD/MWh
    for m, mean in (("US-CAL-CISO", 61.5), ("US-TEX-ERCO", 55.9), ("US-MIDA-PJM", 35.7),
                    ("JP-TK", 89.3)):
        s = prices.raw_price_series(m)
        assert s.shape == (prices.HOURS,)
        assert s.mean() == pytest.approx(mean, abs=0.1)


def test_negative_prices_clipped_and_spikes_capped():
    raw = prices.raw_price_series("US-TEX-ERCO")
    assert raw.max() > 4000  # the real August 2023 scarcity spikes
    clean = prices.price_series("US-TEX-ERCO", cap_usd_per_mwh=1000.0)
    assert clean.max() == 1000.0
    assert np.array_equal(clean[raw < 1000], raw[raw < 1000])
    ch = prices.raw_price_series("CH")
    assert ch.min() < 0
    assert prices.price_series("CH").min() == 0.0
    assert prices.price_series("CH", clip_negative=False).min() < 0


def test_daily_price_peak_follows_local_time():
    # UTC-indexed: the average daily profile of Tokyo peaks at a different UTC hour than CAISO
    def peak_hour(m):
        return int(np.argmax(prices.price_series(m).reshape(365, 24).mean(axis=0)))
    assert peak_hour("JP-TK") != peak_hour("US-CAL-CISO")


def test_carbon_series_are_hourly_and_positive():
    for z in prices.available_carbon_zones():
        c = prices.carbon_series(z)
        assert c.shape == (prices.HOURS,)
        assert np.all(c >= 0) and c.mean() > 0


def test_country_codes_from_zoo_names_and_geant_suffixes():
    assert prices.country_code("Paris", "France") == "FR"
    assert prices.country_code("Hong Kong", "Hong Kong") == "CN-HK"
    assert prices.country_code("Dallas", "United States") == "US"
    assert prices.country_code("fr1.fr") == "FR"
    assert prices.country_code("uk1.uk") == "GB"
    assert prices.country_code("ny1.ny") is None  # New York, not a country code
    assert prices.country_code("NYCMng") is None
    assert prices.country_code("San Jose 1", "Costa Rica") is None  # not in the table


def test_carbon_rescaled_to_the_country_average_only_across_borders():
    gb = prices.carbon_series("GB")
    paris, k = prices.regional_carbon_series("GB", "FR")
    assert paris.mean() == pytest.approx(prices.location_carbon()["FR"][1])
    assert np.allclose(paris / gb, k)  # same hourly shape
    same, k1 = prices.regional_carbon_series("US-CAL-CISO", "US")
    assert k1 == 1.0 and np.array_equal(same, prices.carbon_series("US-CAL-CISO"))
    unknown, k2 = prices.regional_carbon_series("KR", None)
    assert k2 == 1.0
