"""Training objectives, registered once by name: debiasing (the task loss) and distillation (terms on top).

:mod:`debiaskd.core.objectives` (torch-free, so the config and the study design read it without importing torch)
declares every objective: its name, family, what it needs and which tasks may use it; the
implementation classes register against those names with :func:`register` in :mod:`.debias` and
:mod:`.distillation`. Adding an objective = its class (in a family file or a new file) with
``@register("name")`` plus its one-line declaration in :mod:`debiaskd.core.objectives`.
"""

from debiaskd.core.objectives import (
    CATALOG,
    Declared,
    Need,
    choices,
    declared,
    implementation,
    needs,
    register,
)

__all__ = ["CATALOG", "Declared", "Need", "choices", "declared", "implementation", "needs", "register"]
