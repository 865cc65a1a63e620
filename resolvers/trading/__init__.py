"""Trading: markets, the compliance gate, matching, settlement and market data (see models/trading.py)."""
