"""Demand forecasting: numpy, statsforecast, leader and LightGBM forecasters, per-step selection,
origin x model reconciliation, rolling-origin backtests, the planner-facing `forecast`."""

from torta.forecast.api import FORECAST_SCHEMA, ROLLING_SCHEMA, forecast, forecast_rolling
from torta.forecast.backtest import (BacktestConfig, BacktestReport, ModelUnavailableWarning,
                                     backtest)
from torta.forecast.data import freq_string, to_history, to_statsforecast
from torta.forecast.models import DEFAULT_MODELS, MODELS

__all__ = ["BacktestConfig", "BacktestReport", "DEFAULT_MODELS", "FORECAST_SCHEMA", "MODELS",
           "ModelUnavailableWarning",
           "ROLLING_SCHEMA", "forecast_rolling",
           "backtest", "forecast", "freq_string", "to_history", "to_statsforecast"]
