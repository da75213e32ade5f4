"""Symbol discovery: find what to trade before importing or downloading its bars (issue 24).

`kubetrader.symbols.finnhub.FinnhubSymbols` searches Finnhub's symbol lookup (the free
tier's 60 requests a minute, paced and cached); `kubetrader symbols search` shows it.
"""

from kubetrader.symbols.finnhub import FinnhubSymbols, SymbolMatch, finnhub_cache_dir, finnhub_key

__all__ = ["FinnhubSymbols", "SymbolMatch", "finnhub_cache_dir", "finnhub_key"]
