"""Errors users can act on. The CLI prints them as one line and exits 2 (bad input) or 1."""

from __future__ import annotations


class CineMatchError(Exception):
    """A failure with a message that names the problem and the fix. Exit code 1."""

    exit_code = 1


class BadInput(CineMatchError):
    """The user's input (file, option, id) is unusable. Exit code 2; nothing was changed."""

    exit_code = 2


class LockBusy(CineMatchError):
    """Another CineMatch command holds the write lock of this home."""

    exit_code = 1


class QualityGateFailed(CineMatchError):
    """A data-quality gate stopped a layer; its transaction was rolled back."""

    exit_code = 1
