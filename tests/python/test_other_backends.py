"""The backend-dependent suites, on each Keras backend this process does not run.

A process's Keras backend is fixed when Keras is first imported
(KERAS_BACKEND; `make pytest` leaves the default, tensorflow). The suites
below run in this process on its backend, like every other test file, and
here once more for each other backend: one pytest subprocess per backend,
with KERAS_BACKEND set, so that each backend's Keras is imported once.
Random seeds the inner tests draw are printed in their output.
"""

import os
import subprocess
import sys

import pytest

import keras

import helpers_training as ht

BACKENDS = ("tensorflow", "jax", "torch")
# Exact resume (kill -9 included), preemption, the per-backend tests, and
# the checks of a restore and of the callback's guarantees, streamed data,
# and a plain model.fit()'s exact resume.
SUITES = ("test_resume.py", "test_preemption.py", "test_backends.py",
          "test_restore_checks.py", "test_callback.py", "test_streams.py",
          "test_plain_fit_resume.py")
OTHERS = [b for b in BACKENDS if b != keras.backend.backend()]


@pytest.mark.parametrize("backend", OTHERS)
def test_the_suites_pass_on_another_backend(tmp_path, backend):
    env = ht.child_env()
    env["KERAS_BACKEND"] = backend
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--basetemp", str(tmp_path / "t"), "-rfE", *SUITES],
        cwd=ht.HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=3600)
    print(proc.stdout[-20000:])
    assert proc.returncode == 0, f"the suites failed on {backend}; output above"
    summary = proc.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, summary
