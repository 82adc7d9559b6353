"""TOML configuration for the command line: every option can be pinned in a file.

A config file holds global options at the top level and one table per command, named as
on the command line, with option names as in ``--help`` (dashes or underscores)::

    quiet = true

    [filter]
    filter = "gaussian_filter"
    sigma = [1.0, 2.0, 2.0]
    backend = "numba"

    [features]
    scheduler = "tcp://10.0.0.5:8786"
    bin_width = 25.0

    [features.settings]          # any FeatureSettings field (features, run, predict)
    families = "all"
    texture_dims = ["2D", "2.5D"]
    reseg_range = [-500, 400]
    filters = [{name = "log", sigma_mm = 2.0}]

Options given on the command line override the file.  Unknown tables and keys are refused
with the list of valid ones, so a typo never passes silently.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["SETTINGS_TABLE", "ConfigError", "load_config", "load_toml"]

#: The sub-table of a command that holds feature settings (``[features.settings]``).
SETTINGS_TABLE = "settings"


class ConfigError(ValueError):
    """A config file that cannot be read or holds unknown or ill-typed options."""


def _toml_module():
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:
        import tomli
    except ImportError as exc:  # Python 3.10 without the backport
        raise ConfigError(
            "reading a TOML config on Python 3.10 needs the 'tomli' package: "
            "pip install tomli (Python 3.11+ has tomllib built in)"
        ) from exc
    return tomli


def load_toml(path) -> dict:
    """The parsed content of a TOML file.

    Raises
    ------
    ConfigError
        If the file is missing or is not valid TOML (the message names the file and the
        parser's line and column).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {str(path)!r}")
    toml = _toml_module()
    try:
        with open(path, "rb") as fh:
            return toml.load(fh)
    except toml.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc


def _normalise(key: str) -> str:
    return str(key).replace("-", "_")


def load_config(path, command: str | None, *, global_options, command_options) -> dict:
    """Options for one command from a config file, keyed by argparse ``dest``.

    Parameters
    ----------
    path : str or os.PathLike
    command : str or None
        The subcommand being run; its table is merged over the top-level options.
    global_options : collection of str
        Option names valid at the top level.
    command_options : dict of str to collection of str
        For each command, the option names it accepts.

    Returns
    -------
    dict
        Option name (underscores) to value, for `command` only.

    Raises
    ------
    ConfigError
        For an unknown command table or an option the command does not have.
    """
    data = load_toml(path)
    result = {}
    for key, value in data.items():
        name = _normalise(key)
        if isinstance(value, dict):
            if name not in command_options:
                raise ConfigError(
                    f"config file {str(path)!r}: unknown table [{key}]; commands are "
                    f"{sorted(command_options)}"
                )
            continue
        if name not in global_options:
            tables = ", ".join(f"[{c}]" for c in sorted(command_options))
            raise ConfigError(
                f"config file {str(path)!r}: unknown top-level option {key!r}; top-level "
                f"options are {sorted(global_options)}, command options go in a table "
                f"({tables})"
            )
        result[name] = value
    for table, options in data.items():
        if not isinstance(options, dict) or _normalise(table) != command:
            continue
        valid = command_options[command]
        for key, value in options.items():
            name = _normalise(key)
            if name == SETTINGS_TABLE and SETTINGS_TABLE in valid:
                if not isinstance(value, dict):
                    raise ConfigError(f"config file {str(path)!r}: [{table}] {key} must be a "
                                      f"table of feature settings, got {value!r}")
                result[SETTINGS_TABLE] = dict(value)
                continue
            if name not in valid:
                raise ConfigError(
                    f"config file {str(path)!r}: [{table}] has unknown option {key!r}; "
                    f"valid options are {sorted(valid)}"
                )
            result[name] = value
    return result
