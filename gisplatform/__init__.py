"""gisplatform: the Fushun spatio-temporal city platform."""

__version__ = "0.1.0"
