"""debiaskd: does debiasing survive knowledge distillation, and how to make it survive.

The core library (this package, minus ``debiaskd.components`` and ``debiaskd.pipeline``)
never imports kfp; the Kubeflow layer is a thin wrapper over it.
"""

__version__ = "0.1.0"
