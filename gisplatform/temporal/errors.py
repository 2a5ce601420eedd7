"""Errors of the temporal store. Each one means the transaction was rolled back."""


class TemporalError(ValueError):
    """Bad input to the store; nothing was written."""


class NaiveTimestampError(TemporalError):
    pass


class UnknownFeatureError(TemporalError):
    pass


class RetiredFeatureError(TemporalError):
    pass


class OverlapError(TemporalError):
    """Two current versions of one fid would overlap in valid time."""


class ConflictError(TemporalError):
    """Another transaction changed the same feature first; retry on fresh data."""


class InvalidFeatureError(TemporalError):
    pass
