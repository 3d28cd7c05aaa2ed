"""sessionguard: model, check and test a chat gateway's session guard."""

__version__ = "0.1.0"
