"""Forward hooks that keep what chosen submodules output (the idea of torchdistill's ForwardHookManager).

Layer-transfer objectives read a model's insides this way instead of asking the model for all its
hidden states or attention maps.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from torch import Tensor, nn


class LayerTaps:
    """Forward hooks on submodules; each keeps its module's latest output under a key until taken."""

    def __init__(self) -> None:
        self._outputs: dict[Hashable, Tensor] = {}
        self._handles: list[Any] = []

    def add(self, key: Hashable, module: nn.Module, pick: Callable[[Any], Tensor] | None = None) -> None:
        """Keep ``module``'s output (or ``pick(output)``) under ``key`` after each of its forward passes."""

        def keep(_module: nn.Module, _inputs: Any, output: Any) -> None:
            self._outputs[key] = pick(output) if pick is not None else output

        self._handles.append(module.register_forward_hook(keep))

    def take(self, keys: Sequence[Hashable]) -> list[Tensor]:
        """The outputs kept under ``keys`` (in order), forgotten here."""
        missing = [k for k in keys if k not in self._outputs]
        if missing:
            raise RuntimeError(f"no forward pass reached the tapped modules {missing}")
        return [self._outputs.pop(k) for k in keys]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._outputs.clear()
