"""Exceptions that the CLI turns into one clean line and exit code 2."""

from __future__ import annotations


class AdaptlabError(Exception):
    """Base class: an error a user can fix (bad config, missing data, bad path)."""


class ConfigError(AdaptlabError, ValueError):
    """A configuration value or override is invalid. The message names the key and what is accepted."""


class DataError(AdaptlabError):
    """Data is missing or corrupt. The message names the file and what would fix it."""


class RunDirError(AdaptlabError):
    """The output folder cannot be used (not writable, already holds a finished run, ...)."""


class DivergedError(AdaptlabError):
    """Training produced non-finite numbers. The message names where and what to lower."""
