"""A simulated environmental platform (HJ 212-2017 上位机) for the data logger to report to.

records (what the platform holds and counts), checks (what makes a received frame bad),
parts (split uploads put back together), exchange (one request and what answered it),
acks (the 9014 answer and its failure modes), platform (the TCP server), display (the
CLI's lines and the JSON-lines log). `python -m simulators.hj212_platform` runs it.
"""

from simulators.hj212.acks import AckMode
from simulators.hj212.exchange import Exchange, LoggerNotConnected
from simulators.hj212.platform import HJ212Platform
from simulators.hj212.records import Counts, Outcome

__all__ = ["AckMode", "Counts", "Exchange", "HJ212Platform", "LoggerNotConnected", "Outcome"]
