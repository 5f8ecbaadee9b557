"""Demand forecasting: statsforecast and numpy forecasters, rolling-origin backtests, the
planner-facing `forecast`."""

from torta.forecast.api import FORECAST_SCHEMA, forecast
from torta.forecast.backtest import BacktestConfig, BacktestReport, backtest
from torta.forecast.data import to_history
from torta.forecast.models import DEFAULT_MODELS, MODELS

__all__ = ["BacktestConfig", "BacktestReport", "DEFAULT_MODELS", "FORECAST_SCHEMA", "MODELS",
           "backtest", "forecast", "to_history"]
