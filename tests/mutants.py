"""The mutants, importable from tests and loadable as plugins: ``--backend tests/mutants.py:ForgetsMean``."""

from harness.mutants import (DbNotSummed, DWFromWrongLayer, ForgetsGPrime, ForgetsGPrimeInLayer1,  # noqa: F401
                             ForgetsGPrimeInLayer2, ForgetsMean, GInsteadOfGPrime, OffByOneLayer,
                             PerturbedElement, ScaledLayer, SoftmaxElementwise, TransposesDW, WNotTransposed)
