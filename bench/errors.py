"""Error types that the CLI turns into exit codes."""


class BenchError(Exception):
    """Bad input or usage: the CLI prints the message and exits with status 2."""


class ConfigError(BenchError):
    """A suite, learner config or protocol parameter is wrong."""


class DataError(BenchError):
    """A dataset file is missing or malformed."""


class RegistryError(BenchError, KeyError):
    """An unknown or duplicate registry name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DeviceError(BenchError):
    """The requested device is not available."""
