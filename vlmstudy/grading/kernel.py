"""The Jupyter kernels the grading code starts: always an IPython kernel of *this* Python.

Used by the grader (:mod:`vlmstudy.grading.grader`) and by ``vlmstudy exercises build``
(:mod:`vlmstudy.grading.build`, which executes the solution notebooks).
"""

from __future__ import annotations

import sys

__all__ = ["KERNEL_NAME", "kernel_manager", "notebook_client"]

KERNEL_NAME = "vlmstudy-grader"


def kernel_manager():
    """A kernel manager for an IPython kernel of *this* Python (not whatever kernelspec named
    ``python3`` the machine has), as ``--nbval-current-env`` does."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class _ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name="vlmstudy grader", language="python", name=KERNEL_NAME)

    return AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=_ThisPython())


def notebook_client(nb, **options):
    """An ``nbclient.NotebookClient`` for ``nb`` that starts its kernels with :func:`kernel_manager`
    and owns them (shuts each one down when done)."""
    from nbclient import NotebookClient

    class _Client(NotebookClient):
        def create_kernel_manager(self):
            self.km = kernel_manager()
            return self.km

    return _Client(nb, **options)
