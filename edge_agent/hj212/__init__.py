"""HJ 212: the agent as the site's data logger (数采仪) for the environmental platforms.

frame (the wire format), codes (the standard's tables), cipher (HJ 212-2025 Appendix A),
flags and aggregate (data flags, HJ 356 means), spool (what is owed to each platform,
in SQLite), link (one TCP connection per platform), reporter (what to send when).
"""
