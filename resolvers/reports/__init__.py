"""Reports and dashboard data: cap tables at a past block or date, per-investor statements, platform KPIs.

cap_table.py     holders of a token at a block, summed from indexed Transfer events, with investor identity
statements.py    one investor's cash movements, trades, fees and holdings over a period
kpis.py          platform KPIs computed by a job into a Redis snapshot, read by each dashboard poll
exports.py       CSV renderings (cap table, statement) and the PDF statement (fpdf2)
"""
