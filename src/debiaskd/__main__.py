"""``python -m debiaskd`` = the ``debiaskd`` command."""

from debiaskd.cli import entry

entry()
