"""Cross-validation harness for backpropagation.

Hand-written row-vector backprop (``backends.manual``) checked against PyTorch
autograd, JAX grad and finite differences, case by case. Importing ``harness``
imports neither torch nor jax: each framework is imported when its backend is built.
"""

from .backends import Backend, get as get_backend
from .cases import Case, load_file, load_files
from .compare import Comparison, compare
from .errors import InputError
from .model import Model
from .report import write_report
from .runner import BackendError, CaseResult, RunResult, run, run_case
from .tolerances import TOLERANCES, Tolerance

__all__ = [
    "Backend", "BackendError", "Case", "CaseResult", "Comparison", "InputError", "Model",
    "RunResult", "TOLERANCES", "Tolerance", "compare", "get_backend", "load_file", "load_files",
    "run", "run_case", "write_report",
]
