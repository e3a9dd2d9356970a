"""TODO"""

from runner.daemon.service import fire_campaign

__all__ = ["fire_campaign"]
