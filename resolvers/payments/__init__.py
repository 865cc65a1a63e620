"""Payments: intents (intents.py), the state machine (states.py), on-chain reconciliation (reconcile.py), bank
transfer confirmation and refunds (refunds.py), the settlement report (report.py) and notifications (notify.py).
"""
